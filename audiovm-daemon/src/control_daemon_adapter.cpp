// ControlTarget for the real daemon (see control_daemon_adapter.hpp).
#include "control_daemon_adapter.hpp"

#include <algorithm>
#include <cmath>

#include "config.hpp"
#include "mic_gate_api.hpp"
#include "qaudio/config.h"

namespace qaudio::control {

namespace {

ControlError no_qube(const std::string& qube) {
  return ControlError{ErrorCode::NotFound, "no qube named '" + qube + "' is configured"};
}

std::vector<CounterEntry> counters_of(const daemon::SessionCounters& c) {
  return {{"bytes_in", c.bytes_in},
          {"bytes_out", c.bytes_out},
          {"control_bytes_in", c.control_bytes_in},
          {"underruns", c.underruns},
          {"overruns", c.overruns},
          {"mic_overruns", c.mic_overruns},
          {"mic_dropped_bytes", c.mic_dropped_bytes},
          {"playback_discarded_bytes", c.playback_discarded_bytes},
          {"frames_played", c.frames_played},
          {"unknown_words", c.unknown_words},
          {"dropped_reports", c.dropped_reports},
          {"connects", c.connects},
          {"disconnects", c.disconnects},
          {"protocol_errors", c.protocol_errors},
          {"playback_fill_bytes", c.playback_fill_bytes},
          {"playback_ring_bytes", c.playback_ring_bytes},
          {"mic_queue_bytes", c.mic_queue_bytes}};
}

}  // namespace

ControlDaemonAdapter::ControlDaemonAdapter(daemon::Daemon& d, EventSink sink)
    : d_(d), sink_(std::move(sink)), started_(std::chrono::steady_clock::now()) {
  for (const auto& s : d_.list()) {
    remember(s);
  }
  mic_events_.on_requested = [this](const daemon::MicRequest& r) {
    publish(event_mic_requested(r.qube));
  };
  mic_events_.on_attached = [this](const std::string& q, bool persistent) {
    publish(event_mic_attached(q, persistent));
  };
  mic_events_.on_detached = [this](const std::string& q, daemon::DetachCause, const std::string&) {
    publish(event_mic_detached(q));
  };
  d_.mic_gate().add_listener(&mic_events_);
}

ControlDaemonAdapter::~ControlDaemonAdapter() {
  d_.mic_gate().remove_listener(&mic_events_);
  if (loop_ != nullptr && timer_ != 0) {
    loop_->remove(timer_);
  }
}

QubeStatus ControlDaemonAdapter::status_of(const daemon::SessionInfo& s,
                                           const daemon::QubeState& saved) {
  QubeStatus q;
  q.name = s.name;
  q.domid = s.domid;
  q.label = s.label;
  q.state = std::string(daemon::to_string(s.state));
  q.protocol = std::string(daemon::to_string(s.protocol));
  q.playback_format = to_string(s.playback_format);
  q.capture_format = to_string(s.capture_format);
  q.latency_us = s.counters.latency_us;
  q.level = s.counters.level;
  q.volume = s.volume_percent;
  q.muted = s.muted;
  q.output_device = saved.output_device;  // the qube's own choice
  q.playing_on = s.output_device;         // where it plays now ("" = backend default)
  q.corked = s.corked;
  q.mic_requested = s.mic_started;
  q.mic_attached = s.mic_attached;
  q.mic_persistent = saved.mic_persistent;
  q.last_error = s.last_error;
  q.counters = counters_of(s.counters);
  return q;
}

DaemonStatus ControlDaemonAdapter::info() {
  DaemonStatus st;
  st.version = QAUDIO_VERSION;
  st.backend = d_.backend().name();
  st.backend_connected = d_.backend().connected();
  st.uptime_seconds = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count());
  return st;
}

std::vector<QubeStatus> ControlDaemonAdapter::list() {
  std::map<std::string, daemon::MicQubeState> mic;
  for (auto& m : daemon::mic_api_list(d_.mic_gate())) {
    mic[m.name] = m;
  }
  std::vector<QubeStatus> out;
  for (const auto& s : d_.list()) {
    QubeStatus q = status_of(s, d_.state().get(s.name));
    if (auto it = mic.find(s.name); it != mic.end()) {
      q.mic_requested = it->second.requested;
      q.mic_persistent = it->second.persistent;
      q.mic_policy = daemon::to_string(it->second.mic_policy);
    }
    if (auto it = network_.find(s.name); it != network_.end()) {
      auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - it->second.at)
                     .count();
      if (age <= kNetworkStaleMs) {
        q.network = it->second.status;
        q.network->age_ms = static_cast<uint64_t>(std::max<int64_t>(age, 0));
      }
    }
    out.push_back(std::move(q));
  }
  return out;
}

Status ControlDaemonAdapter::set_volume(const std::string& qube, uint32_t percent) {
  auto before = d_.info(qube);
  if (!before) {
    return no_qube(qube);
  }
  auto r = d_.set_volume(qube, percent);
  auto after = d_.info(qube);
  if (after && after->volume_percent != seen_[qube].volume) {
    seen_[qube].volume = after->volume_percent;
    publish(event_volume_changed(qube, after->volume_percent));
  }
  if (!r) {
    return ControlError{ErrorCode::Internal, "volume of '" + qube + "': " + r.error().message};
  }
  return std::nullopt;
}

Status ControlDaemonAdapter::set_mute(const std::string& qube, bool muted) {
  if (!d_.info(qube)) {
    return no_qube(qube);
  }
  auto r = d_.set_mute(qube, muted);
  auto after = d_.info(qube);
  if (after && after->muted != seen_[qube].muted) {
    seen_[qube].muted = after->muted;
    publish(event_mute_changed(qube, after->muted));
  }
  if (!r) {
    return ControlError{ErrorCode::Internal, "mute of '" + qube + "': " + r.error().message};
  }
  return std::nullopt;
}

Status ControlDaemonAdapter::set_mic_attached(const std::string& qube,
                                              bool attached,
                                              bool persistent,
                                              bool confirmed) {
  if (!d_.info(qube)) {
    return no_qube(qube);
  }
  // Events (mic_attached / mic_detached) come from the gate's listener.
  daemon::MicApiResult r =
      daemon::mic_api_set_attached(d_.mic_gate(), qube, attached, persistent, confirmed);
  switch (r.code) {
    case daemon::MicApiCode::Ok:
      return std::nullopt;
    case daemon::MicApiCode::NotFound:
      return ControlError{ErrorCode::NotFound, r.message};
    case daemon::MicApiCode::Refused:
      return ControlError{ErrorCode::Refused, r.message};
    case daemon::MicApiCode::NeedsConfirmation:
      return ControlError{ErrorCode::NeedsConfirmation, r.message};
  }
  return ControlError{ErrorCode::Internal, "mic of '" + qube + "': " + r.message};
}

Outcome<std::vector<DeviceEntry>> ControlDaemonAdapter::devices() {
  std::vector<DeviceEntry> out;
  for (const auto& dev : d_.backend().devices()) {
    out.push_back(DeviceEntry{dev.name, dev.description, dev.is_output, dev.is_default});
  }
  return out;
}

std::string ControlDaemonAdapter::default_output() {
  return d_.state().default_output();
}

Status ControlDaemonAdapter::set_output(const std::string& device, const std::string& qube) {
  if (!qube.empty() && !d_.info(qube)) {
    return no_qube(qube);
  }
  if (!device.empty()) {
    auto devs = d_.backend().devices();
    if (devs.empty()) {
      return ControlError{ErrorCode::Unsupported,
                          "backend '" + d_.backend().name() +
                              "' plays to a single device: there is no output to choose"};
    }
    bool known = std::any_of(devs.begin(), devs.end(), [&](const daemon::DeviceInfo& d) {
      return d.is_output && d.name == device;
    });
    if (!known) {
      return ControlError{ErrorCode::NotFound,
                          "no output device named '" + device + "' (qvm-audio devices lists them)"};
    }
  }
  std::optional<std::string_view> which;
  if (!qube.empty()) {
    which = qube;
  }
  if (auto r = d_.set_output(device, which); !r) {
    return ControlError{ErrorCode::Internal,
                        "output of " +
                            (qube.empty() ? std::string("all qubes") : "'" + qube + "'") + ": " +
                            r.error().message};
  }
  return std::nullopt;
}

Status ControlDaemonAdapter::attach_qube(const std::string& qube,
                                         uint32_t domid,
                                         std::optional<uint32_t> volume,
                                         std::optional<bool> muted) {
  if (!daemon::is_valid_qube_name(qube)) {
    return ControlError{ErrorCode::InvalidParams,
                        "attach_qube: '" + qube +
                            "' is not a valid qube name (a letter, then up to 30 of "
                            "A-Z a-z 0-9 _ . -)"};
  }
  bool had_state = d_.state().all().count(qube) != 0;
  bool existed = d_.info(qube).has_value();
  daemon::QubeConfig c;
  c.name = qube;
  c.domid = domid;
  c.initial_volume = volume;
  if (auto r = d_.add_qube(c); !r) {
    return ControlError{ErrorCode::Refused, r.error().message};
  }
  if (!existed && !had_state && muted.value_or(false)) {
    if (auto r = d_.set_mute(qube, true); !r) {
      return ControlError{ErrorCode::Internal, r.error().message};
    }
  }
  return std::nullopt;
}

Status ControlDaemonAdapter::detach_qube(const std::string& qube) {
  if (!d_.info(qube)) {
    return no_qube(qube);
  }
  if (auto r = d_.remove_qube(qube); !r) {
    return ControlError{ErrorCode::Internal, r.error().message};
  }
  network_.erase(qube);
  return std::nullopt;
}

Status ControlDaemonAdapter::set_network(const std::string& qube, const NetworkStatus& n) {
  if (!d_.info(qube)) {
    return no_qube(qube);
  }
  network_[qube] = {n, std::chrono::steady_clock::now()};
  return std::nullopt;
}

void ControlDaemonAdapter::remember(const daemon::SessionInfo& s) {
  Seen& v = seen_[s.name];
  v.running = s.state == daemon::SessionState::Running;
  v.volume = s.volume_percent;
  v.muted = s.muted;
}

void ControlDaemonAdapter::publish(const ControlEvent& e) {
  if (sink_) {
    sink_(e);
  }
}

void ControlDaemonAdapter::poll() {
  for (const auto& s : d_.list()) {
    auto it = seen_.find(s.name);
    if (it == seen_.end()) {
      remember(s);
      it = seen_.find(s.name);
      it->second.running = false;  // report a qube that appears running
    }
    Seen& v = it->second;
    bool running = s.state == daemon::SessionState::Running;
    if (running != v.running) {
      publish(running ? event_qube_connected(s.name, std::string(daemon::to_string(s.protocol)))
                      : event_qube_disconnected(s.name, s.last_error));
    }
    if (s.volume_percent != v.volume) {
      publish(event_volume_changed(s.name, s.volume_percent));
    }
    if (s.muted != v.muted) {
      publish(event_mute_changed(s.name, s.muted));
    }
    // Level meter: at most one event per qube per poll (100 ms), only while
    // someone listens, only on a visible change (2 %) or the fall to silence.
    float level = s.counters.level;
    if ((!has_subscribers_ || has_subscribers_()) &&
        (std::fabs(level - v.level) >= 0.02f || (level < 0.001f && v.level >= 0.001f))) {
      v.level = level < 0.001f ? 0.0f : level;
      publish(event_level(s.name, v.level));
    }
    remember(s);
  }
  if (++polls_ % device_poll_every_ == 1 || device_poll_every_ == 1) {
    if (has_subscribers_ && !has_subscribers_()) {
      devices_known_ = false;
      return;
    }
    std::set<std::string> now;
    for (const auto& dev : d_.backend().devices()) {
      now.insert(dev.name);
    }
    if (devices_known_) {
      for (const auto& n : now) {
        if (!seen_devices_.count(n)) {
          publish(event_device_added(n));
        }
      }
      for (const auto& n : seen_devices_) {
        if (!now.count(n)) {
          publish(event_device_removed(n));
        }
      }
    }
    seen_devices_ = std::move(now);
    devices_known_ = true;
  }
}

void ControlDaemonAdapter::start_polling(EventLoop& loop,
                                         std::chrono::milliseconds interval,
                                         unsigned device_poll_every) {
  if (loop_ != nullptr && timer_ != 0) {
    loop_->remove(timer_);
  }
  loop_ = &loop;
  device_poll_every_ = device_poll_every == 0 ? 1 : device_poll_every;
  timer_ = loop.add_timer(
      interval, [this] { poll(); }, /*repeat=*/true);
}

}  // namespace qaudio::control
