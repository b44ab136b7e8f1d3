// The mic gate with a real sound server: a private PulseAudio whose default
// source (the monitor of a null sink "mic") carries a 1 kHz tone at 0.5, the
// qubes-audiovm-daemon process on `pulse:` with a qaudio.Mic policy, three
// qubes played by qaudio-fake-agent (native protocol) that open the mic and
// record every mic sample they receive, and qvm-audio attaching/detaching.
//
// Not one non-zero sample may reach a qube before attach, under deny, while
// another qube has the mic, after detach, after a policy syntax error or
// after a daemon restart (each "after" counted from the moment the daemon
// acted, plus what was already in flight in the channel: 100 ms); the tone
// must arrive when allowed and attached, and after a restart only for a
// persistent attachment that policy still allows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "e2e_util.hpp"
#include "sound_servers.hpp"

namespace qaudio::e2e {
namespace {

using namespace std::chrono_literals;
using qaudio::test::Child;
using qaudio::test::CommandResult;
using qaudio::test::PulseServer;
using qaudio::test::read_floats;
using qaudio::test::read_text;
using qaudio::test::TempDir;
using qaudio::test::wait_until;

constexpr size_t kRate = 48000;
constexpr size_t kInFlight = kRate / 10 * 2;  // 100 ms of stereo floats

const char* kPolicy =
    "qaudio.Mic * work sys-audio allow\n"
    "qaudio.Mic * personal sys-audio allow\n"
    "qaudio.Mic * untrusted sys-audio deny\n"
    "qaudio.Play * @anyvm sys-audio allow\n";

// First index at or after `from` holding a non-zero sample (npos if none).
size_t first_sound(const std::vector<float>& f, size_t from) {
  for (size_t i = from; i < f.size(); ++i) {
    if (f[i] != 0.0f) {
      return i;
    }
  }
  return std::string::npos;
}

class MicPulse : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"pulseaudio", "pactl", "paplay", "sox"}) {
      if (!qaudio::test::have_program(p)) {
        GTEST_SKIP() << p << " missing";
      }
    }
    pa_ = std::make_unique<PulseServer>(dir_.path() + "/audioqube");
    ASSERT_TRUE(pa_->start()) << pa_->last_error();
    ASSERT_EQ(pa_->pactl({"load-module", "module-null-sink", "sink_name=mic", "rate=48000"}).status,
              0);
    ASSERT_EQ(pa_->pactl({"set-default-source", "mic.monitor"}).status, 0);
    std::string wav = dir_.path() + "/mic.wav";
    ASSERT_EQ(qaudio::test::run_command({"sox", "-n", "-r", "48000", "-c", "2", "-b", "16", wav,
                                         "synth", "120", "sine", "1000", "vol", "0.5"},
                                        {}, 30s)
                  .status,
              0);
    auto p = Child::spawn({"paplay", "-d", "mic", wav}, pa_->client_env(), log("paplay"));
    ASSERT_TRUE(p);
    player_ = std::move(*p);
    qaudio::test::make_dir(dir_.path() + "/vchan");
    qaudio::test::make_dir(policy_dir());
    write_policy(kPolicy);
    int domid = 1;
    for (const char* q : {"work", "personal", "untrusted"}) {
      const char* freq = domid == 1 ? "440" : domid == 2 ? "550" : "660";
      auto c = Child::spawn(
          {QAUDIO_FAKE_AGENT_PATH, "--channel", "unix:" + dir_.path() + "/vchan", "--domid",
           std::to_string(domid++), "--name", q, "--protocol", "native", "--freq", freq,
           "--amplitude", "0.1", "--seconds", "0", "--mic", "--record", rec(q)},
          {}, log(std::string("agent-") + q));
      ASSERT_TRUE(c);
      agents_.push_back(std::move(*c));
    }
  }
  void TearDown() override {
    daemon_.stop();
    for (auto& a : agents_) {
      a.stop();
    }
    player_.stop();
  }

  std::string log(const std::string& n) const { return dir_.path() + "/" + n + ".log"; }
  std::string rec(const std::string& q) const { return dir_.path() + "/" + q + "-mic.raw"; }
  std::string policy_dir() const { return dir_.path() + "/policy"; }
  std::string control() const { return dir_.path() + "/control.sock"; }
  void write_policy(const std::string& text) {
    // Atomic replace, as an editor or salt would: the watcher sees one change.
    std::string tmp = dir_.path() + "/50-audio.policy.tmp";
    qaudio::test::write_file(tmp, text);
    ASSERT_EQ(::rename(tmp.c_str(), (policy_dir() + "/50-audio.policy").c_str()), 0);
  }

  void start_daemon() {
    ::unlink(control().c_str());
    auto c = Child::spawn({QAUDIO_DAEMON_PATH,
                           "--channel",
                           "unix:" + dir_.path() + "/vchan",
                           "--qube",
                           "work=1",
                           "--qube",
                           "personal=2",
                           "--qube",
                           "untrusted=3",
                           "--backend",
                           "pulse:" + pa_->server(),
                           "--policy-dir",
                           policy_dir(),
                           "--audio-qube",
                           "sys-audio",
                           "--state-dir",
                           dir_.path() + "/state",
                           "--control",
                           control(),
                           "-v"},
                          pa_->client_env(), log("daemon"));
    ASSERT_TRUE(c);
    daemon_ = std::move(*c);
    ASSERT_TRUE(wait_until(
        [&] {
          auto j = list();
          return j.size() == 3 && std::all_of(j.begin(), j.end(), [](const auto& q) {
                   return q.value("state", "") == "running";
                 });
        },
        20s, 100ms))
        << read_text(log("daemon"));
  }

  CommandResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {QVM_AUDIO_BIN, "--control", control()});
    return qaudio::test::run_command(args, {}, 10s, log("qvm-audio"));
  }
  nlohmann::json list() {
    auto j = nlohmann::json::parse(cli({"list", "--json"}).out, nullptr, false);
    return j.is_object() && j.contains("qubes") ? j["qubes"] : nlohmann::json::array();
  }
  bool mic_attached(const std::string& q) {
    for (const auto& e : list()) {
      if (e.value("name", "") == q) {
        return e["mic"].value("attached", false);
      }
    }
    return false;
  }
  // Waits until `q` has recorded `more` samples beyond what it has now.
  void record_more(const std::string& q, size_t more) {
    size_t target = read_floats(rec(q)).size() + more;
    ASSERT_TRUE(wait_until([&] { return read_floats(rec(q)).size() >= target; }, 15s, 20ms))
        << q << " stopped receiving mic samples";
  }
  // The 1 kHz level over what `q` recorded from sample `from` on.
  double tone_from(const std::string& q, size_t from) {
    auto f = read_floats(rec(q));
    if (from >= f.size()) {
      return 0;
    }
    return qaudio::test::median_level(
        std::vector<float>(f.begin() + static_cast<ptrdiff_t>(from), f.end()), 1000.0);
  }
  void expect_silent_from(const std::string& q, size_t from, const char* when) {
    auto f = read_floats(rec(q));
    size_t at = first_sound(f, from);
    EXPECT_EQ(at, std::string::npos) << q << ": mic audio " << when << " at sample " << at
                                     << " (checked from " << from << " of " << f.size() << ")";
  }

  TempDir dir_{"mic-e2e"};
  std::unique_ptr<PulseServer> pa_;
  Child player_;
  Child daemon_;
  std::vector<Child> agents_;
};

TEST_F(MicPulse, no_sample_leaks_and_the_tone_arrives_only_when_allowed_and_attached) {
  start_daemon();
  for (const char* q : {"work", "personal", "untrusted"}) {
    record_more(q, kRate);  // 0.5 s of stereo: all three are recording
  }
  // Requests were recorded for all three (they opened the mic).
  auto req = cli({"mic", "requests"}).out;
  EXPECT_NE(req.find("work"), std::string::npos) << req;

  // Deny: refused with the reason; nothing changes.
  auto deny = cli({"mic", "attach", "untrusted"});
  EXPECT_EQ(deny.status, 1);
  EXPECT_NE(read_text(log("qvm-audio")).find("policy"), std::string::npos)
      << read_text(log("qvm-audio"));

  // Attach work: the tone arrives; the others stay silent.
  ASSERT_EQ(cli({"mic", "attach", "work"}).status, 0) << read_text(log("qvm-audio"));
  size_t at_attach = read_floats(rec("work")).size();
  ASSERT_TRUE(
      wait_until([&] { return tone_from("work", at_attach + kRate / 2) > 0.45; }, 15s, 50ms))
      << "the tone did not reach the attached qube";
  EXPECT_NEAR(tone_from("work", at_attach + kRate / 2), 0.5, 0.05);
  record_more("personal", kRate);
  expect_silent_from("personal", 0, "while another qube has the mic");
  expect_silent_from("untrusted", 0, "under deny");

  // Detach: silence from the daemon's answer on (plus what was in flight).
  ASSERT_EQ(cli({"mic", "detach", "work"}).status, 0);
  size_t at_detach = read_floats(rec("work")).size();
  record_more("work", kRate * 2);
  expect_silent_from("work", at_detach + kInFlight, "after detach");

  // A policy syntax error silences an attached qube (fail closed).
  ASSERT_EQ(cli({"mic", "attach", "work"}).status, 0);
  at_attach = read_floats(rec("work")).size();
  ASSERT_TRUE(
      wait_until([&] { return tone_from("work", at_attach + kRate / 2) > 0.45; }, 15s, 50ms));
  write_policy(std::string(kPolicy) + "qaudio.Mic * work sys-audio allow bogus-token=\n!!!\n");
  ASSERT_TRUE(wait_until([&] { return !mic_attached("work"); }, 10s, 20ms))
      << "a broken policy left the mic attached";
  size_t at_error = read_floats(rec("work")).size();
  record_more("work", kRate * 2);
  expect_silent_from("work", at_error + kInFlight, "after a policy syntax error");
  EXPECT_EQ(cli({"mic", "attach", "work"}).status, 1) << "attach must fail while policy is broken";
  write_policy(kPolicy);

  // Restart: a plain attachment is gone, a persistent one comes back.
  ASSERT_TRUE(wait_until(
      [&] {
        return cli({"mic", "attach", "work", "--persistent"}).status == 0;
      },
      10s, 100ms))
      << read_text(log("qvm-audio"));
  ASSERT_EQ(cli({"mic", "attach", "personal"}).status, 0);
  at_attach = read_floats(rec("personal")).size();
  ASSERT_TRUE(
      wait_until([&] { return tone_from("personal", at_attach + kRate / 2) > 0.45; }, 15s, 50ms));
  // Both attached at once: each gets its own copy of the tone.
  size_t work_now = read_floats(rec("work")).size();
  record_more("work", kRate * 2);
  EXPECT_NEAR(tone_from("work", work_now + kInFlight), 0.5, 0.05) << "two qubes hold the mic";
  daemon_.stop(SIGTERM);
  size_t at_stop = read_floats(rec("personal")).size();
  size_t work_at_stop = read_floats(rec("work")).size();
  start_daemon();
  record_more("personal", kRate * 2);
  expect_silent_from("personal", at_stop + kInFlight, "after a daemon restart");
  ASSERT_TRUE(
      wait_until([&] { return tone_from("work", work_at_stop + kInFlight) > 0.2; }, 15s, 50ms))
      << "the persistent attachment was not restored";
  EXPECT_TRUE(mic_attached("work"));
  EXPECT_FALSE(mic_attached("personal"));
  expect_silent_from("untrusted", 0, "under deny");
}

TEST_F(MicPulse, play_deny_discards_the_qubes_playback_and_counts_it_without_an_error) {
  // First match wins: put the deny before the catch-all allow.
  write_policy(
      "qaudio.Play * untrusted sys-audio deny\n"
      "qaudio.Play * @anyvm sys-audio allow\n"
      "qaudio.Mic * @anyvm sys-audio deny\n");
  start_daemon();
  auto counter = [&](const std::string& q, const char* name) -> uint64_t {
    for (const auto& e : list()) {
      if (e.value("name", "") == q) {
        return e["counters"].value(name, uint64_t{0});
      }
    }
    return 0;
  };
  ASSERT_TRUE(
      wait_until([&] { return counter("untrusted", "playback_discarded_bytes") > 0; }, 10s, 100ms));
  auto pcm = pa_->record_monitor(kRate, 30s);
  EXPECT_NEAR(qaudio::test::median_level(pcm, 440.0), 0.1, 0.01);  // work plays
  EXPECT_NEAR(qaudio::test::median_level(pcm, 550.0), 0.1, 0.01);  // personal plays
  EXPECT_LT(qaudio::test::median_level(pcm, 660.0), 0.001) << "denied playback reached the sink";
  uint64_t before = counter("untrusted", "playback_discarded_bytes");
  ASSERT_TRUE(
      wait_until([&] { return counter("untrusted", "playback_discarded_bytes") > before + 48000; },
                 10s, 100ms))
      << "the denied qube's playback is no longer read (it would stall)";
  for (const auto& e : list()) {
    EXPECT_EQ(e.value("state", ""), "running") << e.value("name", "");
  }
  EXPECT_EQ(counter("untrusted", "protocol_errors"), 0u);
}

}  // namespace
}  // namespace qaudio::e2e
