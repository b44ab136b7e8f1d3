// qubes-audiovm-daemon: the audio qube's daemon (docs/audiovm-daemon.md).
//
//   qubes-audiovm-daemon --channel unix:/run/qubes-audio --qube work=5
//       --qube personal=7 --backend pulse --state-dir /var/lib/qubes-audio
//   qubes-audiovm-daemon --config /etc/qubes-audio/daemon.conf
//
// Exit codes: 0 clean stop (signal or --duration), 1 start-up failure
// (backend, transport, state dir), 2 bad options.
#include <grp.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <variant>

#include "config.hpp"
#include "control_daemon_adapter.hpp"
#include "control_server.hpp"
#include "daemon.hpp"
#include "qaudio/config.h"
#include "qaudio/log.hpp"
#if QAUDIO_HAVE_BLUEZ
#include "control_api_bt.hpp"
#include "qaudio/bluetooth/bt_manager.hpp"
#include "qaudio/bluetooth/sdbus_bluez.hpp"
#endif

int main(int argc, char** argv) {
  using namespace qaudio;
  using namespace qaudio::daemon;
  // Before any thread exists, so the signals reach only the signalfd.
  block_daemon_signals();
  set_log_tag("audiovm-daemon");

  auto parsed = parse_cli(argc, argv);
  if (auto* code = std::get_if<int>(&parsed)) {
    return *code;
  }
  DaemonCli& cli = std::get<DaemonCli>(parsed);
  if (cli.verbose) {
    set_log_level(LogLevel::Debug);
  }
  if (cli.options.qubes.empty()) {
    log_warn("no qubes configured (--qube NAME=DOMID or qube = ... in --config): idle");
  }

  auto d = Daemon::create(cli.options);
  if (!d) {
    std::fprintf(stderr, "qubes-audiovm-daemon: %s\n", d.error().message.c_str());
    return 1;
  }
  Daemon& daemon = **d;
  if (auto r = daemon.install_signal_handlers(); !r) {
    std::fprintf(stderr, "qubes-audiovm-daemon: %s\n", r.error().message.c_str());
    return 1;
  }
  if (auto r = daemon.start(); !r) {
    std::fprintf(stderr, "qubes-audiovm-daemon: %s\n", r.error().message.c_str());
    return 1;
  }
  // The control API (docs/control-api.md), unless --control none.
  std::unique_ptr<control::ControlServer> server;
  control::ControlDaemonAdapter target(daemon, [&](const control::ControlEvent& e) {
    if (server) {
      server->publish(e);
    }
  });
  control::ControlApi api(target);
  if (cli.control_path != "none") {
    control::ControlServerOptions co;
    co.path = cli.control_path.empty() ? control::default_control_path() : cli.control_path;
    if (!cli.control_group.empty()) {
      const group* g = ::getgrnam(cli.control_group.c_str());
      if (g == nullptr) {
        std::fprintf(stderr, "qubes-audiovm-daemon: --control-group: no group named '%s'\n",
                     cli.control_group.c_str());
        return 2;
      }
      co.allowed_group = g->gr_gid;
    }
    server = std::make_unique<control::ControlServer>(daemon.loop(), api, co);
    if (auto r = server->start(); !r) {
      std::fprintf(stderr, "qubes-audiovm-daemon: %s\n", r.error().message.c_str());
      return 1;
    }
    target.set_has_subscribers([&] { return server->subscriber_count() > 0; });
    target.start_polling(daemon.loop(), std::chrono::milliseconds(100));
  }
  // Bluetooth headsets (docs/bluetooth.md), with --bluetooth.
#if QAUDIO_HAVE_BLUEZ
  std::unique_ptr<bt::SdbusBluez> bt_bus;
  std::unique_ptr<bt::Manager> bt_manager;
  // The headset output policy (headset_output.hpp): a connected headset's
  // sink becomes the default output; on disconnect the default goes back.
  DaemonOutputSwitch output_switch(daemon);
  std::unique_ptr<HeadsetOutput> headsets;
  EventLoop::Id headset_timer = 0;
  auto watch_headset_sinks = [&] {
    if (headset_timer == 0 && headsets && headsets->pending()) {
      headset_timer = daemon.loop().add_timer(
          std::chrono::milliseconds(200),
          [&] {
            headsets->poll();
            if (!headsets->pending()) {
              daemon.loop().remove(headset_timer);
              headset_timer = 0;
            }
          },
          /*repeat=*/true);
    }
  };
  if (cli.bluetooth) {
    auto bus = bt::SdbusBluez::connect(daemon.loop(), cli.bluetooth_bus);
    if (!bus) {
      std::fprintf(stderr, "qubes-audiovm-daemon: %s\n", bus.error().message.c_str());
      return 1;
    }
    bt_bus = std::move(*bus);
    headsets = std::make_unique<HeadsetOutput>(
        output_switch, daemon.state().headset_output(),
        [&](const HeadsetOutputEvent& e) {
          if (server) {
            server->publish(control::headset_output_event(e));
          }
        },
        [&](const HeadsetOutputSettings& s) { return daemon.set_headset_output(s); });
    target.set_headset_output(headsets.get());
    bt::ManagerOptions bo;
    bo.agent_timeout =
        std::chrono::milliseconds(std::llround(cli.bluetooth_agent_timeout_s * 1000.0));
    bt_manager =
        std::make_unique<bt::Manager>(*bt_bus, daemon.loop(), bo, [&](const bt::BtEvent& e) {
          if (server) {
            server->publish(control::bt_event(e));
          }
          if (e.type == bt::BtEvent::Type::HeadsetConnected) {
            headsets->connected(e.address);
            watch_headset_sinks();
          } else if (e.type == bt::BtEvent::Type::HeadsetDisconnected) {
            headsets->disconnected(e.address);
          }
        });
    target.set_bluetooth(bt_manager.get());
    bt_manager->start();
  }
#else
  if (cli.bluetooth) {
    std::fprintf(stderr,
                 "qubes-audiovm-daemon: --bluetooth: this build has no Bluetooth support "
                 "(rebuild with libsdbus-c++-dev)\n");
    return 2;
  }
#endif
  std::optional<std::chrono::milliseconds> duration;
  if (cli.duration_s) {
    duration = std::chrono::milliseconds(std::llround(*cli.duration_s * 1000.0));
  }
  daemon.run(duration);

  auto sessions = daemon.list();
#if QAUDIO_HAVE_BLUEZ
  target.set_bluetooth(nullptr);
  target.set_headset_output(nullptr);
  bt_manager.reset();
  bt_bus.reset();
#endif
  daemon.stop();
  if (cli.print_counters || cli.duration_s) {
    for (const auto& s : sessions) {
      std::printf("%s\n", Daemon::format_counters(s).c_str());
    }
    std::fflush(stdout);
  }
  log_info("stopped");
  return 0;
}
