// ControlTarget on top of the daemon's internal API (daemon.hpp), plus the
// events the daemon does not push yet, found by comparing snapshots.
//
// What maps directly: info (version, backend name and state, uptime since
// the adapter was built), list (Daemon::list() + the mic gate's state:
// pending request, persistent flag, policy), set_volume, set_mute, mic
// attach/detach through the mic gate (mic_gate_api.hpp: policy deny ->
// "refused", ask without confirmation -> "needs_confirmation"), devices
// (Backend::devices()), set_output (Daemon::set_output: one qube or the
// default of all; "unsupported" on single-device backends, "not_found" for a
// device the backend does not list).
//
// net_report (set_network): the network counters of a remote qube, stored
// per configured qube and shown in list() as "network" while fresh.
//
// Events: mic_requested/attached/detached come from the mic gate's
// listener; volume and mute changes made through this adapter are published
// at once; the rest (a qube connecting or leaving, volume/mute changed
// elsewhere, a device appearing) is found by poll(), which compares the
// daemon's list() (and, every `device_poll_every` polls while someone
// subscribes, the backend's devices) with the previous snapshot.
// start_polling() runs poll() on the daemon's loop.
//
//   ControlDaemonAdapter target(daemon, [&](const ControlEvent& e) { server.publish(e); });
//   target.start_polling(daemon.loop(), std::chrono::milliseconds(100));
//   ControlApi api(target);
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "control_api.hpp"
#include "daemon.hpp"
#include "mic_gate_api.hpp"

namespace qaudio::control {

using EventSink = std::function<void(const ControlEvent&)>;

class ControlDaemonAdapter : public ControlTarget {
 public:
  ControlDaemonAdapter(daemon::Daemon& d, EventSink sink);
  ~ControlDaemonAdapter() override;

  DaemonStatus info() override;
  std::vector<QubeStatus> list() override;
  Status set_volume(const std::string& qube, uint32_t percent) override;
  Status set_mute(const std::string& qube, bool muted) override;
  Status set_mic_attached(const std::string& qube,
                          bool attached,
                          bool persistent,
                          bool confirmed) override;
  Outcome<std::vector<DeviceEntry>> devices() override;
  std::string default_output() override;
  Status set_output(const std::string& device, const std::string& qube) override;
  // Bluetooth (bt_* methods); the manager's events go through bt_event().
  bt::Manager* bluetooth() override { return bluetooth_; }
  void set_bluetooth(bt::Manager* m) { bluetooth_ = m; }
  daemon::HeadsetOutput* headset_output() override { return headset_output_; }
  void set_headset_output(daemon::HeadsetOutput* h) { headset_output_ = h; }
  Status attach_qube(const std::string& qube,
                     uint32_t domid,
                     std::optional<uint32_t> volume,
                     std::optional<bool> muted) override;
  Status detach_qube(const std::string& qube) override;
  // net_report: kept per qube, shown by list() while younger than
  // kNetworkStaleMs (a bridge that stopped reporting drops out of the list).
  Status set_network(const std::string& qube, const NetworkStatus& n) override;
  static constexpr int64_t kNetworkStaleMs = 10'000;

  // Compares the daemon's state with the last snapshot and publishes events.
  void poll();
  void start_polling(EventLoop& loop,
                     std::chrono::milliseconds interval,
                     unsigned device_poll_every = 20);
  // Whether anything listens (device polling is skipped otherwise).
  void set_has_subscribers(std::function<bool()> fn) { has_subscribers_ = std::move(fn); }

  static QubeStatus status_of(const daemon::SessionInfo& s, const daemon::QubeState& saved);

 private:
  struct Seen {
    bool running = false;
    uint32_t volume = 0;
    bool muted = false;
    float level = 0;  // last level published
  };
  void remember(const daemon::SessionInfo& s);
  void publish(const ControlEvent& e);

  daemon::Daemon& d_;
  EventSink sink_;
  daemon::MicEventForwarder mic_events_;
  std::function<bool()> has_subscribers_;
  std::chrono::steady_clock::time_point started_;
  std::map<std::string, Seen, std::less<>> seen_;
  std::set<std::string> seen_devices_;
  struct NetReport {
    NetworkStatus status;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, NetReport, std::less<>> network_;
  bool devices_known_ = false;
  unsigned polls_ = 0;
  unsigned device_poll_every_ = 20;
  EventLoop* loop_ = nullptr;
  EventLoop::Id timer_ = 0;
  bt::Manager* bluetooth_ = nullptr;
  daemon::HeadsetOutput* headset_output_ = nullptr;
};

}  // namespace qaudio::control
