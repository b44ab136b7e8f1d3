// The mixer's qube model (see qube_model.hpp).
#include "qube_model.hpp"

#include <algorithm>

namespace qaudio::mixer {

QColor labelColor(const QString& label) {
  // The colours of Qubes OS's labels (qubes-core-admin's default labels).
  static const std::pair<const char*, const char*> kLabels[] = {
      {"red", "#cc0000"},   {"orange", "#f57900"}, {"yellow", "#edd400"},
      {"green", "#73d216"}, {"gray", "#555753"},   {"grey", "#555753"},
      {"blue", "#3465a4"},  {"purple", "#75507b"}, {"black", "#000000"},
  };
  for (const auto& [name, hex] : kLabels) {
    if (label.compare(QLatin1String(name), Qt::CaseInsensitive) == 0) {
      return QColor(QLatin1String(hex));
    }
  }
  if (label.startsWith('#') && (label.size() == 7) && QColor::isValidColorName(label)) {
    return QColor(label);
  }
  return QColor(0x88, 0x8a, 0x85);
}

int QubeModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(rows_.size());
}

QVariant QubeModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() < 0 || index.row() >= rowCount()) {
    return {};
  }
  const QubeRow& q = rows_[static_cast<size_t>(index.row())];
  switch (role) {
    case Qt::DisplayRole:
    case NameRole:
      return q.name;
    case Qt::DecorationRole:
      return labelColor(q.label);
    case LabelRole:
      return q.label;
    case VolumeRole:
      return q.volume;
    case MutedRole:
      return q.muted;
    case MicAttachedRole:
      return q.mic_attached;
    case MicPendingRole:
      return q.micPending();
    case MicDeniedRole:
      return q.micDenied();
    case RunningRole:
      return q.running();
    default:
      return {};
  }
}

QHash<int, QByteArray> QubeModel::roleNames() const {
  return {{NameRole, "name"},
          {LabelRole, "label"},
          {VolumeRole, "volume"},
          {MutedRole, "muted"},
          {MicAttachedRole, "micAttached"},
          {MicPendingRole, "micPending"},
          {MicDeniedRole, "micDenied"},
          {RunningRole, "running"}};
}

void QubeModel::setFromList(const QJsonArray& qubes) {
  std::vector<QubeRow> rows;
  for (const auto& v : qubes) {
    QJsonObject o = v.toObject();
    if (!o.value("name").isString() || o.value("name").toString().isEmpty()) {
      continue;
    }
    QubeRow q;
    q.name = o.value("name").toString();
    q.label = o.value("label").toString();
    q.state = o.value("state").toString();
    q.protocol = o.value("protocol").toString();
    q.volume = std::clamp(o.value("volume").toInt(100), 0, 150);
    q.muted = o.value("muted").toBool();
    QJsonObject mic = o.value("mic").toObject();
    q.mic_requested = mic.value("requested").toBool();
    q.mic_attached = mic.value("attached").toBool();
    q.mic_persistent = mic.value("persistent").toBool();
    q.mic_policy = mic.value("policy").toString();
    q.latency_us = static_cast<quint32>(std::max(0.0, o.value("latency_us").toDouble()));
    QJsonObject counters = o.value("counters").toObject();
    q.underruns = static_cast<quint64>(std::max(0.0, counters.value("underruns").toDouble()));
    q.last_error = o.value("last_error").toString();
    q.output_device = o.value("output_device").toString();
    if (o.value("level").isDouble()) {
      q.level = std::clamp(o.value("level").toDouble(), 0.0, 1.0);
    } else if (const QubeRow* old = find(q.name)) {
      q.level = old->level;
    }
    rows.push_back(std::move(q));
  }
  std::sort(rows.begin(), rows.end(),
            [](const QubeRow& a, const QubeRow& b) { return a.name < b.name; });
  rows.erase(std::unique(rows.begin(), rows.end(),
                         [](const QubeRow& a, const QubeRow& b) { return a.name == b.name; }),
             rows.end());
  bool same_names = rows.size() == rows_.size() &&
                    std::equal(rows.begin(), rows.end(), rows_.begin(),
                               [](const QubeRow& a, const QubeRow& b) { return a.name == b.name; });
  if (same_names) {
    rows_ = std::move(rows);
    if (!rows_.empty()) {
      emit dataChanged(index(0), index(rowCount() - 1));
    }
    return;
  }
  beginResetModel();
  rows_ = std::move(rows);
  endResetModel();
}

bool QubeModel::applyEvent(const QString& type, const QJsonObject& data) {
  QubeRow* q = findMut(data.value("qube").toString());
  if (q == nullptr) {
    return false;
  }
  if (type == QLatin1String("volume_changed")) {
    q->volume = std::clamp(data.value("volume").toInt(q->volume), 0, 150);
  } else if (type == QLatin1String("mute_changed")) {
    q->muted = data.value("muted").toBool(q->muted);
  } else if (type == QLatin1String("mic_requested")) {
    q->mic_requested = true;
  } else if (type == QLatin1String("mic_attached")) {
    q->mic_attached = true;
    q->mic_requested = false;
    q->mic_persistent = data.value("persistent").toBool();
  } else if (type == QLatin1String("mic_detached")) {
    q->mic_attached = false;
  } else if (type == QLatin1String("qube_connected")) {
    q->state = QStringLiteral("running");
    q->protocol = data.value("protocol").toString(q->protocol);
  } else if (type == QLatin1String("qube_disconnected")) {
    q->state = QStringLiteral("waiting");
    q->last_error = data.value("reason").toString();
    q->mic_requested = false;
    q->level = q->level < 0 ? -1 : 0;
  } else if (type == QLatin1String("level")) {
    q->level = std::clamp(data.value("peak").toDouble(), 0.0, 1.0);
  } else {
    return false;
  }
  changed(q->name);
  return true;
}

void QubeModel::setLevel(const QString& qube, double level) {
  if (QubeRow* q = findMut(qube)) {
    q->level = std::clamp(level, 0.0, 1.0);
    changed(qube);
  }
}

void QubeModel::clear() {
  beginResetModel();
  rows_.clear();
  endResetModel();
}

const QubeRow* QubeModel::find(const QString& name) const {
  int i = indexOf(name);
  return i < 0 ? nullptr : &rows_[static_cast<size_t>(i)];
}

QubeRow* QubeModel::findMut(const QString& name) {
  int i = indexOf(name);
  return i < 0 ? nullptr : &rows_[static_cast<size_t>(i)];
}

int QubeModel::indexOf(const QString& name) const {
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (rows_[i].name == name) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

bool QubeModel::anyMicAttached() const {
  return std::any_of(rows_.begin(), rows_.end(), [](const QubeRow& q) { return q.mic_attached; });
}

int QubeModel::pendingMicRequests() const {
  return static_cast<int>(
      std::count_if(rows_.begin(), rows_.end(), [](const QubeRow& q) { return q.micPending(); }));
}

void QubeModel::changed(const QString& name) {
  int i = indexOf(name);
  if (i >= 0) {
    emit dataChanged(index(i), index(i));
  }
}

}  // namespace qaudio::mixer
