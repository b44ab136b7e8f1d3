// A ControlTarget for tests: two qubes ("work", "personal") held in memory,
// every call recorded, optional forced errors.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "control_api.hpp"

namespace qaudio::control {

class FakeControlTarget : public ControlTarget {
 public:
  FakeControlTarget() {
    QubeStatus w;
    w.name = "work";
    w.domid = 5;
    w.label = "blue";
    w.state = "running";
    w.protocol = "native";
    w.playback_format = "s16le 48000 Hz 2 ch";
    w.capture_format = "s16le 48000 Hz 1 ch";
    w.latency_us = 21000;
    w.volume = 80;
    w.counters = {{"bytes_in", 1234}, {"underruns", 2}};
    QubeStatus p;
    p.name = "personal";
    p.domid = 7;
    p.state = "waiting";
    p.protocol = "none";
    p.playback_format = "s16le 44100 Hz 2 ch";
    p.capture_format = "s16le 44100 Hz 2 ch";
    p.volume = 100;
    p.mic_requested = true;
    qubes = {w, p};
    device_list = {{"speakers", "Built-in speakers", true, true},
                   {"headset", "USB headset", true, false},
                   {"mic", "Built-in microphone", false, true}};
  }

  DaemonStatus info() override { return {"0.1.0", "fake", true, 42}; }
  std::vector<QubeStatus> list() override { return qubes; }
  Status set_volume(const std::string& q, uint32_t p) override {
    calls.push_back("set_volume " + q + " " + std::to_string(p));
    if (forced) {
      return forced;
    }
    QubeStatus* s = find(q);
    if (!s) {
      return no_qube(q);
    }
    s->volume = p;
    return std::nullopt;
  }
  Status set_mute(const std::string& q, bool m) override {
    calls.push_back("set_mute " + q + " " + (m ? "1" : "0"));
    if (forced) {
      return forced;
    }
    QubeStatus* s = find(q);
    if (!s) {
      return no_qube(q);
    }
    s->muted = m;
    return std::nullopt;
  }
  Status set_mic_attached(const std::string& q, bool a, bool persistent, bool confirmed) override {
    calls.push_back("set_mic_attached " + q + " " + (a ? "1" : "0") + (persistent ? " p" : "") +
                    (confirmed ? " c" : ""));
    if (forced) {
      return forced;
    }
    QubeStatus* s = find(q);
    if (!s) {
      return no_qube(q);
    }
    s->mic_attached = a;
    s->mic_persistent = a && persistent;
    return std::nullopt;
  }
  Outcome<std::vector<DeviceEntry>> devices() override {
    calls.push_back("devices");
    if (forced) {
      return *forced;
    }
    return device_list;
  }
  Status set_output(const std::string& d, const std::string& q) override {
    calls.push_back("set_output " + d + (q.empty() ? "" : " " + q));
    if (forced) {
      return forced;
    }
    if (!q.empty() && !find(q)) {
      return no_qube(q);
    }
    for (const auto& dev : device_list) {
      if (dev.name == d) {
        return std::nullopt;
      }
    }
    return ControlError{ErrorCode::NotFound, "no device named '" + d + "'"};
  }

  Status set_network(const std::string& q, const NetworkStatus& n) override {
    calls.push_back("set_network " + q);
    if (forced) {
      return forced;
    }
    QubeStatus* s = find(q);
    if (!s) {
      return no_qube(q);
    }
    s->network = n;
    return std::nullopt;
  }

  QubeStatus* find(const std::string& q) {
    for (auto& s : qubes) {
      if (s.name == q) {
        return &s;
      }
    }
    return nullptr;
  }
  static ControlError no_qube(const std::string& q) {
    return ControlError{ErrorCode::NotFound, "no qube named '" + q + "'"};
  }

  std::vector<QubeStatus> qubes;
  std::vector<DeviceEntry> device_list;
  std::vector<std::string> calls;
  Status forced;  // when set, every mutating call fails with it
};

}  // namespace qaudio::control
