// The `xen` transport: libxenvchan, as stock Qubes uses it. The qube is the
// vchan server, the audio domain the client. Built only with QAUDIO_HAVE_XEN;
// runs only inside a Xen domain (elsewhere serve/connect fail with ENOENT:
// no /dev/xen).
//
//   auto t = make_transport("xen");
//   auto srv = (*t)->serve({.server_dom = 5, .client_dom = 0, .port = 4713}, {65536, 8192});
//   auto cli = (*t)->connect({5, 0, 4713}, std::chrono::seconds(5));
//
// Xenstore paths as libvchan (qubes-core-vchan-xen) builds them: the server
// writes under its own tree at "data/vchan/<client domid>/<port>"; the client
// reads "/local/domain/<server domid>/data/vchan/<own domid>/<port>".
// Ring sizes as libxenvchan rules them: each request is a minimum; up to 1024
// and 2048 bytes live in the shared page, larger ones are rounded up to a
// power-of-two number of pages; more than 1 MiB (1 << 20) per ring is refused.
// fd() is libxenvchan_fd_for_select; handle_events() calls libxenvchan_wait
// only when that fd is readable (so it never blocks); the state follows
// libxenvchan_is_open (2 = server waiting for its client).
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "transports.hpp"

extern "C" {
#include <libxenvchan.h>
#include <xenevtchn.h>
}

namespace qaudio::detail {
namespace {

constexpr size_t kXenMaxRing = size_t{1} << 20;
constexpr uint32_t kFirstReservedDomid = 0x7FF0;

class XenChannel final : public Channel {
 public:
  XenChannel(libxenvchan* ctrl, std::string what) : ctrl_(ctrl), what_(std::move(what)) {
    ctrl_->blocking = 0;
    update_state();
  }
  ~XenChannel() override { close(); }

  int fd() const override { return ctrl_ ? libxenvchan_fd_for_select(ctrl_) : -1; }
  ChannelState state() const override { return state_; }
  std::string describe() const override { return what_; }

  void handle_events() override {
    if (!ctrl_) {
      return;
    }
    pollfd p{libxenvchan_fd_for_select(ctrl_), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
      if (libxenvchan_wait(ctrl_) < 0) {
        state_ = ChannelState::Closed;
        return;
      }
    }
    update_state();
  }

  size_t data_ready() override {
    if (state_ != ChannelState::Open) {
      return 0;
    }
    int n = libxenvchan_data_ready(ctrl_);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }

  size_t buffer_space() override {
    if (state_ != ChannelState::Open) {
      return 0;
    }
    int n = libxenvchan_buffer_space(ctrl_);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }

  size_t read(std::span<std::byte> out) override {
    if (state_ != ChannelState::Open || out.empty()) {
      return 0;
    }
    int n = libxenvchan_read(ctrl_, out.data(), out.size());
    if (n < 0) {
      state_ = ChannelState::Closed;
      return 0;
    }
    return static_cast<size_t>(n);
  }

  size_t write(std::span<const std::byte> in) override {
    if (state_ != ChannelState::Open || in.empty()) {
      return 0;
    }
    int n = libxenvchan_write(ctrl_, in.data(), in.size());
    if (n < 0) {
      state_ = ChannelState::Closed;
      return 0;
    }
    return static_cast<size_t>(n);
  }

  void close() override {
    if (ctrl_) {
      libxenvchan_close(ctrl_);
      ctrl_ = nullptr;
    }
    state_ = ChannelState::Closed;
  }

 private:
  void update_state() {
    if (state_ == ChannelState::Closed) {
      return;
    }
    switch (libxenvchan_is_open(ctrl_)) {
      case 1:
        state_ = ChannelState::Open;
        break;
      case 2:
        state_ = ChannelState::Waiting;
        break;
      default:
        state_ = ChannelState::Closed;
        break;
    }
  }

  libxenvchan* ctrl_;
  std::string what_;
  ChannelState state_ = ChannelState::Waiting;
};

Result<void> check_address(const ChannelAddress& a) {
  if (a.server_dom >= kFirstReservedDomid || a.client_dom >= kFirstReservedDomid) {
    return fail("xen channel: domain id out of range (server " + std::to_string(a.server_dom) +
                    ", client " + std::to_string(a.client_dom) + "; must be below 32752)",
                EINVAL);
  }
  if (a.server_dom == a.client_dom) {
    return fail("xen channel: server and client are the same domain (" +
                    std::to_string(a.server_dom) + "); loopback vchan is not supported",
                EINVAL);
  }
  return {};
}

std::string fail_hint(int err) {
  return err == ENOENT ? " (no /dev/xen: not running in a Xen domain; use unix:DIR or shm:DIR)"
                       : "";
}

class XenTransport final : public Transport {
 public:
  Result<std::unique_ptr<Channel>> serve(const ChannelAddress& addr,
                                         const RingSizes& sizes) override {
    if (auto r = check_address(addr); !r) {
      return fail(r.error());
    }
    if (sizes.server_to_client > kXenMaxRing || sizes.client_to_server > kXenMaxRing) {
      return fail("xen channel: ring sizes " + std::to_string(sizes.server_to_client) + "/" +
                      std::to_string(sizes.client_to_server) +
                      " exceed libxenvchan's maximum of 1 MiB per ring",
                  EINVAL);
    }
    std::string xs_path =
        "data/vchan/" + std::to_string(addr.client_dom) + "/" + std::to_string(addr.port);
    errno = 0;
    // read_min (left: client -> server), write_min (right: server -> client).
    libxenvchan* ctrl =
        libxenvchan_server_init(nullptr, static_cast<int>(addr.client_dom), xs_path.c_str(),
                                sizes.client_to_server, sizes.server_to_client);
    if (!ctrl) {
      int err = errno ? errno : EIO;
      return fail_errno("libxenvchan_server_init(domain " + std::to_string(addr.client_dom) + ", " +
                            xs_path + ")" + fail_hint(err),
                        err);
    }
    std::unique_ptr<Channel> ch = std::make_unique<XenChannel>(ctrl, "xen:" + xs_path);
    return ch;
  }

  Result<std::unique_ptr<Channel>> connect(const ChannelAddress& addr,
                                           std::chrono::milliseconds timeout) override {
    if (auto r = check_address(addr); !r) {
      return fail(r.error());
    }
    std::string xs_path = "/local/domain/" + std::to_string(addr.server_dom) + "/data/vchan/" +
                          std::to_string(addr.client_dom) + "/" + std::to_string(addr.port);
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      errno = 0;
      libxenvchan* ctrl =
          libxenvchan_client_init(nullptr, static_cast<int>(addr.server_dom), xs_path.c_str());
      if (ctrl) {
        // Tell the server we are here (as libvchan's client_init does).
        xenevtchn_notify(ctrl->event, ctrl->event_port);
        std::unique_ptr<Channel> ch = std::make_unique<XenChannel>(ctrl, "xen:" + xs_path);
        return ch;
      }
      int err = errno ? errno : EIO;
      // Without /dev/xen retrying cannot help; otherwise the server's
      // xenstore entries may not exist yet.
      if (err == ENOENT && ::access("/dev/xen", F_OK) != 0) {
        return fail_errno("libxenvchan_client_init(domain " + std::to_string(addr.server_dom) +
                              ", " + xs_path + ")" + fail_hint(err),
                          err);
      }
      if (Clock::now() >= deadline) {
        return fail_errno("libxenvchan_client_init(domain " + std::to_string(addr.server_dom) +
                              ", " + xs_path + ") gave up after " +
                              std::to_string(timeout.count()) + " ms",
                          err);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::string name() const override { return "xen"; }
};

}  // namespace

std::unique_ptr<Transport> make_xen_transport() {
  return std::make_unique<XenTransport>();
}

}  // namespace qaudio::detail
