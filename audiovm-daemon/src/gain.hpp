// Per-qube gain: volume percent (0-150, linear amplitude: 50 % = -6 dB,
// 150 % = +3.5 dB) and mute, applied with a short linear ramp so changes do
// not click. GainRamp runs on the real-time thread (no allocation); the main
// thread only stores the target in atomics that the owner reads per period.
//
//   GainRamp g(48000 * 5 / 1000);          // 5 ms ramp
//   g.set_target(gain_for(volume, muted));  // once per period
//   g.apply(buf, frames, channels);         // exact zeros once a mute ramp ends
#pragma once

#include <cstddef>
#include <cstdint>

namespace qaudio::daemon {

inline constexpr uint32_t kMaxVolumePercent = 150;
inline constexpr uint32_t kDefaultVolumePercent = 100;

// Linear amplitude for a volume percent (clamped to 0..150).
float gain_for_percent(uint32_t percent);
// Same, 0 when muted.
float gain_for(uint32_t percent, bool muted);
// 20*log10(gain); -inf for 0.
double gain_to_db(float gain);

class GainRamp {
 public:
  // ramp_frames: frames to move from one gain to the next (0 = jump).
  explicit GainRamp(uint32_t ramp_frames, float initial = 1.0f);

  // Sets where the ramp goes; a new target restarts the ramp from the
  // current value.
  void set_target(float target);
  float target() const { return target_; }
  float current() const { return current_; }
  bool ramping() const { return remaining_ > 0; }

  // Multiplies `frames` interleaved frames in place. Constant gain 1 leaves
  // the buffer untouched; constant gain 0 writes exact zeros.
  void apply(float* buf, size_t frames, uint32_t channels);

 private:
  uint32_t ramp_frames_;
  float current_;
  float target_;
  float step_ = 0.0f;
  uint32_t remaining_ = 0;
};

// acc[i] += src[i] for n floats (the mixer's inner loop; vectorised).
void mix_add(float* __restrict acc, const float* __restrict src, size_t n);

}  // namespace qaudio::daemon
