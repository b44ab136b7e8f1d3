// Small helpers shared by the process-level end-to-end tests (cli_e2e,
// mic_e2e): whole-file reads, raw float files, robust tone levels.
//
//   auto pcm = qaudio::test::read_floats(dir + "/mic.raw");
//   double a = qaudio::test::median_level(pcm, 440.0);  // ~amplitude of 440 Hz
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tone.hpp"

namespace qaudio::test {

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A raw little-endian float32 file (e.g. a fake agent's --record output).
inline std::vector<float> read_floats(const std::string& path) {
  std::string raw = read_text(path);
  std::vector<float> f(raw.size() / 4);
  std::memcpy(f.data(), raw.data(), f.size() * 4);
  return f;
}

// The first frame whose |sample| exceeds `threshold` (npos if none).
inline size_t first_loud(const std::vector<float>& pcm, uint32_t channels, float threshold = 0.1f) {
  for (size_t i = 0; i < pcm.size(); ++i) {
    if (std::fabs(pcm[i]) > threshold) {
      return i / channels;
    }
  }
  return std::string::npos;
}

// Level of `freq` in interleaved float PCM: the median over 100 ms windows,
// so a period dropped on a loaded machine does not move it.
inline double median_level(const std::vector<float>& pcm,
                           double freq,
                           uint32_t channels = 2,
                           uint32_t rate = 48000) {
  std::vector<double> v;
  const size_t win = rate / 10 * channels;
  for (size_t off = 0; off + win <= pcm.size(); off += win) {
    v.push_back(tone_amplitude(std::span(pcm).subspan(off, win), channels, 0, rate, freq));
  }
  if (v.empty()) {
    return 0;
  }
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

}  // namespace qaudio::test
