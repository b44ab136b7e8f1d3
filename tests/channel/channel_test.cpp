// make_transport() spec parsing, to_string(ChannelState), and the blocking
// helpers' edge cases.
#include <gtest/gtest.h>

#include "channel_fixture.hpp"
#include "qaudio/channel.hpp"
#include "qaudio/config.h"

namespace qaudio {
namespace {

using namespace std::chrono_literals;

TEST(ChannelSpec, UnixAndShmTakeADirectory) {
  auto u = make_transport("unix:/run/qaudio");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ((*u)->name(), "unix");
  auto s = make_transport("shm:/tmp");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ((*s)->name(), "shm");
}

TEST(ChannelSpec, XenDependsOnTheBuild) {
  auto x = make_transport("xen");
#if QAUDIO_HAVE_XEN
  ASSERT_TRUE(x) << x.error().message;
  EXPECT_EQ((*x)->name(), "xen");
#else
  ASSERT_FALSE(x);
  EXPECT_NE(x.error().message.find("built without Xen support"), std::string::npos);
#endif
}

TEST(ChannelSpec, MalformedSpecsNameTheSpecAndTheAcceptedForms) {
  for (const char* bad : {"", "unix", "unix:", "shm:", "tcp:host:1", "UNIX:/tmp", "xen:/x"}) {
    auto t = make_transport(bad);
    ASSERT_FALSE(t) << "accepted '" << bad << "'";
    const auto& m = t.error().message;
    EXPECT_NE(m.find(std::string("'") + bad + "'"), std::string::npos) << m;
    EXPECT_NE(m.find("unix:DIR, shm:DIR or xen"), std::string::npos) << m;
  }
}

TEST(ChannelState, ToStringNamesEveryState) {
  EXPECT_EQ(to_string(ChannelState::Waiting), "waiting");
  EXPECT_EQ(to_string(ChannelState::Open), "open");
  EXPECT_EQ(to_string(ChannelState::Closed), "closed");
}

class ChannelHelpers : public testing::ChannelUnix {};

TEST_F(ChannelHelpers, WaitOpenTimesOutWithoutAClient) {
  auto srv = serve();
  ASSERT_TRUE(srv);
  EXPECT_FALSE(wait_open(*srv, 50ms));
  EXPECT_EQ(srv->state(), ChannelState::Waiting);
}

TEST_F(ChannelHelpers, ReadAllReturnsWhatArrivedBeforeTheDeadline) {
  auto [srv, cli] = open_pair();
  ASSERT_TRUE(srv && cli);
  auto msg = testing::pattern(10, 9);
  ASSERT_EQ(write_all(*srv, msg, 1s), 10u);
  std::vector<std::byte> out(100);
  EXPECT_EQ(read_all(*cli, out, 50ms), 10u);
  EXPECT_TRUE(std::equal(msg.begin(), msg.end(), out.begin()));
}

TEST_F(ChannelHelpers, HelpersStopAtAClosedChannel) {
  auto [srv, cli] = open_pair();
  ASSERT_TRUE(srv && cli);
  cli->close();
  std::vector<std::byte> out(100);
  EXPECT_EQ(read_all(*srv, out, 5s), 0u);
  EXPECT_EQ(srv->state(), ChannelState::Closed);
  EXPECT_EQ(write_all(*srv, out, 5s), 0u);
}

}  // namespace
}  // namespace qaudio
