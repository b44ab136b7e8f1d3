// The control socket server on a real EventLoop and Unix socket: peer
// credentials, limits (line size, clients, output queue), pipelining,
// half-closed clients, and the event stream.
#include "control_server.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "control_test_util.hpp"
#include "fake_control_target.hpp"

namespace qaudio::control {
namespace {

using test::LineClient;
using test::ServedApi;

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::make_temp_dir();
    ASSERT_FALSE(dir.empty());
    opt.path = dir + "/sub/control";
  }
  void TearDown() override {
    served.reset();
    std::string cmd = "rm -rf '" + dir + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  void serve() {
    served = std::make_unique<ServedApi>(target, opt);
    auto r = served->start();
    ASSERT_TRUE(r) << r.error().message;
  }
  static json parse(const std::string& l) { return json::parse(l, nullptr, false); }

  std::string dir;
  ControlServerOptions opt;
  FakeControlTarget target;
  std::unique_ptr<ServedApi> served;
};

TEST_F(ControlServerTest, own_uid_is_accepted_and_answered) {
  serve();
  LineClient c(opt.path);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("{\"id\":1,\"method\":\"info\"}\n"));
  json r = parse(c.read_line());
  EXPECT_EQ(r["id"], 1);
  EXPECT_EQ(r["result"]["backend"], "fake");
  struct stat st {};
  ASSERT_EQ(::stat(opt.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "no group configured: owner only";
}

TEST_F(ControlServerTest, authorize_sees_peer_credentials) {
  PeerCred seen{};
  opt.authorize = [&](const PeerCred& c) {
    seen = c;
    return true;
  };
  serve();
  LineClient c(opt.path);
  c.send("{\"id\":1,\"method\":\"info\"}\n");
  ASSERT_FALSE(c.read_line().empty());
  EXPECT_EQ(seen.uid, ::geteuid());
  EXPECT_EQ(seen.pid, ::getpid());
}

TEST_F(ControlServerTest, refused_uid_gets_error_line_and_is_disconnected) {
  opt.authorize = [](const PeerCred&) { return false; };
  serve();
  LineClient c(opt.path);
  ASSERT_TRUE(c.connected());
  json r = parse(c.read_line());
  EXPECT_EQ(r["error"]["code"], "refused");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("uid"), std::string::npos);
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(served->on_loop([](ControlServer& s) { return s.stats().refused_credentials; }), 1u);
  EXPECT_TRUE(target.calls.empty());
}

TEST_F(ControlServerTest, group_socket_is_group_writable) {
  opt.allowed_group = ::getegid();
  serve();
  struct stat st {};
  ASSERT_EQ(::stat(opt.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, ::getegid());
}

TEST_F(ControlServerTest, pipelined_requests_are_answered_in_order) {
  serve();
  LineClient c(opt.path);
  std::string batch;
  for (int i = 0; i < 2000; ++i) {
    batch += "{\"id\":" + std::to_string(i) + ",\"method\":\"list\"}\n";
  }
  std::thread writer([&] { c.send(batch); });
  for (int i = 0; i < 2000; ++i) {
    json r = parse(c.read_line());
    ASSERT_EQ(r["id"], i);
    ASSERT_EQ(r["result"]["qubes"].size(), 2u);
  }
  writer.join();
}

TEST_F(ControlServerTest, requests_split_across_writes_are_joined) {
  serve();
  LineClient c(opt.path);
  c.send("{\"id\":7,\"met");
  c.send("hod\":\"info\"}");
  c.send("\n");
  EXPECT_EQ(parse(c.read_line())["id"], 7);
}

TEST_F(ControlServerTest, too_long_line_gets_error_and_disconnect) {
  opt.max_line = 1024;
  serve();
  LineClient c(opt.path);
  c.send(std::string(5000, 'x'));
  json r = parse(c.read_line());
  EXPECT_EQ(r["error"]["code"], "invalid_request");
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(served->on_loop([](ControlServer& s) { return s.stats().dropped_long_line; }), 1u);
  LineClient other(opt.path);
  other.send("{\"id\":1,\"method\":\"info\"}\n");
  EXPECT_EQ(parse(other.read_line())["id"], 1) << "the server keeps serving";
}

TEST_F(ControlServerTest, clients_beyond_the_limit_are_refused) {
  opt.max_clients = 3;
  opt.evict_idle_after = std::chrono::hours(1);  // nobody counts as idle here
  serve();
  std::vector<std::unique_ptr<LineClient>> cs;
  for (int i = 0; i < 3; ++i) {
    cs.push_back(std::make_unique<LineClient>(opt.path));
    cs.back()->send("{\"id\":1,\"method\":\"info\"}\n");
    ASSERT_EQ(parse(cs.back()->read_line())["id"], 1);
  }
  LineClient extra(opt.path);
  json r = parse(extra.read_line());
  EXPECT_EQ(r["error"]["code"], "refused");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("too many"), std::string::npos);
  EXPECT_TRUE(extra.wait_eof());
  cs.pop_back();
  ASSERT_TRUE(served->wait_for([](ControlServer& s) { return s.client_count() == 2; }));
  LineClient again(opt.path);
  again.send("{\"id\":2,\"method\":\"info\"}\n");
  EXPECT_EQ(parse(again.read_line())["id"], 2) << "a freed slot is usable again";
}

TEST_F(ControlServerTest, when_full_the_longest_idle_client_makes_room_but_subscribers_stay) {
  opt.max_clients = 3;
  opt.evict_idle_after = std::chrono::milliseconds(0);
  serve();
  LineClient sub(opt.path);
  sub.send("{\"id\":1,\"method\":\"subscribe\"}\n");
  ASSERT_EQ(parse(sub.read_line())["id"], 1);
  LineClient idle1(opt.path);  // connected, never asks anything
  LineClient idle2(opt.path);
  ASSERT_TRUE(served->wait_for([](ControlServer& s) { return s.client_count() == 3; }));
  LineClient user(opt.path);
  user.send("{\"id\":2,\"method\":\"info\"}\n");
  EXPECT_EQ(parse(user.read_line())["id"], 2) << "the newcomer is served";
  json r = parse(idle1.read_line());
  EXPECT_EQ(r["error"]["code"], "refused");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("idle"), std::string::npos);
  EXPECT_TRUE(idle1.wait_eof()) << "the longest idle client was closed";
  EXPECT_EQ(served->on_loop([](ControlServer& s) { return s.stats().evicted_idle; }), 1u);
  served->on_loop([](ControlServer& s) {
    s.publish(event_volume_changed("work", 70));
    return 0;
  });
  EXPECT_EQ(parse(sub.read_line())["event"], "volume_changed") << "the subscriber stays";
}

TEST_F(ControlServerTest, subscriber_receives_published_events_in_order) {
  serve();
  LineClient sub(opt.path);
  sub.send("{\"id\":1,\"method\":\"subscribe\"}\n");
  EXPECT_EQ(parse(sub.read_line())["result"]["subscribed"], true);
  LineClient plain(opt.path);
  served->on_loop([](ControlServer& s) {
    s.publish(event_qube_connected("work", "native"));
    s.publish(event_volume_changed("work", 70));
    s.publish(event_mic_requested("work"));
  });
  EXPECT_EQ(parse(sub.read_line())["event"], "qube_connected");
  json v = parse(sub.read_line());
  EXPECT_EQ(v["event"], "volume_changed");
  EXPECT_EQ(v["data"]["volume"], 70);
  EXPECT_EQ(parse(sub.read_line())["event"], "mic_requested");
  plain.send("{\"id\":5,\"method\":\"info\"}\n");
  EXPECT_EQ(parse(plain.read_line())["id"], 5) << "non-subscribers get no events";
}

TEST_F(ControlServerTest, subscriber_can_still_send_requests) {
  serve();
  LineClient sub(opt.path);
  sub.send("{\"id\":1,\"method\":\"subscribe\"}\n");
  sub.read_line();
  sub.send("{\"id\":2,\"method\":\"set_mute\",\"params\":{\"qube\":\"work\",\"muted\":true}}\n");
  EXPECT_EQ(parse(sub.read_line())["id"], 2);
}

TEST_F(ControlServerTest, slow_subscriber_is_disconnected_while_others_are_served) {
  opt.max_queue = 4096;
  serve();
  LineClient slow(opt.path);
  slow.send("{\"id\":1,\"method\":\"subscribe\"}\n");
  ASSERT_EQ(parse(slow.read_line())["id"], 1);
  LineClient other(opt.path);

  // Enough events to fill the slow client's socket buffer and then its queue.
  for (int batch = 0; batch < 20; ++batch) {
    served->on_loop([&](ControlServer& s) {
      for (int i = 0; i < 1000; ++i) {
        s.publish(event_volume_changed("work", static_cast<uint32_t>(batch * 1000 + i) % 151));
      }
    });
  }
  EXPECT_TRUE(served->wait_for([](ControlServer& s) { return s.stats().dropped_slow == 1; }));
  other.send("{\"id\":3,\"method\":\"info\"}\n");
  EXPECT_EQ(parse(other.read_line())["id"], 3);
  // What was sent before the cut arrives intact and in order, then EOF.
  uint32_t expect = 0;
  for (;;) {
    std::string l = slow.read_line();
    if (l.empty()) {
      break;
    }
    json e = parse(l);
    ASSERT_EQ(e["data"]["volume"], expect % 151);
    ++expect;
  }
  EXPECT_TRUE(slow.eof());
  EXPECT_GT(expect, 0u);
  EXPECT_LT(expect, 20000u);
}

TEST_F(ControlServerTest, client_that_stops_reading_replies_is_paused_not_stalling_others) {
  opt.max_queue = 8192;
  serve();
  LineClient hog(opt.path);
  std::string batch;
  for (int i = 0; i < 5000; ++i) {
    batch += "{\"id\":" + std::to_string(i) + ",\"method\":\"list\"}\n";
  }
  std::thread writer([&] { hog.send(batch); });  // blocks once the server pauses it
  LineClient other(opt.path);
  other.send("{\"id\":1,\"method\":\"info\"}\n");
  EXPECT_EQ(parse(other.read_line())["id"], 1);
  for (int i = 0; i < 5000; ++i) {  // now drain: every reply arrives, in order
    json r = parse(hog.read_line());
    ASSERT_EQ(r["id"], i);
  }
  writer.join();
}

TEST_F(ControlServerTest, half_closed_client_still_gets_its_replies) {
  serve();
  LineClient c(opt.path);
  c.send("{\"id\":1,\"method\":\"info\"}\n{\"id\":2,\"method\":\"list\"}\n");
  ::shutdown(c.fd(), SHUT_WR);
  EXPECT_EQ(parse(c.read_line())["id"], 1);
  EXPECT_EQ(parse(c.read_line())["id"], 2);
  EXPECT_TRUE(c.wait_eof());
}

TEST_F(ControlServerTest, stale_socket_is_replaced_but_live_one_is_not) {
  serve();
  ControlServerOptions o2 = opt;
  FakeControlTarget t2;
  ServedApi second(t2, o2);
  auto r = second.start();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("already serves"), std::string::npos);
  served.reset();  // removes the socket file
  // Leave a stale socket file behind, as after a crash.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, opt.path.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::close(fd);
  ServedApi third(t2, o2);
  auto r3 = third.start();
  ASSERT_TRUE(r3) << r3.error().message;
  LineClient c(opt.path);
  c.send("{\"id\":1,\"method\":\"info\"}\n");
  EXPECT_EQ(parse(c.read_line())["id"], 1);
}

TEST(ControlServerPath, default_path_follows_runtime_dir) {
  const char* old = std::getenv("XDG_RUNTIME_DIR");
  std::string saved = old ? old : "";
  ::setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
  EXPECT_EQ(default_control_path(), "/run/user/1000/qaudio/control");
  ::unsetenv("XDG_RUNTIME_DIR");
  EXPECT_EQ(default_control_path(), "/run/qaudio/control");
  if (old) {
    ::setenv("XDG_RUNTIME_DIR", saved.c_str(), 1);
  }
}

}  // namespace
}  // namespace qaudio::control
