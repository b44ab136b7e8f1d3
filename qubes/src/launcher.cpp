// qubes-audio-launcher pieces (launcher.hpp): command line, pidfile, keys.
#include "launcher.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace qaudio::qubes {

namespace {

bool valid_name(const std::string& n) {
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  if (n.empty() || n.size() > 31 || !alpha(n[0])) {
    return false;
  }
  for (char c : n) {
    if (!(alpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

std::optional<uint64_t> number(const std::string& s, uint64_t max) {
  if (s.empty() || s.size() > 10) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) {
    return std::nullopt;
  }
  return v;
}

LauncherExit usage_error(const std::string& what) {
  return LauncherExit{2, "pacat-simple-vchan: " + what + "\n" + launcher_usage()};
}

}  // namespace

std::string launcher_usage() {
  return "usage: pacat-simple-vchan [-l] [-n|-b] [-v] [-t tlength] [-V 0..150|mute] domid "
         "domname\n"
         "  attaches qube DOMNAME (Xen domain DOMID) to the running qubes-audiovm-daemon and\n"
         "  stays alive while it is attached; -V sets its initial volume (percent) or mutes it,\n"
         "  -v logs more; -l, -n, -b and -t are accepted for compatibility.\n";
}

std::variant<LauncherCli, LauncherExit> parse_launcher_cli(const std::vector<std::string>& args) {
  LauncherCli c;
  std::vector<std::string> pos;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (only_positional || a.size() < 2 || a[0] != '-') {
      pos.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positional = true;
      continue;
    }
    if (a == "-h" || a == "--help") {
      return LauncherExit{0, launcher_usage()};
    }
    // Clustered short options, getopt style: -lv, -t4096, -V 80.
    for (size_t j = 1; j < a.size(); ++j) {
      char o = a[j];
      if (o == 'l') {
        c.low_latency_flag = true;
      } else if (o == 'n') {
        c.n_flag = true;
      } else if (o == 'b') {
        c.b_flag = true;
      } else if (o == 'v') {
        c.verbose = true;
      } else if (o == 't' || o == 'V') {
        std::string val;
        if (j + 1 < a.size()) {
          val = a.substr(j + 1);
        } else if (i + 1 < args.size()) {
          val = args[++i];
        } else {
          return usage_error(std::string("option -") + o + " needs a value");
        }
        if (o == 't') {
          auto v = number(val, 16u * 1024 * 1024);
          if (!v || *v == 0) {
            return usage_error("-t " + val + ": tlength must be a byte count 1..16777216");
          }
          c.tlength = static_cast<uint32_t>(*v);
        } else if (val == "mute") {
          c.muted = true;
        } else {
          auto v = number(val, 150);
          if (!v) {
            return usage_error("-V " + val + ": volume must be 0..150 (percent) or mute");
          }
          c.volume = static_cast<uint32_t>(*v);
        }
        break;
      } else {
        return usage_error(std::string("unknown option -") + o);
      }
    }
  }
  if (c.n_flag && c.b_flag) {
    return usage_error("-n and -b exclude each other");
  }
  if (pos.size() != 2) {
    return usage_error("expected exactly two arguments, domid and domname");
  }
  auto d = number(pos[0], 32767);
  if (!d || *d == 0) {
    return usage_error("domid '" + pos[0] + "' must be a number 1..32767");
  }
  c.domid = static_cast<uint32_t>(*d);
  if (!valid_name(pos[1])) {
    return usage_error("domname '" + pos[1] +
                       "' is not a qube name (a letter, then up to 30 of A-Z a-z 0-9 _ . -)");
  }
  c.domname = pos[1];
  return c;
}

LauncherEnv launcher_env_from(const char* const* envp) {
  LauncherEnv e;
  bool control_set = false;
  for (; envp != nullptr && *envp != nullptr; ++envp) {
    std::string kv = *envp;
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      continue;
    }
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (k == "QAUDIO_PIDFILE_DIR" && !v.empty()) {
      e.pidfile_dir = v;
    } else if (k == "QAUDIO_CONTROL" && !v.empty()) {
      e.control = v;
      control_set = true;
    } else if (k == "XDG_RUNTIME_DIR" && !v.empty() && v[0] == '/' && !control_set) {
      e.control = v + "/qaudio/control";  // where the daemon's user unit listens
    } else if (k == "QAUDIO_QUBESDB" && !v.empty()) {
      e.qubesdb = v;
    } else if (k == "QAUDIO_DAEMON_START") {
      e.daemon_start = v;
    }
  }
  return e;
}

std::string pidfile_path(const std::string& dir, uint32_t domid) {
  return dir + "/pacat." + std::to_string(domid);
}

std::optional<pid_t> running_pid(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) {
    return std::nullopt;
  }
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
    return std::nullopt;
  }
  return static_cast<pid_t>(pid);
}

Result<void> write_pidfile(const std::string& path) {
  if (auto other = running_pid(path); other && *other != ::getpid()) {
    return fail("pidfile " + path + " names a running process (pid " + std::to_string(*other) +
                "): a launcher already serves this qube; stop it first");
  }
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << ::getpid() << "\n";
    if (!out.flush()) {
      return fail("cannot write the pidfile " + tmp +
                  " (does the directory exist and is it writable? QAUDIO_PIDFILE_DIR)");
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return fail_errno("cannot create the pidfile " + path, e);
  }
  return {};
}

void remove_pidfile(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if ((in >> pid) && pid == ::getpid()) {
    ::unlink(path.c_str());
  }
}

std::string mic_config_key(const std::string& vm) {
  return "/audio-input-config/" + vm;
}
std::string mic_state_key(const std::string& vm) {
  return "/audio-input/" + vm;
}
std::string mic_request_key(const std::string& vm) {
  return "/audio-input-request/" + vm;
}

std::optional<bool> parse_mic_authorisation(const std::optional<std::string>& value) {
  if (!value) {
    return false;
  }
  std::string v = *value;
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) {
    v.pop_back();
  }
  if (v == "1") {
    return true;
  }
  if (v == "0" || v.empty()) {
    return false;
  }
  return std::nullopt;
}

}  // namespace qaudio::qubes
