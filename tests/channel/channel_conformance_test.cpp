// One conformance suite run against every same-host transport: each
// CONFORMANCE(Name) body runs as ChannelUnix.Name and ChannelShm.Name.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "channel_fixture.hpp"

namespace qaudio::testing {
namespace {

#define CONFORMANCE(Name)              \
  void Name##_body(ChannelFixture& f); \
  TEST_F(ChannelUnix, Name) {          \
    Name##_body(*this);                \
  }                                    \
  TEST_F(ChannelShm, Name) {           \
    Name##_body(*this);                \
  }                                    \
  void Name##_body(ChannelFixture& f)

std::vector<std::byte> read_exactly(Channel& ch, size_t n) {
  std::vector<std::byte> out(n);
  out.resize(read_all(ch, out, 10s));
  return out;
}

CONFORMANCE(BothDirectionsCarryExactBytes) {
  auto [srv, cli] = f.open_pair({8192, 8192});
  ASSERT_TRUE(srv && cli);
  auto down = pattern(3000, 1);
  auto up = pattern(2500, 2);
  ASSERT_EQ(write_all(*srv, down, 5s), down.size());
  ASSERT_EQ(write_all(*cli, up, 5s), up.size());
  EXPECT_EQ(read_exactly(*cli, down.size()), down);
  EXPECT_EQ(read_exactly(*srv, up.size()), up);
  EXPECT_TRUE(srv->is_open());
  EXPECT_TRUE(cli->is_open());
}

void stream_through(Channel& from, Channel& to, size_t total) {
  auto data = pattern(total, 7);
  size_t written = 0;
  std::thread writer([&] { written = write_all(from, data, 30s); });
  auto got = read_exactly(to, total);
  writer.join();
  EXPECT_EQ(written, total);
  ASSERT_EQ(got.size(), total);
  EXPECT_TRUE(got == data) << "bytes differ after a " << total << "-byte transfer";
}

CONFORMANCE(OneMebibyteThroughSmallRingsKeepsEveryByte) {
  auto [srv, cli] = f.open_pair({4096, 4096});
  ASSERT_TRUE(srv && cli);
  stream_through(*srv, *cli, 1 << 20);
  stream_through(*cli, *srv, 1 << 20);
}

CONFORMANCE(FullRingRefusesMoreUntilReaderDrains) {
  auto [srv, cli] = f.open_pair({4096, 4096});
  ASSERT_TRUE(srv && cli);
  auto chunk = pattern(1024, 3);
  size_t total = 0;
  for (int i = 0; i < 100000; ++i) {
    size_t n = srv->write(chunk);
    total += n;
    if (n == 0) {
      break;
    }
  }
  ASSERT_GT(total, 0u);
  EXPECT_EQ(srv->buffer_space(), 0u);
  EXPECT_EQ(srv->write(std::span(chunk).first(1)), 0u);
  // Quiet the server's fd, then check that draining is what wakes it.
  srv->handle_events();
  pollfd p{srv->fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "server fd readable before the reader drained";

  std::vector<std::byte> sink(total);
  EXPECT_EQ(read_all(*cli, sink, 5s), total);
  ASSERT_TRUE(fd_wakes(*srv)) << "writer not woken after the reader drained";
  srv->handle_events();
  EXPECT_GT(srv->buffer_space(), 0u);
  EXPECT_GT(srv->write(chunk), 0u);
}

CONFORMANCE(ClientCloseIsSeenByServerViaFd) {
  auto [srv, cli] = f.open_pair();
  ASSERT_TRUE(srv && cli);
  auto last = pattern(100, 4);
  ASSERT_EQ(write_all(*cli, last, 5s), last.size());
  cli->close();
  EXPECT_EQ(cli->state(), ChannelState::Closed);
  ASSERT_TRUE(fd_wakes(*srv));
  // What the client wrote before leaving is still delivered, then Closed.
  EXPECT_EQ(read_exactly(*srv, last.size()), last);
  EXPECT_TRUE(pump_until({srv.get()}, [&] {
    std::byte b[16];
    srv->read(b);
    return srv->state() == ChannelState::Closed;
  }));
  EXPECT_EQ(srv->write(last), 0u);
}

CONFORMANCE(ServerCloseIsSeenByClientViaFd) {
  auto [srv, cli] = f.open_pair();
  ASSERT_TRUE(srv && cli);
  srv->close();
  EXPECT_EQ(srv->fd(), -1);
  ASSERT_TRUE(fd_wakes(*cli));
  EXPECT_TRUE(pump_until({cli.get()}, [&] {
    cli->data_ready();
    return cli->state() == ChannelState::Closed;
  }));
  std::byte b[4] = {};
  EXPECT_EQ(cli->write(b), 0u);
}

CONFORMANCE(ServerServesAgainAfterClientLeft) {
  {
    auto [srv, cli] = f.open_pair();
    ASSERT_TRUE(srv && cli);
    cli.reset();  // the client goes away without close()
    ASSERT_TRUE(pump_until({srv.get()}, [&] {
      srv->data_ready();
      return srv->state() == ChannelState::Closed;
    }));
  }
  auto [srv, cli] = f.open_pair();
  ASSERT_TRUE(srv && cli);
  auto msg = pattern(500, 5);
  ASSERT_EQ(write_all(*cli, msg, 5s), msg.size());
  EXPECT_EQ(read_exactly(*srv, msg.size()), msg);
}

CONFORMANCE(NewServeReplacesAStaleListenerThatIsDestroyedLater) {
  auto old_srv = f.serve();
  auto new_srv = f.serve();
  ASSERT_TRUE(old_srv && new_srv);
  old_srv.reset();  // must not remove the newer server's socket
  auto c = f.transport_->connect(f.addr_, 0ms);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(
      pump_until({new_srv.get(), c->get()}, [&] { return new_srv->is_open() && (*c)->is_open(); }));
}

CONFORMANCE(ConnectWithoutServerFailsAfterTimeout) {
  auto start = std::chrono::steady_clock::now();
  auto c = f.transport_->connect(f.addr_, 200ms);
  EXPECT_FALSE(c);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
  if (!c) {
    EXPECT_NE(c.error().message.find("vchan.5.0.4713"), std::string::npos) << c.error().message;
  }
  EXPECT_FALSE(f.transport_->connect(f.addr_, 0ms));
}

CONFORMANCE(SecondClientIsRefused) {
  auto [srv, cli] = f.open_pair();
  ASSERT_TRUE(srv && cli);
  auto second = f.transport_->connect(f.addr_, 0ms);
  EXPECT_FALSE(second);
  EXPECT_TRUE(cli->is_open());
}

CONFORMANCE(ClientQueuedBeforeAcceptIsDropped) {
  auto srv = f.serve();
  ASSERT_TRUE(srv);
  auto c1 = f.transport_->connect(f.addr_, 0ms);
  auto c2 = f.transport_->connect(f.addr_, 0ms);
  ASSERT_TRUE(c1 && c2);
  ASSERT_TRUE(pump_until({srv.get()}, [&] { return srv->is_open(); }));
  // Exactly one client gets the server; the other ends Closed.
  ASSERT_TRUE(pump_until({c1->get(), c2->get()},
                         [&] {
                           (*c1)->data_ready();
                           (*c2)->data_ready();
                           return ((*c1)->is_open() && (*c2)->state() == ChannelState::Closed) ||
                                  ((*c2)->is_open() && (*c1)->state() == ChannelState::Closed);
                         }))
      << to_string((*c1)->state()) << " / " << to_string((*c2)->state());
  Channel& winner = (*c1)->is_open() ? **c1 : **c2;
  auto msg = pattern(64, 6);
  ASSERT_EQ(write_all(*srv, msg, 5s), msg.size());
  EXPECT_EQ(read_exactly(winner, msg.size()), msg);
}

CONFORMANCE(ServeRefusesToReplaceANonSocketFile) {
  std::string ext = f.transport_->name() == "unix" ? "sock" : "shm";
  std::string path = f.dir_ + "/vchan.5.0.4713." + ext;
  std::ofstream(path) << "not a socket";
  auto s = f.transport_->serve(f.addr_, {});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find(path), std::string::npos) << s.error().message;
}

CONFORMANCE(DescribeNamesTransportAndPath) {
  auto srv = f.serve();
  ASSERT_TRUE(srv);
  std::string d = srv->describe();
  EXPECT_EQ(d.rfind(f.transport_->name() + ":", 0), 0u) << d;
  EXPECT_NE(d.find("vchan.5.0.4713"), std::string::npos) << d;
  EXPECT_EQ(srv->state(), ChannelState::Waiting);
  EXPECT_GE(srv->fd(), 0);
}

CONFORMANCE(ServeRejectsAnOverlongPath) {
  auto t = make_transport(f.transport_->name() + ":/" + std::string(120, 'x'));
  ASSERT_TRUE(t);
  auto s = (*t)->serve(f.addr_, {});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("too long"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace qaudio::testing
