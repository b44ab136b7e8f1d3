// libFuzzer target for the control API's request parser and dispatcher:
// any bytes as one request line, against a fake target with two qubes.
// The reply must be one line of valid JSON carrying "result" or "error".
//
//   control_request_fuzzer audiovm-daemon/fuzz/control_corpus
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "control_api.hpp"

namespace {

using namespace qaudio::control;

class FuzzTarget : public ControlTarget {
 public:
  DaemonStatus info() override { return {"0", "null", true, 1}; }
  std::vector<QubeStatus> list() override {
    QubeStatus a;
    a.name = "work";
    QubeStatus b;
    b.name = "personal";
    b.volume = 150;
    return {a, b};
  }
  Status set_volume(const std::string& q, uint32_t p) override {
    if (p > kMaxVolumePercent) {
      std::abort();  // the dispatcher must clamp
    }
    return check(q);
  }
  Status set_mute(const std::string& q, bool) override { return check(q); }
  Status set_mic_attached(const std::string& q, bool, bool, bool) override { return check(q); }
  Outcome<std::vector<DeviceEntry>> devices() override {
    return std::vector<DeviceEntry>{{"out", "Output", true, true}};
  }
  Status set_output(const std::string& d, const std::string& q) override {
    if (d != "out") {
      return ControlError{ErrorCode::NotFound, "no device"};
    }
    return q.empty() ? Status{} : check(q);
  }
  Status set_network(const std::string& q, const NetworkStatus& n) override {
    // The dispatcher must have enforced the documented bounds.
    if (n.loss_pct < 0 || n.loss_pct > 100 || n.rtt_ms < -1 || n.jitter_ms < 0 || n.tx_kbps < 0 ||
        std::fabs(n.drift_ppm) > 10000 || n.peer.size() > 64 || n.tx_bytes > (uint64_t{1} << 53)) {
      std::abort();
    }
    return check(q);
  }

 private:
  static Status check(const std::string& q) {
    if (q == "work" || q == "personal") {
      return std::nullopt;
    }
    return ControlError{ErrorCode::NotFound, "no qube"};
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzTarget target;
  ControlApi api(target);
  std::string_view line(reinterpret_cast<const char*>(data), size);
  ControlReply r = api.handle_line(line);
  if (r.line.empty() || r.line.back() != '\n' || r.line.find('\n') != r.line.size() - 1) {
    std::abort();
  }
  json j = json::parse(r.line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || (j.contains("result") == j.contains("error"))) {
    std::abort();
  }
  return 0;
}
