// Internal helpers shared by the unix and shm transports: an owning fd, the
// vchan socket path scheme, a listening socket that is unlinked only while it
// is still ours, and a client connect that retries until a deadline.
//
//   auto path = vchan_socket_path("/run/q", {5, 0, 4713}, "sock");
//   auto listener = UnixListener::create(*path);      // unlinks a stale socket
//   auto fd = connect_unix(*path, std::chrono::seconds(2));
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>

#include "qaudio/channel.hpp"
#include "qaudio/result.hpp"

namespace qaudio::detail {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset(std::exchange(o.fd_, -1));
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// "<dir>/vchan.<server_dom>.<client_dom>.<port>.<ext>"; an error when the
// result does not fit in sockaddr_un.
Result<std::string> vchan_socket_path(const std::string& dir,
                                      const ChannelAddress& addr,
                                      const char* ext);

// A listening Unix stream socket (non-blocking, close-on-exec). A stale
// socket at the path is replaced; anything else there is an error. The file
// is unlinked by stop() or the destructor, but only while it is still the one
// this listener bound (a newer serve() at the same path keeps its socket).
class UnixListener {
 public:
  static Result<UnixListener> create(const std::string& path);
  UnixListener() = default;
  UnixListener(UnixListener&& o) noexcept
      : fd_(std::move(o.fd_)), path_(std::exchange(o.path_, {})), dev_(o.dev_), ino_(o.ino_) {}
  UnixListener& operator=(UnixListener&& o) noexcept {
    if (this != &o) {
      stop();
      fd_ = std::move(o.fd_);
      path_ = std::exchange(o.path_, {});
      dev_ = o.dev_;
      ino_ = o.ino_;
    }
    return *this;
  }
  ~UnixListener() { stop(); }

  int fd() const { return fd_.get(); }
  // Accepts one pending peer (non-blocking); invalid fd when none waits.
  UniqueFd accept_one();
  // Closes the socket and removes its file.
  void stop();

 private:
  UniqueFd fd_;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Connects a non-blocking stream socket to `path`, retrying while the socket
// is missing or refuses (ENOENT, ECONNREFUSED, EAGAIN) until `timeout`; a zero
// timeout makes one attempt.
Result<UniqueFd> connect_unix(const std::string& path, std::chrono::milliseconds timeout);

// True when the connected socket's peer has gone (EOF with nothing left to
// read, or a socket error). Never blocks.
bool peer_gone(int sock);

// epoll helpers: add `fd` with `events` (data.fd = fd); remove it.
Result<void> epoll_add(int epfd, int fd, uint32_t events);
void epoll_del(int epfd, int fd);

}  // namespace qaudio::detail
