// EventLoop: the single-threaded main loop of the daemon and the agent
// (channels' handshakes, control clients, timers, policy reloads). poll(2)
// based; handlers run on the loop's thread. post() is the only thread-safe
// call, for control-side threads (a sound server's callbacks); the real-time
// thread never posts (it uses lock-free queues that the loop drains).
//
//   EventLoop loop;
//   auto id = loop.add_fd(fd, POLLIN, [&](short revents) { ... });
//   loop.add_timer(std::chrono::milliseconds(100), [&] { ... }, /*repeat=*/true);
//   loop.run();   // until loop.quit()
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace qaudio {

class EventLoop {
 public:
  using Id = uint64_t;
  using Clock = std::chrono::steady_clock;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches fd for `events` (POLLIN/POLLOUT); the handler gets revents.
  Id add_fd(int fd, short events, std::function<void(short)> handler);
  // Changes the fd and/or events of a watch (a channel's fd may change once
  // its peer is accepted).
  void update_fd(Id id, int fd, short events);
  // Runs `fn` after `delay`, and every `delay` after that when `repeat`.
  Id add_timer(std::chrono::milliseconds delay, std::function<void()> fn, bool repeat = false);
  // Removes a watch or timer; safe from inside any handler, and for ids
  // that already fired or were removed.
  void remove(Id id);
  // Thread-safe: runs fn on the loop's thread soon.
  void post(std::function<void()> fn);

  // Runs until quit(). quit() is thread-safe and async-signal-safe.
  void run();
  void quit();
  // One poll-and-dispatch round waiting at most `timeout`. Returns false
  // once quit() was called.
  bool run_once(std::chrono::milliseconds timeout);
  bool quitting() const { return quit_flag_ != 0; }

 private:
  struct FdWatch {
    Id id;
    int fd;
    short events;
    std::function<void(short)> handler;
    bool removed = false;
  };
  struct Timer {
    Id id;
    Clock::time_point due;
    std::chrono::milliseconds period;
    bool repeat;
    std::function<void()> fn;
    bool removed = false;
  };

  void drain_posted();
  void fire_timers();

  int wake_fd_ = -1;  // eventfd: wakes poll() for post() and quit()
  volatile int quit_flag_ = 0;
  Id next_id_ = 1;
  std::vector<FdWatch> fds_;
  std::vector<Timer> timers_;
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace qaudio
