// The mic gate's internal API for the control side (the control API's daemon
// adapter, the CLI through it): attach, detach, list state, pending requests,
// and an event forwarder. Thin functions over MicGate with results shaped for
// a reply (a code plus a message that says what failed and what to do); no
// JSON here, so the logic stays apart from its glue.
//
//   auto r = mic_api_set_attached(gate, "work", true, /*persistent=*/false,
//                                 /*confirmed=*/false);
//   if (r.code == MicApiCode::NeedsConfirmation) { ...ask the user, retry... }
//   MicEventForwarder fwd;
//   fwd.on_requested = [&](const MicRequest& q) { publish(event_mic_requested(q.qube)); };
//   gate.add_listener(&fwd);
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "mic_gate.hpp"

namespace qaudio::daemon {

enum class MicApiCode : uint8_t {
  Ok,
  NotFound,           // no such qube
  Refused,            // policy denies
  NeedsConfirmation,  // policy says ask: retry with confirmed = true
};
const char* to_string(MicApiCode c);

struct MicApiResult {
  MicApiCode code = MicApiCode::Ok;
  std::string message;  // empty on Ok
  bool ok() const { return code == MicApiCode::Ok; }
};

// attached=false detaches (persistent and confirmed are then ignored).
MicApiResult mic_api_set_attached(MicGate& gate,
                                  const std::string& qube,
                                  bool attached,
                                  bool persistent,
                                  bool confirmed);
std::vector<MicQubeState> mic_api_list(const MicGate& gate);
std::vector<MicRequest> mic_api_pending(
    const MicGate& gate,
    std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

// A MicGateListener that calls std::functions (each may be empty).
class MicEventForwarder : public MicGateListener {
 public:
  std::function<void(const MicRequest&)> on_requested;
  std::function<void(const std::string&, bool persistent)> on_attached;
  std::function<void(const std::string&, DetachCause, const std::string& reason)> on_detached;
  std::function<void(const std::string&, bool open)> on_gate;
  std::function<void(const std::string&, bool allowed)> on_playback;

  void mic_requested(const MicRequest& r) override;
  void mic_attached(const std::string& qube, bool persistent) override;
  void mic_detached(const std::string& qube, DetachCause cause, const std::string& reason) override;
  void gate_changed(const std::string& qube, bool open) override;
  void playback_changed(const std::string& qube, bool allowed) override;
};

}  // namespace qaudio::daemon
