// The pacat-simple-vchan drop-in (qubes-audio-launcher): the stock command
// line, the pidfile /var/run/qubes/pacat.<domid> (a test directory here),
// SIGTERM, attaching a qube to a running qubes-audiovm-daemon that a
// stock-protocol qube then reaches, and the QubesDB microphone keys (a file
// QubesDB that the test writes as dom0 would).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include "control_client.hpp"
#include "e2e_support.hpp"
#include "launcher.hpp"
#include "qubesdb.hpp"

namespace qaudio::e2e {
namespace {

using qubes::LauncherCli;
using qubes::LauncherExit;
using qubes::parse_launcher_cli;
using test::Child;
using test::run_command;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// ------------------------------------------------------- command line ----

LauncherCli ok(std::vector<std::string> a) {
  auto r = parse_launcher_cli(a);
  EXPECT_TRUE(std::holds_alternative<LauncherCli>(r))
      << (std::holds_alternative<LauncherExit>(r) ? std::get<LauncherExit>(r).message : "");
  return std::holds_alternative<LauncherCli>(r) ? std::get<LauncherCli>(r) : LauncherCli{};
}
int bad(std::vector<std::string> a) {
  auto r = parse_launcher_cli(a);
  return std::holds_alternative<LauncherExit>(r) ? std::get<LauncherExit>(r).code : -1;
}

TEST(LauncherCli, accepts_every_stock_form) {
  auto c = ok({"-l", "-v", "-t", "4096", "-V", "80", "5", "work"});
  EXPECT_EQ(c.domid, 5u);
  EXPECT_EQ(c.domname, "work");
  EXPECT_TRUE(c.verbose);
  EXPECT_TRUE(c.low_latency_flag);
  EXPECT_EQ(c.tlength, 4096u);
  EXPECT_EQ(c.volume, 80u);
  EXPECT_FALSE(c.muted);

  c = ok({"-n", "-V", "mute", "12", "sys-usb.x_1"});
  EXPECT_TRUE(c.muted);
  EXPECT_TRUE(c.n_flag);
  EXPECT_FALSE(c.volume.has_value());
  c = ok({"-b", "-V0", "-t128", "32767", "personal"});  // getopt's attached values
  EXPECT_EQ(c.volume, 0u);
  EXPECT_EQ(c.tlength, 128u);
  c = ok({"-lv", "7", "work"});  // clustered flags
  EXPECT_TRUE(c.low_latency_flag && c.verbose);
  c = ok({"3", "work"});
  EXPECT_FALSE(c.volume || c.muted || c.verbose);
  EXPECT_EQ(bad({"-h"}), 0);
}

TEST(LauncherCli, bad_command_lines_exit_2_with_a_reason) {
  EXPECT_EQ(bad({}), 2);
  EXPECT_EQ(bad({"5"}), 2);
  EXPECT_EQ(bad({"5", "work", "extra"}), 2);
  EXPECT_EQ(bad({"-n", "-b", "5", "work"}), 2);
  EXPECT_EQ(bad({"-V", "151", "5", "work"}), 2);
  EXPECT_EQ(bad({"-V", "loud", "5", "work"}), 2);
  EXPECT_EQ(bad({"-V"}), 2);
  EXPECT_EQ(bad({"-t", "0", "5", "work"}), 2);
  EXPECT_EQ(bad({"-x", "5", "work"}), 2);
  EXPECT_EQ(bad({"0", "work"}), 2);
  EXPECT_EQ(bad({"32768", "work"}), 2);
  EXPECT_EQ(bad({"5x", "work"}), 2);
  EXPECT_EQ(bad({"5", "1work"}), 2);
  EXPECT_EQ(bad({"5", "work/../x"}), 2);
  EXPECT_EQ(bad({"5", std::string(32, 'a')}), 2);
  auto r = parse_launcher_cli({"-V", "200", "5", "work"});
  EXPECT_NE(std::get<LauncherExit>(r).message.find("0..150"), std::string::npos);

  // The binary: usage on stderr, exit 2, nothing written.
  test::TempDir dir("launcher-cli");
  auto res = run_command({QAUDIO_LAUNCHER_BIN, "-V", "200", "5", "work"},
                         {{"QAUDIO_PIDFILE_DIR", dir.path()}});
  EXPECT_EQ(res.status, 2);
  EXPECT_FALSE(exists(dir.path() + "/pacat.5"));
  EXPECT_EQ(run_command({QAUDIO_LAUNCHER_BIN, "--help"}, {}).status, 0);
}

// ------------------------------------------------------------ pidfile ----

TEST(LauncherPidfile, holds_our_pid_refuses_a_live_owner_and_replaces_a_stale_one) {
  test::TempDir dir("launcher-pid");
  std::string p = qubes::pidfile_path(dir.path(), 9);
  EXPECT_EQ(p, dir.path() + "/pacat.9");
  ASSERT_TRUE(qubes::write_pidfile(p).has_value());
  EXPECT_EQ(slurp(p), std::to_string(::getpid()) + "\n");
  EXPECT_EQ(qubes::running_pid(p), ::getpid());
  ASSERT_TRUE(qubes::write_pidfile(p).has_value());  // ours again: fine

  // A live other process (pid 1 always runs) owns it: refused, file kept.
  { std::ofstream(p) << "1\n"; }
  auto r = qubes::write_pidfile(p);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("already serves"), std::string::npos);
  qubes::remove_pidfile(p);  // not ours: left alone
  EXPECT_EQ(slurp(p), "1\n");

  // A stale pid (a reaped child) is replaced.
  pid_t child = fork();
  if (child == 0) {
    _exit(0);
  }
  ::waitpid(child, nullptr, 0);
  { std::ofstream(p) << child << "\n"; }
  EXPECT_FALSE(qubes::running_pid(p).has_value());
  ASSERT_TRUE(qubes::write_pidfile(p).has_value());
  qubes::remove_pidfile(p);
  EXPECT_FALSE(exists(p));
}

// ------------------------------------------------------------- QubesDB ----

TEST(QubesDbInterface, keys_are_checked_and_watches_fire_for_memory_and_files) {
  EXPECT_TRUE(qubes::is_valid_qubesdb_key("/audio-input-config/work"));
  for (const char* k : {"", "/", "audio", "/a/", "/a//b", "/a/../b", "/a b", "/a\n"}) {
    EXPECT_FALSE(qubes::is_valid_qubesdb_key(k)) << k;
  }
  test::TempDir dir("qdb");
  auto file = qubes::open_qubesdb("file:" + dir.path() + "/db");
  ASSERT_TRUE(file.has_value()) << file.error().message;
  std::vector<std::unique_ptr<qubes::QubesDb>> dbs;
  dbs.push_back(qubes::make_memory_qubesdb());
  dbs.push_back(std::move(*file));
  for (auto& db : dbs) {
    SCOPED_TRACE(db->describe());
    EXPECT_FALSE(db->read("/audio-input-config/work").has_value());
    ASSERT_TRUE(db->watch("/audio-input-config/work").has_value());
    EXPECT_FALSE(db->watch("/bad//key").has_value());
    EXPECT_FALSE(db->write("/x/../y", "1").has_value());
    ASSERT_TRUE(db->write("/audio-input-config/work", "1").has_value());
    ASSERT_TRUE(db->write("/audio-input-config/other", "1").has_value());
    EXPECT_EQ(db->read("/audio-input-config/work"), "1");
    pollfd p{db->fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    auto ch = db->take_changes();
    EXPECT_NE(std::find(ch.begin(), ch.end(), "/audio-input-config/work"), ch.end());
    EXPECT_EQ(std::find(ch.begin(), ch.end(), "/audio-input-config/other"), ch.end());
  }
  EXPECT_FALSE(qubes::open_qubesdb("nonsense").has_value());
  EXPECT_EQ(qubes::parse_mic_authorisation(std::string("1")), true);
  EXPECT_EQ(qubes::parse_mic_authorisation(std::string("0\n")), false);
  EXPECT_EQ(qubes::parse_mic_authorisation(std::nullopt), false);
  EXPECT_FALSE(qubes::parse_mic_authorisation(std::string("yes")).has_value());
}

// --------------------------------------------------- with the daemon ----

// A qubes-audiovm-daemon with no configured qubes and a control socket, a
// stock qube peer served on the unix channel, and a file QubesDB.
class LauncherProcess : public ::testing::Test {
 protected:
  LauncherProcess() : dir_("launcher") {
    auto t = make_transport("unix:" + dir_.path());
    EXPECT_TRUE(t.has_value());
    transport_ = std::move(*t);
    control_ = dir_.path() + "/control";
    piddir_ = dir_.path() + "/run";
    ::mkdir(piddir_.c_str(), 0755);
    qdb_dir_ = dir_.path() + "/qubesdb";
  }

  void start_daemon(const std::string& backend = "null") {
    daemon_ = Child::spawn({QAUDIO_DAEMON_BIN, "--channel", "unix:" + dir_.path(), "--backend",
                            backend, "--control", control_},
                           {}, dir_.path() + "/daemon.log");
    ASSERT_TRUE(daemon_.has_value());
    ASSERT_TRUE(test::wait_until([&] { return exists(control_); }, 20s)) << daemon_log();
  }
  std::optional<Child> launch(std::vector<std::string> args, const std::string& tag = "l") {
    args.insert(args.begin(), QAUDIO_LAUNCHER_BIN);
    return Child::spawn(args,
                        {{"QAUDIO_PIDFILE_DIR", piddir_},
                         {"QAUDIO_CONTROL", control_},
                         {"QAUDIO_QUBESDB", "file:" + qdb_dir_},
                         {"QAUDIO_DAEMON_START", ""}},
                        dir_.path() + "/launcher-" + tag + ".log");
  }
  // The daemon's view of `qube` through the control API (null: not attached).
  cli::json qube(const std::string& name) {
    auto c = cli::ControlClient::connect_unix(control_);
    if (!c) {
      return nullptr;
    }
    auto r = (*c)->call("list");
    if (!r || !r->contains("result")) {
      return nullptr;
    }
    for (const auto& q : (*r)["result"]["qubes"]) {
      if (q.value("name", "") == name) {
        return q;
      }
    }
    return nullptr;
  }
  std::string pidfile(uint32_t domid) { return qubes::pidfile_path(piddir_, domid); }
  std::string qdb(const std::string& key) { return slurp(qdb_dir_ + key); }
  void qdb_set(const std::string& key, const std::string& v) {
    auto db = qubes::open_file_qubesdb(qdb_dir_);
    ASSERT_TRUE(db.has_value());
    ASSERT_TRUE((*db)->write(key, v).has_value());
  }
  std::string daemon_log() { return slurp(dir_.path() + "/daemon.log"); }
  std::string launcher_log(const std::string& tag = "l") {
    return slurp(dir_.path() + "/launcher-" + tag + ".log");
  }

  test::TempDir dir_;
  std::unique_ptr<Transport> transport_;
  std::string control_, piddir_, qdb_dir_;
  std::optional<Child> daemon_;
};

TEST_F(LauncherProcess, attaches_the_qube_writes_the_pidfile_and_sigterm_detaches_and_removes_it) {
  start_daemon();
  QubePeer q(*transport_, 5);  // the stock agent in qube "work", domid 5
  ASSERT_TRUE(q.serve());
  auto l = launch({"-l", "-v", "-t", "8820", "-V", "40", "5", "work"});
  ASSERT_TRUE(l.has_value());
  ASSERT_TRUE(test::wait_until([&] { return qubes::running_pid(pidfile(5)) == l->pid(); }, 10s))
      << launcher_log();
  EXPECT_EQ(slurp(pidfile(5)), std::to_string(l->pid()) + "\n");
  // The daemon connects to the qube's ports: a running stock session at 40 %.
  cli::json w;
  ASSERT_TRUE(test::wait_until(
      [&] {
        q.poll();
        w = qube("work");
        return !w.is_null() && w.value("state", "") == "running" && q.open();
      },
      20s))
      << launcher_log() << daemon_log();
  EXPECT_EQ(w.value("domid", 0u), 5u);
  EXPECT_EQ(w.value("volume", 0u), 40u);
  EXPECT_EQ(w.value("protocol", ""), "stock");
  // Raw PCM from the qube reaches the daemon.
  ToneWriter tone;
  auto pcm = tone.make(0, 4410);
  ASSERT_EQ(q.write_pcm(pcm), pcm.size());
  ASSERT_TRUE(test::wait_until(
      [&] {
        q.poll();
        auto x = qube("work");
        return !x.is_null() && x["counters"].value("bytes_in", 0u) == pcm.size();
      },
      10s))
      << qube("work").dump();
  // A second launcher for the same domid refuses (the pidfile names a live one).
  auto l2 = launch({"5", "work"}, "second");
  ASSERT_TRUE(l2.has_value());
  auto st2 = l2->wait_exit(10s);
  ASSERT_TRUE(st2.has_value());
  EXPECT_TRUE(WIFEXITED(*st2) && WEXITSTATUS(*st2) == 1) << launcher_log("second");
  EXPECT_EQ(qubes::running_pid(pidfile(5)), l->pid());

  // Still alive while attached; SIGTERM: detached, pidfile gone, exit 0.
  EXPECT_TRUE(l->running());
  ::kill(l->pid(), SIGTERM);
  auto st = l->wait_exit(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << launcher_log();
  EXPECT_FALSE(exists(pidfile(5)));
  EXPECT_TRUE(qube("work").is_null());
  EXPECT_TRUE(test::wait_until(
      [&] {
        q.poll();
        return q.closed();
      },
      10s));  // the daemon let go of the qube's channels
  EXPECT_TRUE(daemon_->running());
}

TEST_F(LauncherProcess, exits_when_detached_and_refuses_a_domid_served_under_another_name) {
  start_daemon();
  auto l = launch({"-V", "mute", "6", "personal"});
  ASSERT_TRUE(l.has_value());
  ASSERT_TRUE(test::wait_until([&] { return !qube("personal").is_null(); }, 10s)) << launcher_log();
  EXPECT_TRUE(qube("personal").value("muted", false));

  // The same name for another domid (its own pidfile is free): the daemon
  // refuses, the attached qube keeps its domid, the pidfile is cleaned up.
  auto other = launch({"7", "personal"}, "other");
  ASSERT_TRUE(other.has_value());
  auto so = other->wait_exit(10s);
  ASSERT_TRUE(so.has_value());
  EXPECT_TRUE(WIFEXITED(*so) && WEXITSTATUS(*so) == 1);
  EXPECT_NE(launcher_log("other").find("refused"), std::string::npos) << launcher_log("other");
  EXPECT_EQ(qube("personal").value("domid", 0u), 6u);
  EXPECT_FALSE(exists(pidfile(7)));
  // Another name for the attached domid: refused too.
  auto impostor = launch({"-V", "100", "6", "impostor"}, "impostor");
  ASSERT_TRUE(impostor.has_value());
  auto si = impostor->wait_exit(10s);
  ASSERT_TRUE(si.has_value());
  EXPECT_TRUE(WIFEXITED(*si) && WEXITSTATUS(*si) == 1);  // the pidfile pacat.6 is taken
  EXPECT_TRUE(qube("impostor").is_null());

  // Someone detaches the qube through the control API: the launcher leaves.
  auto c = cli::ControlClient::connect_unix(control_);
  ASSERT_TRUE(c.has_value());
  auto r = (*c)->call("detach_qube", {{"qube", "personal"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->contains("result")) << r->dump();
  auto st = l->wait_exit(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << launcher_log();
  EXPECT_FALSE(exists(pidfile(6)));
}

TEST_F(LauncherProcess, re_attaches_after_a_daemon_restart) {
  start_daemon();
  auto l = launch({"8", "work"});
  ASSERT_TRUE(l.has_value());
  ASSERT_TRUE(test::wait_until([&] { return !qube("work").is_null(); }, 10s)) << launcher_log();
  ::kill(daemon_->pid(), SIGTERM);
  ASSERT_TRUE(daemon_->wait_exit(10s).has_value());
  ::unlink(control_.c_str());
  start_daemon();
  ASSERT_TRUE(test::wait_until([&] { return !qube("work").is_null(); }, 15s)) << launcher_log();
  EXPECT_TRUE(l->running());
  EXPECT_EQ(qubes::running_pid(pidfile(8)), l->pid());
}

TEST_F(LauncherProcess, qubesdb_authorise_lets_the_mic_flow_revoke_silences_it_request_is_written) {
  std::string mic = dir_.path() + "/mic.wav";
  write_wav_s16(mic, test::sine(1000.0, 48000, 48000, 2, 0.5), 48000, 2);
  start_daemon("wav:" + dir_.path() + "/out.wav,in=" + mic);
  QubePeer q(*transport_, 5);
  ASSERT_TRUE(q.serve());
  auto l = launch({"5", "work"});
  ASSERT_TRUE(l.has_value());
  ASSERT_TRUE(test::wait_until(
      [&] {
        q.poll();
        auto w = qube("work");
        return !w.is_null() && w.value("state", "") == "running" && q.open();
      },
      20s))
      << launcher_log();
  EXPECT_EQ(qdb("/audio-input/work"), "0");
  EXPECT_EQ(qdb("/audio-input-request/work"), "0");

  // The stock qube starts recording: not authorised, so a silent stream and
  // a request for dom0 in QubesDB.
  ASSERT_EQ(q.write_word(proto::StockWord::MicStart), 4u);
  ASSERT_TRUE(test::wait_until(
      [&] {
        q.poll();
        return q.ctl_in.size() >= 17640 && qdb("/audio-input-request/work") == "1";
      },
      10s))
      << launcher_log();
  EXPECT_TRUE(test::all_zero_bytes(q.ctl_in));
  EXPECT_EQ(qdb("/audio-input/work"), "0");

  // dom0 authorises: the device's 1 kHz tone reaches the qube.
  qdb_set("/audio-input-config/work", "1");
  ASSERT_TRUE(test::wait_until([&] { return qdb("/audio-input/work") == "1"; }, 10s))
      << launcher_log();
  size_t mark = q.ctl_in.size();
  ASSERT_TRUE(test::wait_until(
      [&] {
        q.poll();
        return q.ctl_in.size() >= mark + 44100 * 4;
      },
      10s));
  EXPECT_EQ(qdb("/audio-input-request/work"), "0");
  // The last half second: the tone at 0.5.
  std::span<const std::byte> tail(q.ctl_in.data() + q.ctl_in.size() - 44100 * 2, 44100 * 2);
  auto f = test::s16_to_float(tail);
  EXPECT_NEAR(test::frequency(f, 2, 0, 44100), 1000.0, 5.0);
  EXPECT_NEAR(test::tone_amplitude(f, 2, 0, 44100, 1000.0), 0.5, 0.05);

  // dom0 revokes: /audio-input says 0 once the daemon detached; after what
  // was already in the channel (its 16 KiB ring) plus one 10 ms period,
  // nothing but zeros.
  qdb_set("/audio-input-config/work", "0");
  ASSERT_TRUE(test::wait_until(
      [&] {
        q.poll();
        return qdb("/audio-input/work") == "0";
      },
      10s))
      << launcher_log();
  auto w = qube("work");
  EXPECT_FALSE(w["mic"].value("attached", true)) << w.dump();
  mark = q.ctl_in.size() + 16384 + 1764;
  ASSERT_TRUE(test::wait_until(
      [&] {
        q.poll();
        return q.ctl_in.size() >= mark + 44100;
      },
      10s));
  EXPECT_TRUE(test::all_zero_bytes(std::span(q.ctl_in).subspan(mark)));
  EXPECT_GT(q.ctl_in.size() - mark, 44100u);  // still a stream, silent
}

}  // namespace
}  // namespace qaudio::e2e
