// MicGate: the daemon's decision, per qube, whether microphone audio may
// reach the qube and whether its playback may be heard. Pure logic: no I/O,
// no clock of its own (every time-dependent call takes `now`), no threads.
// The daemon applies what it decides: CaptureStream::set_open() follows
// gate_open(qube) (the RT thread sees the atomic at its next period), and a
// session whose playback_allowed(qube) is false discards playback.
//
// Rules (issue 6, DESIGN.md "Trust"):
//   gate_open(q) = attached(q) AND (policy(q, qaudio.Mic) == allow
//                                   OR (== ask AND the user confirmed))
//   - attach() is refused with a reason under deny; under ask without
//     confirmation it returns NeedsConfirmation so a UI can prompt.
//   - A policy change that no longer permits an attached qube (deny, ask
//     without confirmation, a syntax error = invalid snapshot = deny, a
//     target= redirect to another qube) DETACHES it at once: a later policy
//     change back to allow does not reopen the mic; the user must attach
//     again. The persistent preference is kept (see restore_persistent()).
//   - After a daemon restart nothing is attached; restore_persistent(q) for
//     the qubes whose stored state says mic_persistent re-attaches each only
//     if policy says allow (ask needs a user in this session).
//   - on_mic_requested(q, now): an app in q started the mic while it is not
//     attached. The request is recorded (pending until attach, the qube
//     stopping the mic, or `request_ttl` without a new request) and an event
//     is emitted at most once per `request_interval` per qube and at most
//     `global_burst` times per `global_window` in total.
//   - Playback: playback_allowed(q) = policy(q, qaudio.Play) == allow (ask
//     cannot be confirmed for playback and counts as deny).
//
// Options (MicGateConfig): enforce_policy=false ignores policy entirely
// (hosts without a policy directory: the user's attachment alone decides);
// with enforce_policy=true and no snapshot, everything is denied.
//
//   MicGate gate({.audio_qube = "sys-audio"}, qubes, load_policy_dir(dir));
//   gate.add_qube("work");
//   gate.add_listener(&daemon_listener);
//   auto r = gate.attach("work", /*persistent=*/false, /*confirmed_ask=*/false);
//   if (r.status == AttachStatus::NeedsConfirmation) { ...prompt, retry... }
//   capture->set_open(gate.gate_open("work"));
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qaudio/policy/policy.hpp"
#include "qaudio/policy/qube_info.hpp"

namespace qaudio::daemon {

inline constexpr const char* kMicService = "qaudio.Mic";
inline constexpr const char* kPlayService = "qaudio.Play";

enum class MicPolicy : uint8_t { Deny, Allow, Ask };
const char* to_string(MicPolicy p);

enum class AttachStatus : uint8_t {
  Attached,           // gate open (or already was)
  NeedsConfirmation,  // policy says ask: retry with confirmed_ask = true
  Denied,             // policy denies; reason says which rule / error
  UnknownQube,        // not a qube this daemon serves
};
const char* to_string(AttachStatus s);

struct AttachResult {
  AttachStatus status = AttachStatus::Denied;
  std::string reason;  // always set when not Attached
  bool ok() const { return status == AttachStatus::Attached; }
};

enum class DetachCause : uint8_t { User, Policy };
const char* to_string(DetachCause c);

enum class RequestOutcome : uint8_t {
  Emitted,          // recorded, and an event went to the listeners
  RateLimited,      // recorded (or refreshed), no event this time
  AlreadyAttached,  // nothing to ask: the gate decides
  Denied,           // policy denies the mic: nothing to offer the user
  UnknownQube,
};
const char* to_string(RequestOutcome o);

struct MicGateConfig {
  std::string audio_qube;                             // this audio qube's name (policy target)
  bool enforce_policy = true;                         // false: no policy, attachment alone decides
  std::chrono::milliseconds request_interval{10000};  // per qube, between events
  std::chrono::milliseconds global_window{10000};
  unsigned global_burst = 5;                     // events per global_window
  std::chrono::milliseconds request_ttl{60000};  // pending request lifetime
};

// One qube as the gate sees it (for list/info and the control API).
struct MicQubeState {
  std::string name;
  bool attached = false;
  bool persistent = false;  // the user's stored preference
  bool confirmed = false;   // the attachment confirmed an ask
  bool gate_open = false;
  bool requested = false;  // a request is pending
  bool playback_allowed = false;
  MicPolicy mic_policy = MicPolicy::Deny;
  std::string mic_reason;  // the policy's reason / rule location
  std::string play_reason;
};

struct MicRequest {
  std::string qube;
  std::chrono::steady_clock::time_point first;
  std::chrono::steady_clock::time_point last;
  uint64_t count = 0;                  // requests seen while pending
  MicPolicy policy = MicPolicy::Deny;  // ask: the UI must confirm on attach
};

// Receives the gate's events; called synchronously, after the gate's state
// changed, on the caller's thread. Default implementations do nothing.
class MicGateListener {
 public:
  virtual ~MicGateListener() = default;
  virtual void mic_requested(const MicRequest& /*request*/) {}
  virtual void mic_attached(const std::string& /*qube*/, bool /*persistent*/) {}
  virtual void mic_detached(const std::string& /*qube*/,
                            DetachCause /*cause*/,
                            const std::string& /*reason*/) {}
  virtual void gate_changed(const std::string& /*qube*/, bool /*open*/) {}
  virtual void playback_changed(const std::string& /*qube*/, bool /*allowed*/) {}
};

class MicGate {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `qubes` may be null (names only: tags/types never match). `policy` may be
  // null: with enforce_policy that denies everything (fail closed).
  MicGate(MicGateConfig config,
          std::shared_ptr<const policy::QubeInfoProvider> qubes,
          std::shared_ptr<const policy::PolicySnapshot> policy);

  // Qubes this daemon serves; others are refused (bounded state).
  void add_qube(const std::string& qube);
  bool knows(std::string_view qube) const;

  void add_listener(MicGateListener* l);
  void remove_listener(MicGateListener* l);

  // ---- user actions (control API) ----
  AttachResult attach(const std::string& qube, bool persistent, bool confirmed_ask);
  // Detaches and forgets the persistent preference. False if unknown.
  bool detach(const std::string& qube);
  // At daemon start, for a qube whose stored state says mic_persistent.
  AttachResult restore_persistent(const std::string& qube);

  // ---- policy ----
  void on_policy_changed(std::shared_ptr<const policy::PolicySnapshot> snapshot);
  void on_qube_info_changed(std::shared_ptr<const policy::QubeInfoProvider> qubes);

  // ---- queries (O(1) after a lookup, no allocation) ----
  bool gate_open(std::string_view qube) const;
  bool attached(std::string_view qube) const;
  bool playback_allowed(std::string_view qube) const;
  MicPolicy mic_policy(std::string_view qube) const;
  std::optional<MicQubeState> state(std::string_view qube) const;
  std::vector<MicQubeState> list() const;

  // ---- requests from qubes ----
  RequestOutcome on_mic_requested(const std::string& qube, TimePoint now);
  // The qube stopped its mic: its pending request is withdrawn.
  void on_mic_stopped(const std::string& qube);
  // Pending requests still alive at `now`, in qube order.
  std::vector<MicRequest> pending_requests(TimePoint now) const;
  // Drops requests older than request_ttl.
  void expire(TimePoint now);

  const MicGateConfig& config() const { return cfg_; }

 private:
  struct Entry {
    bool attached = false;
    bool persistent = false;
    bool confirmed = false;
    MicPolicy mic = MicPolicy::Deny;
    std::string mic_reason;
    bool play = false;
    std::string play_reason;
    std::optional<MicRequest> request;
    std::optional<TimePoint> last_event;  // last mic_requested event emitted
  };
  struct Event;  // queued while state changes, dispatched after

  struct Verdict {
    MicPolicy action = MicPolicy::Deny;
    std::string reason;
  };
  Verdict evaluate(const std::string& service, const std::string& qube) const;
  void refresh(const std::string& qube, Entry& e);
  static bool open_of(const Entry& e);
  bool request_alive(const MicRequest& r, TimePoint now) const;
  void reevaluate_all();
  void dispatch(std::vector<Event>& events);

  Entry* find(std::string_view qube);
  const Entry* find(std::string_view qube) const;

  MicGateConfig cfg_;
  std::shared_ptr<const policy::QubeInfoProvider> qubes_;
  std::shared_ptr<const policy::PolicySnapshot> policy_;
  std::map<std::string, Entry, std::less<>> entries_;
  std::deque<TimePoint> recent_events_;  // global rate limit, <= global_burst
  std::vector<MicGateListener*> listeners_;
};

}  // namespace qaudio::daemon
