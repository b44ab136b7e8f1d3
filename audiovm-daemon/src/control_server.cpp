// The control API's Unix socket server (see control_server.hpp).
#include "control_server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "qaudio/log.hpp"

namespace qaudio::control {

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr int kReadsPerWakeup = 4;  // fairness between clients
constexpr int kAcceptsPerWakeup = 64;

Result<void> make_parent_dirs(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    std::string dir = path.substr(0, pos);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return fail_errno("control socket: cannot create directory " + dir);
    }
  }
  return {};
}

bool user_in_group(uid_t uid, gid_t group) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* res = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) != 0 || res == nullptr) {
    return false;
  }
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
      return false;
    }
  }
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<size_t>(i)] == group) {
      return true;
    }
  }
  return false;
}

// Best effort for a client we are about to drop: one non-blocking send.
void send_and_forget(int fd, const std::string& line) {
  ssize_t r = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)r;
}

}  // namespace

std::string default_control_path() {
  const char* rt = std::getenv("XDG_RUNTIME_DIR");
  if (rt != nullptr && rt[0] == '/') {
    return std::string(rt) + "/qaudio/control";
  }
  return "/run/qaudio/control";
}

ControlServer::ControlServer(EventLoop& loop, ControlApi& api, ControlServerOptions options)
    : loop_(loop), api_(api), opt_(std::move(options)) {}

ControlServer::~ControlServer() {
  stop();
}

Result<void> ControlServer::start() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (opt_.path.empty() || opt_.path.size() >= sizeof addr.sun_path) {
    return fail("control socket path '" + opt_.path + "' is empty or longer than " +
                std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, opt_.path.c_str(), opt_.path.size() + 1);
  if (auto r = make_parent_dirs(opt_.path); !r) {
    return r;
  }
  struct stat st {};
  if (::lstat(opt_.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail("control socket path " + opt_.path + " exists and is not a socket");
    }
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
      bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      ::close(probe);
      if (live) {
        return fail("another daemon already serves the control socket " + opt_.path);
      }
    }
    ::unlink(opt_.path.c_str());
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return fail_errno("control socket: socket()");
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    return fail_errno("control socket: cannot bind " + opt_.path, e);
  }
  mode_t mode = opt_.allowed_group ? 0660 : 0600;
  if (opt_.allowed_group &&
      ::chown(opt_.path.c_str(), static_cast<uid_t>(-1), *opt_.allowed_group) != 0) {
    log_warn("control socket %s: cannot give it to group %u: %s", opt_.path.c_str(),
             static_cast<unsigned>(*opt_.allowed_group), std::strerror(errno));
  }
  if (::chmod(opt_.path.c_str(), mode) != 0 || ::listen(fd, 64) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(opt_.path.c_str());
    return fail_errno("control socket: cannot listen on " + opt_.path, e);
  }
  listen_fd_ = fd;
  listen_watch_ = loop_.add_fd(fd, POLLIN, [this](short) { on_accept(); });
  log_info("control API listening on %s", opt_.path.c_str());
  return {};
}

void ControlServer::stop() {
  std::vector<ClientPtr> all;
  for (auto& [id, c] : clients_) {
    all.push_back(c);
  }
  for (auto& c : all) {
    close_client(c, nullptr);
  }
  if (listen_fd_ >= 0) {
    loop_.remove(listen_watch_);
    ::close(listen_fd_);
    ::unlink(opt_.path.c_str());
    listen_fd_ = -1;
  }
}

size_t ControlServer::subscriber_count() const {
  size_t n = 0;
  for (const auto& [id, c] : clients_) {
    n += c->subscribed ? 1 : 0;
  }
  return n;
}

bool ControlServer::allowed(const PeerCred& cred) const {
  if (opt_.authorize) {
    return opt_.authorize(cred);
  }
  if (cred.uid == 0 || cred.uid == ::geteuid()) {
    return true;
  }
  return opt_.allowed_group &&
         (cred.gid == *opt_.allowed_group || user_in_group(cred.uid, *opt_.allowed_group));
}

void ControlServer::on_accept() {
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop accepting for a moment instead of spinning.
        log_warn("control socket: accept failed: %s; pausing accepts", std::strerror(errno));
        loop_.update_fd(listen_watch_, listen_fd_, 0);
        loop_.add_timer(std::chrono::milliseconds(100), [this] {
          if (listen_fd_ >= 0) {
            loop_.update_fd(listen_watch_, listen_fd_, POLLIN);
          }
        });
      }
      return;
    }
    ucred uc{};
    socklen_t len = sizeof uc;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0) {
      log_warn("control socket: cannot read peer credentials: %s", std::strerror(errno));
      ::close(fd);
      continue;
    }
    PeerCred cred{uc.pid, uc.uid, uc.gid};
    if (!allowed(cred)) {
      ++stats_.refused_credentials;
      log_warn(
          "control socket: refused pid %d uid %u gid %u (only root, uid %u%s may control "
          "the daemon)",
          static_cast<int>(cred.pid), static_cast<unsigned>(cred.uid),
          static_cast<unsigned>(cred.gid), static_cast<unsigned>(::geteuid()),
          opt_.allowed_group ? " or the configured group" : "");
      send_and_forget(
          fd, error_line(nullptr, {ErrorCode::Refused, "uid " + std::to_string(cred.uid) +
                                                           " may not use the audio control API"}));
      ::close(fd);
      continue;
    }
    if (clients_.size() >= opt_.max_clients && !evict_idle_client()) {
      ++stats_.refused_full;
      log_warn("control socket: refused pid %d: already %zu clients", static_cast<int>(cred.pid),
               clients_.size());
      send_and_forget(
          fd, error_line(nullptr, {ErrorCode::Refused, "too many control clients (" +
                                                           std::to_string(opt_.max_clients) +
                                                           "); try again later"}));
      ::close(fd);
      continue;
    }
    auto c = std::make_shared<Client>();
    c->id = next_id_++;
    c->fd = fd;
    c->cred = cred;
    c->last_active = std::chrono::steady_clock::now();
    uint64_t id = c->id;
    c->watch = loop_.add_fd(fd, POLLIN, [this, id](short revents) { on_client(id, revents); });
    clients_[id] = c;
    ++stats_.accepted;
    log_debug("control client %llu connected (pid %d uid %u)", static_cast<unsigned long long>(id),
              static_cast<int>(cred.pid), static_cast<unsigned>(cred.uid));
  }
}

bool ControlServer::evict_idle_client() {
  const auto now = std::chrono::steady_clock::now();
  ClientPtr victim;
  for (const auto& [id, c] : clients_) {
    if (c->subscribed || now - c->last_active < opt_.evict_idle_after) {
      continue;
    }
    if (!victim || c->last_active < victim->last_active) {
      victim = c;
    }
  }
  if (!victim) {
    return false;
  }
  ++stats_.evicted_idle;
  send_and_forget(victim->fd,
                  error_line(nullptr, {ErrorCode::Refused,
                                       "closed: idle while the control socket is full "
                                       "(" +
                                           std::to_string(opt_.max_clients) + " clients)"}));
  close_client(victim, "idle while the control socket is full");
  return true;
}

void ControlServer::on_client(uint64_t id, short revents) {
  auto it = clients_.find(id);
  if (it == clients_.end()) {
    return;
  }
  ClientPtr c = it->second;  // keeps the client alive while we work on it
  if (revents & (POLLERR | POLLNVAL)) {
    close_client(c, "socket error");
    return;
  }
  if ((revents & POLLOUT) && !flush(c)) {
    return;
  }
  bool hangup = (revents & POLLHUP) != 0;
  if ((revents & (POLLIN | POLLHUP)) && !c->closing) {
    for (int i = 0; i < kReadsPerWakeup; ++i) {
      // Read more only when everything read so far is answered: the input
      // held per client stays below max_line + one chunk.
      if (!hangup && (pending(*c) >= opt_.max_queue / 2 || has_line(*c))) {
        break;
      }
      char buf[kReadChunk];
      ssize_t n = ::recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        c->in.append(buf, static_cast<size_t>(n));
        process_lines(c);
        if (c->fd < 0) {
          return;  // closed while processing
        }
        continue;
      }
      if (n == 0) {
        c->closing = true;  // the client finished sending; reply, then close
        break;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        break;
      }
      close_client(c, "read error");
      return;
    }
  }
  if (hangup) {
    close_client(c, nullptr);  // nobody left to read replies
    return;
  }
  // Lines held back while the output queue was full; a few rounds while the
  // socket takes the replies, then back to the loop (update_events asks for
  // POLLOUT while lines wait, so the loop calls us again at once).
  for (int round = 0; round < kReadsPerWakeup; ++round) {
    process_lines(c);
    if (c->fd < 0 || !flush(c)) {
      return;
    }
    if (pending(*c) > 0 || !has_line(*c)) {
      break;
    }
  }
  update_events(c);
}

void ControlServer::process_lines(const ClientPtr& c) {
  size_t start = 0;
  while (pending(*c) < opt_.max_queue / 2) {
    size_t nl = c->in.find('\n', start);
    if (nl == std::string::npos) {
      break;
    }
    std::string_view line(c->in.data() + start, nl - start);
    start = nl + 1;
    if (line.size() > opt_.max_line) {
      break;  // handled below as a long line
    }
    if (line.empty() || line == "\r") {
      continue;
    }
    ControlReply r = api_.handle_line(line);
    c->last_active = std::chrono::steady_clock::now();
    c->out += r.line;
    if (r.subscribe) {
      c->subscribed = true;
    }
  }
  c->in.erase(0, start);
  size_t first_line = c->in.find('\n');
  size_t partial = first_line == std::string::npos ? c->in.size() : first_line;
  if (partial > opt_.max_line) {
    ++stats_.dropped_long_line;
    flush(c);
    if (c->fd >= 0) {
      send_and_forget(
          c->fd, error_line(nullptr, {ErrorCode::InvalidRequest, "request line longer than " +
                                                                     std::to_string(opt_.max_line) +
                                                                     " bytes; disconnecting"}));
      close_client(c, "request line too long");
    }
  }
}

bool ControlServer::flush(const ClientPtr& c) {
  while (pending(*c) > 0) {
    ssize_t n = ::send(c->fd, c->out.data() + c->out_off, pending(*c), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c->out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      break;
    }
    close_client(c, nullptr);  // EPIPE and friends: the client left
    return false;
  }
  if (pending(*c) == 0) {
    c->out.clear();
    c->out_off = 0;
  } else if (c->out_off > 64 * 1024) {
    c->out.erase(0, c->out_off);
    c->out_off = 0;
  }
  if (c->closing && pending(*c) == 0 && !c->subscribed && !has_line(*c)) {
    close_client(c, nullptr);
    return false;
  }
  return true;
}

void ControlServer::update_events(const ClientPtr& c) {
  short ev = 0;
  if (!c->closing && pending(*c) < opt_.max_queue / 2) {
    ev |= POLLIN;
  }
  if (pending(*c) > 0 || has_line(*c)) {
    ev |= POLLOUT;
  }
  loop_.update_fd(c->watch, c->fd, ev);
}

void ControlServer::close_client(const ClientPtr& c, const char* why) {
  if (c->fd < 0) {
    return;
  }
  if (why != nullptr) {
    log_info("control client %llu (pid %d uid %u) disconnected: %s",
             static_cast<unsigned long long>(c->id), static_cast<int>(c->cred.pid),
             static_cast<unsigned>(c->cred.uid), why);
  }
  loop_.remove(c->watch);
  ::close(c->fd);
  c->fd = -1;
  clients_.erase(c->id);
}

void ControlServer::publish(const ControlEvent& ev) {
  std::string line = event_line(ev);
  std::vector<ClientPtr> subs;
  for (auto& [id, c] : clients_) {
    if (c->subscribed) {
      subs.push_back(c);
    }
  }
  for (auto& c : subs) {
    if (c->fd < 0) {
      continue;
    }
    if (pending(*c) + line.size() > opt_.max_queue) {
      ++stats_.dropped_slow;
      close_client(c, "not reading its events (output queue full)");
      continue;
    }
    c->out += line;
    if (flush(c)) {
      update_events(c);
    }
  }
}

}  // namespace qaudio::control
