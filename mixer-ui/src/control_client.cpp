// Asynchronous control API client (see control_client.hpp).
#include "control_client.hpp"

#include <QJsonDocument>
#include <QJsonValue>

namespace qaudio::mixer {

ControlClient::ControlClient(QString path, QObject* parent)
    : QObject(parent), path_(std::move(path)), sock_(new QLocalSocket(this)) {
  retry_.setSingleShot(true);
  connect(&retry_, &QTimer::timeout, this, &ControlClient::tryConnect);
  connect(sock_, &QLocalSocket::connected, this, &ControlClient::onConnected);
  connect(sock_, &QLocalSocket::readyRead, this, &ControlClient::onReadyRead);
  connect(sock_, &QLocalSocket::errorOccurred, this, &ControlClient::onError);
  connect(sock_, &QLocalSocket::disconnected, this, &ControlClient::onDisconnected);
}

ControlClient::~ControlClient() {
  running_ = false;
  sock_->disconnect(this);
  sock_->abort();
}

void ControlClient::setRetryInterval(int min_ms, int max_ms) {
  min_retry_ms_ = std::max(10, min_ms);
  max_retry_ms_ = std::max(min_retry_ms_, max_ms);
  retry_ms_ = min_retry_ms_;
}

void ControlClient::start() {
  if (running_) {
    return;
  }
  running_ = true;
  retry_ms_ = min_retry_ms_;
  tryConnect();
}

void ControlClient::stop() {
  running_ = false;
  retry_.stop();
  sock_->abort();
  if (connected_) {
    lost(QStringLiteral("stopped"));
  }
}

void ControlClient::tryConnect() {
  if (!running_ || sock_->state() != QLocalSocket::UnconnectedState) {
    return;
  }
  in_.clear();
  sock_->connectToServer(path_, QIODevice::ReadWrite);
}

void ControlClient::onConnected() {
  connected_ = true;
  last_error_.clear();
  retry_ms_ = min_retry_ms_;
  emit connected();
}

void ControlClient::onError(QLocalSocket::LocalSocketError) {
  QString why = sock_->errorString();
  if (connected_) {
    lost(why);
  } else {
    last_error_ = QStringLiteral("cannot connect to %1: %2").arg(path_, why);
  }
  sock_->abort();
  if (running_ && !retry_.isActive()) {
    retry_.start(retry_ms_);
    retry_ms_ = std::min(retry_ms_ * 2, max_retry_ms_);
  }
}

void ControlClient::onDisconnected() {
  if (connected_) {
    lost(QStringLiteral("the daemon closed the connection"));
  }
  if (running_ && !retry_.isActive()) {
    retry_.start(retry_ms_);
    retry_ms_ = std::min(retry_ms_ * 2, max_retry_ms_);
  }
}

void ControlClient::lost(const QString& reason) {
  connected_ = false;
  last_error_ = reason;
  in_.clear();
  failAll(reason);
  emit disconnected(reason);
}

void ControlClient::failAll(const QString& reason) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, cb] : pending) {
    if (cb) {
      cb(ControlResult{false, {}, QStringLiteral("disconnected"), reason});
    }
  }
}

qint64 ControlClient::call(const QString& method, const QJsonObject& params, Callback cb) {
  qint64 id = next_id_++;
  if (!connected_) {
    // Still asynchronous: the callback runs from the event loop, never inside call().
    QString why = last_error_.isEmpty() ? QStringLiteral("not connected") : last_error_;
    QTimer::singleShot(0, this, [cb = std::move(cb), why] {
      if (cb) {
        cb(ControlResult{false, {}, QStringLiteral("disconnected"), why});
      }
    });
    return id;
  }
  QJsonObject req{{"id", id}, {"method", method}};
  if (!params.isEmpty()) {
    req.insert("params", params);
  }
  QByteArray line = QJsonDocument(req).toJson(QJsonDocument::Compact);
  line.append('\n');
  pending_.emplace(id, std::move(cb));
  sock_->write(line);  // buffered by QLocalSocket; written as the socket allows
  return id;
}

void ControlClient::onReadyRead() {
  in_.append(sock_->readAll());
  qsizetype start = 0;
  for (;;) {
    qsizetype nl = in_.indexOf('\n', start);
    if (nl < 0) {
      break;
    }
    QByteArray line = in_.mid(start, nl - start);
    start = nl + 1;
    if (line.endsWith('\r')) {
      line.chop(1);
    }
    if (!line.isEmpty()) {
      handleLine(line);
      if (!connected_) {
        return;  // handleLine gave up on this connection
      }
    }
  }
  in_.remove(0, start);
  if (in_.size() > kMaxLineBytes) {
    lost(QStringLiteral("the daemon sent a line longer than %1 bytes").arg(kMaxLineBytes));
    sock_->abort();
  }
}

void ControlClient::handleLine(const QByteArray& line) {
  QJsonParseError perr;
  QJsonDocument doc = QJsonDocument::fromJson(line, &perr);
  if (!doc.isObject()) {
    qWarning("qubes-audio-mixer: ignoring a control line that is not a JSON object: %s",
             qPrintable(perr.errorString()));
    return;
  }
  QJsonObject o = doc.object();
  if (o.contains("event")) {
    emit event(o.value("event").toString(), o.value("data").toObject());
    return;
  }
  QJsonValue idv = o.value("id");
  if (!idv.isDouble()) {
    // Errors before the id could be read ("refused": not allowed to connect).
    QJsonObject err = o.value("error").toObject();
    QString msg = err.value("message").toString();
    qWarning("qubes-audio-mixer: control API error: %s %s",
             qPrintable(err.value("code").toString()), qPrintable(msg));
    if (err.value("code").toString() == QLatin1String("refused")) {
      lost(QStringLiteral("refused: %1").arg(msg));
      sock_->abort();
    }
    return;
  }
  auto it = pending_.find(static_cast<qint64>(idv.toDouble()));
  if (it == pending_.end()) {
    return;
  }
  Callback cb = std::move(it->second);
  pending_.erase(it);
  ControlResult r;
  if (o.contains("error")) {
    QJsonObject err = o.value("error").toObject();
    r.code = err.value("code").toString();
    r.message = err.value("message").toString();
  } else {
    r.ok = true;
    r.result = o.value("result").toObject();
  }
  if (cb) {
    cb(r);
  }
}

}  // namespace qaudio::mixer
