// The shm transport against a hostile peer: a fake server that grants bad
// memory, bad fds or a bad hello (the client refuses, never maps it), and
// peers that corrupt the shared indices after the grant (the other side goes
// Closed, no crash, no out-of-bounds access).
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "channel_fixture.hpp"
#include "shm_ring.hpp"
#include "socket_util.hpp"

namespace qaudio::testing {
namespace {

using detail::UniqueFd;
using detail::UnixListener;

// What a (possibly hostile) server grants: memory, eventfds, a hello.
struct Grant {
  shm::Layout layout;
  UniqueFd memfd, efd_server, efd_client;
  shm::Header* hdr = nullptr;
  size_t map_size = 0;

  static Grant make(RingSizes sizes, bool seal = true, int64_t file_size = -1) {
    Grant g;
    g.layout = *shm::make_layout(sizes);
    g.memfd.reset(::memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    off_t size = file_size >= 0 ? file_size : static_cast<off_t>(g.layout.total_size);
    EXPECT_EQ(::ftruncate(g.memfd.get(), size), 0);
    if (seal) {
      EXPECT_EQ(::fcntl(g.memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    }
    g.map_size = static_cast<size_t>(size);
    g.hdr = new (::mmap(nullptr, g.map_size, PROT_READ | PROT_WRITE, MAP_SHARED, g.memfd.get(), 0))
        shm::Header{};
    g.efd_server.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    g.efd_client.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    return g;
  }
  Grant() = default;
  Grant(Grant&& o) noexcept
      : layout(o.layout),
        memfd(std::move(o.memfd)),
        efd_server(std::move(o.efd_server)),
        efd_client(std::move(o.efd_client)),
        hdr(std::exchange(o.hdr, nullptr)),
        map_size(o.map_size) {}
  ~Grant() {
    if (hdr) {
      ::munmap(hdr, map_size);
    }
  }
  shm::Hello hello() const { return shm::make_hello(layout); }
};

bool send_grant(int sock, const void* msg, size_t len, std::vector<int> fds) {
  iovec iov{const_cast<void*>(msg), len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * std::max<size_t>(fds.size(), 1)));
  if (!fds.empty()) {
    m.msg_control = cbuf.data();
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return ::sendmsg(sock, &m, MSG_NOSIGNAL) == static_cast<ssize_t>(len);
}

class ChannelShmHostile : public ChannelShm {
 protected:
  std::string path() const { return dir_ + "/vchan.5.0.4713.shm"; }

  // Listens where a server would, lets a client connect (zero timeout, so it
  // is Waiting), and accepts it. Returns the fake server's end.
  UniqueFd fake_server_with_client(ChannelPtr& client) {
    auto l = UnixListener::create(path());
    EXPECT_TRUE(l);
    listener_ = std::move(*l);
    auto c = transport_->connect(addr_, 0ms);
    EXPECT_TRUE(c);
    client = std::move(*c);
    EXPECT_EQ(client->state(), ChannelState::Waiting);
    pollfd p{listener_.fd(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 5000), 1);
    return listener_.accept_one();
  }

  // Pumps the client until it leaves Waiting.
  ChannelState settle(Channel& client) {
    pump_until({&client}, [&] { return client.state() != ChannelState::Waiting; });
    return client.state();
  }

  // A fake server thread grants `msg` + `fds`; connect() must fail naming `why`.
  void expect_refused(const void* msg, size_t len, std::vector<int> fds, const char* why) {
    auto l = UnixListener::create(path());
    ASSERT_TRUE(l);
    std::thread server([&] {
      pollfd p{l->fd(), POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) {
        return;
      }
      UniqueFd peer = l->accept_one();
      send_grant(peer.get(), msg, len, fds);
      pollfd q{peer.get(), POLLIN, 0};
      ::poll(&q, 1, 5000);  // keep the socket until the client judged the grant
    });
    auto c = transport_->connect(addr_, 5s);
    server.join();
    ASSERT_FALSE(c) << "client accepted a bad grant";
    EXPECT_NE(c.error().message.find(why), std::string::npos) << c.error().message;
  }

  UnixListener listener_;
};

TEST_F(ChannelShmHostile, ClientRefusesAHelloWithBadMagic) {
  auto g = Grant::make({4096, 4096}, "bad magic");
  auto h = g.hello();
  h.magic = 0x12345678;
  expect_refused(&h, sizeof(h), {g.memfd.get(), g.efd_server.get(), g.efd_client.get()},
                 "bad magic");
}

TEST_F(ChannelShmHostile, ClientRefusesAMemfdSmallerThanTheDeclaredLayout) {
  auto full = shm::make_layout({4096, 4096});
  auto g = Grant::make({4096, 4096}, true, static_cast<int64_t>(full->total_size) - 4096);
  auto h = g.hello();
  expect_refused(&h, sizeof(h), {g.memfd.get(), g.efd_server.get(), g.efd_client.get()},
                 "memfd has");
}

TEST_F(ChannelShmHostile, ClientRefusesAnUnsealedMemfd) {
  // Unsealed, the server could shrink it later and crash the client (SIGBUS).
  auto g = Grant::make({4096, 4096}, /*seal=*/false);
  auto h = g.hello();
  expect_refused(&h, sizeof(h), {g.memfd.get(), g.efd_server.get(), g.efd_client.get()},
                 "not sealed");
}

TEST_F(ChannelShmHostile, ClientRefusesTheWrongNumberOfFds) {
  auto g = Grant::make({4096, 4096}, "carries 2 fds");
  auto h = g.hello();
  expect_refused(&h, sizeof(h), {g.memfd.get(), g.efd_server.get()}, "carries 2 fds");
}

TEST_F(ChannelShmHostile, ClientRefusesWakeUpFdsThatAreNotEventfds) {
  auto g = Grant::make({4096, 4096}, "not eventfds");
  auto h = g.hello();
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  expect_refused(&h, sizeof(h), {g.memfd.get(), r.get(), g.efd_client.get()}, "not eventfds");
}

TEST_F(ChannelShmHostile, ClientRefusesAShortHello) {
  auto g = Grant::make({4096, 4096}, "hello is 10 bytes");
  auto h = g.hello();
  expect_refused(&h, 10, {g.memfd.get(), g.efd_server.get(), g.efd_client.get()},
                 "hello is 10 bytes");
}

TEST_F(ChannelShmHostile, ClientSeesClosedWhenTheServerHangsUpWithoutGranting) {
  ChannelPtr client;
  UniqueFd peer = fake_server_with_client(client);
  peer.reset();
  EXPECT_EQ(settle(*client), ChannelState::Closed);
}

TEST_F(ChannelShmHostile, ConnectWithATimeoutReportsTheRefusal) {
  auto l = UnixListener::create(path());
  ASSERT_TRUE(l);
  auto g = Grant::make({4096, 4096});
  std::thread server([&] {
    pollfd p{l->fd(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) {
      return;
    }
    UniqueFd peer = l->accept_one();
    auto h = g.hello();
    h.version = 99;
    send_grant(peer.get(), &h, sizeof(h), {g.memfd.get(), g.efd_server.get(), g.efd_client.get()});
    // Keep the socket until the client has judged the grant.
    pollfd q{peer.get(), POLLIN, 0};
    ::poll(&q, 1, 5000);
  });
  auto c = transport_->connect(addr_, 5s);
  server.join();
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("unsupported version 99"), std::string::npos)
      << c.error().message;
}

TEST_F(ChannelShmHostile, CorruptProducerIndexFromTheServerClosesTheClient) {
  auto g = Grant::make({4096, 4096});
  ChannelPtr client;
  UniqueFd peer = fake_server_with_client(client);
  auto h = g.hello();
  ASSERT_TRUE(send_grant(peer.get(), &h, sizeof(h),
                         {g.memfd.get(), g.efd_server.get(), g.efd_client.get()}));
  ASSERT_EQ(settle(*client), ChannelState::Open);
  EXPECT_EQ(client->data_ready(), 0u);

  g.hdr->ring[shm::kServerToClient].prod.store(3 * 4096 + 17);
  uint64_t one = 1;
  ASSERT_EQ(::write(g.efd_client.get(), &one, 8), 8);
  ASSERT_TRUE(fd_wakes(*client));
  client->handle_events();
  std::vector<std::byte> out(8192);
  EXPECT_EQ(client->read(out), 0u);
  EXPECT_EQ(client->state(), ChannelState::Closed);
  EXPECT_EQ(client->write(out), 0u);
}

TEST_F(ChannelShmHostile, CorruptConsumerIndexFromTheServerClosesTheClientsWrites) {
  auto g = Grant::make({4096, 4096});
  ChannelPtr client;
  UniqueFd peer = fake_server_with_client(client);
  auto h = g.hello();
  ASSERT_TRUE(send_grant(peer.get(), &h, sizeof(h),
                         {g.memfd.get(), g.efd_server.get(), g.efd_client.get()}));
  ASSERT_EQ(settle(*client), ChannelState::Open);
  g.hdr->ring[shm::kClientToServer].cons.store(0x80000000u);
  std::vector<std::byte> in(100);
  EXPECT_EQ(client->write(in), 0u);
  EXPECT_EQ(client->state(), ChannelState::Closed);
}

// The other role: a hostile client maps the real server's grant and corrupts
// the indices the server reads.
TEST_F(ChannelShmHostile, CorruptIndicesFromTheClientCloseTheServer) {
  auto srv = serve({4096, 4096});
  ASSERT_TRUE(srv);
  auto sock = detail::connect_unix(path(), 0ms);
  ASSERT_TRUE(sock);
  ASSERT_TRUE(pump_until({srv.get()}, [&] { return srv->is_open(); }));
  shm::Hello h{};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 3)];
  iovec iov{&h, sizeof(h)};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = cbuf;
  m.msg_controllen = sizeof(cbuf);
  pollfd p{sock->get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  ASSERT_EQ(::recvmsg(sock->get(), &m, MSG_CMSG_CLOEXEC), static_cast<ssize_t>(sizeof(h)));
  int fds[3];
  std::memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(fds));
  UniqueFd memfd(fds[0]), efd_s(fds[1]), efd_c(fds[2]);
  void* base = ::mmap(nullptr, h.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  ASSERT_NE(base, MAP_FAILED);
  auto* hdr = static_cast<shm::Header*>(base);

  hdr->ring[shm::kClientToServer].prod.store(0xFFFFFFFFu);  // "wrote" 4 GiB
  uint64_t one = 1;
  ASSERT_EQ(::write(efd_s.get(), &one, 8), 8);
  ASSERT_TRUE(fd_wakes(*srv));
  srv->handle_events();
  std::vector<std::byte> out(64);
  EXPECT_EQ(srv->read(out), 0u);
  EXPECT_EQ(srv->state(), ChannelState::Closed);
  ::munmap(base, h.total_size);
}

}  // namespace
}  // namespace qaudio::testing
