// An asynchronous client for the audio daemon's control API
// (docs/control-api.md): newline-delimited JSON over a Unix socket, driven by
// the Qt event loop (QLocalSocket), never blocking. It reconnects by itself
// when the daemon goes away and fails the calls in flight with
// "disconnected".
//
//   ControlClient c("/run/user/1000/qaudio/control");
//   QObject::connect(&c, &ControlClient::connected, [&] {
//     c.call("set_volume", {{"qube", "work"}, {"percent", 80}},
//            [](const ControlResult& r) { if (!r.ok) qWarning() << r.message; });
//   });
//   c.start();
#pragma once

#include <QJsonObject>
#include <QLocalSocket>
#include <QObject>
#include <QString>
#include <QTimer>

#include <functional>
#include <map>

namespace qaudio::mixer {

// The outcome of one call: the reply's "result", or its error code/message
// ("disconnected" when the connection was lost before the reply).
struct ControlResult {
  bool ok = false;
  QJsonObject result;
  QString code;
  QString message;
};

class ControlClient : public QObject {
  Q_OBJECT
 public:
  using Callback = std::function<void(const ControlResult&)>;
  // Longest reply line accepted (the daemon's limits are far below it).
  static constexpr qsizetype kMaxLineBytes = 8 * 1024 * 1024;

  explicit ControlClient(QString path, QObject* parent = nullptr);
  ~ControlClient() override;

  // Connects, and keeps reconnecting (backoff from `min_retry_ms` doubling up
  // to `max_retry_ms`) until stop().
  void start();
  void stop();
  void setRetryInterval(int min_ms, int max_ms);

  bool isConnected() const { return connected_; }
  const QString& path() const { return path_; }
  // Why the last connection attempt or connection ended ("" while connected).
  const QString& lastError() const { return last_error_; }

  // Sends one request; `cb` runs later on the event loop with the reply (or
  // a "disconnected" failure). Returns the request id.
  qint64 call(const QString& method, const QJsonObject& params = {}, Callback cb = {});

 signals:
  void connected();
  void disconnected(const QString& reason);
  // An event line: {"event": type, "data": {...}}.
  void event(const QString& type, const QJsonObject& data);

 private:
  void tryConnect();
  void onConnected();
  void onReadyRead();
  void onError(QLocalSocket::LocalSocketError e);
  void onDisconnected();
  void lost(const QString& reason);
  void handleLine(const QByteArray& line);
  void failAll(const QString& reason);

  QString path_;
  QLocalSocket* sock_;
  QTimer retry_;
  QByteArray in_;
  std::map<qint64, Callback> pending_;
  qint64 next_id_ = 1;
  int min_retry_ms_ = 250;
  int max_retry_ms_ = 2000;
  int retry_ms_ = 250;
  bool running_ = false;
  bool connected_ = false;
  QString last_error_ = QStringLiteral("not connected yet");
};

}  // namespace qaudio::mixer
