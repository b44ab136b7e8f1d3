// ClockFollower: how fast a driver sink in the qube must produce audio so
// that it stays locked to the audio domain's device (docs/protocol.md §6).
//
//  - native: the device's true speed, seen from the qube's clock, is the
//    least-squares slope of ClockTick frame counts against their local
//    receive times over the last kWindow ticks (receive jitter averages
//    out); that slope / the device's nominal rate is the feed-forward;
//  - both modes: a PI loop on the queue between the qube and the device
//    (seconds of audio, e.g. the agent's ring + the channel + the daemon's
//    reported buffer) against its target corrects what the feed-forward
//    misses; in stock mode (no ticks) it is the whole rate-matching loop.
//
// ratio() = 1.0 means nominal speed; 1.003 means "produce 0.3 % more frames
// per local second". Pure arithmetic, no allocation, no clock of its own:
// callers pass local monotonic times (testable with simulated time).
//
//   ClockFollower f;
//   f.on_tick(t.frames_played, t.device_rate, now_ns);      // each ClockTick
//   double r = f.update(queue_s, target_s, now_ns);         // e.g. every 10 ms
//   driver_period = quantum / (rate * r);
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace qaudio::agent {

class ClockFollower {
 public:
  struct Config {
    double kp = 0.2;               // 1/s: a 10 ms queue error corrects by 0.2 %
    double ki = 0.01;              // 1/s^2: kp^2 / 4, critically damped
    double max_correction = 0.01;  // the PI part stays within +-1 %
    double max_deviation = 0.02;   // a device further than 2 % off nominal is ignored
  };
  static constexpr std::size_t kWindow = 64;  // ticks (about 6 s at 10 ticks/s)

  ClockFollower() = default;
  explicit ClockFollower(Config c) : cfg_(c) {}

  // Forget everything (a new connection: frame counters restart).
  void reset();
  // A ClockTick: `frames_played` at the device's nominal `device_rate`,
  // received at the local monotonic time `local_ns`.
  void on_tick(uint64_t frames_played, uint32_t device_rate, int64_t local_ns);
  // The production ratio for the queue `queue_s` (seconds) against
  // `target_s`, at local time `local_ns`. Call regularly (10-100 ms).
  double update(double queue_s, double target_s, int64_t local_ns);

  // The device's speed against nominal, from ticks (1.0 until locked).
  double device_ratio() const { return feed_forward_; }
  bool locked() const { return count_ >= 8; }
  double ratio() const { return ratio_; }

 private:
  void refit();

  Config cfg_{};
  struct Point {
    int64_t local_ns;
    uint64_t frames;
  };
  std::array<Point, kWindow> win_{};
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  uint32_t device_rate_ = 0;
  double feed_forward_ = 1.0;
  double integral_ = 0.0;
  double ratio_ = 1.0;
  int64_t last_update_ns_ = 0;
  bool have_update_ = false;
};

}  // namespace qaudio::agent
