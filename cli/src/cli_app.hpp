// qvm-audio's command line: parsing (CLI11) and execution against the
// control API. Exit codes: 0 ok, 1 refused or failed (stderr says what and
// why; also when the daemon cannot be reached), 2 usage.
//
//   qvm-audio list [--json]
//   qvm-audio volume work +5
//   qvm-audio --audiovm sys-audio mic attach work --persistent
//   qvm-audio policy check work qaudio.Mic
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace qaudio::cli {

// "80" -> set 80; "+5" / "-5" -> change by 5. nullopt when malformed.
struct VolumeArg {
  bool relative = false;
  int value = 0;
};
std::optional<VolumeArg> parse_volume_arg(const std::string& s);

// "mic"/"play" or the full service name -> "qaudio.Mic" / "qaudio.Play".
std::string policy_service_name(const std::string& s);

// Runs qvm-audio with `args` (without the program name).
int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace qaudio::cli
