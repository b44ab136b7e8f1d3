#include "qaudio/event_loop.hpp"

#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

namespace qaudio {

TEST(EventLoop, FdHandlerRunsWhenReadable) {
  EventLoop loop;
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  int calls = 0;
  loop.add_fd(p[0], POLLIN, [&](short re) {
    EXPECT_TRUE(re & POLLIN);
    char c;
    EXPECT_EQ(::read(p[0], &c, 1), 1);
    ++calls;
    loop.quit();
  });
  ASSERT_EQ(::write(p[1], "x", 1), 1);
  loop.run();
  EXPECT_EQ(calls, 1);
  ::close(p[0]);
  ::close(p[1]);
}

TEST(EventLoop, OneShotTimerFiresOnceAndRepeatingTimerUntilRemoved) {
  EventLoop loop;
  int once = 0;
  int repeat = 0;
  loop.add_timer(std::chrono::milliseconds(1), [&] { ++once; });
  EventLoop::Id rid = 0;
  rid = loop.add_timer(
      std::chrono::milliseconds(1),
      [&] {
        if (++repeat == 3) {
          loop.remove(rid);
          loop.quit();
        }
      },
      true);
  loop.run();
  EXPECT_EQ(once, 1);
  EXPECT_EQ(repeat, 3);
}

TEST(EventLoop, PostFromAnotherThreadRunsOnTheLoop) {
  EventLoop loop;
  std::thread::id ran_on;
  std::thread t([&] {
    loop.post([&] {
      ran_on = std::this_thread::get_id();
      loop.quit();
    });
  });
  loop.run();
  t.join();
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(EventLoop, HandlerMayRemoveItselfAndAnotherWatch) {
  EventLoop loop;
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ASSERT_EQ(::write(p[1], "x", 1), 1);
  int a_calls = 0;
  int b_calls = 0;
  EventLoop::Id a = 0;
  EventLoop::Id b = 0;
  a = loop.add_fd(p[0], POLLIN, [&](short) {
    ++a_calls;
    loop.remove(a);
    loop.remove(b);
  });
  b = loop.add_fd(p[0], POLLIN, [&](short) { ++b_calls; });
  loop.run_once(std::chrono::milliseconds(100));
  loop.run_once(std::chrono::milliseconds(0));
  EXPECT_EQ(a_calls, 1);
  EXPECT_EQ(b_calls, 0);
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace qaudio
