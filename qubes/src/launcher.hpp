// qubes-audio-launcher: the drop-in for stock Qubes' `pacat-simple-vchan`
// that `qvm-start-daemon` starts once per qube (docs/qubes.md). Pieces here
// (command line, pidfile, the QubesDB microphone keys) so tests can reach
// them; the loop is in launcher_main.cpp.
//
//   pacat-simple-vchan [-l] [-n|-b] [-v] [-t tlength] [-V 0..150|mute] domid domname
//
//   auto r = parse_launcher_cli(argc, argv);   // LauncherCli, or an exit code
//   auto p = write_pidfile(pidfile_path(dir, 5));
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "qaudio/result.hpp"

namespace qaudio::qubes {

struct LauncherCli {
  uint32_t domid = 0;
  std::string domname;
  bool verbose = false;                 // -v
  std::optional<uint32_t> volume;       // -V 0..150 (percent)
  bool muted = false;                   // -V mute
  std::optional<uint32_t> tlength;      // -t (bytes; accepted, the daemon sizes its buffers)
  bool low_latency_flag = false;        // -l (accepted, no effect)
  bool n_flag = false, b_flag = false;  // -n / -b (accepted, no effect)
};

// Exit code 2 on a usage error (message in `error`), 0 for --help.
struct LauncherExit {
  int code = 2;
  std::string message;
};

std::variant<LauncherCli, LauncherExit> parse_launcher_cli(const std::vector<std::string>& args);
std::string launcher_usage();

// The environment the launcher reads (tests set these; defaults are stock):
//   QAUDIO_PIDFILE_DIR  pidfile directory        (/var/run/qubes)
//   QAUDIO_CONTROL      the daemon's control socket ($XDG_RUNTIME_DIR/qaudio/control,
//                       else /run/qaudio/control: the daemon's own default)
//   QAUDIO_QUBESDB      qubesdb | file:DIR | none  (qubesdb; unavailable -> warned, none)
//   QAUDIO_DAEMON_START shell command that starts the daemon when its socket
//                       does not answer ("systemctl --user start qubes-audiovm-daemon.service";
//                       empty: do not start it)
struct LauncherEnv {
  std::string pidfile_dir = "/var/run/qubes";
  std::string control = "/run/qaudio/control";
  std::string qubesdb = "qubesdb";
  std::string daemon_start = "systemctl --user start qubes-audiovm-daemon.service";
};
LauncherEnv launcher_env_from(const char* const* envp);

std::string pidfile_path(const std::string& dir, uint32_t domid);
// The pid in a pidfile, if it names a running process.
std::optional<pid_t> running_pid(const std::string& path);
// Writes our pid (atomically). Refuses when another live process owns it.
Result<void> write_pidfile(const std::string& path);
// Removes the pidfile if it still holds our pid.
void remove_pidfile(const std::string& path);

// QubesDB keys of the microphone, stock names.
std::string mic_config_key(const std::string& vm);   // /audio-input-config/<vm> (dom0 writes)
std::string mic_state_key(const std::string& vm);    // /audio-input/<vm>
std::string mic_request_key(const std::string& vm);  // /audio-input-request/<vm>
// "1" -> true, "0" or missing -> false; anything else -> nullopt (ignored).
std::optional<bool> parse_mic_authorisation(const std::optional<std::string>& value);

}  // namespace qaudio::qubes
