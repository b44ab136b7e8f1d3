// Implementation of qaudio/event_loop.hpp.
#include "qaudio/event_loop.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "qaudio/log.hpp"

namespace qaudio {

EventLoop::EventLoop() {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    log_error("event loop: eventfd failed: %s", std::strerror(errno));
    std::abort();
  }
}

EventLoop::~EventLoop() {
  ::close(wake_fd_);
}

EventLoop::Id EventLoop::add_fd(int fd, short events, std::function<void(short)> handler) {
  Id id = next_id_++;
  fds_.push_back(FdWatch{id, fd, events, std::move(handler)});
  return id;
}

void EventLoop::update_fd(Id id, int fd, short events) {
  for (auto& w : fds_) {
    if (w.id == id && !w.removed) {
      w.fd = fd;
      w.events = events;
    }
  }
}

EventLoop::Id EventLoop::add_timer(std::chrono::milliseconds delay,
                                   std::function<void()> fn,
                                   bool repeat) {
  Id id = next_id_++;
  timers_.push_back(Timer{id, Clock::now() + delay, delay, repeat, std::move(fn)});
  return id;
}

void EventLoop::remove(Id id) {
  for (auto& w : fds_) {
    if (w.id == id) {
      w.removed = true;
    }
  }
  for (auto& t : timers_) {
    if (t.id == id) {
      t.removed = true;
    }
  }
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

void EventLoop::quit() {
  quit_flag_ = 1;
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

void EventLoop::run() {
  while (run_once(std::chrono::milliseconds(-1))) {
  }
}

void EventLoop::drain_posted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) {
    fn();
  }
}

void EventLoop::fire_timers() {
  auto now = Clock::now();
  // Index loop: handlers may add timers (push_back invalidates references).
  for (size_t i = 0; i < timers_.size(); ++i) {
    if (timers_[i].removed || timers_[i].due > now) {
      continue;
    }
    auto fn = timers_[i].fn;  // copy: the handler may remove its own timer
    if (timers_[i].repeat) {
      timers_[i].due = now + timers_[i].period;
    } else {
      timers_[i].removed = true;
    }
    fn();
  }
  std::erase_if(timers_, [](const Timer& t) { return t.removed; });
}

bool EventLoop::run_once(std::chrono::milliseconds timeout) {
  if (quit_flag_) {
    return false;
  }
  std::erase_if(fds_, [](const FdWatch& w) { return w.removed; });
  std::vector<pollfd> pfds;
  std::vector<Id> ids;
  pfds.reserve(fds_.size() + 1);
  pfds.push_back(pollfd{wake_fd_, POLLIN, 0});
  for (const auto& w : fds_) {
    pfds.push_back(pollfd{w.fd, w.events, 0});
    ids.push_back(w.id);
  }
  auto wait = timeout;
  auto now = Clock::now();
  for (const auto& t : timers_) {
    if (t.removed) {
      continue;
    }
    auto until = std::chrono::ceil<std::chrono::milliseconds>(t.due - now);
    if (until.count() < 0) {
      until = std::chrono::milliseconds(0);
    }
    if (wait.count() < 0 || until < wait) {
      wait = until;
    }
  }
  int n = ::poll(pfds.data(), pfds.size(), static_cast<int>(wait.count()));
  if (n < 0 && errno != EINTR) {
    log_error("event loop: poll failed: %s", std::strerror(errno));
    return false;
  }
  if (pfds[0].revents & POLLIN) {
    uint64_t v;
    ssize_t ignored = ::read(wake_fd_, &v, sizeof v);
    (void)ignored;
  }
  drain_posted();
  if (n > 0) {
    for (size_t i = 1; i < pfds.size(); ++i) {
      if (pfds[i].revents == 0) {
        continue;
      }
      Id id = ids[i - 1];
      auto it =
          std::find_if(fds_.begin(), fds_.end(), [id](const FdWatch& w) { return w.id == id; });
      if (it == fds_.end() || it->removed) {
        continue;
      }
      auto handler = it->handler;  // copy: the handler may add or remove watches
      handler(pfds[i].revents);
    }
  }
  fire_timers();
  return !quit_flag_;
}

}  // namespace qaudio
