// qubes-audio-launcher: started by qvm-start-daemon in place of stock Qubes'
// pacat-simple-vchan (same command line, same pidfile), one per qube.
//
//   pacat-simple-vchan [-l] [-n|-b] [-v] [-t tlength] [-V 0..150|mute] domid domname
//
// It writes /var/run/qubes/pacat.<domid>, attaches the qube to the running
// qubes-audiovm-daemon through the control API (attach_qube; starting the
// daemon first if its socket does not answer), and stays alive while the qube
// is attached: it follows a daemon restart (re-attaches), exits 0 when
// someone detaches the qube, and on SIGTERM/SIGINT/SIGHUP detaches the qube
// and removes the pidfile (so the next qvm-start-daemon is not skipped).
// QubesDB: follows /audio-input-config/<vm> ("1" attach the mic, "0"
// detach: dom0's authorisation is the user's attach) and writes
// /audio-input/<vm> (actual state) and /audio-input-request/<vm> ("1" when
// the qube asked to record without being attached).
// Environment: launcher.hpp (QAUDIO_PIDFILE_DIR, QAUDIO_CONTROL,
// QAUDIO_QUBESDB, QAUDIO_DAEMON_START).
// Exit codes: 0 stopped or detached, 1 cannot attach, 2 bad command line.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "control_client.hpp"
#include "launcher.hpp"
#include "qaudio/log.hpp"
#include "qubesdb.hpp"

extern char** environ;

namespace qaudio::qubes {
namespace {

using namespace std::chrono_literals;
using cli::ControlClient;
using cli::json;

class Launcher {
 public:
  Launcher(LauncherCli c, LauncherEnv e, int sigfd)
      : cli_(std::move(c)), env_(std::move(e)), sigfd_(sigfd) {}

  int run() {
    pidfile_ = pidfile_path(env_.pidfile_dir, cli_.domid);
    if (auto r = write_pidfile(pidfile_); !r) {
      log_error("%s", r.error().message.c_str());
      return 1;
    }
    int code = run_attached();
    remove_pidfile(pidfile_);
    return code;
  }

 private:
  const std::string& vm() const { return cli_.domname; }

  void open_db() {
    if (env_.qubesdb == "none") {
      return;
    }
    auto db = open_qubesdb(env_.qubesdb);
    if (!db) {
      log_warn("%s: microphone authorisation from dom0 is not followed",
               db.error().message.c_str());
      return;
    }
    db_ = std::move(*db);
    if (auto r = db_->watch(mic_config_key(vm())); !r) {
      log_warn("%s", r.error().message.c_str());
    }
    db_write(mic_state_key(vm()), "0");
    db_write(mic_request_key(vm()), "0");
    log_debug("QubesDB: %s", db_->describe().c_str());
  }
  void db_write(const std::string& key, const std::string& v) {
    if (db_) {
      if (auto r = db_->write(key, v); !r) {
        log_warn("%s", r.error().message.c_str());
      }
    }
  }

  // True when a stop signal arrived (consumed).
  bool signalled(int timeout_ms) {
    pollfd p{sigfd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) > 0) {
      signalfd_siginfo si;
      if (::read(sigfd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        log_info("signal %u: detaching %s", si.ssi_signo, vm().c_str());
        return true;
      }
    }
    return false;
  }

  // Connects and attaches, retrying while the daemon is away. Returns 0
  // when attached, 1 when the daemon refused, -1 on a stop signal.
  int connect_and_attach(std::chrono::milliseconds patience) {
    auto deadline = std::chrono::steady_clock::now() + patience;
    bool tried_start = false;
    for (;;) {
      auto c = ControlClient::connect_unix(env_.control);
      if (c) {
        auto ev = ControlClient::connect_unix(env_.control);
        // Subscribe first, so no event about the qube is missed.
        auto s = ev ? (*ev)->call("subscribe") : Result<json>(fail(ev.error()));
        if (ev && s && !s->contains("error")) {
          json params{{"qube", vm()}, {"domid", cli_.domid}};
          if (cli_.volume) {
            params["volume"] = *cli_.volume;
          }
          if (cli_.muted) {
            params["muted"] = true;
          }
          auto r = (*c)->call("attach_qube", params);
          if (r && r->contains("error")) {
            log_error("the audio daemon refused to attach %s (domid %u): %s", vm().c_str(),
                      cli_.domid, (*r)["error"].value("message", std::string("?")).c_str());
            return 1;
          }
          if (r) {
            ctl_ = std::move(*c);
            events_ = std::move(*ev);
            log_info("%s (domid %u) attached to the audio daemon at %s", vm().c_str(), cli_.domid,
                     env_.control.c_str());
            return 0;
          }
        }
      }
      if (!tried_start && !env_.daemon_start.empty()) {
        tried_start = true;
        log_info("the audio daemon does not answer at %s: starting it (%s)", env_.control.c_str(),
                 env_.daemon_start.c_str());
        int rc = std::system(env_.daemon_start.c_str());
        if (rc != 0) {
          log_warn("'%s' exited with status %d", env_.daemon_start.c_str(), rc);
        }
      }
      if (patience.count() >= 0 && std::chrono::steady_clock::now() >= deadline) {
        log_error("cannot reach the audio daemon at %s (%s); is qubes-audiovm-daemon running?",
                  env_.control.c_str(), c ? "subscribe failed" : c.error().message.c_str());
        return 1;
      }
      if (signalled(200)) {
        return -1;
      }
    }
  }

  // Reads /audio-input-config/<vm> and attaches or detaches the mic.
  void apply_authorisation(bool only_if_present) {
    if (!db_ || !ctl_) {
      return;
    }
    auto raw = db_->read(mic_config_key(vm()));
    if (!raw && only_if_present) {
      return;
    }
    auto want = parse_mic_authorisation(raw);
    if (!want) {
      log_warn("%s: ignoring value '%s' (expected 1 or 0)", mic_config_key(vm()).c_str(),
               raw->substr(0, 16).c_str());
      return;
    }
    json p{{"qube", vm()}};
    if (*want) {
      p["confirm"] = true;
    }
    auto r = ctl_->call(*want ? "mic_attach" : "mic_detach", p);
    if (!r) {
      log_warn("microphone %s for %s: %s", *want ? "attach" : "detach", vm().c_str(),
               r.error().message.c_str());
      return;
    }
    if (r->contains("error")) {
      log_warn("microphone %s for %s refused: %s", *want ? "attach" : "detach", vm().c_str(),
               (*r)["error"].value("message", std::string("?")).c_str());
      db_write(mic_state_key(vm()), "0");
      return;
    }
    db_write(mic_state_key(vm()), *want ? "1" : "0");
    if (*want) {
      db_write(mic_request_key(vm()), "0");
    }
  }

  void on_event(const json& m) {
    auto ev = m.find("event");
    auto data = m.find("data");
    if (ev == m.end() || !ev->is_string() || data == m.end() || !data->is_object() ||
        data->value("qube", std::string()) != vm()) {
      return;
    }
    const std::string type = ev->get<std::string>();
    if (type == "mic_requested") {
      log_info("%s asked to record; dom0 authorises with %s = 1", vm().c_str(),
               mic_config_key(vm()).c_str());
      db_write(mic_request_key(vm()), "1");
    } else if (type == "mic_attached") {
      db_write(mic_state_key(vm()), "1");
      db_write(mic_request_key(vm()), "0");
    } else if (type == "mic_detached") {
      db_write(mic_state_key(vm()), "0");
    }
  }

  // The periodic check also syncs the keys from the daemon's state, so an
  // event lost in a reconnect is repaired within a second.
  void sync_mic_keys(const json& reply) {
    const json* q = nullptr;
    if (auto res = reply.find("result"); res != reply.end() && res->contains("qubes")) {
      for (const auto& e : (*res)["qubes"]) {
        if (e.value("name", std::string()) == vm()) {
          q = &e;
        }
      }
    }
    if (q == nullptr || !q->contains("mic") || !(*q)["mic"].is_object()) {
      return;
    }
    const json& mic = (*q)["mic"];
    bool attached = mic.value("attached", false);
    bool requested = mic.value("requested", false);
    if (attached != last_attached_ || requested != last_requested_) {
      db_write(mic_state_key(vm()), attached ? "1" : "0");
      db_write(mic_request_key(vm()), requested && !attached ? "1" : "0");
      last_attached_ = attached;
      last_requested_ = requested;
    }
  }

  // Detach on the way out (best effort: the daemon may be gone).
  void detach() {
    if (ctl_) {
      auto r = ctl_->call("detach_qube", {{"qube", vm()}}, 2000ms);
      if (!r) {
        log_warn("detach %s: %s", vm().c_str(), r.error().message.c_str());
      }
    }
    db_write(mic_state_key(vm()), "0");
  }

  int run_attached() {
    open_db();
    int rc = connect_and_attach(10s);
    if (rc != 0) {
      return rc < 0 ? 0 : rc;
    }
    apply_authorisation(true);
    auto next_check = std::chrono::steady_clock::now() + 1s;
    for (;;) {
      std::vector<pollfd> fds{{sigfd_, POLLIN, 0}, {events_->read_fd(), POLLIN, 0}};
      if (db_) {
        fds.push_back({db_->fd(), POLLIN, 0});
      }
      int timeout = events_->line_buffered() ? 0 : 250;
      ::poll(fds.data(), fds.size(), timeout);
      if (fds[0].revents & POLLIN) {
        if (signalled(0)) {
          detach();
          return 0;
        }
      }
      if (fds.size() > 2 && (fds[2].revents & POLLIN)) {
        bool mine = false;
        for (const auto& k : db_->take_changes()) {
          mine = mine || k == mic_config_key(vm());
        }
        if (mine) {
          apply_authorisation(false);
        }
      }
      bool lost = false;
      if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) || events_->line_buffered()) {
        auto m = events_->read_message(100ms);
        if (!m) {
          lost = true;
        } else {
          on_event(*m);
          while (events_->line_buffered()) {
            if (auto more = events_->read_message(0ms)) {
              on_event(*more);
            }
          }
        }
      }
      if (!lost && std::chrono::steady_clock::now() >= next_check) {
        next_check = std::chrono::steady_clock::now() + 1s;
        auto r = ctl_->call("list", {{"qube", vm()}}, 5000ms);
        if (!r) {
          lost = true;
        } else if (r->contains("error")) {
          log_info("%s was detached from the audio daemon: exiting", vm().c_str());
          db_write(mic_state_key(vm()), "0");
          return 0;
        } else {
          sync_mic_keys(*r);
        }
      }
      if (lost) {
        log_warn("lost the audio daemon at %s: re-attaching %s when it is back",
                 env_.control.c_str(), vm().c_str());
        ctl_.reset();
        events_.reset();
        db_write(mic_state_key(vm()), "0");
        last_attached_ = last_requested_ = false;
        rc = connect_and_attach(std::chrono::milliseconds(-1));
        if (rc != 0) {
          return rc < 0 ? 0 : rc;
        }
        apply_authorisation(true);
      }
    }
  }

  LauncherCli cli_;
  LauncherEnv env_;
  int sigfd_;
  std::string pidfile_;
  std::unique_ptr<QubesDb> db_;
  std::unique_ptr<ControlClient> ctl_;
  std::unique_ptr<ControlClient> events_;
  bool last_attached_ = false;
  bool last_requested_ = false;
};

}  // namespace
}  // namespace qaudio::qubes

int main(int argc, char** argv) {
  using namespace qaudio;
  using namespace qaudio::qubes;
  set_log_tag("pacat-simple-vchan");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  int sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) {
    std::perror("pacat-simple-vchan: signalfd");
    return 1;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = parse_launcher_cli(args);
  if (auto* e = std::get_if<LauncherExit>(&parsed)) {
    std::fputs(e->message.c_str(), e->code == 0 ? stdout : stderr);
    return e->code;
  }
  LauncherCli& c = std::get<LauncherCli>(parsed);
  if (c.verbose) {
    set_log_level(LogLevel::Debug);
  }
  if (c.tlength) {
    log_debug("-t %u accepted: the daemon sizes its own buffers", *c.tlength);
  }
  Launcher l(c, launcher_env_from(environ), sigfd);
  int rc = l.run();
  ::close(sigfd);
  return rc;
}
