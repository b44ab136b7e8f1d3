// Bluetooth headset output, end to end: the daemon on a real PulseAudio with
// --bluetooth against python-dbusmock's bluez5 template on a private bus.
// A null sink named as PulseAudio's module-bluetooth names a headset's sink
// (bluez_sink.<address>.a2dp_sink) stands in for the headset: the test loads
// it when the mock headset connects and unloads it when it disconnects, as
// the sound server does. Two qubes are played by qaudio-fake-agent: "work"
// (440 Hz) follows the default output, "personal" (660 Hz) chose the sink
// "out" itself. Levels are measured at the sinks' monitors:
//   - the headset connects: work moves to the headset, personal stays;
//   - it disconnects: work falls back to the device it was on before;
//   - personal's audio has no gap through both switches;
//   - a qube whose own choice is the headset plays on the default while the
//     headset is away and goes back to it when it returns.
#include <gtest/gtest.h>
#include <unistd.h>

#include "bluez_mock.hpp"
#include "e2e_util.hpp"
#include "tone.hpp"

namespace qaudio::test {
namespace {

constexpr const char* kHeadset = "AA:BB:CC:DD:EE:01";
constexpr const char* kHeadsetSink = "bluez_sink.AA_BB_CC_DD_EE_01.a2dp_sink";
constexpr const char* kHeadsetClass = "2360324";  // Audio/Video, wearable headset
constexpr uint32_t kRate = 48000;

class BtOutputE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"pulseaudio", "pactl", "parec"}) {
      if (!have_program(p)) {
        GTEST_SKIP() << p << " missing";
      }
    }
    ASSERT_TRUE(mock_.start()) << mock_.error;
    ASSERT_TRUE(mock_.mock("AddAdapter", "ss", {"hci0", "host"}));
    ASSERT_TRUE(mock_.mock("AddDevice", "sss", {"hci0", kHeadset, "Headset"}));
    ASSERT_EQ(mock_
                  .busctl({"set-property", "org.bluez", BluezMock::dev_path(kHeadset),
                           "org.bluez.Device1", "Class", "u", kHeadsetClass})
                  .status,
              0);
    pa_ = std::make_unique<PulseServer>(dir_.path() + "/audioqube");
    ASSERT_TRUE(pa_->start()) << pa_->last_error();
    ASSERT_EQ(
        pa_->pactl({"load-module", "module-null-sink", "sink_name=desk", "rate=48000"}).status, 0);
    make_dir(dir_.path() + "/vchan");
    make_dir(dir_.path() + "/run");
  }
  void TearDown() override {
    for (auto& a : agents_) {
      a.stop();
    }
    daemon_.stop();
  }

  std::string control() const { return dir_.path() + "/control.sock"; }
  std::string log(const std::string& n) const { return dir_.path() + "/" + n + ".log"; }

  void start_daemon() {
    auto env = pa_->client_env();
    env["XDG_RUNTIME_DIR"] = dir_.path() + "/run";
    auto c =
        Child::spawn({QAUDIO_DAEMON_BIN, "--channel", "unix:" + dir_.path() + "/vchan", "--qube",
                      "work=1", "--qube", "personal=2", "--backend", "pulse:" + pa_->server(),
                      "--state-dir", dir_.path() + "/state", "--control", control(), "--bluetooth",
                      "--bluetooth-bus", mock_.address(), "-v"},
                     env, log("daemon"));
    ASSERT_TRUE(c);
    daemon_ = std::move(*c);
    ASSERT_TRUE(wait_until(
        [&] {
          return cli({"bt", "adapters"}).status == 0;
        },
        20s, 50ms))
        << read_text(log("daemon"));
    ASSERT_TRUE(events_.connect(control()));
  }
  void start_agent(const std::string& name, int domid, double freq) {
    auto c = Child::spawn({QAUDIO_FAKE_AGENT_BIN, "--channel", "unix:" + dir_.path() + "/vchan",
                           "--domid", std::to_string(domid), "--name", name, "--protocol", "native",
                           "--freq", std::to_string(freq), "--amplitude", "0.3", "--seconds", "0"},
                          {}, log("agent-" + name));
    ASSERT_TRUE(c);
    agents_.push_back(std::move(*c));
  }
  void start_all() {
    start_agent("work", 1, 440.0);
    start_agent("personal", 2, 660.0);
    start_daemon();
    ASSERT_TRUE(wait_until(
        [&] {
          auto l = cli({"list"}).out;
          size_t n = 0;
          for (size_t p = l.find("running"); p != std::string::npos; p = l.find("running", p + 1)) {
            ++n;
          }
          return n == 2;
        },
        15s, 100ms))
        << cli({"list"}).out << read_text(log("daemon"));
  }
  CommandResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {QVM_AUDIO_BIN, "--control", control()});
    return run_command(args, {}, 30s, log("qvm-audio"));
  }
  json cli_json(std::vector<std::string> args) {
    args.push_back("--json");
    auto j = json::parse(cli(args).out, nullptr, false);
    return j.is_discarded() ? json() : j;
  }

  // The headset's sink appears / goes, as the sound server's Bluetooth
  // support would make it.
  void headset_sink_appears() {
    auto r = pa_->pactl({"load-module", "module-null-sink",
                         std::string("sink_name=") + kHeadsetSink, "rate=48000"});
    ASSERT_EQ(r.status, 0);
    sink_module_ = r.out;
    while (!sink_module_.empty() && std::isspace(static_cast<unsigned char>(sink_module_.back()))) {
      sink_module_.pop_back();
    }
  }
  void headset_sink_goes() { ASSERT_EQ(pa_->pactl({"unload-module", sink_module_}).status, 0); }

  // 0.5 s from a sink's monitor.
  std::vector<float> sink(const std::string& name) {
    return pa_->record_monitor(kRate / 2, 30s, name + ".monitor");
  }
  // Records `name` until `freq` is at `expected` +- tol, or 15 s pass.
  double settled(const std::string& name, double freq, double expected, double tol) {
    double l = -1;
    wait_until(
        [&] {
          l = median_level(sink(name), freq);
          return std::fabs(l - expected) <= tol;
        },
        15s, 1ms);
    return l;
  }
  static std::function<bool(const json&)> output_is(const std::string& action,
                                                    const std::string& device) {
    return [action, device](const json& d) {
      return d.value("action", "") == action && d.value("device", "") == device;
    };
  }

  TempDir dir_{"bt-output"};
  BluezMock mock_{dir_.path()};
  std::unique_ptr<PulseServer> pa_;
  Child daemon_;
  std::vector<Child> agents_;
  EventReader events_;
  std::string sink_module_;
};

TEST_F(BtOutputE2E, headset_becomes_the_output_and_falls_back_without_disturbing_other_qubes) {
  start_all();
  ASSERT_EQ(cli({"output", "desk"}).status, 0) << read_text(log("qvm-audio"));
  ASSERT_EQ(cli({"output", "out", "personal"}).status, 0) << read_text(log("qvm-audio"));
  EXPECT_NEAR(settled("desk", 440, 0.3, 0.03), 0.3, 0.03);
  EXPECT_NEAR(settled("out", 660, 0.3, 0.03), 0.3, 0.03);

  // personal's sink, recorded through both switches.
  const std::string raw = dir_.path() + "/personal.raw";
  int fd = ::open(raw.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  auto rec = Child::spawn({"parec", "-d", "out.monitor", "--latency-msec=20", "--raw",
                           "--format=float32le", "--rate=48000", "--channels=2"},
                          pa_->client_env(), log("parec-personal"), fd);
  ::close(fd);
  ASSERT_TRUE(rec);

  // Connect: the sink shows up a moment after BlueZ says Connected.
  ASSERT_EQ(cli({"bt", "connect", kHeadset}).status, 0) << read_text(log("qvm-audio"));
  ASSERT_TRUE(events_.wait("bt_headset_connected", [](const json&) { return true; }));
  headset_sink_appears();
  ASSERT_TRUE(events_.wait("bt_output", output_is("selected", kHeadsetSink)))
      << read_text(log("daemon"));
  EXPECT_NEAR(settled(kHeadsetSink, 440, 0.3, 0.03), 0.3, 0.03);
  EXPECT_LT(settled("desk", 440, 0, 0.003), 0.003);
  EXPECT_NEAR(median_level(sink("out"), 660), 0.3, 0.03);
  EXPECT_LT(median_level(sink(kHeadsetSink), 660), 0.003);  // personal did not move

  auto o = cli_json({"bt", "output"});
  EXPECT_EQ(o.value("auto_output", false), true) << o.dump();
  EXPECT_EQ(o.value("fallback_output", ""), "desk") << o.dump();
  ASSERT_EQ(o["headsets"].size(), 1u) << o.dump();
  EXPECT_EQ(o["headsets"][0].value("sink", ""), kHeadsetSink);
  EXPECT_NE(cli({"bt", "devices"}).out.find("Headset"), std::string::npos);

  // Disconnect: back to "desk"; then the sound server drops the sink.
  ASSERT_EQ(cli({"bt", "disconnect", kHeadset}).status, 0) << read_text(log("qvm-audio"));
  ASSERT_TRUE(events_.wait("bt_output", output_is("fell_back", "desk")))
      << read_text(log("daemon"));
  headset_sink_goes();
  EXPECT_NEAR(settled("desk", 440, 0.3, 0.03), 0.3, 0.03);
  EXPECT_EQ(cli_json({"bt", "output"}).value("fallback_output", "?"), "");
  auto devs = cli({"devices"}).out;
  EXPECT_EQ(devs.find(kHeadsetSink), std::string::npos) << devs;

  // personal played on "out" through all of it without a gap.
  ASSERT_TRUE(wait_until([&] { return read_text(raw).size() > kRate * 8 * 3; }, 20s));
  rec->stop(SIGTERM);
  auto pcm = read_floats(raw);
  ASSERT_GT(pcm.size(), kRate * 2u * 2);
  size_t gaps = 0;
  size_t run = 0;
  std::string where;  // ms of the silent blocks, for the failure message
  // Skip parec's first 100 ms (its stream starting).
  for (size_t b = kRate / 10; b + 480 <= pcm.size() / 2; b += 480) {
    std::span<const float> blk(pcm.data() + b * 2, 480 * 2);
    if (rms(blk, 2, 0) < 0.1) {
      gaps = std::max(gaps, ++run);
      if (where.size() < 200) {
        where += " " + std::to_string(b * 1000 / kRate);
      }
    } else {
      run = 0;
    }
  }
  EXPECT_LE(gaps, 1u) << "longest run of silent 10 ms blocks on personal's sink; silent at (ms):"
                      << where << "\n"
                      << cli({"list"}).out;
  EXPECT_NEAR(median_level(pcm, 660), 0.3, 0.03);
  EXPECT_LT(median_level(pcm, 440), 0.003);  // work never played there
}

TEST_F(BtOutputE2E, a_qube_that_chose_the_headset_waits_on_the_default_and_returns_to_it) {
  start_all();
  EXPECT_EQ(cli({"bt", "output", "--auto", "maybe"}).status, 2);  // usage error, nothing changes
  EXPECT_EQ(cli_json({"bt", "output"}).value("auto_output", false), true);
  ASSERT_EQ(cli({"bt", "output", "--auto", "off"}).status, 0) << read_text(log("qvm-audio"));
  EXPECT_EQ(cli_json({"bt", "output"}).value("auto_output", true), false);
  ASSERT_EQ(cli({"bt", "connect", kHeadset}).status, 0);
  headset_sink_appears();
  ASSERT_TRUE(events_.wait("bt_output", output_is("available", kHeadsetSink)))
      << read_text(log("daemon"));
  // auto-output off: nothing moved to it by itself.
  EXPECT_LT(settled(kHeadsetSink, 440, 0, 0.003), 0.003);
  ASSERT_EQ(cli({"output", kHeadsetSink, "work"}).status, 0) << read_text(log("qvm-audio"));
  EXPECT_NEAR(settled(kHeadsetSink, 440, 0.3, 0.03), 0.3, 0.03);

  // Away: work plays on the default ("out"), its choice is kept.
  ASSERT_EQ(cli({"bt", "disconnect", kHeadset}).status, 0);
  ASSERT_TRUE(events_.wait("bt_headset_disconnected", [](const json&) { return true; }));
  headset_sink_goes();
  EXPECT_NEAR(settled("out", 440, 0.3, 0.03), 0.3, 0.03);
  auto l = cli_json({"list"});
  bool kept = false;
  for (const auto& q : l.value("qubes", json::array())) {
    kept |= q.value("name", "") == "work" && q.value("output_device", "") == kHeadsetSink;
  }
  EXPECT_TRUE(kept) << l.dump();

  // Back: work returns to the headset by itself.
  const size_t seen = events_.all().size();
  ASSERT_EQ(cli({"bt", "connect", kHeadset}).status, 0);
  headset_sink_appears();
  ASSERT_TRUE(events_.wait("bt_output", output_is("available", kHeadsetSink), 20s, seen));
  EXPECT_NEAR(settled(kHeadsetSink, 440, 0.3, 0.03), 0.3, 0.03);
  EXPECT_LT(settled("out", 440, 0, 0.003), 0.003);
  EXPECT_NEAR(median_level(sink("out"), 660), 0.3, 0.03);  // personal stayed on the default
}

}  // namespace
}  // namespace qaudio::test
