// Gain curve and ramp (see gain.hpp): volume percent is linear amplitude,
// changes ramp linearly over a few milliseconds, constant gains run a plain
// vectorisable loop.
#include "gain.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace qaudio::daemon {

float gain_for_percent(uint32_t percent) {
  return static_cast<float>(std::min(percent, kMaxVolumePercent)) / 100.0f;
}

float gain_for(uint32_t percent, bool muted) {
  return muted ? 0.0f : gain_for_percent(percent);
}

double gain_to_db(float gain) {
  if (gain <= 0.0f) {
    return -std::numeric_limits<double>::infinity();
  }
  return 20.0 * std::log10(static_cast<double>(gain));
}

GainRamp::GainRamp(uint32_t ramp_frames, float initial)
    : ramp_frames_(ramp_frames), current_(initial), target_(initial) {}

void GainRamp::set_target(float target) {
  if (target == target_) {
    return;
  }
  target_ = target;
  if (ramp_frames_ == 0) {
    current_ = target;
    remaining_ = 0;
    return;
  }
  remaining_ = ramp_frames_;
  step_ = (target_ - current_) / static_cast<float>(ramp_frames_);
}

// The mixer's hot loops get an AVX2 clone picked at load time (ifunc);
// other CPUs run the baseline SSE2 version.
// (Not under the sanitizers: the ifunc resolver runs before their runtime
// is initialised and crashes in TSan builds.)
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define QAUDIO_NO_IFUNC 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define QAUDIO_NO_IFUNC 1
#endif
#if defined(__x86_64__) && defined(__ELF__) && !defined(QAUDIO_NO_IFUNC)
#define QAUDIO_HOT_LOOP __attribute__((target_clones("avx2", "default")))
#else
#define QAUDIO_HOT_LOOP
#endif

namespace {
QAUDIO_HOT_LOOP void scale(float* __restrict buf, size_t n, float g) {
  for (size_t i = 0; i < n; ++i) {
    buf[i] *= g;
  }
}
}  // namespace

void GainRamp::apply(float* buf, size_t frames, uint32_t channels) {
  size_t f = 0;
  if (remaining_ > 0) {
    size_t n = std::min<size_t>(remaining_, frames);
    float g = current_;
    for (; f < n; ++f) {
      g += step_;
      for (uint32_t c = 0; c < channels; ++c) {
        buf[f * channels + c] *= g;
      }
    }
    remaining_ -= static_cast<uint32_t>(n);
    current_ = remaining_ == 0 ? target_ : g;
  }
  if (f == frames) {
    return;
  }
  float* rest = buf + f * channels;
  size_t n = (frames - f) * channels;
  if (current_ == 1.0f) {
    return;
  }
  if (current_ == 0.0f) {
    std::memset(rest, 0, n * sizeof(float));
    return;
  }
  scale(rest, n, current_);
}

QAUDIO_HOT_LOOP void mix_add(float* __restrict acc, const float* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    acc[i] += src[i];
  }
}

}  // namespace qaudio::daemon
