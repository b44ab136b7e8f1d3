// HeadsetOutput (audiovm-daemon/src/headset_output.hpp) against a fake
// daemon: which sink a headset's address maps to, the switch to the headset
// once its sink appears, the fallback on disconnect (to what it replaced, to
// another headset, or to the backend default when that is gone), qubes with
// their own choice following their device, the auto-output setting, and a
// headset whose sink never appears.
#include "headset_output.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace qaudio::daemon {
namespace {

using namespace std::chrono_literals;
using Clock = HeadsetOutput::Clock;

constexpr const char* kA = "AA:BB:CC:DD:EE:01";
constexpr const char* kB = "AA:BB:CC:DD:EE:02";
constexpr const char* kSinkA = "bluez_sink.AA_BB_CC_DD_EE_01.a2dp_sink";
constexpr const char* kSinkB = "bluez_output.AA_BB_CC_DD_EE_02.1";

class FakeDaemon : public OutputSwitch {
 public:
  std::vector<DeviceInfo> devices() override {
    ++device_queries;
    return devs;
  }
  std::string default_output() const override { return def; }
  Result<void> set_default_output(const std::string& d) override {
    if (!d.empty() &&
        std::none_of(devs.begin(), devs.end(), [&](const DeviceInfo& x) { return x.name == d; })) {
      return fail("no output device named '" + d + "'");
    }
    def = d;
    defaults.push_back(d);
    return {};
  }
  void device_presence(const std::string& d, bool present) override {
    presence.push_back((present ? "+" : "-") + d);
  }
  void add(const std::string& name) { devs.push_back({name, name, true, false}); }
  void drop(const std::string& name) {
    devs.erase(std::remove_if(devs.begin(), devs.end(),
                              [&](const DeviceInfo& x) { return x.name == name; }),
               devs.end());
  }

  std::vector<DeviceInfo> devs{{"speakers", "Speakers", true, true},
                               {"hdmi", "HDMI", true, false},
                               {"mic", "Mic", false, true}};
  std::string def = "hdmi";
  std::vector<std::string> defaults;  // every set_default_output, in order
  std::vector<std::string> presence;  // +device / -device
  int device_queries = 0;
};

class HeadsetOutputTest : public ::testing::Test {
 protected:
  HeadsetOutput make(HeadsetOutputSettings s = {}) {
    return HeadsetOutput(
        d, std::move(s), [this](const HeadsetOutputEvent& e) { events.push_back(e); },
        [this](const HeadsetOutputSettings& s) {
          saved.push_back(s);
          return Result<void>{};
        },
        10s);
  }
  std::vector<std::string> kinds() const {
    std::vector<std::string> k;
    for (const auto& e : events) {
      k.push_back(std::string(to_string(e.kind)) + ":" + e.device);
    }
    return k;
  }
  FakeDaemon d;
  std::vector<HeadsetOutputEvent> events;
  std::vector<HeadsetOutputSettings> saved;
  Clock::time_point t0 = Clock::now();
};

TEST(HeadsetOutputSink, FindsTheHeadsetsSinkByAddressPreferringA2dp) {
  std::vector<DeviceInfo> devs{
      {"bluez_sink.AA_BB_CC_DD_EE_01.handsfree_head_unit", "", true, false},
      {"bluez_sink.AA_BB_CC_DD_EE_01.a2dp_sink", "", true, false},
      {"bluez_source.AA_BB_CC_DD_EE_01.handsfree_head_unit", "", false, false},
      {"bluez_output.AA_BB_CC_DD_EE_02.1", "", true, false},
      {"alsa_output.AA_BB_CC_DD_EE_03", "", true, false},
  };
  EXPECT_EQ(HeadsetOutput::find_sink(devs, kA), "bluez_sink.AA_BB_CC_DD_EE_01.a2dp_sink");
  EXPECT_EQ(HeadsetOutput::find_sink(devs, "aa:bb:cc:dd:ee:02"),
            "bluez_output.AA_BB_CC_DD_EE_02.1");
  EXPECT_EQ(HeadsetOutput::find_sink(devs, "AA:BB:CC:DD:EE:03"), std::nullopt);  // not bluez_
  EXPECT_EQ(HeadsetOutput::find_sink(devs, "AA:BB:CC:DD:EE:04"), std::nullopt);
  EXPECT_EQ(HeadsetOutput::find_sink(devs, "AA_BB"), std::nullopt);
  EXPECT_EQ(HeadsetOutput::find_sink(devs, ""), std::nullopt);
  devs.erase(devs.begin() + 1);
  EXPECT_EQ(HeadsetOutput::find_sink(devs, kA), "bluez_sink.AA_BB_CC_DD_EE_01.handsfree_head_unit");
}

TEST_F(HeadsetOutputTest, SwitchesOnceTheSinkAppearsAndFallsBackOnDisconnect) {
  auto h = make();
  h.connected(kA, t0);
  EXPECT_TRUE(h.pending());  // the sink is not there yet
  EXPECT_TRUE(d.defaults.empty());
  h.poll(t0 + 200ms);
  EXPECT_TRUE(d.defaults.empty());
  d.add(kSinkA);
  h.poll(t0 + 400ms);
  EXPECT_FALSE(h.pending());
  EXPECT_EQ(d.def, kSinkA);
  EXPECT_EQ(h.sink_of(kA), kSinkA);
  EXPECT_EQ(h.sink_of("aa:bb:cc:dd:ee:01"), kSinkA);
  EXPECT_EQ(h.settings().fallback_output, "hdmi");
  ASSERT_FALSE(saved.empty());
  EXPECT_EQ(saved.back().fallback_output, "hdmi");  // survives a daemon restart
  EXPECT_EQ(d.presence, (std::vector<std::string>{std::string("+") + kSinkA}));

  // BlueZ repeats Connected: nothing changes.
  h.connected(kA, t0 + 1s);
  EXPECT_EQ(d.defaults.size(), 1u);

  h.disconnected(kA);
  EXPECT_EQ(d.def, "hdmi");
  EXPECT_EQ(h.sink_of(kA), std::nullopt);
  EXPECT_EQ(h.settings().fallback_output, "");
  EXPECT_EQ(d.presence.back(), std::string("-") + kSinkA);
  EXPECT_EQ(kinds(),
            (std::vector<std::string>{std::string("selected:") + kSinkA, "fell_back:hdmi"}));
}

TEST_F(HeadsetOutputTest, TheUsersLaterChoiceIsNotUndoneOnDisconnect) {
  auto h = make();
  d.add(kSinkA);
  h.connected(kA, t0);
  ASSERT_EQ(d.def, kSinkA);
  d.def = "speakers";  // the user picked another default meanwhile
  h.disconnected(kA);
  EXPECT_EQ(d.def, "speakers");
  EXPECT_EQ(d.defaults.size(), 1u);
  EXPECT_EQ(d.presence.back(), std::string("-") + kSinkA);  // per-qube choices still fall back
}

TEST_F(HeadsetOutputTest, TwoHeadsetsFallBackToTheOtherThenToWhatTheFirstReplaced) {
  auto h = make();
  d.add(kSinkA);
  d.add(kSinkB);
  h.connected(kA, t0);
  h.connected(kB, t0 + 1s);
  EXPECT_EQ(d.def, kSinkB);
  EXPECT_EQ(h.settings().fallback_output, "hdmi");  // not overwritten by headset A
  h.disconnected(kB);
  EXPECT_EQ(d.def, kSinkA);
  h.disconnected(kA);
  EXPECT_EQ(d.def, "hdmi");
}

TEST_F(HeadsetOutputTest, FallsBackToTheBackendDefaultWhenTheOldDeviceIsGone) {
  auto h = make();
  d.add(kSinkA);
  h.connected(kA, t0);
  d.drop("hdmi");
  h.disconnected(kA);
  EXPECT_EQ(d.def, "");
  EXPECT_EQ(kinds().back(), "fell_back:");
}

TEST_F(HeadsetOutputTest, AutoOutputOffOnlyReportsTheSinkAndRestoresOwnChoices) {
  auto h = make({false, ""});
  d.add(kSinkA);
  h.connected(kA, t0);
  EXPECT_EQ(d.def, "hdmi");
  EXPECT_TRUE(d.defaults.empty());
  EXPECT_EQ(h.sink_of(kA), kSinkA);
  EXPECT_EQ(d.presence, (std::vector<std::string>{std::string("+") + kSinkA}));
  EXPECT_EQ(kinds(), (std::vector<std::string>{std::string("available:") + kSinkA}));
  h.disconnected(kA);
  EXPECT_EQ(d.def, "hdmi");  // it never was the default
  EXPECT_EQ(d.presence.back(), std::string("-") + kSinkA);

  ASSERT_TRUE(h.set_auto_output(true));
  EXPECT_TRUE(saved.back().auto_output);
  h.connected(kA, t0 + 5s);
  EXPECT_EQ(d.def, kSinkA);
}

TEST_F(HeadsetOutputTest, ASinkThatNeverAppearsIsReportedOnceAndPollingStops) {
  auto h = make();
  h.connected(kA, t0);
  h.poll(t0 + 5s);
  EXPECT_TRUE(h.pending());
  h.poll(t0 + 11s);
  EXPECT_FALSE(h.pending());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, HeadsetOutputEvent::Kind::SinkMissing);
  EXPECT_NE(events[0].message.find("bluez5"), std::string::npos);
  const int queries = d.device_queries;
  h.poll(t0 + 12s);
  EXPECT_EQ(d.device_queries, queries);  // nothing pending: no more queries
  d.add(kSinkA);
  h.disconnected(kA);  // it had no sink: nothing to fall back from
  EXPECT_TRUE(d.defaults.empty());
  EXPECT_TRUE(d.presence.empty());
  h.connected(kA, t0 + 20s);  // and reconnecting tries again
  EXPECT_EQ(d.def, kSinkA);
}

TEST_F(HeadsetOutputTest, DisconnectOfAnUnknownHeadsetChangesNothing) {
  auto h = make();
  h.disconnected(kB);
  EXPECT_TRUE(d.defaults.empty());
  EXPECT_TRUE(d.presence.empty());
  EXPECT_TRUE(events.empty());
}

}  // namespace
}  // namespace qaudio::daemon
