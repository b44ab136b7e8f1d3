// Implementation of socket_util.hpp.
#include "socket_util.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

namespace qaudio::detail {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = fd;
}

Result<std::string> vchan_socket_path(const std::string& dir,
                                      const ChannelAddress& addr,
                                      const char* ext) {
  if (dir.empty()) {
    return fail("channel directory is empty: give a directory, e.g. unix:/run/qaudio");
  }
  char name[96];
  std::snprintf(name, sizeof(name), "vchan.%u.%u.%u.%s", addr.server_dom, addr.client_dom,
                addr.port, ext);
  std::string path = dir;
  if (path.back() != '/') {
    path += '/';
  }
  path += name;
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return fail("socket path too long for a Unix socket (" + std::to_string(path.size()) +
                    " bytes, max " + std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                    "): " + path + "; use a shorter directory",
                ENAMETOOLONG);
  }
  return path;
}

static sockaddr_un make_addr(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}

Result<UnixListener> UnixListener::create(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail("cannot listen on " + path + ": a non-socket file is in the way; remove it",
                  EEXIST);
    }
    ::unlink(path.c_str());  // stale socket from an earlier server
  }
  UnixListener l;
  l.fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!l.fd_.valid()) {
    return fail_errno("socket(AF_UNIX) for " + path);
  }
  sockaddr_un sa = make_addr(path);
  if (::bind(l.fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    return fail_errno("bind " + path);
  }
  if (::listen(l.fd_.get(), 4) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return fail_errno("listen " + path, err);
  }
  if (::stat(path.c_str(), &st) == 0) {
    l.dev_ = st.st_dev;
    l.ino_ = st.st_ino;
  }
  l.path_ = path;
  return l;
}

UniqueFd UnixListener::accept_one() {
  if (!fd_.valid()) {
    return UniqueFd();
  }
  return UniqueFd(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

void UnixListener::stop() {
  if (!path_.empty()) {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
      ::unlink(path_.c_str());
    }
    path_.clear();
  }
  fd_.reset();
}

Result<UniqueFd> connect_unix(const std::string& path, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  sockaddr_un sa = make_addr(path);
  auto backoff = std::chrono::milliseconds(2);
  for (;;) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      return fail_errno("socket(AF_UNIX) for " + path);
    }
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
      return fd;
    }
    int err = errno;
    bool retry = err == ENOENT || err == ECONNREFUSED || err == EAGAIN || err == EINTR;
    auto now = Clock::now();
    if (!retry || now >= deadline) {
      std::string what = "connect " + path;
      if (retry && timeout.count() > 0) {
        what += " (gave up after " + std::to_string(timeout.count()) + " ms; is the server up?)";
      }
      return fail_errno(what, err);
    }
    // No server yet: wait a little and try again (an inotify watch would save
    // a few wake-ups, but connect is a control-side, one-off operation).
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
}

bool peer_gone(int sock) {
  char c;
  ssize_t n = ::recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) {
    return true;
  }
  if (n < 0) {
    return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  }
  return false;
}

Result<void> epoll_add(int epfd, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return fail_errno("epoll_ctl(ADD)");
  }
  return {};
}

void epoll_del(int epfd, int fd) {
  ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
}

}  // namespace qaudio::detail
