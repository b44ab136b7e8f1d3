// The qubes-audiovm-daemon binary: options and exit codes, signals
// (SIGTERM/SIGINT clean stop, SIGUSR1 counters in the log), and per-qube
// state surviving a daemon restart (in-process and through the binary).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "e2e_support.hpp"

namespace qaudio::e2e {
namespace {

using test::Child;
using test::run_command;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DaemonProcess, help_documents_every_option_and_bad_options_exit_2) {
  auto help = run_command({QAUDIO_DAEMON_BIN, "--help"}, {});
  EXPECT_EQ(help.status, 0);
  for (const char* opt : {"--channel", "--qube", "--audio-domid", "--config", "--backend", "--rate",
                          "--period-ms", "--buffer-ms", "--state-dir", "--volume", "--duration",
                          "--print-counters", "--stock-only", "--verbose", "--version"}) {
    EXPECT_NE(help.out.find(opt), std::string::npos) << opt;
  }
  EXPECT_EQ(run_command({QAUDIO_DAEMON_BIN, "--version"}, {}).status, 0);
  EXPECT_EQ(run_command({QAUDIO_DAEMON_BIN, "--qube", "work"}, {}).status, 2);
  EXPECT_EQ(run_command({QAUDIO_DAEMON_BIN, "--frobnicate"}, {}).status, 2);
  EXPECT_EQ(run_command({QAUDIO_DAEMON_BIN, "--backend", "nosuch", "--qube", "a=1"}, {}).status, 1);
}

TEST(DaemonProcess, sigusr1_logs_counters_and_sigterm_stops_cleanly) {
  test::TempDir dir("daemon-proc");
  std::string log = dir.path() + "/daemon.log";
  auto agent = Child::spawn(
      {QAUDIO_FAKE_AGENT_BIN, "--channel", "unix:" + dir.path(), "--domid", "4", "--name", "work"},
      {}, dir.path() + "/agent.log");
  ASSERT_TRUE(agent.has_value());
  auto d = Child::spawn({QAUDIO_DAEMON_BIN, "--channel", "unix:" + dir.path(), "--qube", "work=4",
                         "--backend", "null", "--print-counters"},
                        {}, log);
  ASSERT_TRUE(d.has_value());
  ASSERT_TRUE(test::wait_until(
      [&] { return slurp(log).find("work: connected") != std::string::npos; }, 10s));
  kill(d->pid(), SIGUSR1);
  ASSERT_TRUE(test::wait_until(
      [&] { return slurp(log).find("work: state=running protocol=stock") != std::string::npos; },
      10s))
      << slurp(log);
  EXPECT_TRUE(d->running());  // SIGUSR1 does not stop it
  kill(d->pid(), SIGTERM);
  auto st = d->wait_exit(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << *st;
  EXPECT_NE(slurp(log).find("stopped"), std::string::npos);
}

TEST(DaemonProcess, volume_and_mute_survive_a_daemon_restart_in_process) {
  DaemonHarness h("unix", "null", {{"work", 1, 70}, {"personal", 2, 50}},
                  [](daemon::DaemonOptions& o) { o.state_dir = ""; });
  h.options().state_dir = h.dir() + "/state";
  ASSERT_TRUE(h.start());
  EXPECT_EQ(h.info("work").volume_percent, 70u);  // initial volume, nothing saved yet
  ASSERT_TRUE(h.daemon().set_volume("work", 120).has_value());
  ASSERT_TRUE(h.daemon().set_mute("personal", true).has_value());
  EXPECT_FALSE(h.daemon().set_volume("work", 151).has_value());
  EXPECT_FALSE(h.daemon().set_volume("nobody", 10).has_value());
  h.stop();

  ASSERT_TRUE(h.start());                          // a new Daemon on the same state dir
  EXPECT_EQ(h.info("work").volume_percent, 120u);  // saved state wins over --volume
  EXPECT_TRUE(h.info("personal").muted);
  EXPECT_EQ(h.info("personal").volume_percent, 50u);
  EXPECT_FALSE(h.info("work").mic_attached);  // never restored by a restart
}

TEST(DaemonProcess, state_is_restored_when_the_binary_restarts) {
  test::TempDir dir("daemon-proc");
  std::string state = dir.path() + "/state";
  // A state file as the daemon writes it (StateStore), then the binary reads it.
  DaemonHarness h("unix", "null", {{"work", 4}});
  h.options().state_dir = state;
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.daemon().set_volume("work", 30).has_value());
  h.stop();
  auto r = run_command(
      {QAUDIO_DAEMON_BIN, "--channel", "unix:" + dir.path(), "--qube", "work=4", "--volume",
       "work=90", "--backend", "null", "--state-dir", state, "--duration", "0.3"},
      {});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("work: state=waiting"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("volume=30"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace qaudio::e2e
