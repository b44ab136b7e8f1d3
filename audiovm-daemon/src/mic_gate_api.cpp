// Glue between MicGate and the control side: see mic_gate_api.hpp.
#include "mic_gate_api.hpp"

namespace qaudio::daemon {

const char* to_string(MicApiCode c) {
  switch (c) {
    case MicApiCode::Ok:
      return "ok";
    case MicApiCode::NotFound:
      return "not_found";
    case MicApiCode::Refused:
      return "refused";
    case MicApiCode::NeedsConfirmation:
      return "needs_confirmation";
  }
  return "refused";
}

MicApiResult mic_api_set_attached(MicGate& gate,
                                  const std::string& qube,
                                  bool attached,
                                  bool persistent,
                                  bool confirmed) {
  if (!attached) {
    if (!gate.detach(qube)) {
      return {MicApiCode::NotFound, "no qube named '" + qube + "' is served by this daemon"};
    }
    return {};
  }
  AttachResult r = gate.attach(qube, persistent, confirmed);
  switch (r.status) {
    case AttachStatus::Attached:
      return {};
    case AttachStatus::UnknownQube:
      return {MicApiCode::NotFound, r.reason};
    case AttachStatus::NeedsConfirmation:
      return {MicApiCode::NeedsConfirmation,
              r.reason + "; confirm with the user, then attach again with confirmation"};
    case AttachStatus::Denied:
      break;
  }
  return {MicApiCode::Refused, r.reason + "; change the qaudio.Mic policy to allow it"};
}

std::vector<MicQubeState> mic_api_list(const MicGate& gate) {
  return gate.list();
}

std::vector<MicRequest> mic_api_pending(const MicGate& gate,
                                        std::chrono::steady_clock::time_point now) {
  return gate.pending_requests(now);
}

void MicEventForwarder::mic_requested(const MicRequest& r) {
  if (on_requested) {
    on_requested(r);
  }
}

void MicEventForwarder::mic_attached(const std::string& qube, bool persistent) {
  if (on_attached) {
    on_attached(qube, persistent);
  }
}

void MicEventForwarder::mic_detached(const std::string& qube,
                                     DetachCause cause,
                                     const std::string& reason) {
  if (on_detached) {
    on_detached(qube, cause, reason);
  }
}

void MicEventForwarder::gate_changed(const std::string& qube, bool open) {
  if (on_gate) {
    on_gate(qube, open);
  }
}

void MicEventForwarder::playback_changed(const std::string& qube, bool allowed) {
  if (on_playback) {
    on_playback(qube, allowed);
  }
}

}  // namespace qaudio::daemon
