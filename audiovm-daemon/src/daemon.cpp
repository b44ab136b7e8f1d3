// The audiovm-daemon object (see daemon.hpp): sessions, state, signals.
#include "daemon.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "mic_gate_api.hpp"
#include "qaudio/log.hpp"
#include "qaudio/policy/loader.hpp"

namespace qaudio::daemon {

void block_daemon_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Daemon::Daemon(const DaemonOptions& options) : opt_(options), store_(options.state_dir) {}

Result<std::unique_ptr<Daemon>> Daemon::create(const DaemonOptions& options) {
  std::unique_ptr<Daemon> d(new Daemon(options));
  auto t = make_transport(options.channel);
  if (!t) {
    return fail(t.error());
  }
  d->transport_ = std::move(*t);
  Daemon* self = d.get();
  auto be = make_backend(options.backend, options.backend_options, [self](const BackendEvent& ev) {
    self->loop_.post([self, ev] { self->on_backend_event(ev); });
  });
  if (!be) {
    return fail(be.error());
  }
  d->backend_ = std::move(*be);
  if (auto r = d->store_.load(); !r) {
    return fail("state directory " + options.state_dir + ": " + r.error().message);
  }
  for (const auto& w : d->store_.warnings()) {
    log_warn("state: %s", w.c_str());
  }
  for (const auto& q : options.qubes) {
    if (d->sessions_.count(q.name) != 0) {
      return fail("qube " + q.name + " is configured twice");
    }
    d->sessions_.emplace(q.name, d->make_session(q));
  }
  d->setup_mic_gate();
  return d;
}

std::unique_ptr<Session> Daemon::make_session(const QubeConfig& q) {
  QubeState st = store_.get(q.name);
  if (store_.all().count(q.name) == 0 && q.initial_volume) {
    st.volume_percent = std::min(*q.initial_volume, kMaxVolumePercent);
  }
  SessionConfig sc = opt_.session;
  sc.name = q.name;
  sc.domid = q.domid;
  sc.audio_domid = opt_.audio_domid;
  sc.label = q.label;
  sc.native_enabled = opt_.native_enabled;
  auto session = std::make_unique<Session>(loop_, *transport_, *backend_, sc, st);
  // No stream exists yet: the choice is used when the stream is created.
  (void)session->set_output_device(st.output_device.empty() ? store_.default_output()
                                                            : st.output_device);
  return session;
}

Result<void> Daemon::add_qube(const QubeConfig& q) {
  if (q.domid == 0 || q.domid > 32767) {
    return fail("qube " + q.name + ": domid " + std::to_string(q.domid) +
                " is out of range (1-32767)");
  }
  if (const Session* s = find(q.name)) {
    SessionInfo i = s->info();
    if (i.domid == q.domid) {
      return {};
    }
    return fail("qube " + q.name + " is already attached with domid " + std::to_string(i.domid) +
                "; detach it first");
  }
  for (const auto& [name, s] : sessions_) {
    if (s->info().domid == q.domid) {
      return fail("domid " + std::to_string(q.domid) + " is already attached as qube " + name);
    }
  }
  auto session = make_session(q);
  Session* s = session.get();
  sessions_.emplace(q.name, std::move(session));
  gate_->add_qube(q.name);
  s->set_playback_allowed(gate_->playback_allowed(q.name));
  s->set_mic_attached(gate_->gate_open(q.name));
  s->set_mic_observer([this](const std::string& n, bool started) { on_mic_activity(n, started); });
  if (started_) {
    s->start();
  }
  log_info("%s (domid %u) attached", q.name.c_str(), q.domid);
  return {};
}

Result<void> Daemon::remove_qube(std::string_view qube) {
  auto it = sessions_.find(qube);
  if (it == sessions_.end()) {
    return fail("no qube named " + std::string(qube) + " is attached");
  }
  std::string name = it->first;
  if (gate_->attached(name)) {
    (void)mic_api_set_attached(*gate_, name, false, false, false);
  }
  it->second->stop();
  sessions_.erase(it);
  log_info("%s detached", name.c_str());
  return {};
}

// ---------------------------------------------------------- mic gate ----

namespace {

std::shared_ptr<const policy::PolicySnapshot> load_policy_logged(const std::string& dir) {
  auto snap = policy::load_policy_dir(dir);
  if (snap->valid()) {
    log_info("policy %s: %zu rules from %zu files", dir.c_str(), snap->rules.size(),
             snap->files.size());
  } else {
    log_error("policy %s is invalid: every microphone and playback request is denied until fixed",
              dir.c_str());
    for (const auto& e : snap->errors) {
      log_error("policy: %s", e.to_string().c_str());
    }
  }
  return snap;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) {
    return {};
  }
  return buf;
}

}  // namespace

void Daemon::setup_mic_gate() {
  MicGateConfig gc;
  gc.enforce_policy = !opt_.policy_dir.empty();
  gc.audio_qube = opt_.audio_qube.empty() ? host_name() : opt_.audio_qube;
  std::shared_ptr<const policy::QubeInfoProvider> qubes;
  if (!opt_.qube_info.empty()) {
    auto info =
        std::make_shared<policy::StaticQubeInfo>(policy::StaticQubeInfo::load_file(opt_.qube_info));
    if (!info->failure().empty()) {
      log_error("qube information %s: %s (policy denies everything)", opt_.qube_info.c_str(),
                info->failure().c_str());
    }
    qubes = std::move(info);
  }
  std::shared_ptr<const policy::PolicySnapshot> snap;
  if (gc.enforce_policy) {
    snap = load_policy_logged(opt_.policy_dir);
    policy_watcher_ = std::make_unique<policy::PolicyWatcher>(opt_.policy_dir);
    if (auto r = policy_watcher_->start(); !r) {
      log_warn("policy %s: not watched for changes: %s", opt_.policy_dir.c_str(),
               r.error().message.c_str());
      policy_watcher_.reset();
    } else {
      policy_watcher_->watch(*snap);
      policy_watch_ =
          loop_.add_fd(policy_watcher_->fd(), POLLIN, [this](short) { on_policy_files_changed(); });
    }
  } else {
    log_warn(
        "no --policy-dir: microphone and playback are not restricted by policy (the "
        "user's attachment alone opens a microphone)");
  }
  gate_ = std::make_unique<MicGate>(gc, std::move(qubes), std::move(snap));
  gate_->add_listener(this);
  for (auto& [name, s] : sessions_) {
    gate_->add_qube(name);
    s->set_playback_allowed(gate_->playback_allowed(name));
    s->set_mic_observer(
        [this](const std::string& q, bool started) { on_mic_activity(q, started); });
  }
  // After a restart only persistent assignments come back, and only if allowed.
  std::vector<std::string> persistent;
  for (const auto& [name, st] : store_.all()) {
    if (st.mic_persistent && gate_->knows(name)) {
      persistent.push_back(name);
    }
  }
  for (const auto& name : persistent) {
    {
      AttachResult r = gate_->restore_persistent(name);
      if (r.ok()) {
        log_info("%s: persistent microphone re-attached", name.c_str());
      } else {
        log_warn("%s", r.reason.c_str());
      }
    }
  }
}

void Daemon::on_policy_files_changed() {
  if (!policy_watcher_ || !policy_watcher_->check()) {
    return;
  }
  auto snap = load_policy_logged(opt_.policy_dir);
  policy_watcher_->watch(*snap);
  gate_->on_policy_changed(std::move(snap));
}

void Daemon::on_mic_activity(const std::string& qube, bool started) {
  if (!started) {
    gate_->on_mic_stopped(qube);
    return;
  }
  if (gate_->attached(qube)) {
    return;
  }
  RequestOutcome o = gate_->on_mic_requested(qube, std::chrono::steady_clock::now());
  if (o == RequestOutcome::Denied) {
    log_info("%s wants the microphone; policy denies it: %s", qube.c_str(),
             gate_->state(qube)->mic_reason.c_str());
  }
}

void Daemon::mic_requested(const MicRequest& r) {
  log_info("%s wants the microphone (policy: %s); attach it with: qvm-audio mic attach %s",
           r.qube.c_str(), to_string(r.policy), r.qube.c_str());
}

void Daemon::mic_attached(const std::string& qube, bool persistent) {
  log_info("%s: microphone attached%s", qube.c_str(), persistent ? " (persistent)" : "");
  QubeState st = state_to_save(qube);
  if (st.mic_persistent != persistent) {
    st.mic_persistent = persistent;
    if (auto r = store_.set(qube, st); !r) {
      log_warn("%s: cannot save the microphone assignment: %s", qube.c_str(),
               r.error().message.c_str());
    }
  }
}

void Daemon::mic_detached(const std::string& qube, DetachCause cause, const std::string& why) {
  log_info("%s: microphone detached (%s): %s", qube.c_str(), to_string(cause), why.c_str());
  QubeState st = state_to_save(qube);
  if (cause == DetachCause::User && st.mic_persistent) {
    st.mic_persistent = false;
    if (auto r = store_.set(qube, st); !r) {
      log_warn("%s: cannot save the microphone assignment: %s", qube.c_str(),
               r.error().message.c_str());
    }
  }
}

void Daemon::gate_changed(const std::string& qube, bool open) {
  if (Session* s = find(qube)) {
    s->set_mic_attached(open);
  }
}

void Daemon::playback_changed(const std::string& qube, bool allowed) {
  if (Session* s = find(qube)) {
    s->set_playback_allowed(allowed);
  }
}

Daemon::~Daemon() {
  stop();
  if (policy_watch_ != 0) {
    loop_.remove(policy_watch_);
  }
  if (signal_fd_ >= 0) {
    ::close(signal_fd_);
  }
}

Result<void> Daemon::start() {
  if (started_) {
    return {};
  }
  if (auto r = backend_->start(); !r) {
    return fail("backend " + opt_.backend + ": " + r.error().message);
  }
  started_ = true;
  DeviceFormat f = backend_->format();
  log_info("backend %s started: %u Hz, %u channels", backend_->name().c_str(), f.rate, f.channels);
  for (auto& [name, s] : sessions_) {
    s->start();
  }
  return {};
}

void Daemon::stop() {
  for (auto& [name, s] : sessions_) {
    s->stop();
  }
  if (started_) {
    backend_->stop();
    started_ = false;
  }
}

void Daemon::run(std::optional<std::chrono::milliseconds> duration) {
  EventLoop::Id timer = 0;
  if (duration) {
    timer = loop_.add_timer(*duration, [this] { loop_.quit(); });
  }
  loop_.run();
  if (timer != 0) {
    loop_.remove(timer);
  }
}

Result<void> Daemon::install_signal_handlers() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) {
    return fail_errno("signalfd");
  }
  signal_watch_ = loop_.add_fd(signal_fd_, POLLIN, [this](short) { on_signal(); });
  return {};
}

void Daemon::on_signal() {
  signalfd_siginfo si;
  while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    if (si.ssi_signo == SIGUSR1) {
      log_counters();
    } else {
      log_info("signal %u: stopping", si.ssi_signo);
      loop_.quit();
    }
  }
}

void Daemon::on_backend_event(const BackendEvent& ev) {
  switch (ev.kind) {
    case BackendEvent::Kind::ServerLost:
      log_warn("backend: sound server lost (%s); sessions keep running", ev.detail.c_str());
      break;
    case BackendEvent::Kind::ServerBack:
      log_info("backend: sound server back (%s)", ev.detail.c_str());
      break;
    case BackendEvent::Kind::DeviceAdded:
      log_info("backend: device added: %s", ev.detail.c_str());
      break;
    case BackendEvent::Kind::DeviceRemoved:
      log_info("backend: device removed: %s", ev.detail.c_str());
      break;
    case BackendEvent::Kind::Error:
      log_warn("backend: %s", ev.detail.c_str());
      break;
  }
}

// What to persist for a qube: the live volume and mute of its session (which
// may come from --volume, never saved yet) and the stored mic flag.
QubeState Daemon::state_to_save(std::string_view qube) const {
  QubeState st = store_.get(qube);
  if (const Session* s = find(qube)) {
    SessionInfo i = s->info();
    st.volume_percent = i.volume_percent;
    st.muted = i.muted;
  }
  return st;  // output_device: the qube's own choice, kept from the store
}

Session* Daemon::find(std::string_view qube) {
  auto it = sessions_.find(qube);
  return it == sessions_.end() ? nullptr : it->second.get();
}
const Session* Daemon::find(std::string_view qube) const {
  auto it = sessions_.find(qube);
  return it == sessions_.end() ? nullptr : it->second.get();
}

std::vector<SessionInfo> Daemon::list() const {
  std::vector<SessionInfo> out;
  out.reserve(sessions_.size());
  for (const auto& [name, s] : sessions_) {
    out.push_back(s->info());
  }
  return out;
}

std::optional<SessionInfo> Daemon::info(std::string_view qube) const {
  const Session* s = find(qube);
  if (s == nullptr) {
    return std::nullopt;
  }
  return s->info();
}

Result<void> Daemon::set_volume(std::string_view qube, uint32_t percent) {
  Session* s = find(qube);
  if (s == nullptr) {
    return fail("no qube named " + std::string(qube) + " is configured");
  }
  if (percent > kMaxVolumePercent) {
    return fail("volume " + std::to_string(percent) + " % is out of range (0-150)");
  }
  s->set_volume(percent);
  QubeState st = state_to_save(qube);
  st.volume_percent = percent;
  return store_.set(qube, st);
}

Result<void> Daemon::set_mute(std::string_view qube, bool muted) {
  Session* s = find(qube);
  if (s == nullptr) {
    return fail("no qube named " + std::string(qube) + " is configured");
  }
  s->set_muted(muted);
  QubeState st = state_to_save(qube);
  st.muted = muted;
  return store_.set(qube, st);
}

Result<void> Daemon::set_output(const std::string& device, std::optional<std::string_view> qube) {
  Session* only = nullptr;
  if (qube) {
    only = find(*qube);
    if (only == nullptr) {
      return fail("no qube named " + std::string(*qube) + " is configured");
    }
  }
  if (!device.empty()) {
    if (!valid_device_name(device)) {
      return fail("'" + device + "' is not a valid device name");
    }
    auto devs = backend_->devices();
    if (devs.empty()) {
      return fail("backend '" + backend_->name() + "' has a single device: nothing to choose");
    }
    bool known = std::any_of(devs.begin(), devs.end(),
                             [&](const DeviceInfo& d) { return d.is_output && d.name == device; });
    if (!known) {
      return fail("no output device named '" + device + "' (see the device list)");
    }
  }
  if (only != nullptr) {
    const std::string& eff = device.empty() ? store_.default_output() : device;
    if (auto r = only->set_output_device(eff); !r) {
      return r;
    }
    QubeState st = state_to_save(*qube);
    st.output_device = device;
    return store_.set(*qube, st);
  }
  // Every qube without its own choice follows the new default. A stream the
  // backend cannot move keeps playing where it was; the first error is reported.
  Result<void> result;
  for (auto& [name, s] : sessions_) {
    if (!store_.get(name).output_device.empty()) {
      continue;
    }
    if (auto r = s->set_output_device(device); !r && result) {
      result = fail(name + ": " + r.error().message);
    }
  }
  if (auto r = store_.set_default_output(device); !r) {
    return r;
  }
  return result;
}

void Daemon::device_presence(const std::string& device, bool present) {
  for (auto& [name, s] : sessions_) {
    if (store_.get(name).output_device != device) {
      continue;
    }
    const std::string& eff = present ? device : store_.default_output();
    if (auto r = s->set_output_device(eff == device && !present ? std::string() : eff); !r) {
      log_warn("%s: output %s %s: %s", name.c_str(), device.c_str(),
               present ? "is back" : "went away", r.error().message.c_str());
    } else {
      log_info(
          "%s: output %s %s; playing on %s", name.c_str(), device.c_str(),
          present ? "is back" : "went away",
          s->info().output_device.empty() ? "the default device" : s->info().output_device.c_str());
    }
  }
}

Result<void> Daemon::set_mic_attached(std::string_view qube,
                                      bool attached,
                                      bool persistent,
                                      bool confirmed) {
  if (find(qube) == nullptr) {
    return fail("no qube named " + std::string(qube) + " is configured");
  }
  MicApiResult r = mic_api_set_attached(*gate_, std::string(qube), attached, persistent, confirmed);
  if (!r.ok()) {
    return fail(r.message);
  }
  return {};
}

std::string Daemon::format_counters(const SessionInfo& s) {
  const SessionCounters& c = s.counters;
  char line[640];
  std::snprintf(line, sizeof line,
                "%s: state=%s protocol=%s format=\"%s\" volume=%u%s mic=%s%s "
                "bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " underruns=%" PRIu64 " overruns=%" PRIu64
                " mic_overruns=%" PRIu64
                " latency_ms=%.1f"
                " frames_played=%" PRIu64 " connects=%" PRIu64 " disconnects=%" PRIu64
                " protocol_errors=%" PRIu64 " fill=%u/%u",
                s.name.c_str(), std::string(to_string(s.state)).c_str(),
                std::string(to_string(s.protocol)).c_str(), to_string(s.playback_format).c_str(),
                s.volume_percent, s.muted ? " (muted)" : "", s.mic_started ? "started" : "stopped",
                s.mic_attached ? ",attached" : "", c.bytes_in, c.bytes_out, c.underruns, c.overruns,
                c.mic_overruns, c.latency_us / 1000.0, c.frames_played, c.connects, c.disconnects,
                c.protocol_errors, c.playback_fill_bytes, c.playback_ring_bytes);
  return line;
}

void Daemon::log_counters() const {
  for (const auto& s : list()) {
    log_info("%s", format_counters(s).c_str());
  }
}

}  // namespace qaudio::daemon
