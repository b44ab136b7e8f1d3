// qaudio-control-bridge: connects stdin/stdout to the control socket; the
// qrexec service qaudio.Control runs it in the audio qube so that a GUI
// domain or dom0 can talk to the daemon under qrexec policy.
//
//   qaudio-control-bridge [SOCKET]     (default $QAUDIO_CONTROL, then
//                                       $XDG_RUNTIME_DIR/qaudio/control,
//                                       then /run/qaudio/control)
//
// End of stdin half-closes the socket (pending replies still arrive); the
// daemon closing the socket ends the bridge. When the daemon cannot be
// reached, one error line in the control API's format is written to stdout
// (so the remote qvm-audio can say why) and the exit status is 1.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = (fd == STDOUT_FILENO) ? ::write(fd, p, n) : ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

std::string socket_path(int argc, char** argv) {
  if (argc > 1) {
    return argv[1];
  }
  if (const char* p = std::getenv("QAUDIO_CONTROL"); p != nullptr && p[0] != '\0') {
    return p;
  }
  if (const char* rt = std::getenv("XDG_RUNTIME_DIR"); rt != nullptr && rt[0] == '/') {
    return std::string(rt) + "/qaudio/control";
  }
  return "/run/qaudio/control";
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = socket_path(argc, argv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok = fd >= 0 && path.size() < sizeof addr.sun_path;
  if (ok) {
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  if (!ok) {
    std::string why = std::strerror(errno);
    std::string line =
        "{\"id\":null,\"error\":{\"code\":\"internal\",\"message\":"
        "\"the audio daemon is not reachable in this qube (" +
        why + ")\"}}\n";
    write_all(STDOUT_FILENO, line.data(), line.size());
    std::fprintf(stderr, "qaudio-control-bridge: cannot connect to %s: %s\n", path.c_str(),
                 why.c_str());
    return 1;
  }
  bool stdin_open = true;
  char buf[65536];
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {STDIN_FILENO, static_cast<short>(stdin_open ? POLLIN : 0), 0}};
    if (::poll(p, stdin_open ? 2 : 1, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return 1;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) {
        return n == 0 ? 0 : 1;
      }
      if (!write_all(STDOUT_FILENO, buf, static_cast<size_t>(n))) {
        return 1;
      }
    }
    if (stdin_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0) {
        stdin_open = false;
        ::shutdown(fd, SHUT_WR);
      } else if (!write_all(fd, buf, static_cast<size_t>(n))) {
        return 1;
      }
    }
  }
}
