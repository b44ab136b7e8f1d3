// The audiovm-daemon object: owns the event loop, the channel transport, the
// device backend, one Session per configured qube and the StateStore
// (per-qube volume 0-150 % and mute, restored when a qube reconnects or the
// daemon restarts, saved atomically on change).
//
// The internal API below is what the control API (and the mic gate) call;
// every call runs on the loop's thread.
//
//   auto d = Daemon::create(options);        // Result<unique_ptr<Daemon>>
//   (*d)->start();                            // backend up, sessions connecting
//   (*d)->set_volume("work", 80);
//   for (auto& s : (*d)->list()) ...;
//   (*d)->run();                              // until SIGINT/SIGTERM or quit()
//
// Signals (install_signal_handlers(), with the signals already blocked in
// every thread by block_daemon_signals() at the start of main): SIGINT and
// SIGTERM stop the loop cleanly; SIGUSR1 logs every session's counters.
// Backend events (sound server lost/back, device changes) are posted onto
// the loop and logged; sessions keep running.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "headset_output.hpp"
#include "mic_gate.hpp"
#include "qaudio/channel.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/policy/watcher.hpp"
#include "qaudio/result.hpp"
#include "session.hpp"
#include "state_store.hpp"

namespace qaudio::daemon {

struct QubeConfig {
  std::string name;
  uint32_t domid = 0;
  std::string label;                       // label colour, may be empty
  std::optional<uint32_t> initial_volume;  // unless the state dir says otherwise
};

struct DaemonOptions {
  std::string channel = "unix:/run/qubes-audio";  // unix:DIR | shm:DIR | xen
  uint32_t audio_domid = 0;
  std::vector<QubeConfig> qubes;
  std::string backend = "wav:qaudio-out.wav";
  BackendOptions backend_options;
  std::string state_dir;  // empty: state kept in memory only
  // Policy (qaudio.Mic / qaudio.Play). Empty policy_dir: not enforced, the
  // user's attachment alone opens a mic (logged at start). audio_qube is the
  // policy target (empty: this host's name); qube_info is the file of qube
  // types and tags (qaudio/policy/qube_info.hpp), empty: names only.
  std::string policy_dir;
  std::string audio_qube;
  std::string qube_info;
  bool native_enabled = true;
  SessionConfig session;  // timing template; name/domid/label are per qube
};

class Daemon : private MicGateListener {
 public:
  // Builds the transport, the backend and the sessions; loads the state.
  static Result<std::unique_ptr<Daemon>> create(const DaemonOptions& options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts the backend and every session (each connects by itself).
  Result<void> start();
  // Stops the sessions (streams leave the backend) and the backend.
  void stop();

  // Runs the loop until quit(), a signal, or `duration` passed.
  void run(std::optional<std::chrono::milliseconds> duration = std::nullopt);
  void quit() { loop_.quit(); }
  EventLoop& loop() { return loop_; }
  Backend& backend() { return *backend_; }

  // Signals through a signalfd on the loop (see the header comment).
  Result<void> install_signal_handlers();

  // ---- internal API (control API, mic gate) ----
  std::vector<SessionInfo> list() const;
  std::optional<SessionInfo> info(std::string_view qube) const;
  Result<void> set_volume(std::string_view qube, uint32_t percent);
  Result<void> set_mute(std::string_view qube, bool muted);
  // Chooses the output device of one qube, or (no qube) the default of every
  // qube without its own choice; "" = the backend's default device. The
  // device must be one of the backend's outputs; persisted in the state dir.
  Result<void> set_output(const std::string& device, std::optional<std::string_view> qube);
  // An output device came back or went away (a Bluetooth headset): qubes
  // whose own choice it is play on it again, or on the default meanwhile.
  // Their stored choice is kept either way.
  void device_presence(const std::string& device, bool present);
  // The Bluetooth headset output settings, persisted in the state dir.
  Result<void> set_headset_output(const HeadsetOutputSettings& s) {
    return store_.set_headset_output(s);
  }
  // Attaches or detaches the qube's microphone through the MicGate (default:
  // detached). Refused with the policy's reason under deny, or when policy
  // says ask and `confirmed` is false. `persistent` is stored and restored
  // after a restart if policy still allows.
  Result<void> set_mic_attached(std::string_view qube,
                                bool attached,
                                bool persistent = false,
                                bool confirmed = false);
  // Adds a qube at run time (the pacat-simple-vchan launcher's attach): a
  // session like a configured one, connecting at once if the daemon runs.
  // The same name with the same domid again is a no-op (a launcher that
  // re-attaches after a daemon restart); another domid, or a domid served
  // under another name, is refused.
  Result<void> add_qube(const QubeConfig& q);
  // Removes a qube's session (the launcher's detach): its streams leave the
  // backend, its microphone is detached. Unknown names are an error.
  Result<void> remove_qube(std::string_view qube);
  // The gate itself (list, pending requests, event listeners: mic_gate_api.hpp).
  MicGate& mic_gate() { return *gate_; }
  const MicGate& mic_gate() const { return *gate_; }

  // Logs every session's counters (SIGUSR1) / formats them for --print-counters.
  void log_counters() const;
  static std::string format_counters(const SessionInfo& s);
  const StateStore& state() const { return store_; }

 private:
  explicit Daemon(const DaemonOptions& options);
  std::unique_ptr<Session> make_session(const QubeConfig& q);
  Session* find(std::string_view qube);
  QubeState state_to_save(std::string_view qube) const;
  const Session* find(std::string_view qube) const;
  void on_backend_event(const BackendEvent& ev);
  void on_signal();
  void setup_mic_gate();
  void on_policy_files_changed();
  void on_mic_activity(const std::string& qube, bool started);
  // MicGateListener: applies the gate's decisions to the sessions and store.
  void mic_requested(const MicRequest& r) override;
  void mic_attached(const std::string& qube, bool persistent) override;
  void mic_detached(const std::string& qube, DetachCause cause, const std::string& why) override;
  void gate_changed(const std::string& qube, bool open) override;
  void playback_changed(const std::string& qube, bool allowed) override;

  DaemonOptions opt_;
  EventLoop loop_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Backend> backend_;
  StateStore store_;
  std::unique_ptr<MicGate> gate_;  // before sessions_: outlives them
  std::unique_ptr<policy::PolicyWatcher> policy_watcher_;
  EventLoop::Id policy_watch_ = 0;
  std::map<std::string, std::unique_ptr<Session>, std::less<>> sessions_;
  bool started_ = false;
  int signal_fd_ = -1;
  EventLoop::Id signal_watch_ = 0;
};

// Blocks SIGINT, SIGTERM, SIGUSR1 in the calling thread (call first thing in
// main, before any thread starts) so that they arrive only on the signalfd.
void block_daemon_signals();

// The headset output policy's view of a Daemon (headset_output.hpp).
class DaemonOutputSwitch : public OutputSwitch {
 public:
  explicit DaemonOutputSwitch(Daemon& d) : d_(d) {}
  std::vector<DeviceInfo> devices() override { return d_.backend().devices(); }
  std::string default_output() const override { return d_.state().default_output(); }
  Result<void> set_default_output(const std::string& device) override {
    return d_.set_output(device, std::nullopt);
  }
  void device_presence(const std::string& device, bool present) override {
    d_.device_presence(device, present);
  }

 private:
  Daemon& d_;
};

}  // namespace qaudio::daemon
