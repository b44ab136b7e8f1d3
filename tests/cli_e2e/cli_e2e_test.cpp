// qvm-audio end to end: a private PulseAudio ("the audio qube's sound
// server"), qubes-audiovm-daemon --backend pulse serving two qubes played by
// qaudio-fake-agent (work 440 Hz, personal 660 Hz, both amplitude 0.3) over
// the unix channel, and the qvm-audio binary driving it through --control.
// Every command's output is checked, and its effect measured at the sink's
// monitor (Goertzel levels per qube tone): volume, mute, output device, mic
// attach/detach, monitor events in order, and hostile control clients while
// audio plays.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "e2e_util.hpp"
#include "sound_servers.hpp"
#include "tone.hpp"

namespace qaudio::e2e {
namespace {

using namespace std::chrono_literals;
using qaudio::test::Child;
using qaudio::test::CommandResult;
using qaudio::test::PulseServer;
using qaudio::test::TempDir;
using qaudio::test::wait_until;

constexpr uint32_t kRate = 48000;

using qaudio::test::read_text;

double level(const std::vector<float>& pcm, double freq) {
  return qaudio::test::median_level(pcm, freq);
}

class CliE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"pulseaudio", "pactl", "parec", "paplay", "sox"}) {
      if (!qaudio::test::have_program(p)) {
        GTEST_SKIP() << p << " missing";
      }
    }
    pa_ = std::make_unique<PulseServer>(dir_.path() + "/audioqube");
    ASSERT_TRUE(pa_->start()) << pa_->last_error();
    ASSERT_EQ(
        pa_->pactl({"load-module", "module-null-sink", "sink_name=other", "rate=48000"}).status, 0);
    qaudio::test::make_dir(vchan_dir());
  }
  void TearDown() override {
    for (auto& a : agents_) {
      a.stop();
    }
    daemon_.stop();
  }

  std::string vchan_dir() const { return dir_.path() + "/vchan"; }
  std::string control() const { return dir_.path() + "/control.sock"; }
  std::string log(const std::string& n) const { return dir_.path() + "/" + n + ".log"; }

  void start_daemon() {
    auto c = Child::spawn({QAUDIO_DAEMON_PATH, "--channel", "unix:" + vchan_dir(), "--qube",
                           "work=1", "--qube", "personal=2", "--label", "work=blue", "--label",
                           "personal=yellow", "--backend", "pulse:" + pa_->server(), "--state-dir",
                           dir_.path() + "/state", "--control", control(), "-v"},
                          pa_->client_env(), log("daemon"));
    ASSERT_TRUE(c);
    daemon_ = std::move(*c);
    ASSERT_TRUE(wait_until([&] { return access(control().c_str(), F_OK) == 0; }, 10s))
        << read_text(log("daemon"));
  }
  void start_agent(const std::string& name,
                   int domid,
                   double freq,
                   const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{QAUDIO_FAKE_AGENT_PATH,
                                  "--channel",
                                  "unix:" + vchan_dir(),
                                  "--domid",
                                  std::to_string(domid),
                                  "--name",
                                  name,
                                  "--protocol",
                                  "native",
                                  "--freq",
                                  std::to_string(freq),
                                  "--amplitude",
                                  "0.3",
                                  "--seconds",
                                  "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto c = Child::spawn(argv, {}, log("agent-" + name));
    ASSERT_TRUE(c);
    agents_.push_back(std::move(*c));
  }
  // `qvm-audio list --json`, the entry of one qube ({} when absent).
  nlohmann::json qube(const std::string& name) {
    auto j = nlohmann::json::parse(cli({"list", "--json"}).out, nullptr, false);
    if (j.is_object() && j.contains("qubes")) {
      for (const auto& q : j["qubes"]) {
        if (q.value("name", "") == name) {
          return q;
        }
      }
    }
    return nlohmann::json::object();
  }
  bool running(const std::string& name) { return qube(name).value("state", "") == "running"; }

  void start_all() {
    start_agent("work", 1, 440.0);
    start_agent("personal", 2, 660.0);
    start_daemon();
    ASSERT_TRUE(wait_until([&] { return running("work") && running("personal"); }, 15s, 100ms))
        << cli({"list"}).out << read_text(log("daemon"));
  }
  static size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) {
      ++n;
    }
    return n;
  }

  CommandResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {QVM_AUDIO_BIN, "--control", control()});
    return qaudio::test::run_command(args, {}, 10s, log("qvm-audio"));
  }
  // 0.6 s at a sink's monitor, after `settle` of audio already in flight.
  std::vector<float> sink(const std::string& name = "out") {
    auto pcm = pa_->record_monitor(kRate * 8 / 10, 30s, name + ".monitor");
    // Drop the first 200 ms: audio queued before the change.
    size_t skip = std::min(pcm.size(), static_cast<size_t>(kRate / 5 * 2));
    return {pcm.begin() + static_cast<ptrdiff_t>(skip), pcm.end()};
  }

  // Records `name`'s monitor until `freq` is at `expected` (+-tol) — a
  // change reaches the sink after the audio already queued, later on a
  // loaded machine — or 10 s pass; returns the last recording.
  std::vector<float> settled(const std::string& name, double freq, double expected, double tol) {
    std::vector<float> pcm;
    wait_until(
        [&] {
          pcm = sink(name);
          return std::fabs(level(pcm, freq) - expected) <= tol;
        },
        10s, 1ms);
    return pcm;
  }

  TempDir dir_{"cli-e2e"};
  std::unique_ptr<PulseServer> pa_;
  Child daemon_;
  std::vector<Child> agents_;
};

TEST_F(CliE2E, list_volume_and_mute_change_the_levels_at_the_sink) {
  start_all();
  auto l = cli({"list"});
  ASSERT_EQ(l.status, 0);
  EXPECT_NE(l.out.find("NAME"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("work"), std::string::npos);
  EXPECT_NE(l.out.find("personal"), std::string::npos);
  EXPECT_NE(l.out.find("native"), std::string::npos);

  auto before = sink();
  EXPECT_NEAR(level(before, 440), 0.3, 0.03);
  EXPECT_NEAR(level(before, 660), 0.3, 0.03);

  auto v = cli({"volume", "work", "50"});
  ASSERT_EQ(v.status, 0) << read_text(log("qvm-audio"));
  EXPECT_EQ(qube("work").value("volume", 0), 50);
  auto half = settled("out", 440, 0.15, 0.02);
  EXPECT_NEAR(level(half, 440), 0.15, 0.02);
  EXPECT_NEAR(level(half, 660), 0.3, 0.03);  // the other qube untouched

  ASSERT_EQ(cli({"volume", "work", "+25"}).status, 0);
  EXPECT_EQ(qube("work").value("volume", 0), 75);
  EXPECT_NEAR(level(settled("out", 440, 0.225, 0.025), 440), 0.225, 0.025);

  ASSERT_EQ(cli({"mute", "work"}).status, 0);
  auto muted = settled("out", 440, 0, 0.003);
  EXPECT_LT(level(muted, 440), 0.003);
  EXPECT_NEAR(level(muted, 660), 0.3, 0.03);
  EXPECT_TRUE(qube("work").value("muted", false));

  ASSERT_EQ(cli({"unmute", "work"}).status, 0);
  EXPECT_NEAR(level(settled("out", 440, 0.225, 0.025), 440), 0.225, 0.025);

  // Refusals: exit 1 and a message on stderr; nothing changes.
  EXPECT_EQ(cli({"volume", "nope", "10"}).status, 1);
  EXPECT_EQ(cli({"volume", "work", "151"}).status, 2);  // out of range: a usage error
  EXPECT_EQ(cli({"volume", "work", "loud"}).status, 2);
  EXPECT_EQ(qube("work").value("volume", 0), 75);
}

TEST_F(CliE2E, output_moves_one_qube_or_all_to_another_sink) {
  start_all();
  auto d = cli({"devices"});
  ASSERT_EQ(d.status, 0);
  EXPECT_NE(d.out.find("out"), std::string::npos) << d.out;
  EXPECT_NE(d.out.find("other"), std::string::npos) << d.out;

  auto o = cli({"output", "other", "work"});
  ASSERT_EQ(o.status, 0) << read_text(log("qvm-audio"));
  auto other = settled("other", 440, 0.3, 0.03);
  auto out = settled("out", 440, 0, 0.003);
  EXPECT_NEAR(level(other, 440), 0.3, 0.03);
  EXPECT_LT(level(other, 660), 0.003);
  EXPECT_NEAR(level(out, 660), 0.3, 0.03);
  EXPECT_LT(level(out, 440), 0.003);
  EXPECT_EQ(qube("work").value("output_device", ""), "other");

  // The default for all: personal follows, work keeps its own choice.
  ASSERT_EQ(cli({"output", "other"}).status, 0);
  other = settled("other", 660, 0.3, 0.03);
  EXPECT_NEAR(level(other, 440), 0.3, 0.03);
  EXPECT_NEAR(level(other, 660), 0.3, 0.03);

  // An unknown device is refused and changes nothing.
  EXPECT_EQ(cli({"output", "no_such_sink", "work"}).status, 1);
  EXPECT_NEAR(level(sink("other"), 440), 0.3, 0.03);
}

TEST_F(CliE2E, mic_attach_lets_the_tone_through_and_detach_silences_it) {
  // The audio qube's microphone: a null sink "mic" whose monitor is the
  // default source, playing a 1 kHz tone.
  ASSERT_EQ(pa_->pactl({"load-module", "module-null-sink", "sink_name=mic", "rate=48000"}).status,
            0);
  ASSERT_EQ(pa_->pactl({"set-default-source", "mic.monitor"}).status, 0);
  std::string wav = dir_.path() + "/mic.wav";
  ASSERT_EQ(qaudio::test::run_command({"sox", "-n", "-r", "48000", "-c", "2", "-b", "16", wav,
                                       "synth", "60", "sine", "1000", "vol", "0.5"},
                                      {}, 30s)
                .status,
            0);
  auto player = Child::spawn({"paplay", "-d", "mic", wav}, pa_->client_env(), log("paplay"));
  ASSERT_TRUE(player);

  const std::string rec = dir_.path() + "/work-mic.raw";
  start_agent("work", 1, 440.0, {"--mic", "--record", rec});
  start_agent("personal", 2, 660.0);
  start_daemon();
  ASSERT_TRUE(wait_until(
      [&] {
        return cli({"mic", "requests"}).out.find("work") != std::string::npos;
      },
      15s, 100ms))
      << cli({"mic", "requests"}).out;
  auto file_floats = [&] { return qaudio::test::read_floats(rec); };
  // Before attach: whatever arrived is silence.
  ASSERT_TRUE(wait_until([&] { return file_floats().size() >= kRate; }, 10s, 50ms))
      << "no mic bytes reach the qube while detached (silence expected)";
  EXPECT_LT(test::peak(file_floats()), 1e-6) << "mic audio reached the qube before attach";

  auto a = cli({"mic", "attach", "work"});
  ASSERT_EQ(a.status, 0) << read_text(log("qvm-audio"));
  auto status = cli({"mic", "status"});
  EXPECT_NE(status.out.find("work"), std::string::npos) << status.out;
  size_t at_attach = file_floats().size();
  ASSERT_TRUE(wait_until([&] { return file_floats().size() >= at_attach + kRate * 2; }, 10s, 50ms));
  auto f = file_floats();
  std::vector<float> after(f.begin() + static_cast<ptrdiff_t>(at_attach + kRate / 2 * 2), f.end());
  EXPECT_NEAR(level(after, 1000.0), 0.5, 0.05);

  ASSERT_EQ(cli({"mic", "detach", "work"}).status, 0);
  size_t at_detach = file_floats().size();
  ASSERT_TRUE(wait_until([&] { return file_floats().size() >= at_detach + kRate * 2; }, 10s, 50ms));
  f = file_floats();
  // What was in flight at the detach is dropped; from 100 ms on: silence.
  std::vector<float> tail(f.begin() + static_cast<ptrdiff_t>(at_detach + kRate / 10 * 2), f.end());
  EXPECT_LT(test::peak(tail), 1e-6) << "mic audio after detach";
  player->stop(SIGTERM);
}

TEST_F(CliE2E, monitor_shows_connect_volume_change_and_mic_request_in_order) {
  start_daemon();
  std::string mon_log = dir_.path() + "/monitor.out";
  int fd = ::open(mon_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  auto mon =
      Child::spawn({QVM_AUDIO_BIN, "--control", control(), "monitor"}, {}, log("monitor"), fd);
  ::close(fd);
  ASSERT_TRUE(mon);
  // The subscription is live once the daemon counts a subscriber; poll for
  // the first event we cause instead of sleeping.
  start_agent("work", 1, 440.0);
  ASSERT_TRUE(wait_until(
      [&] { return read_text(mon_log).find("qube_connected") != std::string::npos; }, 15s, 50ms))
      << read_text(mon_log) << read_text(log("monitor"));
  ASSERT_EQ(cli({"volume", "work", "40"}).status, 0);
  start_agent("personal", 2, 660.0, {"--mic"});
  ASSERT_TRUE(wait_until(
      [&] { return read_text(mon_log).find("mic_requested") != std::string::npos; }, 15s, 50ms))
      << read_text(mon_log);
  std::string m = read_text(mon_log);
  size_t c = m.find("qube_connected");
  size_t v = m.find("volume_changed");
  size_t r = m.find("mic_requested");
  ASSERT_NE(v, std::string::npos) << m;
  EXPECT_LT(c, v) << m;
  EXPECT_LT(v, r) << m;
  EXPECT_NE(m.find("qube=work", c), std::string::npos) << m;
  EXPECT_NE(m.find("volume=40", v), std::string::npos) << m;
  EXPECT_NE(m.find("qube=personal", r), std::string::npos) << m;
  mon->stop(SIGTERM);
}

// A connected, never-reading Unix client.
int connect_raw(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST_F(CliE2E, hostile_control_clients_do_not_disturb_the_audio_or_other_clients) {
  start_all();
  std::signal(SIGPIPE, SIG_IGN);  // a refused connection is closed under us
  // A subscriber that never reads (events pile up), an endless line,
  // garbage, then many idle connections (beyond the daemon's limit).
  int sub = connect_raw(control());
  ASSERT_GE(sub, 0);
  const std::string s = "{\"id\":1,\"method\":\"subscribe\"}\n";
  ASSERT_EQ(::send(sub, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  int big = connect_raw(control());
  ASSERT_GE(big, 0);
  std::string junk(1 << 20, 'x');
  (void)!::send(big, junk.data(), junk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  int garbage = connect_raw(control());
  ASSERT_GE(garbage, 0);
  const std::string g = "\x01\x02{{{not json\n{\"id\":\n";
  (void)!::send(garbage, g.data(), g.size(), MSG_NOSIGNAL);
  std::vector<int> fds;
  for (int i = 0; i < 200; ++i) {
    int fd = connect_raw(control());
    if (fd >= 0) {
      fds.push_back(fd);
    }
  }

  // Audio meanwhile: continuous and at its level while volume changes make
  // events for the stuck subscriber.
  // The idle connections become evictable after half a second; from then on
  // every qvm-audio call must get through.
  ASSERT_TRUE(wait_until(
      [&] {
        return cli({"volume", "personal", "100"}).status == 0;
      },
      10s, 100ms))
      << read_text(log("qvm-audio"));
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(cli({"volume", "personal", i % 2 ? "100" : "99"}).status, 0)
        << read_text(log("qvm-audio"));
  }
  auto pcm = pa_->record_monitor(kRate * 2, 30s);
  EXPECT_NEAR(level(pcm, 440), 0.3, 0.03);
  // Continuity: a stalled daemon loop starves the stream for many periods;
  // one lone 10 ms block is the scheduler of a loaded 2-core machine.
  size_t gaps = 0;
  size_t run = 0;
  for (size_t b = kRate / 10; b + 480 <= pcm.size() / 2; b += 480) {
    std::span<const float> blk(pcm.data() + b * 2, 480 * 2);
    if (test::rms(blk, 2, 0) < 0.1) {
      gaps = std::max(gaps, ++run);
    } else {
      run = 0;
    }
  }
  EXPECT_LE(gaps, 1u) << "longest run of silent 10 ms blocks";
  auto l = cli({"list"});
  EXPECT_EQ(l.status, 0) << read_text(log("qvm-audio"));
  EXPECT_NE(l.out.find("work"), std::string::npos);
  for (int fd : fds) {
    ::close(fd);
  }
  ::close(sub);
  ::close(big);
  ::close(garbage);
  EXPECT_TRUE(daemon_.running());
}

}  // namespace
}  // namespace qaudio::e2e
