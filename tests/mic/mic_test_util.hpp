// Helpers for the mic gate tests: a policy snapshot from text, a qube table,
// a fake clock, and a listener that records every event.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "mic_gate.hpp"
#include "qaudio/policy/loader.hpp"

namespace qaudio::daemon::testing {

// Includes are not used by these tests: every read fails.
class NoFs : public policy::PolicyFs {
 public:
  Result<std::string> read_file(const std::string& path, size_t) const override {
    return fail("open " + path + ": No such file or directory", ENOENT);
  }
  Result<std::vector<std::string>> list_dir(const std::string& path) const override {
    return fail("opendir " + path + ": No such file or directory", ENOENT);
  }
};

inline std::shared_ptr<const policy::PolicySnapshot> policy_from(const std::string& text) {
  NoFs fs;
  return std::make_shared<const policy::PolicySnapshot>(
      policy::parse_policy_text(text, "/policy.d/30-qaudio.policy", "/policy.d", fs));
}

inline std::shared_ptr<const policy::QubeInfoProvider> qube_table() {
  auto q = std::make_shared<policy::StaticQubeInfo>();
  q->add("work", {"AppVM", {"mic-ok"}, "", false});
  q->add("personal", {"AppVM", {}, "", false});
  q->add("untrusted", {"AppVM", {}, "", false});
  q->add("disp7", {"DispVM", {}, "web-dvm", false});
  q->add("sys-audio", {"AppVM", {"audiovm"}, "", false});
  return q;
}

class FakeClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  TimePoint now() const { return t_; }
  void advance(std::chrono::milliseconds d) { t_ += d; }

 private:
  TimePoint t_ = TimePoint{} + std::chrono::hours(1);
};

struct Recorder : MicGateListener {
  std::vector<std::string> log;  // "requested work", "gate work 1", ...
  void mic_requested(const MicRequest& r) override { log.push_back("requested " + r.qube); }
  void mic_attached(const std::string& q, bool p) override {
    log.push_back("attached " + q + (p ? " persistent" : ""));
  }
  void mic_detached(const std::string& q, DetachCause c, const std::string&) override {
    log.push_back(std::string("detached ") + q + " " + to_string(c));
  }
  void gate_changed(const std::string& q, bool open) override {
    log.push_back("gate " + q + (open ? " open" : " closed"));
  }
  void playback_changed(const std::string& q, bool allowed) override {
    log.push_back("playback " + q + (allowed ? " allowed" : " discarded"));
  }
  size_t count(const std::string& prefix) const {
    size_t n = 0;
    for (const auto& l : log) {
      n += l.rfind(prefix, 0) == 0;
    }
    return n;
  }
};

}  // namespace qaudio::daemon::testing
