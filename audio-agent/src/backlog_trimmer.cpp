// BacklogTrimmer and splice_drop (see backlog_trimmer.hpp).
#include "backlog_trimmer.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>

namespace qaudio::agent {

void BacklogTrimmer::reset() {
  window_open_ = false;
  settling_windows_ = kSettlingWindows;
  lowest_ = -1;
}

void BacklogTrimmer::observe(int64_t queue_ns, int64_t now_ns) {
  queue_ns = std::max<int64_t>(queue_ns, 0);
  if (!window_open_) {
    window_open_ = true;
    window_start_ = now_ns;
    window_min_ = queue_ns;
    return;
  }
  window_min_ = std::min(window_min_, queue_ns);
}

int64_t BacklogTrimmer::level_ns() const {
  return lowest_ < 0 ? -1 : std::max(std::min(lowest_, cfg_.max_level_ns), cfg_.target_ns);
}

int64_t BacklogTrimmer::due(int64_t now_ns) {
  if (!window_open_ || now_ns - window_start_ < cfg_.window_ns) {
    return 0;
  }
  const int64_t min = window_min_;
  window_open_ = false;  // the next observe() opens the next window
  if (settling_windows_ > 0) {
    --settling_windows_;  // still settling (prebuffering, first requests): not a level
    return 0;
  }
  lowest_ = lowest_ < 0 ? min : std::min(lowest_, min);
  const int64_t level = level_ns();
  if (min <= level + cfg_.tolerance_ns) {
    return 0;
  }
  const int64_t drop = std::min(min - level, cfg_.max_step_ns);
  ++trims_;
  trimmed_ns_ += drop;
  return drop;
}

namespace {

template <typename T>
void crossfade(std::byte* base, size_t channels, size_t drop, size_t fade) {
  for (size_t i = 0; i < fade; ++i) {
    // w goes from just above 0 to just below 1: both ends stay continuous.
    const double w = (static_cast<double>(i) + 0.5) / static_cast<double>(fade);
    for (size_t c = 0; c < channels; ++c) {
      T a, b;
      std::memcpy(&a, base + (i * channels + c) * sizeof(T), sizeof(T));
      std::memcpy(&b, base + ((i + drop) * channels + c) * sizeof(T), sizeof(T));
      double v = static_cast<double>(a) * (1.0 - w) + static_cast<double>(b) * w;
      T out;
      if constexpr (std::is_floating_point_v<T>) {
        out = static_cast<T>(v);
      } else {
        // |v| never exceeds max(|a|, |b|): a convex combination; round.
        out = static_cast<T>(v < 0 ? v - 0.5 : v + 0.5);
      }
      std::memcpy(base + (i * channels + c) * sizeof(T), &out, sizeof(T));
    }
  }
}

}  // namespace

size_t splice_drop(std::span<std::byte> pcm, const StreamFormat& f, size_t drop, size_t fade) {
  const size_t fb = f.frame_bytes();
  if (fb == 0 || pcm.size() < (drop + fade) * fb) {
    return 0;
  }
  if (drop == 0 || fade == 0) {
    std::memmove(pcm.data(), pcm.data() + drop * fb, fade * fb);
    return fade * fb;
  }
  switch (f.sample) {
    case SampleFormat::F32LE:
      crossfade<float>(pcm.data(), f.channels, drop, fade);
      break;
    case SampleFormat::S16LE:
      crossfade<int16_t>(pcm.data(), f.channels, drop, fade);
      break;
    case SampleFormat::S32LE:
      crossfade<int32_t>(pcm.data(), f.channels, drop, fade);
      break;
    default:
      std::memmove(pcm.data(), pcm.data() + drop * fb, fade * fb);
      break;
  }
  return fade * fb;
}

}  // namespace qaudio::agent
