// Configuration of qubes-audiovm-daemon: the command line (CLI11) and the
// config file (`--config FILE`), merged into DaemonOptions.
//
// Config file: one `key = value` per line, `#` comments, blank lines. Keys
// are the long option names (channel, audio-domid, backend, rate, period-ms,
// buffer-ms, state-dir, policy-dir, audio-qube, qube-info, stock-only,
// verbose), plus repeatable
// `qube = NAME=DOMID` and `volume = NAME=PERCENT`, and `label.NAME = COLOR`.
// Errors name file:line. The command line overrides the file's scalars;
// qubes, volumes and labels from both are combined.
//
//   qube = work=5
//   qube = personal=7
//   label.work = blue
//   backend = pulse
//
//   auto r = parse_cli(argc, argv);   // DaemonCli, or an exit code
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "daemon.hpp"
#include "qaudio/result.hpp"

namespace qaudio::daemon {

struct DaemonCli {
  DaemonOptions options;
  std::optional<double> duration_s;  // --duration
  bool print_counters = false;       // print counters at exit (also with --duration)
  bool verbose = false;
  std::string control_path;   // --control: "" = default path, "none" = no control API
  std::string control_group;  // --control-group: members may use the control API
  bool bluetooth = false;     // --bluetooth: drive BlueZ (bt_* control methods)
  std::string bluetooth_bus;  // --bluetooth-bus: D-Bus address instead of the system bus
  double bluetooth_agent_timeout_s = 30;  // --bluetooth-agent-timeout
};

// Parses argv (and the --config file). Returns the configuration, or the
// exit code to leave with: 0 after --help / --version, 2 on a usage error
// (the message was printed on stderr).
std::variant<DaemonCli, int> parse_cli(int argc, const char* const* argv);

// Pieces, exposed for tests.
// Qubes rules: [A-Za-z][A-Za-z0-9_.-]{0,30}.
bool is_valid_qube_name(std::string_view name);
// "NAME=DOMID", domid 1..32767.
Result<QubeConfig> parse_qube_spec(std::string_view spec);
// "NAME=PERCENT", 0..150.
Result<std::pair<std::string, uint32_t>> parse_volume_spec(std::string_view spec);
// Reads a config file into `cli` (values the command line did not set).
Result<void> load_config_file(const std::string& path, DaemonCli& cli);
// Checks the merged configuration: unique names and domids, volumes and
// labels naming configured qubes.
Result<void> validate(const DaemonCli& cli);

}  // namespace qaudio::daemon
