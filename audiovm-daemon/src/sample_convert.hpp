// Sample and channel conversion between the qubes' wire formats
// (S16LE/S32LE/F32LE, 1-8 channels) and the daemon's device side
// (interleaved float32). Real-time safe: no allocation, no branches per
// sample beyond clamping. Float input from a qube is sanitised (NaN -> 0,
// clamped to [-1, 1]) so one qube can never poison the mix.
//
//   to_float(SampleFormat::S16LE, bytes, floats, frames * channels);
//   ChannelMap m(6, 2);            // 5.1 -> stereo downmix
//   m.apply(in, out, frames);
//   from_float(SampleFormat::S16LE, floats, bytes, n);   // clips
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "qaudio/format.hpp"

namespace qaudio::daemon {

// `samples` samples of `fmt` (little endian, may be unaligned) -> float.
void to_float(SampleFormat fmt, const std::byte* in, float* out, size_t samples);
// float -> `fmt`, clipping to the format's range (the device write / the
// qube's capture stream).
void from_float(SampleFormat fmt, const float* in, std::byte* out, size_t samples);
// float -> S16 with clipping (the WAV/ALSA device write).
void float_to_s16(const float* in, int16_t* out, size_t samples);
// Clamps to [-1, 1] in place (NaN -> 0).
void clip_float(float* buf, size_t samples);

// Channel layouts by count (WAVE/ALSA order):
// 1 mono; 2 FL FR; 3 FL FR FC; 4 FL FR RL RR; 5 FL FR FC RL RR;
// 6 FL FR FC LFE RL RR; 7 FL FR FC LFE RC SL SR; 8 FL FR FC LFE RL RR SL SR.
// Mapping: equal counts copy; mono -> FL and FR (others silent); stereo -> FL
// FR of a wider layout; N -> stereo is a normalised downmix (centre and
// surrounds at -3 dB, LFE dropped); N -> mono averages the non-LFE
// channels; other N -> M copy the common leading channels.
class ChannelMap {
 public:
  ChannelMap(uint32_t in_channels, uint32_t out_channels);
  uint32_t in_channels() const { return in_; }
  uint32_t out_channels() const { return out_; }
  bool identity() const { return identity_; }
  // Coefficient from input channel i to output channel o.
  float coeff(uint32_t o, uint32_t i) const { return m_[o][i]; }
  // in: frames * in_channels; out: frames * out_channels (must not alias).
  void apply(const float* in, float* out, size_t frames) const;

 private:
  uint32_t in_;
  uint32_t out_;
  bool identity_;
  std::array<std::array<float, 8>, 8> m_{};
};

}  // namespace qaudio::daemon
