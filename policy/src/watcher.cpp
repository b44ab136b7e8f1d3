// PolicyWatcher: inotify on the policy directory and what it includes.
// Any event (create, delete, write, rename, attribute change) means "reload":
// reloading is cheap and a spurious reload is harmless, a missed one is not.
//
//   PolicyWatcher w(dir); w.start();
//   if (poll on w.fd() says readable && w.check()) { reload }
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "qaudio/policy/watcher.hpp"

namespace qaudio::policy {
namespace {

constexpr uint32_t kMask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM |
                           IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

std::string parent_of(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') {
    s.pop_back();
  }
  size_t i = s.rfind('/');
  if (i == std::string::npos) {
    return ".";
  }
  return i == 0 ? "/" : s.substr(0, i);
}

}  // namespace

PolicyWatcher::PolicyWatcher(std::string dir) : dir_(std::move(dir)) {}

PolicyWatcher::~PolicyWatcher() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Result<void> PolicyWatcher::start() {
  if (fd_ < 0) {
    fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) {
      return fail_errno("inotify_init1 for policy directory " + dir_);
    }
  }
  add_dir(dir_);
  bool root_watched = std::any_of(watches_.begin(), watches_.end(),
                                  [&](const auto& w) { return w.second == dir_; });
  if (!root_watched) {
    add_dir(parent_of(dir_));  // to see the directory appear
  }
  return {};
}

void PolicyWatcher::add_dir(const std::string& path) {
  if (fd_ < 0) {
    return;
  }
  int wd = ::inotify_add_watch(fd_, path.c_str(), kMask | IN_ONLYDIR);
  if (wd < 0) {
    return;
  }
  for (auto& w : watches_) {
    if (w.first == wd) {
      w.second = path;
      return;
    }
  }
  watches_.emplace_back(wd, path);
}

void PolicyWatcher::watch(const PolicySnapshot& snapshot) {
  for (const auto& d : snapshot.dirs) {
    add_dir(d);
  }
  (void)start();
}

bool PolicyWatcher::check() {
  if (fd_ < 0) {
    return false;
  }
  bool changed = false;
  alignas(struct inotify_event) char buf[4096];
  while (true) {
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;  // EAGAIN: drained
    }
    changed = true;
    for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(struct inotify_event)) <= n;) {
      const auto* ev = reinterpret_cast<const struct inotify_event*>(buf + off);
      if (ev->mask & IN_IGNORED) {
        watches_.erase(std::remove_if(watches_.begin(), watches_.end(),
                                      [&](const auto& w) { return w.first == ev->wd; }),
                       watches_.end());
      }
      off += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
    }
  }
  if (changed) {
    (void)start();  // re-watch the directory if it was (re)created
  }
  return changed;
}

}  // namespace qaudio::policy
