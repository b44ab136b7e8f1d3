// The xen transport without a hypervisor: argument checks and the error paths
// (no /dev/xen here, so libxenvchan fails with ENOENT): a clear error, never a
// crash. The data path is exercised through the unix and shm transports.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>

#include "qaudio/channel.hpp"

namespace qaudio {
namespace {

using namespace std::chrono_literals;

class ChannelXen : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = make_transport("xen");
    ASSERT_TRUE(t) << t.error().message;
    xen_ = std::move(*t);
  }
  bool have_xen() const { return ::access("/dev/xen", F_OK) == 0; }
  std::unique_ptr<Transport> xen_;
};

TEST_F(ChannelXen, ServeWithoutHypervisorFailsWithAClearError) {
  if (have_xen()) {
    GTEST_SKIP() << "running on Xen";
  }
  auto s = xen_->serve({5, 0, 4713}, {65536, 8192});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().code, 0);
  EXPECT_NE(s.error().message.find("libxenvchan_server_init"), std::string::npos)
      << s.error().message;
  EXPECT_NE(s.error().message.find("data/vchan/0/4713"), std::string::npos) << s.error().message;
}

TEST_F(ChannelXen, ConnectWithoutHypervisorFailsPromptlyEvenWithATimeout) {
  if (have_xen()) {
    GTEST_SKIP() << "running on Xen";
  }
  for (auto timeout : {0ms, 5000ms}) {
    auto start = std::chrono::steady_clock::now();
    auto c = xen_->connect({5, 0, 4713}, timeout);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ENOENT) << c.error().message;
    EXPECT_NE(c.error().message.find("/local/domain/5/data/vchan/0/4713"), std::string::npos)
        << c.error().message;
    // Without /dev/xen retrying cannot help: no waiting for the whole timeout.
    EXPECT_LT(std::chrono::steady_clock::now() - start, 4000ms);
  }
}

TEST_F(ChannelXen, RejectsLoopbackAndReservedDomainIds) {
  auto same = xen_->serve({3, 3, 4713}, {});
  ASSERT_FALSE(same);
  EXPECT_EQ(same.error().code, EINVAL);
  EXPECT_NE(same.error().message.find("same domain"), std::string::npos);
  auto reserved = xen_->connect({0x7FF0, 0, 4713}, 0ms);
  ASSERT_FALSE(reserved);
  EXPECT_EQ(reserved.error().code, EINVAL);
  EXPECT_NE(reserved.error().message.find("domain id out of range"), std::string::npos);
}

TEST_F(ChannelXen, RejectsRingsAboveTheLibxenvchanMaximum) {
  auto s = xen_->serve({5, 0, 4713}, {(1 << 20) + 1, 8192});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EINVAL);
  EXPECT_NE(s.error().message.find("1 MiB"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace qaudio
