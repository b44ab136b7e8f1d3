// The `shm` transport: two rings in a sealed memfd that the server grants to
// the client over a Unix socket at <dir>/vchan.<server_dom>.<client_dom>.<port>.shm,
// with eventfd wake-ups — the data path of Xen vchan on one kernel.
//
//   auto t = make_transport("shm:/run/qaudio");
//   auto srv = (*t)->serve({5, 0, 4713}, {65536, 8192});  // Waiting
//   auto cli = (*t)->connect({5, 0, 4713}, std::chrono::seconds(2));  // Open
//
// Server: serve() creates the memfd (layout in shm_ring.hpp, sealed against
// shrinking), two eventfds and the listening socket. handle_events() accepts
// ONE client, sends the Hello with {memfd, server eventfd, client eventfd}
// (SCM_RIGHTS), then closes and removes the listening socket. The connected
// socket stays as the liveness signal: hang-up = peer gone.
// Client: connect() connects (retrying until `timeout`), then waits for the
// grant until the same deadline; with a zero timeout it returns at once in
// state Waiting and handle_events() completes the handshake. The grant is
// checked (hello fields, memfd size and seals, eventfd types) before mapping.
//
// fd() is an epoll fd over our eventfd and the socket, stable for the
// channel's life. A writer signals the reader's eventfd only when the reader
// asked (reader_waiting flag, set by data_ready() and by a read() that
// emptied the ring), and likewise for space (buffer_space(), a short write).
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <vector>

#include "qaudio/log.hpp"
#include "shm_ring.hpp"
#include "socket_util.hpp"
#include "transports.hpp"

namespace qaudio::detail {
namespace {

using shm::Layout;
using shm::ShmRing;

void signal_fd(int efd) {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the peer will wake anyway.
  [[maybe_unused]] ssize_t r = ::write(efd, &one, sizeof(one));
}

bool is_eventfd(int fd) {
  char link[64];
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(proc.c_str(), link, sizeof(link) - 1);
  if (n <= 0) {
    return false;
  }
  link[n] = 0;
  return std::strcmp(link, "anon_inode:[eventfd]") == 0;
}

struct Mapping {
  void* base = nullptr;
  size_t size = 0;
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }
  void reset() {
    if (base) {
      ::munmap(base, size);
    }
    base = nullptr;
    size = 0;
  }
};

class ShmChannel final : public Channel {
 public:
  ShmChannel(bool server, std::string path, UniqueFd ep)
      : server_(server), path_(std::move(path)), ep_(std::move(ep)) {}

  // --- server set-up (serve) ---
  Result<void> create(const RingSizes& sizes) {
    auto layout = shm::make_layout(sizes);
    if (!layout) {
      return fail(layout.error());
    }
    layout_ = *layout;
    memfd_.reset(::memfd_create("qaudio-vchan", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!memfd_.valid()) {
      return fail_errno("memfd_create");
    }
    if (::ftruncate(memfd_.get(), static_cast<off_t>(layout_.total_size)) != 0) {
      return fail_errno("ftruncate memfd");
    }
    if (::fcntl(memfd_.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
      return fail_errno("sealing memfd");
    }
    if (auto r = map(); !r) {
      return r;
    }
    auto* hdr = new (map_.base) shm::Header{};
    hdr->magic = shm::kMagic;
    hdr->version = shm::kVersion;
    own_efd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    peer_efd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!own_efd_.valid() || !peer_efd_.valid()) {
      return fail_errno("eventfd");
    }
    auto listener = UnixListener::create(path_);
    if (!listener) {
      return fail(listener.error());
    }
    listener_ = std::move(*listener);
    state_ = ChannelState::Waiting;
    return epoll_add(ep_.get(), listener_.fd(), EPOLLIN);
  }

  // --- client set-up (connect) ---
  Result<void> attach(UniqueFd sock) {
    sock_ = std::move(sock);
    state_ = ChannelState::Waiting;
    return epoll_add(ep_.get(), sock_.get(), EPOLLIN | EPOLLRDHUP);
  }
  const std::string& error() const { return error_; }

  int fd() const override { return ep_.get(); }
  ChannelState state() const override { return state_; }
  std::string describe() const override { return "shm:" + path_; }

  void handle_events() override {
    if (state_ == ChannelState::Closed) {
      return;
    }
    bool sock_event = false;
    uint64_t v;
    if (state_ == ChannelState::Open && ::read(own_efd_.get(), &v, sizeof(v)) == sizeof(v)) {
      // Fast path, one syscall per wake-up: the peer signalled. Should the
      // socket have hung up at the same time, it stays readable (level
      // triggered) and the next call gets here with an empty eventfd.
    } else {
      epoll_event evs[4];
      int n = ::epoll_wait(ep_.get(), evs, 4, 0);
      for (int i = 0; i < n; ++i) {
        if (sock_.valid() && evs[i].data.fd == sock_.get()) {
          sock_event = true;
        }
      }
    }
    if (state_ == ChannelState::Waiting) {
      if (server_) {
        accept_peer();
      } else if (sock_event) {
        receive_grant();
      }
      return;
    }
    if (sock_event && !peer_gone_) {
      if (peer_gone(sock_.get())) {
        peer_gone_ = true;
      } else {
        char c;
        if (::recv(sock_.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
          set_closed("unexpected data on the grant socket");
          return;
        }
      }
    }
    if (rx_.corrupt() || tx_.corrupt()) {
      set_closed("peer corrupted the ring indices");
    } else if (peer_gone_ && rx_.readable() == 0) {
      set_closed("peer left");
    }
  }

  size_t data_ready() override {
    if (state_ != ChannelState::Open) {
      return 0;
    }
    size_t n = rx_.want_data_signal();
    check_after_io(n);
    return n;
  }

  size_t buffer_space() override {
    if (state_ != ChannelState::Open || peer_gone_) {
      return 0;
    }
    size_t n = tx_.want_space_signal();
    check_after_io(1);
    return n;
  }

  size_t read(std::span<std::byte> out) override {
    if (state_ != ChannelState::Open || out.empty()) {
      return 0;
    }
    size_t n = rx_.read(out);
    if (n > 0 && rx_.take_space_signal_request()) {
      signal_fd(peer_efd_.get());
    }
    if (n < out.size() && rx_.want_data_signal() > 0) {
      signal_fd(own_efd_.get());  // data raced in after we looked: wake our poller
    }
    check_after_io(n + rx_.readable());
    return n;
  }

  size_t write(std::span<const std::byte> in) override {
    if (state_ != ChannelState::Open || peer_gone_ || in.empty()) {
      return 0;
    }
    size_t n = tx_.write(in);
    if (n > 0 && tx_.take_data_signal_request()) {
      signal_fd(peer_efd_.get());
    }
    if (n < in.size() && tx_.want_space_signal() > 0) {
      signal_fd(own_efd_.get());  // space freed after we looked: wake our poller
    }
    check_after_io(1);
    return n;
  }

  void close() override {
    state_ = ChannelState::Closed;
    release();
  }

  ~ShmChannel() override { release(); }

 private:
  Result<void> map() {
    void* p =
        ::mmap(nullptr, layout_.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0);
    if (p == MAP_FAILED) {
      return fail_errno("mmap shm channel");
    }
    map_.base = p;
    map_.size = layout_.total_size;
    return {};
  }

  void make_rings() {
    auto* base = static_cast<std::byte*>(map_.base);
    auto* hdr = reinterpret_cast<shm::Header*>(base);
    int in = server_ ? shm::kClientToServer : shm::kServerToClient;
    int out = 1 - in;
    rx_ = ShmRing(&hdr->ring[in], base + layout_.ring_offset[in], layout_.ring_size[in],
                  ShmRing::Role::Reader);
    tx_ = ShmRing(&hdr->ring[out], base + layout_.ring_offset[out], layout_.ring_size[out],
                  ShmRing::Role::Writer);
  }

  void accept_peer() {
    UniqueFd peer = listener_.accept_one();
    if (!peer.valid()) {
      return;
    }
    listener_.stop();  // one client per channel; serve() again for the next
    shm::Hello hello = shm::make_hello(layout_);
    int fds[3] = {memfd_.get(), own_efd_.get(), peer_efd_.get()};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(fds))] = {};
    iovec iov{&hello, sizeof(hello)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(fds));
    std::memcpy(CMSG_DATA(c), fds, sizeof(fds));
    if (::sendmsg(peer.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT) != sizeof(hello)) {
      set_closed("sending the grant failed");
      return;
    }
    memfd_.reset();  // the mapping stays; the client holds its own fd
    sock_ = std::move(peer);
    open_data_path();
  }

  void receive_grant() {
    shm::Hello hello;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)] = {};
    iovec iov{&hello, sizeof(hello)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      return;
    }
    // Take ownership of every fd received, so that extras are closed.
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds.emplace_back(fd);
        }
      }
    }
    if (n <= 0) {
      set_closed(n == 0 ? "server left before granting" : "recvmsg failed");
      return;
    }
    if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
      set_closed("grant truncated");
      return;
    }
    if (fds.size() != 3) {
      set_closed("grant carries " + std::to_string(fds.size()) + " fds, expected 3");
      return;
    }
    struct stat st {};
    if (::fstat(fds[0].get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      set_closed("granted memory is not a memfd");
      return;
    }
    int seals = ::fcntl(fds[0].get(), F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
      set_closed("granted memfd is not sealed against shrinking");
      return;
    }
    auto layout = shm::validate_hello(
        std::span(reinterpret_cast<const std::byte*>(&hello), static_cast<size_t>(n)),
        static_cast<uint64_t>(st.st_size));
    if (!layout) {
      set_closed(layout.error().message);
      return;
    }
    if (!is_eventfd(fds[1].get()) || !is_eventfd(fds[2].get())) {
      set_closed("granted wake-up fds are not eventfds");
      return;
    }
    for (int i = 1; i <= 2; ++i) {
      int fl = ::fcntl(fds[i].get(), F_GETFL);
      ::fcntl(fds[i].get(), F_SETFL, fl | O_NONBLOCK);
    }
    layout_ = *layout;
    memfd_ = std::move(fds[0]);
    if (auto r = map(); !r) {
      set_closed(r.error().message);
      return;
    }
    memfd_.reset();
    peer_efd_ = std::move(fds[1]);  // the server's eventfd: we signal it
    own_efd_ = std::move(fds[2]);
    open_data_path();
  }

  void open_data_path() {
    make_rings();
    if (!server_) {
      epoll_del(ep_.get(), sock_.get());
    }
    if (!epoll_add(ep_.get(), own_efd_.get(), EPOLLIN) ||
        !epoll_add(ep_.get(), sock_.get(), EPOLLIN | EPOLLRDHUP)) {
      set_closed("epoll");
      return;
    }
    state_ = ChannelState::Open;
  }

  // Real-time safe: no logging; handle_events() reports the reason.
  void check_after_io(size_t still_readable) {
    if (rx_.corrupt() || tx_.corrupt()) {
      state_ = ChannelState::Closed;
    } else if (peer_gone_ && still_readable == 0) {
      state_ = ChannelState::Closed;
    }
  }

  void set_closed(const std::string& why) {
    if (error_.empty()) {
      error_ = describe() + ": " + why;
    }
    log_debug("%s", error_.c_str());
    state_ = ChannelState::Closed;
  }

  void release() {
    if (sock_.valid()) {
      ::shutdown(sock_.get(), SHUT_RDWR);
    }
    rx_ = ShmRing();
    tx_ = ShmRing();
    map_.reset();
    listener_.stop();
    sock_.reset();
    memfd_.reset();
    own_efd_.reset();
    peer_efd_.reset();
    ep_.reset();
  }

  bool server_;
  std::string path_;
  UniqueFd ep_;
  UnixListener listener_;
  UniqueFd sock_;
  UniqueFd memfd_;
  UniqueFd own_efd_;   // the peer signals it; we poll it
  UniqueFd peer_efd_;  // we signal it
  Mapping map_;
  Layout layout_;
  ShmRing rx_;
  ShmRing tx_;
  ChannelState state_ = ChannelState::Waiting;
  bool peer_gone_ = false;
  std::string error_;
};

class ShmTransport final : public Transport {
 public:
  explicit ShmTransport(std::string dir) : dir_(std::move(dir)) {}

  Result<std::unique_ptr<Channel>> serve(const ChannelAddress& addr,
                                         const RingSizes& sizes) override {
    auto ch = make_channel(addr, true);
    if (!ch) {
      return fail(ch.error());
    }
    if (auto r = (*ch)->create(sizes); !r) {
      return fail(r.error());
    }
    std::unique_ptr<Channel> out = std::move(*ch);
    return out;
  }

  Result<std::unique_ptr<Channel>> connect(const ChannelAddress& addr,
                                           std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto ch = make_channel(addr, false);
    if (!ch) {
      return fail(ch.error());
    }
    auto sock = connect_unix((*ch)->describe().substr(4), timeout);
    if (!sock) {
      return fail(sock.error());
    }
    if (auto r = (*ch)->attach(std::move(*sock)); !r) {
      return fail(r.error());
    }
    if (timeout.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      wait_open(**ch, std::max(left, std::chrono::milliseconds(1)));
      if ((*ch)->state() == ChannelState::Closed) {
        return fail((*ch)->error(), EPROTO);
      }
      if ((*ch)->state() != ChannelState::Open) {
        return fail((*ch)->describe() + ": connected, but the server sent no grant within " +
                        std::to_string(timeout.count()) + " ms",
                    ETIMEDOUT);
      }
    }
    std::unique_ptr<Channel> out = std::move(*ch);
    return out;
  }

  std::string name() const override { return "shm"; }

 private:
  Result<std::unique_ptr<ShmChannel>> make_channel(const ChannelAddress& addr, bool server) {
    auto path = vchan_socket_path(dir_, addr, "shm");
    if (!path) {
      return fail(path.error());
    }
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep.valid()) {
      return fail_errno("epoll_create1");
    }
    return std::make_unique<ShmChannel>(server, std::move(*path), std::move(ep));
  }

  std::string dir_;
};

}  // namespace

std::unique_ptr<Transport> make_shm_transport(std::string dir) {
  return std::make_unique<ShmTransport>(std::move(dir));
}

}  // namespace qaudio::detail
