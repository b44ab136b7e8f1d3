// DomainWatcher: domid parsing and the file-backed watcher (the QubesDB fake).
#include "domain_watcher.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "sound_servers.hpp"

namespace qaudio::agent {
namespace {

using namespace std::chrono_literals;

TEST(DomainWatcher, parses_domids_as_qubesdb_stores_them) {
  EXPECT_EQ(parse_domid("3"), 3u);
  EXPECT_EQ(parse_domid("12\n"), 12u);
  EXPECT_EQ(parse_domid(""), std::nullopt);
  EXPECT_EQ(parse_domid("-1"), std::nullopt);
  EXPECT_EQ(parse_domid("3a"), std::nullopt);
  EXPECT_EQ(parse_domid("99999999"), std::nullopt);
  EXPECT_EQ(parse_domid("32752"), std::nullopt);  // DOMID_FIRST_RESERVED
}

TEST(DomainWatcher, file_watcher_reports_each_new_id_once) {
  qaudio::test::TempDir dir("agent-watch");
  std::string path = dir.path() + "/xid";
  qaudio::test::write_file(path, "4\n");
  FileDomainWatcher w(path, 10ms);
  EXPECT_EQ(w.current(), 4u);
  EventLoop loop;
  std::vector<uint32_t> seen;
  ASSERT_TRUE(w.start(loop, [&](uint32_t id) { seen.push_back(id); }));
  auto run_for = [&](auto pred) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
      loop.run_once(20ms);
    }
  };
  qaudio::test::write_file(path, "7");
  run_for([&] { return !seen.empty(); });
  qaudio::test::write_file(path, "garbage");
  qaudio::test::write_file(path, "9");
  run_for([&] { return seen.size() >= 2; });
  EXPECT_EQ(seen, (std::vector<uint32_t>{7, 9}));
  w.stop();
}

TEST(DomainWatcher, qubesdb_watcher_fails_clearly_without_libqubesdb) {
  auto w = make_qubesdb_watcher();
  if (w) {
    GTEST_SKIP() << "libqubesdb present";
  }
  EXPECT_NE(w.error().message.find("--audiovm-domid"), std::string::npos);
}

}  // namespace
}  // namespace qaudio::agent
