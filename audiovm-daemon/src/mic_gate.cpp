// MicGate: see mic_gate.hpp for the rules. Events are queued while the state
// changes and dispatched afterwards, so a listener that calls back into the
// gate always sees a consistent state.
#include "mic_gate.hpp"

#include <algorithm>
#include <utility>

namespace qaudio::daemon {

const char* to_string(MicPolicy p) {
  switch (p) {
    case MicPolicy::Deny:
      return "deny";
    case MicPolicy::Allow:
      return "allow";
    case MicPolicy::Ask:
      return "ask";
  }
  return "deny";
}

const char* to_string(AttachStatus s) {
  switch (s) {
    case AttachStatus::Attached:
      return "attached";
    case AttachStatus::NeedsConfirmation:
      return "needs-confirmation";
    case AttachStatus::Denied:
      return "denied";
    case AttachStatus::UnknownQube:
      return "unknown-qube";
  }
  return "denied";
}

const char* to_string(DetachCause c) {
  return c == DetachCause::User ? "user" : "policy";
}

const char* to_string(RequestOutcome o) {
  switch (o) {
    case RequestOutcome::Emitted:
      return "emitted";
    case RequestOutcome::RateLimited:
      return "rate-limited";
    case RequestOutcome::AlreadyAttached:
      return "already-attached";
    case RequestOutcome::Denied:
      return "denied";
    case RequestOutcome::UnknownQube:
      return "unknown-qube";
  }
  return "denied";
}

struct MicGate::Event {
  enum class Kind { Requested, Attached, Detached, Gate, Playback } kind;
  std::string qube;
  bool flag = false;  // persistent / gate open / playback allowed
  DetachCause cause = DetachCause::User;
  std::string reason;
  MicRequest request;
};

MicGate::MicGate(MicGateConfig config,
                 std::shared_ptr<const policy::QubeInfoProvider> qubes,
                 std::shared_ptr<const policy::PolicySnapshot> policy)
    : cfg_(std::move(config)), qubes_(std::move(qubes)), policy_(std::move(policy)) {
  if (!qubes_) {
    qubes_ = std::make_shared<policy::StaticQubeInfo>();
  }
  if (cfg_.global_burst == 0) {
    cfg_.global_burst = 1;
  }
}

void MicGate::add_qube(const std::string& qube) {
  auto [it, inserted] = entries_.try_emplace(qube);
  if (inserted) {
    refresh(qube, it->second);
  }
}

bool MicGate::knows(std::string_view qube) const {
  return find(qube) != nullptr;
}

void MicGate::add_listener(MicGateListener* l) {
  if (l && std::find(listeners_.begin(), listeners_.end(), l) == listeners_.end()) {
    listeners_.push_back(l);
  }
}

void MicGate::remove_listener(MicGateListener* l) {
  listeners_.erase(std::remove(listeners_.begin(), listeners_.end(), l), listeners_.end());
}

MicGate::Entry* MicGate::find(std::string_view qube) {
  auto it = entries_.find(qube);
  return it == entries_.end() ? nullptr : &it->second;
}

const MicGate::Entry* MicGate::find(std::string_view qube) const {
  auto it = entries_.find(qube);
  return it == entries_.end() ? nullptr : &it->second;
}

MicGate::Verdict MicGate::evaluate(const std::string& service, const std::string& qube) const {
  if (!cfg_.enforce_policy) {
    return {MicPolicy::Allow, "no policy configured: the user's choice alone decides"};
  }
  if (!policy_) {
    return {MicPolicy::Deny, "no policy loaded: denied (fail closed)"};
  }
  policy::Request req;
  req.service = service;
  req.argument = "+";
  req.source = qube;
  req.target = cfg_.audio_qube.empty() ? "@default" : cfg_.audio_qube;
  policy::Decision d = policy::evaluate(*policy_, req, *qubes_);
  if (d.action != policy::Action::Deny && policy::redirected_elsewhere(d, cfg_.audio_qube)) {
    return {MicPolicy::Deny, "policy " + d.rule_location() + " sends " + service + " to " +
                                 d.target + ", not to this audio qube: denied"};
  }
  switch (d.action) {
    case policy::Action::Allow:
      return {MicPolicy::Allow, d.reason};
    case policy::Action::Ask:
      return {MicPolicy::Ask, d.reason};
    case policy::Action::Deny:
      break;
  }
  return {MicPolicy::Deny, d.reason};
}

void MicGate::refresh(const std::string& qube, Entry& e) {
  Verdict mic = evaluate(kMicService, qube);
  e.mic = mic.action;
  e.mic_reason = std::move(mic.reason);
  Verdict play = evaluate(kPlayService, qube);
  e.play = play.action == MicPolicy::Allow;
  e.play_reason = play.action == MicPolicy::Ask
                      ? play.reason + " (ask cannot be confirmed for playback: discarded)"
                      : std::move(play.reason);
}

bool MicGate::open_of(const Entry& e) {
  if (!e.attached) {
    return false;
  }
  return e.mic == MicPolicy::Allow || (e.mic == MicPolicy::Ask && e.confirmed);
}

AttachResult MicGate::attach(const std::string& qube, bool persistent, bool confirmed_ask) {
  Entry* e = find(qube);
  if (!e) {
    return {AttachStatus::UnknownQube, "no qube named '" + qube + "' is served by this daemon"};
  }
  if (e->mic == MicPolicy::Deny) {
    return {AttachStatus::Denied, "microphone for '" + qube + "' refused: " + e->mic_reason};
  }
  if (e->mic == MicPolicy::Ask && !confirmed_ask && !(e->attached && e->confirmed)) {
    return {AttachStatus::NeedsConfirmation,
            "microphone for '" + qube + "' needs the user's confirmation: " + e->mic_reason};
  }
  std::vector<Event> events;
  const bool was_open = open_of(*e);
  const bool changed = !e->attached || e->persistent != persistent;
  e->attached = true;
  e->persistent = persistent;
  e->confirmed = e->confirmed || (e->mic == MicPolicy::Ask && confirmed_ask);
  e->request.reset();
  if (changed) {
    events.push_back({Event::Kind::Attached, qube, persistent, DetachCause::User, {}, {}});
  }
  if (!was_open && open_of(*e)) {
    events.push_back({Event::Kind::Gate, qube, true, DetachCause::User, {}, {}});
  }
  dispatch(events);
  return {AttachStatus::Attached, {}};
}

bool MicGate::detach(const std::string& qube) {
  Entry* e = find(qube);
  if (!e) {
    return false;
  }
  std::vector<Event> events;
  const bool was_open = open_of(*e);
  const bool was_attached = e->attached;
  e->attached = false;
  e->confirmed = false;
  e->persistent = false;
  if (was_open) {
    events.push_back({Event::Kind::Gate, qube, false, DetachCause::User, {}, {}});
  }
  if (was_attached) {
    events.push_back(
        {Event::Kind::Detached, qube, false, DetachCause::User, "detached by the user", {}});
  }
  dispatch(events);
  return true;
}

AttachResult MicGate::restore_persistent(const std::string& qube) {
  Entry* e = find(qube);
  if (!e) {
    return {AttachStatus::UnknownQube, "no qube named '" + qube + "' is served by this daemon"};
  }
  if (e->mic != MicPolicy::Allow) {
    // Keep the preference: a later restart under allow restores it.
    e->persistent = true;
    return {AttachStatus::Denied, "persistent microphone for '" + qube +
                                      "' not restored: policy says " + to_string(e->mic) + " (" +
                                      e->mic_reason + ")"};
  }
  return attach(qube, /*persistent=*/true, /*confirmed_ask=*/false);
}

void MicGate::on_policy_changed(std::shared_ptr<const policy::PolicySnapshot> snapshot) {
  policy_ = std::move(snapshot);
  reevaluate_all();
}

void MicGate::on_qube_info_changed(std::shared_ptr<const policy::QubeInfoProvider> qubes) {
  qubes_ = qubes ? std::move(qubes) : std::make_shared<policy::StaticQubeInfo>();
  reevaluate_all();
}

void MicGate::reevaluate_all() {
  std::vector<Event> events;
  for (auto& [name, e] : entries_) {
    const bool was_open = open_of(e);
    const bool was_play = e.play;
    refresh(name, e);
    if (e.attached && !open_of(e)) {
      // No longer permitted: detach now; only the user can attach again.
      e.attached = false;
      e.confirmed = false;
      events.push_back({Event::Kind::Detached,
                        name,
                        false,
                        DetachCause::Policy,
                        std::string("policy now says ") + to_string(e.mic) + ": " + e.mic_reason,
                        {}});
    }
    if (e.mic == MicPolicy::Deny) {
      e.request.reset();
    }
    if (was_open != open_of(e)) {
      events.push_back({Event::Kind::Gate, name, open_of(e), DetachCause::Policy, {}, {}});
    }
    if (was_play != e.play) {
      events.push_back({Event::Kind::Playback, name, e.play, DetachCause::Policy, {}, {}});
    }
  }
  // Gate closures first: the caller silences the capture before anything else.
  std::stable_partition(events.begin(), events.end(),
                        [](const Event& ev) { return ev.kind == Event::Kind::Gate; });
  dispatch(events);
}

bool MicGate::gate_open(std::string_view qube) const {
  const Entry* e = find(qube);
  return e && open_of(*e);
}

bool MicGate::attached(std::string_view qube) const {
  const Entry* e = find(qube);
  return e && e->attached;
}

bool MicGate::playback_allowed(std::string_view qube) const {
  const Entry* e = find(qube);
  return e && e->play;
}

MicPolicy MicGate::mic_policy(std::string_view qube) const {
  const Entry* e = find(qube);
  return e ? e->mic : MicPolicy::Deny;
}

std::optional<MicQubeState> MicGate::state(std::string_view qube) const {
  auto it = entries_.find(qube);
  if (it == entries_.end()) {
    return std::nullopt;
  }
  const Entry& e = it->second;
  MicQubeState s;
  s.name = it->first;
  s.attached = e.attached;
  s.persistent = e.persistent;
  s.confirmed = e.confirmed;
  s.gate_open = open_of(e);
  s.requested = e.request.has_value();
  s.playback_allowed = e.play;
  s.mic_policy = e.mic;
  s.mic_reason = e.mic_reason;
  s.play_reason = e.play_reason;
  return s;
}

std::vector<MicQubeState> MicGate::list() const {
  std::vector<MicQubeState> out;
  out.reserve(entries_.size());
  for (const auto& kv : entries_) {
    out.push_back(*state(kv.first));
  }
  return out;
}

bool MicGate::request_alive(const MicRequest& r, TimePoint now) const {
  return now - r.last < cfg_.request_ttl;
}

RequestOutcome MicGate::on_mic_requested(const std::string& qube, TimePoint now) {
  Entry* e = find(qube);
  if (!e) {
    return RequestOutcome::UnknownQube;
  }
  if (e->attached) {
    return RequestOutcome::AlreadyAttached;
  }
  if (e->mic == MicPolicy::Deny) {
    e->request.reset();
    return RequestOutcome::Denied;
  }
  if (e->request && !request_alive(*e->request, now)) {
    e->request.reset();
  }
  if (!e->request) {
    e->request = MicRequest{qube, now, now, 0, e->mic};
  }
  e->request->last = now;
  e->request->count++;
  e->request->policy = e->mic;

  // Per-qube window, then the global cap (a sliding window of emitted events).
  if (e->last_event && now - *e->last_event < cfg_.request_interval) {
    return RequestOutcome::RateLimited;
  }
  while (!recent_events_.empty() && now - recent_events_.front() >= cfg_.global_window) {
    recent_events_.pop_front();
  }
  if (recent_events_.size() >= cfg_.global_burst) {
    return RequestOutcome::RateLimited;
  }
  recent_events_.push_back(now);
  e->last_event = now;
  std::vector<Event> events;
  events.push_back({Event::Kind::Requested, qube, false, DetachCause::User, {}, *e->request});
  dispatch(events);
  return RequestOutcome::Emitted;
}

void MicGate::on_mic_stopped(const std::string& qube) {
  if (Entry* e = find(qube)) {
    e->request.reset();
  }
}

std::vector<MicRequest> MicGate::pending_requests(TimePoint now) const {
  std::vector<MicRequest> out;
  for (const auto& kv : entries_) {
    const Entry& e = kv.second;
    if (e.request && !e.attached && request_alive(*e.request, now)) {
      out.push_back(*e.request);
    }
  }
  return out;
}

void MicGate::expire(TimePoint now) {
  for (auto& kv : entries_) {
    if (kv.second.request && !request_alive(*kv.second.request, now)) {
      kv.second.request.reset();
    }
  }
}

void MicGate::dispatch(std::vector<Event>& events) {
  // Copy: a listener may add or remove listeners.
  const std::vector<MicGateListener*> ls = listeners_;
  for (const Event& ev : events) {
    for (MicGateListener* l : ls) {
      switch (ev.kind) {
        case Event::Kind::Requested:
          l->mic_requested(ev.request);
          break;
        case Event::Kind::Attached:
          l->mic_attached(ev.qube, ev.flag);
          break;
        case Event::Kind::Detached:
          l->mic_detached(ev.qube, ev.cause, ev.reason);
          break;
        case Event::Kind::Gate:
          l->gate_changed(ev.qube, ev.flag);
          break;
        case Event::Kind::Playback:
          l->playback_changed(ev.qube, ev.flag);
          break;
      }
    }
  }
}

}  // namespace qaudio::daemon
