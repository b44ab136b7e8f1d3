// qvm-audio's control API client (see control_client.hpp).
#include "control_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace qaudio::cli {

namespace {

constexpr size_t kMaxReplyBytes = 16 << 20;

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

ControlClient::ControlClient(int rfd, int wfd, pid_t child, std::string peer)
    : rfd_(rfd), wfd_(wfd), child_(child), peer_(std::move(peer)) {}

ControlClient::~ControlClient() {
  if (wfd_ >= 0 && wfd_ != rfd_) {
    ::close(wfd_);
  }
  if (rfd_ >= 0) {
    ::close(rfd_);
  }
  if (child_ > 0) {
    ::kill(child_, SIGTERM);
    int st = 0;
    ::waitpid(child_, &st, 0);
  }
}

Result<std::unique_ptr<ControlClient>> ControlClient::connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return fail("control socket path '" + path + "' is empty or too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return fail_errno("socket()");
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    return fail_errno("cannot reach the audio daemon at " + path, e);
  }
  return std::unique_ptr<ControlClient>(new ControlClient(fd, fd, -1, path));
}

Result<std::unique_ptr<ControlClient>> ControlClient::connect_qrexec(const std::string& audiovm) {
  const char* prog = std::getenv("QVM_AUDIO_QREXEC_CLIENT");
  std::string client = (prog != nullptr && prog[0] != '\0') ? prog : "qrexec-client-vm";
  int to_child[2];
  int from_child[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0) {
    return fail_errno("pipe");
  }
  if (::pipe2(from_child, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(to_child[0]);
    ::close(to_child[1]);
    return fail_errno("pipe", e);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
  posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
  std::string service = "qaudio.Control";
  char* argv[] = {client.data(), const_cast<char*>(audiovm.c_str()), service.data(), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, client.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(to_child[0]);
  ::close(from_child[1]);
  if (rc != 0) {
    ::close(to_child[1]);
    ::close(from_child[0]);
    return fail_errno("cannot run " + client + " to reach " + audiovm, rc);
  }
  return std::unique_ptr<ControlClient>(
      new ControlClient(from_child[0], to_child[1], pid, audiovm + " (qrexec qaudio.Control)"));
}

Result<void> ControlClient::write_all(const std::string& data,
                                      std::chrono::steady_clock::time_point deadline) {
  size_t off = 0;
  while (off < data.size()) {
    pollfd p{wfd_, POLLOUT, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return fail("timed out sending to the audio daemon at " + peer_);
    }
    ssize_t w = (wfd_ == rfd_) ? ::send(wfd_, data.data() + off, data.size() - off, MSG_NOSIGNAL)
                               : ::write(wfd_, data.data() + off, data.size() - off);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      return fail_errno("cannot send to the audio daemon at " + peer_);
    }
    off += static_cast<size_t>(w);
  }
  return {};
}

Result<std::string> ControlClient::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    if (buf_.size() > kMaxReplyBytes) {
      return fail("reply from " + peer_ + " is too long");
    }
    pollfd p{rfd_, POLLIN, 0};
    int n = ::poll(&p, 1, timeout.count() < 0 ? -1 : remaining_ms(deadline));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n == 0) {
      return fail("no answer from the audio daemon at " + peer_ + " (timed out)");
    }
    char chunk[65536];
    ssize_t r = ::read(rfd_, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      return fail_errno("cannot read from the audio daemon at " + peer_);
    }
    if (r == 0) {
      return fail("the audio daemon at " + peer_ + " closed the connection");
    }
    buf_.append(chunk, static_cast<size_t>(r));
  }
}

Result<json> ControlClient::read_message(std::chrono::milliseconds timeout) {
  auto line = read_line(timeout);
  if (!line) {
    return fail(line.error());
  }
  json j = json::parse(*line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail("the audio daemon at " + peer_ + " sent something that is not a JSON object");
  }
  return j;
}

Result<json> ControlClient::call(const std::string& method,
                                 const json& params,
                                 std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int64_t id = next_id_++;
  json req{{"id", id}, {"method", method}};
  if (!params.empty()) {
    req["params"] = params;
  }
  if (auto w = write_all(req.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", deadline);
      !w) {
    // A daemon that refuses us writes one error line and closes before it
    // reads our request: report its reason rather than the broken pipe.
    auto why = read_message(std::chrono::milliseconds(std::min(remaining_ms(deadline), 1000)));
    if (why && why->contains("error")) {
      return why;
    }
    return fail(w.error());
  }
  for (;;) {
    auto msg = read_message(std::chrono::milliseconds(remaining_ms(deadline)));
    if (!msg) {
      return msg;
    }
    if (msg->contains("event")) {
      continue;  // an event line between replies
    }
    // An error without an id (refused connection) answers us too.
    auto it = msg->find("id");
    if (it == msg->end() || it->is_null() || *it == id) {
      return msg;
    }
  }
}

}  // namespace qaudio::cli
