// The `unix` transport: a Unix stream socket per channel at
// <dir>/vchan.<server_dom>.<client_dom>.<port>.sock (the scheme of the Qubes
// vchan-socket library). For tests and hosts without Xen.
//
//   auto t = make_transport("unix:/run/qaudio");
//   auto srv = (*t)->serve({5, 0, 4713}, {});      // Waiting; accepts on handle_events()
//   auto cli = (*t)->connect({5, 0, 4713}, std::chrono::seconds(2));
//
// The server accepts ONE peer, then closes and removes its listening socket so
// later clients are refused; to accept a new client after the first one left,
// serve() again. fd() is an epoll fd that is stable for the channel's life: it
// watches the listening socket while Waiting, then the connected socket
// edge-triggered for input and hang-up, plus output space while a writer
// waits for room (so a writer blocked on a full socket buffer wakes when the
// reader drains, and no one else is woken by every read). RingSizes only set the
// server's SO_SNDBUF; nothing assumes a size: data_ready() is FIONREAD and
// buffer_space() is SO_SNDBUF minus SIOCOUTQ (0 while the socket polls
// unwritable).
#include <linux/sockios.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "qaudio/log.hpp"
#include "socket_util.hpp"
#include "transports.hpp"

namespace qaudio::detail {
namespace {

// EPOLLOUT is armed only while a writer waits for room (want_room()), so
// that a reader's every recv() does not wake the writing side spuriously.
constexpr uint32_t kConnEvents = EPOLLIN | EPOLLRDHUP | EPOLLET;

class UnixChannel final : public Channel {
 public:
  // Server: listening, Waiting.
  UnixChannel(UnixListener listener, UniqueFd ep, std::string path, RingSizes sizes)
      : listener_(std::move(listener)),
        ep_(std::move(ep)),
        path_(std::move(path)),
        sizes_(sizes),
        state_(ChannelState::Waiting) {}
  // Client: connected, Open.
  UnixChannel(UniqueFd sock, UniqueFd ep, std::string path)
      : sock_(std::move(sock)), ep_(std::move(ep)), path_(std::move(path)) {
    cache_sndbuf();
  }

  int fd() const override { return ep_.get(); }
  ChannelState state() const override { return state_; }
  std::string describe() const override { return "unix:" + path_; }

  void handle_events() override {
    if (state_ == ChannelState::Closed) {
      return;
    }
    epoll_event evs[4];
    int n = ::epoll_wait(ep_.get(), evs, 4, 0);
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.fd != sock_.get()) {
        continue;
      }
      if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        hup_seen_ = true;
      }
      if ((evs[i].events & EPOLLOUT) && out_armed_) {
        set_out_interest(false);
      }
    }
    if (state_ == ChannelState::Waiting) {
      accept_peer();
    }
    if (state_ == ChannelState::Open && hup_seen_) {
      check_gone();
    }
  }

  size_t data_ready() override {
    if (state_ != ChannelState::Open) {
      return 0;
    }
    int n = 0;
    if (::ioctl(sock_.get(), FIONREAD, &n) != 0) {
      set_closed("FIONREAD");
      return 0;
    }
    if (n == 0 && hup_seen_) {
      check_gone();
    }
    return n > 0 ? static_cast<size_t>(n) : 0;
  }

  size_t buffer_space() override {
    if (state_ != ChannelState::Open) {
      return 0;
    }
    pollfd p{sock_.get(), POLLOUT, 0};
    if (::poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) {
      want_room();
      return 0;
    }
    int outq = 0;
    if (::ioctl(sock_.get(), SIOCOUTQ, &outq) != 0) {
      return 0;
    }
    return sndbuf_ > outq ? static_cast<size_t>(sndbuf_ - outq) : 0;
  }

  size_t read(std::span<std::byte> out) override {
    if (state_ != ChannelState::Open || out.empty()) {
      return 0;
    }
    ssize_t n = ::recv(sock_.get(), out.data(), out.size(), MSG_DONTWAIT);
    if (n > 0) {
      return static_cast<size_t>(n);
    }
    if (n == 0) {
      state_ = ChannelState::Closed;  // EOF: the peer left and everything was read
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      state_ = ChannelState::Closed;
    }
    return 0;
  }

  size_t write(std::span<const std::byte> in) override {
    if (state_ != ChannelState::Open || in.empty()) {
      return 0;
    }
    ssize_t n = ::send(sock_.get(), in.data(), in.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      if (static_cast<size_t>(n) < in.size()) {
        want_room();
      }
      return static_cast<size_t>(n);
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      state_ = ChannelState::Closed;  // EPIPE, ECONNRESET: the peer left
      return 0;
    }
    want_room();
    return 0;
  }

  void close() override {
    state_ = ChannelState::Closed;
    listener_.stop();
    if (sock_.valid()) {
      ::shutdown(sock_.get(), SHUT_RDWR);
    }
    sock_.reset();
    ep_.reset();
  }

 private:
  void accept_peer() {
    UniqueFd peer = listener_.accept_one();
    if (!peer.valid()) {
      return;
    }
    // One peer per channel: later clients find no socket (ENOENT) or are
    // refused; the server serves again for the next one.
    listener_.stop();
    int sz = static_cast<int>(std::min<size_t>(sizes_.server_to_client, 1 << 24));
    if (sz > 0) {
      ::setsockopt(peer.get(), SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    sock_ = std::move(peer);
    if (auto r = epoll_add(ep_.get(), sock_.get(), kConnEvents); !r) {
      set_closed("epoll");
      return;
    }
    cache_sndbuf();
    state_ = ChannelState::Open;
  }

  // Arms EPOLLOUT (edge-triggered: the epoll fd becomes readable when the
  // reader frees room). Arming reports the current state too, so room that
  // freed before this call is not missed.
  void want_room() {
    if (!out_armed_) {
      set_out_interest(true);
    }
  }

  void set_out_interest(bool on) {
    epoll_event ev{};
    ev.events = kConnEvents | (on ? uint32_t{EPOLLOUT} : 0u);
    ev.data.fd = sock_.get();
    if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, sock_.get(), &ev) == 0) {
      out_armed_ = on;
    }
  }

  void cache_sndbuf() {
    socklen_t len = sizeof(sndbuf_);
    if (::getsockopt(sock_.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf_, &len) != 0) {
      sndbuf_ = 0;
    }
  }

  void check_gone() {
    int n = 0;
    if (::ioctl(sock_.get(), FIONREAD, &n) == 0 && n > 0) {
      return;  // let the reader take what the peer sent before it left
    }
    if (peer_gone(sock_.get())) {
      state_ = ChannelState::Closed;
    }
  }

  void set_closed(const char* why) {
    log_debug("%s: closed (%s)", describe().c_str(), why);
    state_ = ChannelState::Closed;
  }

  UnixListener listener_;
  UniqueFd sock_;
  UniqueFd ep_;
  std::string path_;
  RingSizes sizes_{};
  ChannelState state_ = ChannelState::Open;
  bool hup_seen_ = false;
  bool out_armed_ = false;
  int sndbuf_ = 0;
};

class UnixTransport final : public Transport {
 public:
  explicit UnixTransport(std::string dir) : dir_(std::move(dir)) {}

  Result<std::unique_ptr<Channel>> serve(const ChannelAddress& addr,
                                         const RingSizes& sizes) override {
    auto path = vchan_socket_path(dir_, addr, "sock");
    if (!path) {
      return fail(path.error());
    }
    auto listener = UnixListener::create(*path);
    if (!listener) {
      return fail(listener.error());
    }
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep.valid()) {
      return fail_errno("epoll_create1");
    }
    if (auto r = epoll_add(ep.get(), listener->fd(), EPOLLIN); !r) {
      return fail(r.error());
    }
    std::unique_ptr<Channel> ch =
        std::make_unique<UnixChannel>(std::move(*listener), std::move(ep), std::move(*path), sizes);
    return ch;
  }

  Result<std::unique_ptr<Channel>> connect(const ChannelAddress& addr,
                                           std::chrono::milliseconds timeout) override {
    auto path = vchan_socket_path(dir_, addr, "sock");
    if (!path) {
      return fail(path.error());
    }
    auto sock = connect_unix(*path, timeout);
    if (!sock) {
      return fail(sock.error());
    }
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep.valid()) {
      return fail_errno("epoll_create1");
    }
    if (auto r = epoll_add(ep.get(), sock->get(), kConnEvents); !r) {
      return fail(r.error());
    }
    std::unique_ptr<Channel> ch =
        std::make_unique<UnixChannel>(std::move(*sock), std::move(ep), std::move(*path));
    return ch;
  }

  std::string name() const override { return "unix"; }

 private:
  std::string dir_;
};

}  // namespace

std::unique_ptr<Transport> make_unix_transport(std::string dir) {
  return std::make_unique<UnixTransport>(std::move(dir));
}

}  // namespace qaudio::detail
