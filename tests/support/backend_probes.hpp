// Test doubles for driving a daemon Backend directly: a PlaybackSource that
// plays a sine tone (what a qube's session would hand the backend, gain
// already applied), a CaptureSink that records into a preallocated buffer,
// and a thread-safe log of BackendEvents with waits on a deadline.
//
//   ToneSource work(440.0, 0.4, 48000, 2);            // 440 Hz, peak 0.4
//   auto h = backend->add_playback({"work", "red", ""}, &work);
//   EventLog events;  make_pulse_backend(server, opts, events.fn());
//   ASSERT_TRUE(events.wait_for(BackendEvent::Kind::ServerLost, 20s));
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <span>
#include <vector>

#include "backend.hpp"
#include "tone.hpp"

namespace qaudio::test {

// A sine tone at `freq` Hz with peak `amplitude` on every channel.
// Real-time safe: no allocation, no locks.
class ToneSource final : public daemon::PlaybackSource {
 public:
  ToneSource(double freq, double amplitude, uint32_t rate, uint32_t channels)
      : step_(2.0 * kPi * freq / rate), amplitude_(amplitude), channels_(channels) {}

  size_t pull(std::span<float> out, size_t frames, const daemon::PeriodTiming& timing) override {
    const size_t n = std::min(frames, out.size() / channels_);
    for (size_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(amplitude_ * std::sin(phase_));
      phase_ += step_;
      if (phase_ > 2.0 * kPi) {
        phase_ -= 2.0 * kPi;
      }
      for (uint32_t c = 0; c < channels_; ++c) {
        out[i * channels_ + c] = v;
      }
    }
    std::fill(out.begin() + static_cast<ptrdiff_t>(n * channels_), out.end(), 0.f);
    frames_.fetch_add(n, std::memory_order_relaxed);
    last_latency_us_.store(timing.device_latency_us, std::memory_order_relaxed);
    return n;
  }

  uint64_t frames_pulled() const { return frames_.load(std::memory_order_relaxed); }
  uint32_t last_latency_us() const { return last_latency_us_.load(std::memory_order_relaxed); }

 private:
  double phase_ = 0.0;
  const double step_;
  const double amplitude_;
  const uint32_t channels_;
  std::atomic<uint64_t> frames_{0};
  std::atomic<uint32_t> last_latency_us_{0};
};

// Records up to `capacity_frames` of interleaved capture audio.
class CaptureRecorder final : public daemon::CaptureSink {
 public:
  CaptureRecorder(size_t capacity_frames, uint32_t channels)
      : buf_(capacity_frames * channels), channels_(channels) {}

  void push(std::span<const float> in, size_t frames, const daemon::PeriodTiming&) override {
    const size_t have = filled_.load(std::memory_order_relaxed);
    const size_t room = buf_.size() / channels_ - have;
    const size_t n = std::min({frames, room, in.size() / channels_});
    std::memcpy(buf_.data() + have * channels_, in.data(), n * channels_ * sizeof(float));
    filled_.store(have + n, std::memory_order_release);
  }

  size_t frames() const { return filled_.load(std::memory_order_acquire); }
  bool full() const { return frames() * channels_ >= buf_.size(); }
  // Valid once full() (or after the stream was removed).
  std::vector<float> samples() const {
    return {buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(frames() * channels_)};
  }

 private:
  std::vector<float> buf_;
  const uint32_t channels_;
  std::atomic<size_t> filled_{0};
};

// Collects backend events from any thread.
class EventLog {
 public:
  daemon::BackendEventFn fn() {
    return [this](const daemon::BackendEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(e);
      cv_.notify_all();
    };
  }
  // Waits until at least `count` events of `kind` arrived.
  bool wait_for(daemon::BackendEvent::Kind kind,
                std::chrono::milliseconds timeout,
                size_t count = 1) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_locked(kind) >= count; });
  }
  size_t count(daemon::BackendEvent::Kind kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return count_locked(kind);
  }
  std::vector<daemon::BackendEvent> all() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  size_t count_locked(daemon::BackendEvent::Kind kind) const {
    size_t n = 0;
    for (const auto& e : events_) {
      n += e.kind == kind ? 1 : 0;
    }
    return n;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<daemon::BackendEvent> events_;
};

// tone_amplitude() (tone.hpp) over consecutive `window`-frame windows from
// `first_frame` on, reduced to one figure: the median by default, robust
// against an odd glitch. A glitch (a dropped or repeated period) only lowers
// a tone's amplitude in its window, so `quantile` 0.9 gives the level of the
// clean windows when the server may drop periods (an overloaded machine
// without real-time scheduling), and 0.1 checks absence.
inline double tone_level(const std::vector<float>& pcm,
                         uint32_t channels,
                         uint32_t channel,
                         uint32_t rate,
                         double freq,
                         size_t first_frame,
                         size_t window,
                         double quantile = 0.5) {
  std::vector<double> levels;
  const std::span<const float> all(pcm);
  for (size_t f = first_frame; f + window <= pcm.size() / channels; f += window) {
    levels.push_back(tone_amplitude(all.subspan(f * channels, window * channels), channels, channel,
                                    rate, freq));
  }
  if (levels.empty()) {
    return 0.0;
  }
  std::sort(levels.begin(), levels.end());
  const auto i = static_cast<size_t>(std::clamp(quantile, 0.0, 1.0) * (levels.size() - 1) + 0.5);
  return levels[i];
}

// Median of frequency() (tone.hpp, zero crossings) over consecutive
// `window`-frame windows from `first_frame` on (robust against a glitch).
inline double tone_frequency(const std::vector<float>& pcm,
                             uint32_t channels,
                             uint32_t channel,
                             uint32_t rate,
                             size_t first_frame,
                             size_t window) {
  std::vector<double> freqs;
  const std::span<const float> all(pcm);
  for (size_t f = first_frame; f + window <= pcm.size() / channels; f += window) {
    freqs.push_back(
        frequency(all.subspan(f * channels, window * channels), channels, channel, rate));
  }
  if (freqs.empty()) {
    return 0.0;
  }
  std::nth_element(freqs.begin(), freqs.begin() + static_cast<ptrdiff_t>(freqs.size() / 2),
                   freqs.end());
  return freqs[freqs.size() / 2];
}

}  // namespace qaudio::test
