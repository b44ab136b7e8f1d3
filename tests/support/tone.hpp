// Tone analysis for tests that check audio CONTENT: generate sine tones,
// measure level (RMS in dBFS), the power at a given frequency (Goertzel),
// and the frequency (zero crossings with sub-sample interpolation).
// Header-only; works on interleaved float buffers (pick a channel) or on
// S16 bytes converted with s16_to_float().
//
//   auto buf = qaudio::test::sine(440.0, 48000, 48000, 2, 0.5);   // 1 s stereo
//   double f = qaudio::test::frequency(buf, 2, 0, 48000);          // ~440
//   double db = qaudio::test::rms_dbfs(buf, 2, 0);                  // ~-9.03
//   double a = qaudio::test::tone_amplitude(buf, 2, 0, 48000, 440); // ~0.5
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

namespace qaudio::test {

inline constexpr double kPi = 3.14159265358979323846;

// `frames` frames of a sine of `freq` Hz at `rate`, amplitude `amp` (1 =
// full scale), copied to every one of `channels` channels.
inline std::vector<float> sine(double freq,
                               uint32_t rate,
                               size_t frames,
                               uint32_t channels,
                               double amp,
                               double phase = 0.0) {
  std::vector<float> out(frames * channels);
  for (size_t i = 0; i < frames; ++i) {
    float v = static_cast<float>(
        amp * std::sin(2.0 * kPi * freq * static_cast<double>(i) / rate + phase));
    for (uint32_t c = 0; c < channels; ++c) {
      out[i * channels + c] = v;
    }
  }
  return out;
}

// Same as sine() as interleaved S16LE bytes.
inline std::vector<std::byte> sine_s16(double freq,
                                       uint32_t rate,
                                       size_t frames,
                                       uint32_t channels,
                                       double amp,
                                       double phase = 0.0) {
  auto f = sine(freq, rate, frames, channels, amp, phase);
  std::vector<std::byte> out(f.size() * 2);
  for (size_t i = 0; i < f.size(); ++i) {
    double v = std::lround(f[i] * 32767.0);
    int16_t s = static_cast<int16_t>(v);
    std::memcpy(out.data() + 2 * i, &s, 2);
  }
  return out;
}

inline std::vector<float> s16_to_float(std::span<const std::byte> bytes) {
  std::vector<float> out(bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int16_t s;
    std::memcpy(&s, bytes.data() + 2 * i, 2);
    out[i] = static_cast<float>(s) / 32768.0f;
  }
  return out;
}

// One channel of an interleaved buffer.
inline std::vector<double> channel(std::span<const float> buf, uint32_t channels, uint32_t ch) {
  std::vector<double> out(buf.size() / channels);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = buf[i * channels + ch];
  }
  return out;
}

inline double rms(std::span<const float> buf, uint32_t channels, uint32_t ch) {
  auto x = channel(buf, channels, ch);
  if (x.empty()) {
    return 0.0;
  }
  double acc = 0;
  for (double v : x) {
    acc += v * v;
  }
  return std::sqrt(acc / static_cast<double>(x.size()));
}

// RMS level in dBFS (full-scale sine = -3.01 dBFS); -inf for silence.
inline double rms_dbfs(std::span<const float> buf, uint32_t channels, uint32_t ch) {
  double r = rms(buf, channels, ch);
  return r > 0 ? 20.0 * std::log10(r) : -std::numeric_limits<double>::infinity();
}

inline double peak(std::span<const float> buf) {
  double p = 0;
  for (float v : buf) {
    p = std::max(p, static_cast<double>(std::fabs(v)));
  }
  return p;
}

// Amplitude of the component at `freq` (Goertzel over the whole buffer,
// Hann-windowed so nearby tones leak little). A pure sine of amplitude A
// at exactly `freq` gives ~A.
inline double tone_amplitude(std::span<const float> buf,
                             uint32_t channels,
                             uint32_t ch,
                             uint32_t rate,
                             double freq) {
  auto x = channel(buf, channels, ch);
  const size_t n = x.size();
  if (n < 2) {
    return 0.0;
  }
  const double w = 2.0 * kPi * freq / rate;
  const double coeff = 2.0 * std::cos(w);
  double s1 = 0, s2 = 0, wsum = 0;
  for (size_t i = 0; i < n; ++i) {
    double win = 0.5 - 0.5 * std::cos(2.0 * kPi * static_cast<double>(i) / (n - 1));
    wsum += win;
    double s0 = x[i] * win + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  double re = s1 - s2 * std::cos(w);
  double im = s2 * std::sin(w);
  return 2.0 * std::sqrt(re * re + im * im) / wsum;
}

inline double amplitude_to_db(double a) {
  return a > 0 ? 20.0 * std::log10(a) : -std::numeric_limits<double>::infinity();
}

// Frequency of the dominant tone from rising zero crossings (linear
// interpolation between samples). Meaningful for a single tone; 0 if fewer
// than two crossings.
inline double frequency(std::span<const float> buf, uint32_t channels, uint32_t ch, uint32_t rate) {
  auto x = channel(buf, channels, ch);
  double first = -1, last = -1;
  size_t count = 0;
  for (size_t i = 1; i < x.size(); ++i) {
    if (x[i - 1] < 0 && x[i] >= 0) {
      double t = static_cast<double>(i - 1) + (-x[i - 1]) / (x[i] - x[i - 1]);
      if (first < 0) {
        first = t;
      } else {
        ++count;
      }
      last = t;
    }
  }
  if (count == 0) {
    return 0.0;
  }
  return static_cast<double>(count) * rate / (last - first);
}

// True when every sample is exactly 0.
inline bool all_zero(std::span<const float> buf) {
  for (float v : buf) {
    if (v != 0.0f) {
      return false;
    }
  }
  return true;
}
inline bool all_zero_bytes(std::span<const std::byte> buf) {
  for (std::byte b : buf) {
    if (b != std::byte{0}) {
      return false;
    }
  }
  return true;
}

}  // namespace qaudio::test
