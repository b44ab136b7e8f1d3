// The RTKit way to real-time scheduling (common/src/realtime.cpp), against a
// python3-dbusmock RealtimeKit1 on a private bus standing in for the system
// bus: the limits RTKit publishes are honoured (priority capped, the
// process's RLIMIT_RTTIME set), the call names the right thread, and a
// refusal or a missing RTKit is a clear reason, not a crash.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "private_bus.hpp"
#include "qaudio/config.h"
#include "qaudio/realtime.hpp"

namespace qaudio {
namespace {

constexpr const char* kRtkit = "org.freedesktop.RealtimeKit1";
constexpr const char* kPath = "/org/freedesktop/RealtimeKit1";

struct RtkitTest : ::testing::Test {
  void SetUp() override {
    if (!QAUDIO_HAVE_SYSTEMD) {
      GTEST_SKIP() << "built without libsystemd";
    }
    ASSERT_TRUE(bus.start()) << bus.error;
    ::setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address().c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
    ::unsetenv("QAUDIO_RT_VIA");
  }
  // A RealtimeKit1 with RTKit's default limits; `make` is the Python body of
  // MakeThreadRealtime (empty: it succeeds).
  void start_rtkit(const std::string& make = "") {
    ASSERT_TRUE(bus.start_mock({"--system", kRtkit, kPath, kRtkit}, kRtkit)) << bus.error;
    auto mock = [&](std::vector<std::string> args) {
      args.insert(args.begin(), {"call", kRtkit, kPath, "org.freedesktop.DBus.Mock"});
      return bus.busctl(args).status == 0;
    };
    ASSERT_TRUE(mock({"AddMethod", "sssss", kRtkit, "MakeThreadRealtime", "tu", "", make}));
    ASSERT_TRUE(mock({"AddProperty", "ssv", kRtkit, "MaxRealtimePriority", "i", "20"}));
    ASSERT_TRUE(mock({"AddProperty", "ssv", kRtkit, "RTTimeUSecMax", "x", "200000"}));
  }
  qaudio::test::TempDir dir{"rtkit"};
  qaudio::test::PrivateBus bus{dir.path()};
};

TEST_F(RtkitTest, the_thread_is_named_the_priority_capped_and_rttime_set) {
  start_rtkit();
  const pid_t tid = gettid();
  auto r = rtkit_make_thread_realtime(tid, 30);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, 20);  // MaxRealtimePriority
  auto calls = bus.mock_calls(kRtkit, kPath, "MakeThreadRealtime");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0][0]["data"].get<uint64_t>(), static_cast<uint64_t>(tid));
  EXPECT_EQ(calls[0][1]["data"].get<uint32_t>(), 20u);
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_RTTIME, &rl), 0);
  EXPECT_LE(rl.rlim_max, 200000u);
  EXPECT_LE(rl.rlim_cur, 200000u);
}

TEST_F(RtkitTest, make_thread_realtime_falls_to_rtkit_for_the_calling_thread) {
  start_rtkit();
  ::setenv("QAUDIO_RT_VIA", "rtkit", 1);  // as when sched_setscheduler is refused
  RealtimeResult res;
  pid_t tid = 0;
  std::thread([&] {
    tid = gettid();
    res = make_thread_realtime(kRealtimePriority);
  }).join();
  ASSERT_TRUE(res.granted) << res.reason;
  EXPECT_EQ(res.via, "RTKit");
  EXPECT_EQ(res.priority, kRealtimePriority);
  EXPECT_EQ(res.describe(), "real-time scheduling (SCHED_FIFO 4 via RTKit)");
  auto calls = bus.mock_calls(kRtkit, kPath, "MakeThreadRealtime");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0][0]["data"].get<uint64_t>(), static_cast<uint64_t>(tid));
  EXPECT_NE(tid, gettid());
}

TEST_F(RtkitTest, a_refusal_is_the_reason_given) {
  start_rtkit(
      "raise dbus.exceptions.DBusException('Operation not permitted', "
      "name='org.freedesktop.DBus.Error.AccessDenied')");
  ::setenv("QAUDIO_RT_VIA", "rtkit", 1);
  RealtimeResult res = make_thread_realtime(kRealtimePriority);
  EXPECT_FALSE(res.granted);
  EXPECT_NE(res.reason.find("MakeThreadRealtime"), std::string::npos) << res.reason;
  EXPECT_NE(res.reason.find("Operation not permitted"), std::string::npos) << res.reason;
  EXPECT_NE(res.describe().find("no real-time scheduling"), std::string::npos);
}

TEST_F(RtkitTest, no_rtkit_on_the_bus_is_a_clear_reason) {
  ::setenv("QAUDIO_RT_VIA", "rtkit", 1);
  RealtimeResult res = make_thread_realtime(kRealtimePriority);
  EXPECT_FALSE(res.granted);
  EXPECT_NE(res.reason.find("RTKit"), std::string::npos) << res.reason;
}

TEST(Realtime, qaudio_no_rt_disables_every_way) {
  ::setenv("QAUDIO_NO_RT", "1", 1);
  RealtimeResult res = make_thread_realtime(kRealtimePriority);
  ::unsetenv("QAUDIO_NO_RT");
  EXPECT_FALSE(res.granted);
  EXPECT_EQ(res.reason, "QAUDIO_NO_RT=1");
}

}  // namespace
}  // namespace qaudio
