// The mixer's controller (see mixer_controller.hpp).
#include "mixer_controller.hpp"

#include <QJsonArray>

namespace qaudio::mixer {

MixerController::MixerController(ControlClient& client, QObject* parent)
    : QObject(parent), client_(client) {
  connect(&client_, &ControlClient::connected, this, &MixerController::onConnected);
  connect(&client_, &ControlClient::disconnected, this, &MixerController::onDisconnected);
  connect(&client_, &ControlClient::event, this, &MixerController::onEvent);
  connect(&refresh_, &QTimer::timeout, this, &MixerController::refresh);
}

void MixerController::setRefreshInterval(int ms) {
  if (ms <= 0) {
    refresh_.stop();
  } else {
    refresh_.start(ms);
  }
}

void MixerController::onConnected() {
  ready_ = false;
  client_.call("subscribe", {}, [this](const ControlResult& r) { report("subscribe", r); });
  client_.call("info", {}, [this](const ControlResult& r) {
    if (r.ok) {
      backend_ = r.result.value("backend").toString();
    }
  });
  refresh();
  refreshDevices();
  emit connectionChanged(true);
}

void MixerController::onDisconnected(const QString&) {
  ready_ = false;
  list_in_flight_ = false;
  volume_in_flight_.clear();
  wanted_volume_.clear();
  outputs_.clear();
  model_.clear();
  announced_.clear();
  emit devicesChanged();
  emit connectionChanged(false);
}

void MixerController::refresh() {
  if (!client_.isConnected() || list_in_flight_) {
    return;
  }
  list_in_flight_ = true;
  client_.call("list", {}, [this](const ControlResult& r) {
    list_in_flight_ = false;
    if (!r.ok) {
      report("list", r);
      return;
    }
    model_.setFromList(r.result.value("qubes").toArray());
    checkPending();  // requests made before we connected are announced too
    if (!ready_) {
      ready_ = true;
      emit ready();
    }
  });
}

void MixerController::refreshDevices() {
  client_.call("devices", {}, [this](const ControlResult& r) {
    outputs_.clear();
    default_output_.clear();
    if (r.ok) {
      default_output_ = r.result.value("default_output").toString();
      for (const auto& v : r.result.value("devices").toArray()) {
        QJsonObject d = v.toObject();
        if (d.value("direction").toString() == QLatin1String("output") &&
            d.value("name").isString()) {
          outputs_.push_back({d.value("name").toString(), d.value("description").toString(),
                              d.value("default").toBool()});
        }
      }
    } else if (r.code != QLatin1String("unsupported")) {
      report("devices", r);
    }
    emit devicesChanged();
  });
}

void MixerController::onEvent(const QString& type, const QJsonObject& data) {
  if (type == QLatin1String("device_added") || type == QLatin1String("device_removed")) {
    refreshDevices();
    return;
  }
  bool known = model_.applyEvent(type, data);
  if (!known || type == QLatin1String("qube_connected") ||
      type == QLatin1String("qube_disconnected")) {
    refresh();  // new qube, or formats/latency changed with the session
  }
  checkPending();
}

void MixerController::checkPending() {
  std::set<QString> now;
  for (const auto& q : model_.rows()) {
    if (q.micPending()) {
      now.insert(q.name);
      if (!announced_.count(q.name)) {
        emit micRequested(q.name);
      }
    }
  }
  announced_ = std::move(now);
}

void MixerController::setVolume(const QString& qube, int percent) {
  wanted_volume_[qube] = std::clamp(percent, 0, 150);
  if (!volume_in_flight_[qube]) {
    sendVolume(qube);
  }
}

void MixerController::sendVolume(const QString& qube) {
  auto it = wanted_volume_.find(qube);
  if (it == wanted_volume_.end()) {
    volume_in_flight_[qube] = false;
    return;
  }
  int percent = it->second;
  wanted_volume_.erase(it);
  volume_in_flight_[qube] = true;
  client_.call("set_volume", {{"qube", qube}, {"percent", percent}},
               [this, qube](const ControlResult& r) {
                 report("volume of " + qube, r);
                 if (r.code == QLatin1String("disconnected")) {
                   return;
                 }
                 sendVolume(qube);  // the latest value wanted meanwhile, if any
               });
}

bool MixerController::volumePending(const QString& qube) const {
  auto it = volume_in_flight_.find(qube);
  return wanted_volume_.count(qube) != 0 || (it != volume_in_flight_.end() && it->second);
}

void MixerController::setMute(const QString& qube, bool muted) {
  client_.call("set_mute", {{"qube", qube}, {"muted", muted}},
               [this, qube](const ControlResult& r) { report("mute of " + qube, r); });
}

void MixerController::attachMic(const QString& qube, bool confirmed) {
  QJsonObject p{{"qube", qube}};
  if (confirmed) {
    p.insert("confirm", true);
  }
  client_.call("mic_attach", p, [this, qube](const ControlResult& r) {
    report("microphone for " + qube, r);
    if (r.ok) {
      refresh();
    }
  });
}

void MixerController::detachMic(const QString& qube) {
  client_.call("mic_detach", {{"qube", qube}},
               [this, qube](const ControlResult& r) { report("microphone of " + qube, r); });
}

void MixerController::detachAllMics() {
  for (const auto& q : model_.rows()) {
    if (q.mic_attached) {
      detachMic(q.name);
    }
  }
}

void MixerController::setOutput(const QString& device, const QString& qube) {
  QJsonObject p{{"device", device.isEmpty() ? QStringLiteral("@default") : device}};
  if (!qube.isEmpty()) {
    p.insert("qube", qube);
  }
  client_.call("set_output", p, [this, qube](const ControlResult& r) {
    report(qube.isEmpty() ? QStringLiteral("default output device")
                          : QStringLiteral("output device of %1").arg(qube),
           r);
    refreshDevices();
    refresh();  // the qubes' output_device
  });
}

void MixerController::report(const QString& what, const ControlResult& r) {
  if (r.ok || r.code == QLatin1String("disconnected")) {
    return;
  }
  emit error(QStringLiteral("%1: %2 (%3)").arg(what, r.message, r.code));
}

}  // namespace qaudio::mixer
