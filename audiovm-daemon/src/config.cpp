// Command line and config file of qubes-audiovm-daemon (see config.hpp).
#include "config.hpp"

#include <CLI/CLI.hpp>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <set>

#include "qaudio/config.h"
#include "qaudio/protocol.hpp"

namespace qaudio::daemon {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

template <class T>
std::optional<T> parse_uint(std::string_view s) {
  T v{};
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty()) {
    return std::nullopt;
  }
  return v;
}

std::optional<bool> parse_bool(std::string_view s) {
  if (s == "1" || s == "true" || s == "yes" || s == "on") {
    return true;
  }
  if (s == "0" || s == "false" || s == "no" || s == "off") {
    return false;
  }
  return std::nullopt;
}

Result<void> check_range(const char* what, uint32_t v, uint32_t lo, uint32_t hi) {
  if (v < lo || v > hi) {
    return fail(std::string(what) + " " + std::to_string(v) + " is out of range (" +
                std::to_string(lo) + "-" + std::to_string(hi) + ")");
  }
  return {};
}

// The scalar settings, shared by the command line and the file.
Result<void> set_scalar(DaemonCli& cli, std::string_view key, std::string_view value) {
  DaemonOptions& o = cli.options;
  auto number = [&](const char* what, uint32_t lo, uint32_t hi) -> Result<uint32_t> {
    auto v = parse_uint<uint32_t>(value);
    if (!v) {
      return fail(std::string(what) + ": '" + std::string(value) + "' is not a number");
    }
    if (auto r = check_range(what, *v, lo, hi); !r) {
      return fail(r.error());
    }
    return *v;
  };
  if (key == "channel") {
    o.channel = std::string(value);
  } else if (key == "backend") {
    o.backend = std::string(value);
  } else if (key == "state-dir") {
    o.state_dir = std::string(value);
  } else if (key == "policy-dir") {
    o.policy_dir = std::string(value);
  } else if (key == "audio-qube") {
    o.audio_qube = std::string(value);
  } else if (key == "qube-info") {
    o.qube_info = std::string(value);
  } else if (key == "audio-domid") {
    auto v = number("audio-domid", 0, 32767);
    if (!v) {
      return fail(v.error());
    }
    o.audio_domid = *v;
  } else if (key == "rate") {
    auto v = number("rate", protocol::kMinDeviceRate, 192000);
    if (!v) {
      return fail(v.error());
    }
    o.backend_options.format.rate = *v;
  } else if (key == "period-ms") {
    auto v = number("period-ms", 1, 100);
    if (!v) {
      return fail(v.error());
    }
    o.backend_options.period = std::chrono::milliseconds(*v);
    o.session.tick = std::chrono::milliseconds(*v);
  } else if (key == "buffer-ms") {
    auto v = number("buffer-ms", 1, 2000);
    if (!v) {
      return fail(v.error());
    }
    o.backend_options.buffer = std::chrono::milliseconds(*v);
  } else if (key == "native-target-ms" || key == "native-buffer-ms") {
    const bool target = key == "native-target-ms";
    auto v = number(target ? "native-target-ms" : "native-buffer-ms", target ? 1 : 0, 2000);
    if (!v) {
      return fail(v.error());
    }
    (target ? o.session.native_target_fill : o.session.native_buffer) =
        std::chrono::milliseconds(*v);
  } else if (key == "stock-only" || key == "verbose") {
    auto b = parse_bool(value);
    if (!b) {
      return fail(std::string(key) + ": '" + std::string(value) + "' is not true/false");
    }
    if (key == "verbose") {
      cli.verbose = *b;
    } else {
      o.native_enabled = !*b;
    }
  } else {
    return fail("unknown setting '" + std::string(key) + "'");
  }
  return {};
}

Result<void> set_label(DaemonCli& cli, std::string_view name, std::string_view color) {
  if (!is_valid_qube_name(name)) {
    return fail("label: '" + std::string(name) + "' is not a valid qube name");
  }
  if (color.empty() || color.size() > 32) {
    return fail("label." + std::string(name) + ": the colour must be 1-32 characters");
  }
  for (auto& q : cli.options.qubes) {
    if (q.name == name) {
      q.label = std::string(color);
      return {};
    }
  }
  return fail("label." + std::string(name) + ": no such qube (give its qube line first)");
}

Result<void> set_volume(DaemonCli& cli, std::string_view spec) {
  auto v = parse_volume_spec(spec);
  if (!v) {
    return fail(v.error());
  }
  for (auto& q : cli.options.qubes) {
    if (q.name == v->first) {
      q.initial_volume = v->second;
      return {};
    }
  }
  return fail("volume " + std::string(spec) + ": no qube named " + v->first + " is configured");
}

}  // namespace

bool is_valid_qube_name(std::string_view name) {
  if (name.empty() || name.size() > 31) {
    return false;
  }
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  if (!alpha(name[0])) {
    return false;
  }
  for (char c : name) {
    if (!(alpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

Result<QubeConfig> parse_qube_spec(std::string_view spec) {
  auto eq = spec.find('=');
  if (eq == std::string_view::npos) {
    return fail("qube '" + std::string(spec) + "': expected NAME=DOMID, e.g. work=5");
  }
  std::string_view name = trim(spec.substr(0, eq));
  std::string_view dom = trim(spec.substr(eq + 1));
  if (!is_valid_qube_name(name)) {
    return fail("qube '" + std::string(name) +
                "': not a valid qube name (a letter, then up to 30 letters, digits, _ . -)");
  }
  auto d = parse_uint<uint32_t>(dom);
  if (!d || *d < 1 || *d > 32767) {
    return fail("qube " + std::string(name) + ": domid '" + std::string(dom) +
                "' must be a number 1-32767");
  }
  QubeConfig q;
  q.name = std::string(name);
  q.domid = *d;
  return q;
}

Result<std::pair<std::string, uint32_t>> parse_volume_spec(std::string_view spec) {
  auto eq = spec.find('=');
  if (eq == std::string_view::npos) {
    return fail("volume '" + std::string(spec) + "': expected NAME=PERCENT, e.g. work=80");
  }
  std::string_view name = trim(spec.substr(0, eq));
  std::string_view pct = trim(spec.substr(eq + 1));
  if (!pct.empty() && pct.back() == '%') {
    pct.remove_suffix(1);
  }
  auto p = parse_uint<uint32_t>(pct);
  if (!is_valid_qube_name(name)) {
    return fail("volume '" + std::string(spec) + "': '" + std::string(name) +
                "' is not a valid qube name");
  }
  if (!p || *p > kMaxVolumePercent) {
    return fail("volume " + std::string(name) + ": '" + std::string(pct) +
                "' must be a number 0-150");
  }
  return std::make_pair(std::string(name), *p);
}

Result<void> load_config_file(const std::string& path, DaemonCli& cli) {
  std::ifstream in(path);
  if (!in) {
    return fail_errno("cannot read config file " + path);
  }
  std::string line;
  int lineno = 0;
  std::vector<std::pair<int, std::string>> volumes;
  std::vector<std::tuple<int, std::string, std::string>> labels;
  while (std::getline(in, line)) {
    ++lineno;
    auto where = [&] { return path + ":" + std::to_string(lineno) + ": "; };
    std::string_view l = trim(line);
    if (l.empty() || l.front() == '#') {
      continue;
    }
    auto eq = l.find('=');
    if (eq == std::string_view::npos) {
      return fail(where() + "expected 'key = value'");
    }
    std::string_view key = trim(l.substr(0, eq));
    std::string_view value = trim(l.substr(eq + 1));
    if (key == "qube") {
      auto q = parse_qube_spec(value);
      if (!q) {
        return fail(where() + q.error().message);
      }
      cli.options.qubes.push_back(*q);
    } else if (key == "volume") {
      volumes.emplace_back(lineno, std::string(value));
    } else if (key.substr(0, 6) == "label.") {
      labels.emplace_back(lineno, std::string(key.substr(6)), std::string(value));
    } else if (auto r = set_scalar(cli, key, value); !r) {
      return fail(where() + r.error().message);
    }
  }
  // Volumes and labels may come before or after their qube line.
  for (auto& [n, spec] : volumes) {
    if (auto r = set_volume(cli, spec); !r) {
      return fail(path + ":" + std::to_string(n) + ": " + r.error().message);
    }
  }
  for (auto& [n, name, color] : labels) {
    if (auto r = set_label(cli, name, color); !r) {
      return fail(path + ":" + std::to_string(n) + ": " + r.error().message);
    }
  }
  return {};
}

Result<void> validate(const DaemonCli& cli) {
  std::set<std::string> names;
  std::set<uint32_t> domids;
  for (const auto& q : cli.options.qubes) {
    if (!names.insert(q.name).second) {
      return fail("qube " + q.name + " is configured twice");
    }
    if (!domids.insert(q.domid).second) {
      return fail("domid " + std::to_string(q.domid) + " is given to two qubes");
    }
    if (q.domid == cli.options.audio_domid) {
      return fail("qube " + q.name + " has the audio domain's own domid " +
                  std::to_string(q.domid));
    }
  }
  if (cli.duration_s && !(*cli.duration_s > 0 && *cli.duration_s < 1e7)) {
    return fail("--duration must be a positive number of seconds");
  }
  return {};
}

std::variant<DaemonCli, int> parse_cli(int argc, const char* const* argv) {
  DaemonCli cli;
  CLI::App app{
      "qubes-audiovm-daemon: the audio qube's daemon. Connects to each configured qube's\n"
      "audio agent over vchan ports 4713 (playback) and 4714 (control, microphone),\n"
      "speaks the stock Qubes protocol or the native qaudio protocol, mixes or forwards\n"
      "each qube to the device backend with its own volume, and keeps per-qube state.\n"
      "Signals: SIGINT/SIGTERM stop cleanly; SIGUSR1 logs every session's counters.",
      "qubes-audiovm-daemon"};
  app.set_version_flag("--version", std::string("qubes-audiovm-daemon ") + QAUDIO_VERSION);
  app.get_formatter()->column_width(34);

  std::string channel, backend, state_dir, config, policy_dir, audio_qube, qube_info;
  uint32_t audio_domid = 0, rate = 0, period = 0, buffer = 0;
  std::vector<std::string> qubes, volumes, labels;
  double duration = 0;
  bool stock_only = false;

  app.add_option("--config", config,
                 "Read settings from FILE first (key = value lines; see docs/audiovm-daemon.md)")
      ->type_name("FILE");
  auto* o_channel = app.add_option("--channel", channel,
                                   "Channel transport: unix:DIR, shm:DIR or xen "
                                   "(default unix:/run/qubes-audio)")
                        ->type_name("SPEC");
  auto* o_qube = app.add_option("--qube", qubes,
                                "A qube to serve, NAME=DOMID (repeatable); the qube is the "
                                "vchan server")
                     ->type_name("NAME=DOMID")
                     ->take_all();
  auto* o_audio = app.add_option("--audio-domid", audio_domid,
                                 "This audio domain's domid, the vchan client side (default 0)")
                      ->type_name("N");
  auto* o_backend = app.add_option(
                           "--backend", backend,
                           "Device backend: wav:PATH (default wav:qaudio-out.wav), null, "
                           "pulse[:SERVER], pipewire, alsa:DEVICE (built here: " +
                               [] {
                                 std::string s;
                                 for (auto& b : available_backends()) {
                                   s += (s.empty() ? "" : ", ") + b;
                                 }
                                 return s;
                               }() +
                               ")")
                        ->type_name("SPEC");
  auto* o_rate =
      app.add_option("--rate", rate, "Device sample rate in Hz (default 48000)")->type_name("HZ");
  auto* o_period = app.add_option("--period-ms", period,
                                  "Real-time period of mixing backends and the session pump "
                                  "(default 10)")
                       ->type_name("MS");
  auto* o_buffer = app.add_option("--buffer-ms", buffer,
                                  "Sound server buffer target for pulse/pipewire (default 20)")
                       ->type_name("MS");
  uint32_t native_target = 0, native_buffer = 0;
  int32_t tick_skew = 0;
  app.add_option("--test-tick-skew-ppm", tick_skew,
                 "Test hook: ClockTicks report a device this many ppm fast (-20000..20000)")
      ->check(CLI::Range(-20000, 20000))
      ->group("");  // hidden: for tests only
  auto* o_ntarget = app.add_option("--native-target-ms", native_target,
                                   "Playback prebuffer of native qubes (default " +
                                       std::to_string(kDefaultNativeTargetFill.count()) +
                                       "; stock qubes keep 40)")
                        ->type_name("MS");
  auto* o_nbuffer =
      app.add_option("--native-buffer-ms", native_buffer,
                     "Sound server buffer of native qubes' streams, 0 = --buffer-ms (default " +
                         std::to_string(kDefaultNativeBuffer.count()) + ")")
          ->type_name("MS");
  auto* o_state = app.add_option("--state-dir", state_dir,
                                 "Directory for per-qube volume/mute state (default: memory only)")
                      ->type_name("DIR");
  auto* o_policy = app.add_option("--policy-dir", policy_dir,
                                  "qaudio.Mic/qaudio.Play policy directory, reloaded on change "
                                  "(default: none, the mic follows attach/detach alone)")
                       ->type_name("DIR");
  auto* o_audio_qube = app.add_option("--audio-qube", audio_qube,
                                      "This audio qube's name in policy (default: hostname)")
                           ->type_name("NAME");
  auto* o_qube_info =
      app.add_option("--qube-info", qube_info, "File of qube types/tags for @tag:/@type: policy")
          ->type_name("FILE");
  app.add_option("--volume", volumes,
                 "Initial volume of a qube, NAME=PERCENT 0-150 (repeatable); saved state wins")
      ->type_name("NAME=PERCENT")
      ->take_all();
  app.add_option("--label", labels,
                 "Label colour of a qube, NAME=COLOR, shown by sound servers (repeatable)")
      ->type_name("NAME=COLOR")
      ->take_all();
  app.add_option("--duration", duration,
                 "Run for SECONDS, then exit cleanly and print every qube's counters")
      ->type_name("SECONDS");
  app.add_flag("--print-counters", cli.print_counters,
               "Print every qube's counters on stdout at exit");
  auto* o_stock = app.add_flag("--stock-only", stock_only,
                               "Serve every qube with the stock Qubes protocol (no native "
                               "negotiation)");
  auto* o_verbose = app.add_flag("-v,--verbose", cli.verbose, "Debug logging");
  app.add_option("--control", cli.control_path,
                 "Control API socket (default $XDG_RUNTIME_DIR/qaudio/control or "
                 "/run/qaudio/control; 'none' disables it)")
      ->type_name("PATH");
  app.add_option("--control-group", cli.control_group,
                 "Group whose members may use the control API (root and this uid always may)")
      ->type_name("GROUP");
  app.add_flag("--bluetooth", cli.bluetooth,
               "Manage Bluetooth headsets through BlueZ (control API bt_* methods, "
               "qvm-audio bt ...; docs/bluetooth.md)");
  app.add_option("--bluetooth-bus", cli.bluetooth_bus,
                 "D-Bus address where BlueZ is (default: the system bus)")
      ->type_name("ADDRESS");
  app.add_option("--bluetooth-agent-timeout", cli.bluetooth_agent_timeout_s,
                 "Seconds a pairing prompt waits for the user before it is rejected")
      ->check(CLI::Range(1.0, 600.0))
      ->type_name("SECONDS");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "qubes-audiovm-daemon: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }

  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "qubes-audiovm-daemon: %s\n", msg.c_str());
    return 2;
  };
  bool verbose_cli = cli.verbose;
  if (!config.empty()) {
    if (auto r = load_config_file(config, cli); !r) {
      return usage(r.error().message);
    }
  }
  auto scalar = [&](CLI::Option* opt, const char* key, const std::string& v) -> Result<void> {
    if (opt->count() > 0) {
      return set_scalar(cli, key, v);
    }
    return {};
  };
  for (auto r :
       {scalar(o_channel, "channel", channel), scalar(o_backend, "backend", backend),
        scalar(o_state, "state-dir", state_dir), scalar(o_policy, "policy-dir", policy_dir),
        scalar(o_audio_qube, "audio-qube", audio_qube), scalar(o_qube_info, "qube-info", qube_info),
        scalar(o_audio, "audio-domid", std::to_string(audio_domid)),
        scalar(o_rate, "rate", std::to_string(rate)),
        scalar(o_period, "period-ms", std::to_string(period)),
        scalar(o_buffer, "buffer-ms", std::to_string(buffer)),
        scalar(o_ntarget, "native-target-ms", std::to_string(native_target)),
        scalar(o_nbuffer, "native-buffer-ms", std::to_string(native_buffer))}) {
    if (!r) {
      return usage(r.error().message);
    }
  }
  if (o_stock->count() > 0) {
    cli.options.native_enabled = !stock_only;
  }
  if (o_verbose->count() > 0) {
    cli.verbose = verbose_cli;
  }
  cli.options.session.test_tick_skew_ppm = tick_skew;
  (void)o_qube;
  for (const auto& s : qubes) {
    auto q = parse_qube_spec(s);
    if (!q) {
      return usage(q.error().message);
    }
    cli.options.qubes.push_back(*q);
  }
  for (const auto& s : volumes) {
    if (auto r = set_volume(cli, s); !r) {
      return usage(r.error().message);
    }
  }
  for (const auto& s : labels) {
    auto eq = s.find('=');
    if (eq == std::string::npos) {
      return usage("label '" + s + "': expected NAME=COLOR");
    }
    if (auto r = set_label(cli, s.substr(0, eq), s.substr(eq + 1)); !r) {
      return usage(r.error().message);
    }
  }
  if (duration != 0) {
    cli.duration_s = duration;
  }
  if (auto r = validate(cli); !r) {
    return usage(r.error().message);
  }
  return cli;
}

}  // namespace qaudio::daemon
