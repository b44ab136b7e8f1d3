// ClockFollower: tick-slope feed-forward + PI on the queue (see header).
#include "clock_follower.hpp"

#include <algorithm>
#include <cmath>

namespace qaudio::agent {

void ClockFollower::reset() {
  head_ = count_ = 0;
  device_rate_ = 0;
  feed_forward_ = 1.0;
  integral_ = 0.0;
  ratio_ = 1.0;
  have_update_ = false;
}

void ClockFollower::on_tick(uint64_t frames_played, uint32_t device_rate, int64_t local_ns) {
  if (device_rate == 0) {
    return;
  }
  if (count_ > 0) {
    const Point& last = win_[(head_ + kWindow - 1) % kWindow];
    // A counter that went back or a new rate is a new device clock.
    if (frames_played < last.frames || device_rate != device_rate_ || local_ns <= last.local_ns) {
      head_ = count_ = 0;
      feed_forward_ = 1.0;
    }
  }
  device_rate_ = device_rate;
  win_[head_] = {local_ns, frames_played};
  head_ = (head_ + 1) % kWindow;
  count_ = std::min(count_ + 1, kWindow);
  refit();
}

// Least-squares slope of frames against local seconds over the window,
// computed relative to the oldest point (keeps doubles exact enough).
void ClockFollower::refit() {
  if (!locked()) {
    return;
  }
  const Point& o = win_[(head_ + kWindow - count_) % kWindow];
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < count_; ++i) {
    const Point& p = win_[(head_ + kWindow - count_ + i) % kWindow];
    double x = static_cast<double>(p.local_ns - o.local_ns) * 1e-9;
    double y = static_cast<double>(p.frames - o.frames);
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double n = static_cast<double>(count_);
  const double den = n * sxx - sx * sx;
  if (den <= 0) {
    return;
  }
  const double ff = (n * sxy - sx * sy) / den / device_rate_;
  if (std::fabs(ff - 1.0) <= cfg_.max_deviation) {
    feed_forward_ = ff;
  }
}

double ClockFollower::update(double queue_s, double target_s, int64_t local_ns) {
  const double err = queue_s - target_s;  // > 0: too much queued, slow down
  if (have_update_) {
    const double dt = std::clamp(static_cast<double>(local_ns - last_update_ns_) * 1e-9, 0.0, 1.0);
    integral_ += cfg_.ki * err * dt;
    integral_ = std::clamp(integral_, -cfg_.max_correction, cfg_.max_correction);
  }
  have_update_ = true;
  last_update_ns_ = local_ns;
  const double correction =
      std::clamp(cfg_.kp * err + integral_, -cfg_.max_correction, cfg_.max_correction);
  ratio_ = feed_forward_ - correction;
  return ratio_;
}

}  // namespace qaudio::agent
