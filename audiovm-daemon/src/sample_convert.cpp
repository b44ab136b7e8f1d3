// Sample format and channel conversion (see sample_convert.hpp). Little
// endian hosts only (static_assert); unaligned input is read with memcpy.
#include "sample_convert.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace qaudio::daemon {

static_assert(std::endian::native == std::endian::little, "qaudio assumes a little-endian host");

namespace {

inline float sanitize(float x) {
  // NaN -> 0, infinities clamp; written as selects so loops vectorise.
  x = x == x ? x : 0.0f;
  x = x < -1.0f ? -1.0f : x;
  return x > 1.0f ? 1.0f : x;
}

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

QAUDIO_HOT_LOOP void s16_to_float(const std::byte* __restrict in,
                                  float* __restrict out,
                                  size_t samples) {
  for (size_t i = 0; i < samples; ++i) {
    int16_t v;
    std::memcpy(&v, in + 2 * i, 2);
    out[i] = static_cast<float>(v) * (1.0f / 32768.0f);
  }
}

QAUDIO_HOT_LOOP void f32_to_float(const std::byte* __restrict in,
                                  float* __restrict out,
                                  size_t samples) {
  for (size_t i = 0; i < samples; ++i) {
    float v;
    std::memcpy(&v, in + 4 * i, 4);
    out[i] = sanitize(v);
  }
}

}  // namespace

void to_float(SampleFormat fmt, const std::byte* in, float* out, size_t samples) {
  switch (fmt) {
    case SampleFormat::S16LE:
      s16_to_float(in, out, samples);
      break;
    case SampleFormat::S32LE:
      for (size_t i = 0; i < samples; ++i) {
        int32_t v;
        std::memcpy(&v, in + 4 * i, 4);
        out[i] = static_cast<float>(v) * (1.0f / 2147483648.0f);
      }
      break;
    case SampleFormat::F32LE:
      f32_to_float(in, out, samples);
      break;
  }
}

void float_to_s16(const float* in, int16_t* out, size_t samples) {
  for (size_t i = 0; i < samples; ++i) {
    float v = in[i] * 32768.0f;
    v = v < -32768.0f ? -32768.0f : (v > 32767.0f ? 32767.0f : v);
    out[i] = static_cast<int16_t>(std::lrintf(v == v ? v : 0.0f));
  }
}

void clip_float(float* buf, size_t samples) {
  for (size_t i = 0; i < samples; ++i) {
    buf[i] = sanitize(buf[i]);
  }
}

void from_float(SampleFormat fmt, const float* in, std::byte* out, size_t samples) {
  switch (fmt) {
    case SampleFormat::S16LE:
      for (size_t i = 0; i < samples; ++i) {
        int16_t v;
        float_to_s16(in + i, &v, 1);
        std::memcpy(out + 2 * i, &v, 2);
      }
      break;
    case SampleFormat::S32LE:
      for (size_t i = 0; i < samples; ++i) {
        double d = static_cast<double>(sanitize(in[i])) * 2147483648.0;
        d = std::min(d, 2147483647.0);
        int32_t v = static_cast<int32_t>(std::lrint(d));
        std::memcpy(out + 4 * i, &v, 4);
      }
      break;
    case SampleFormat::F32LE:
      for (size_t i = 0; i < samples; ++i) {
        float v = sanitize(in[i]);
        std::memcpy(out + 4 * i, &v, 4);
      }
      break;
  }
}

namespace {
enum Pos { FL, FR, FC, LFE, RL, RR, SL, SR, RC };
// Positions of each layout, by channel count (index 1..8).
constexpr int kLayouts[9][8] = {
    {},
    {FC},
    {FL, FR},
    {FL, FR, FC},
    {FL, FR, RL, RR},
    {FL, FR, FC, RL, RR},
    {FL, FR, FC, LFE, RL, RR},
    {FL, FR, FC, LFE, RC, SL, SR},
    {FL, FR, FC, LFE, RL, RR, SL, SR},
};
constexpr float kMinus3dB = 0.70710678f;
}  // namespace

ChannelMap::ChannelMap(uint32_t in_channels, uint32_t out_channels)
    : in_(std::clamp<uint32_t>(in_channels, 1, 8)),
      out_(std::clamp<uint32_t>(out_channels, 1, 8)),
      identity_(in_ == out_) {
  if (identity_) {
    for (uint32_t c = 0; c < in_; ++c) {
      m_[c][c] = 1.0f;
    }
  } else if (in_ == 1) {
    m_[0][0] = 1.0f;
    if (out_ >= 2) {
      m_[1][0] = 1.0f;
    }
  } else if (in_ == 2 && out_ > 2) {
    m_[0][0] = 1.0f;
    m_[1][1] = 1.0f;
  } else if (out_ == 2) {
    // Downmix: left gets FL, FC/2, left surrounds/rear at -3 dB; RC goes to
    // both at -3 dB; LFE is dropped. Normalised so a full-scale signal on
    // every channel stays at full scale.
    for (uint32_t i = 0; i < in_; ++i) {
      switch (kLayouts[in_][i]) {
        case FL:
          m_[0][i] = 1.0f;
          break;
        case FR:
          m_[1][i] = 1.0f;
          break;
        case FC:
        case RC:
          m_[0][i] = kMinus3dB;
          m_[1][i] = kMinus3dB;
          break;
        case RL:
        case SL:
          m_[0][i] = kMinus3dB;
          break;
        case RR:
        case SR:
          m_[1][i] = kMinus3dB;
          break;
        default:
          break;
      }
    }
    for (uint32_t o = 0; o < 2; ++o) {
      float sum = 0;
      for (uint32_t i = 0; i < in_; ++i) {
        sum += m_[o][i];
      }
      for (uint32_t i = 0; i < in_; ++i) {
        m_[o][i] /= sum;
      }
    }
  } else if (out_ == 1) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < in_; ++i) {
      n += kLayouts[in_][i] != LFE;
    }
    for (uint32_t i = 0; i < in_; ++i) {
      m_[0][i] = kLayouts[in_][i] != LFE ? 1.0f / static_cast<float>(n) : 0.0f;
    }
  } else {
    for (uint32_t c = 0; c < std::min(in_, out_); ++c) {
      m_[c][c] = 1.0f;
    }
  }
}

void ChannelMap::apply(const float* in, float* out, size_t frames) const {
  if (identity_) {
    std::memcpy(out, in, frames * in_ * sizeof(float));
    return;
  }
  if (in_ == 1 && out_ == 2) {
    for (size_t f = 0; f < frames; ++f) {
      out[2 * f] = in[f];
      out[2 * f + 1] = in[f];
    }
    return;
  }
  for (size_t f = 0; f < frames; ++f) {
    const float* src = in + f * in_;
    float* dst = out + f * out_;
    for (uint32_t o = 0; o < out_; ++o) {
      float acc = 0.0f;
      for (uint32_t i = 0; i < in_; ++i) {
        acc += m_[o][i] * src[i];
      }
      dst[o] = acc;
    }
  }
}

}  // namespace qaudio::daemon
