// Tone helpers for the agent tests: make a sine in any wire format, decode
// any wire format to float, and measure a tone's level (single-bin DFT) and
// frequency (zero crossings). Replace with tests/support/tone.hpp once that
// lands for everyone.
//
//   auto pcm = make_tone({SampleFormat::F32LE, 48000, 2}, 1000.0, 0.5, 48000);
//   auto f = to_float(pcm, kStockFormat);
//   EXPECT_NEAR(tone_peak(f, 2, 0, 44100, 1000.0), 0.5, 0.01);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "pcm_convert.hpp"
#include "qaudio/format.hpp"

namespace qaudio::agent::test {

inline std::vector<std::byte> make_tone(const StreamFormat& f,
                                        double freq,
                                        double amp,
                                        size_t frames,
                                        size_t first_frame = 0) {
  std::vector<float> s(frames * f.channels);
  for (size_t i = 0; i < frames; ++i) {
    float v = static_cast<float>(
        amp * std::sin(2.0 * M_PI * freq * static_cast<double>(first_frame + i) / f.rate));
    for (size_t c = 0; c < f.channels; ++c) {
      s[i * f.channels + c] = v;
    }
  }
  std::vector<std::byte> out(s.size() * sample_bytes(f.sample));
  encode_from_float(f.sample, s.data(), out.data(), s.size());
  return out;
}

inline std::vector<float> to_float(const std::vector<std::byte>& pcm, const StreamFormat& f) {
  std::vector<float> out(pcm.size() / sample_bytes(f.sample));
  decode_to_float(f.sample, pcm.data(), out.data(), out.size());
  return out;
}

// Peak amplitude of `freq` in one channel (first_frame.. first_frame+frames).
inline double tone_peak(const std::vector<float>& pcm,
                        size_t channels,
                        size_t channel,
                        double rate,
                        double freq,
                        size_t first_frame = 0,
                        size_t frames = 0) {
  size_t total = pcm.size() / channels;
  if (first_frame >= total) {
    return 0;
  }
  if (frames == 0 || first_frame + frames > total) {
    frames = total - first_frame;
  }
  double re = 0, im = 0, w = 2 * M_PI * freq / rate;
  for (size_t i = 0; i < frames; ++i) {
    double v = pcm[(first_frame + i) * channels + channel];
    re += v * std::cos(w * static_cast<double>(i));
    im -= v * std::sin(w * static_cast<double>(i));
  }
  return 2 * std::sqrt(re * re + im * im) / static_cast<double>(frames);
}

// Median of tone_peak over consecutive `window`-frame windows from
// `first_frame`: robust against the odd glitch of a loaded machine (with
// 100 ms windows every multiple of 10 Hz is a whole number of cycles).
inline double tone_level(const std::vector<float>& pcm,
                         size_t channels,
                         size_t channel,
                         double rate,
                         double freq,
                         size_t first_frame,
                         size_t window) {
  std::vector<double> levels;
  for (size_t f = first_frame; f + window <= pcm.size() / channels; f += window) {
    levels.push_back(tone_peak(pcm, channels, channel, rate, freq, f, window));
  }
  if (levels.empty()) {
    return 0;
  }
  std::nth_element(levels.begin(), levels.begin() + static_cast<ptrdiff_t>(levels.size() / 2),
                   levels.end());
  return levels[levels.size() / 2];
}

// Highest tone_peak over consecutive windows: the level of the clean
// stretches (a window with a gap or a phase jump only reads lower). Pair it
// with a check that the tone is present most of the time (tone_level).
inline double best_tone_level(const std::vector<float>& pcm,
                              size_t channels,
                              size_t channel,
                              double rate,
                              double freq,
                              size_t first_frame,
                              size_t window) {
  double best = 0;
  for (size_t f = first_frame; f + window <= pcm.size() / channels; f += window) {
    best = std::max(best, tone_peak(pcm, channels, channel, rate, freq, f, window));
  }
  return best;
}

// Frequency from rising zero crossings (interpolated), over one channel.
inline double zero_cross_freq(const std::vector<float>& pcm,
                              size_t channels,
                              size_t channel,
                              double rate,
                              size_t first_frame = 0) {
  double first = -1, last = -1;
  int crossings = 0;
  size_t total = pcm.size() / channels;
  for (size_t i = first_frame + 1; i < total; ++i) {
    float a = pcm[(i - 1) * channels + channel];
    float b = pcm[i * channels + channel];
    if (a < 0 && b >= 0) {
      double t = static_cast<double>(i - 1) + a / (a - b);
      if (first < 0) {
        first = t;
      } else {
        ++crossings;
      }
      last = t;
    }
  }
  return crossings == 0 ? 0 : crossings * rate / (last - first);
}

inline double rms_of(const std::vector<float>& pcm,
                     size_t channels,
                     size_t channel,
                     size_t first_frame = 0) {
  double sum = 0;
  size_t n = 0;
  for (size_t i = first_frame; i < pcm.size() / channels; ++i, ++n) {
    double v = pcm[i * channels + channel];
    sum += v * v;
  }
  return n == 0 ? 0 : std::sqrt(sum / static_cast<double>(n));
}

}  // namespace qaudio::agent::test
