// PcmConverter: format/channel/rate conversion with speexdsp (see header).
#include "pcm_convert.hpp"

#include <speex/speex_resampler.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qaudio::agent {

namespace {
constexpr int kQuality = 5;
}

void decode_to_float(SampleFormat f, const std::byte* in, float* out, size_t samples) {
  if (samples == 0) {
    return;  // in/out may be null (an empty buffer's data())
  }
  switch (f) {
    case SampleFormat::S16LE:
      for (size_t i = 0; i < samples; ++i) {
        int16_t v;
        std::memcpy(&v, in + 2 * i, 2);
        out[i] = static_cast<float>(v) / 32768.0f;
      }
      break;
    case SampleFormat::S32LE:
      for (size_t i = 0; i < samples; ++i) {
        int32_t v;
        std::memcpy(&v, in + 4 * i, 4);
        out[i] = static_cast<float>(static_cast<double>(v) / 2147483648.0);
      }
      break;
    case SampleFormat::F32LE:
      std::memcpy(out, in, samples * 4);
      for (size_t i = 0; i < samples; ++i) {
        if (!std::isfinite(out[i])) {
          out[i] = 0.0f;  // NaN/inf from an app or a peer never reach a device
        }
      }
      break;
  }
}

void encode_from_float(SampleFormat f, const float* in, std::byte* out, size_t samples) {
  if (samples == 0) {
    return;
  }
  switch (f) {
    case SampleFormat::S16LE:
      for (size_t i = 0; i < samples; ++i) {
        float s = std::clamp(in[i], -1.0f, 1.0f) * 32767.0f;
        auto v = static_cast<int16_t>(std::lrint(s));
        std::memcpy(out + 2 * i, &v, 2);
      }
      break;
    case SampleFormat::S32LE:
      for (size_t i = 0; i < samples; ++i) {
        double s = std::clamp(static_cast<double>(in[i]), -1.0, 1.0) * 2147483647.0;
        auto v = static_cast<int32_t>(std::llrint(s));
        std::memcpy(out + 4 * i, &v, 4);
      }
      break;
    case SampleFormat::F32LE:
      std::memcpy(out, in, samples * 4);
      break;
  }
}

PcmConverter::PcmConverter(StreamFormat in, StreamFormat out, size_t max_in_frames)
    : in_(in), out_(out), max_in_frames_(max_in_frames) {}

PcmConverter::~PcmConverter() {
  if (resampler_ != nullptr) {
    speex_resampler_destroy(resampler_);
  }
}

Result<std::unique_ptr<PcmConverter>> PcmConverter::create(StreamFormat in,
                                                           StreamFormat out,
                                                           size_t max_in_frames) {
  if (!in.valid() || !out.valid()) {
    return fail("pcm converter: invalid format " + to_string(in) + " -> " + to_string(out));
  }
  max_in_frames = std::max<size_t>(max_in_frames, 16);
  std::unique_ptr<PcmConverter> c(new PcmConverter(in, out, max_in_frames));
  c->a_.resize(max_in_frames * std::max(in.channels, out.channels));
  if (in.rate != out.rate) {
    int err = 0;
    c->resampler_ = speex_resampler_init(out.channels, in.rate, out.rate, kQuality, &err);
    if (c->resampler_ == nullptr) {
      return fail(std::string("pcm converter: speex_resampler_init failed: ") +
                  speex_resampler_strerror(err));
    }
    speex_resampler_skip_zeros(c->resampler_);
    c->b_.resize(c->max_out_bytes(max_in_frames * in.frame_bytes()) / sample_bytes(out.sample) +
                 out.channels);
  }
  return c;
}

size_t PcmConverter::max_out_bytes(size_t in_bytes) const {
  size_t frames = std::min(in_bytes / in_.frame_bytes(), max_in_frames_);
  size_t out_frames = frames;
  if (in_.rate != out_.rate) {
    out_frames = (frames * out_.rate + in_.rate - 1) / in_.rate + 2;
  }
  return out_frames * out_.frame_bytes();
}

void PcmConverter::reset() {
  if (resampler_ != nullptr) {
    speex_resampler_reset_mem(resampler_);
    speex_resampler_skip_zeros(resampler_);
  }
}

PcmConverter::Done PcmConverter::process(std::span<const std::byte> in, std::span<std::byte> out) {
  Done d;
  const size_t in_ch = in_.channels;
  const size_t out_ch = out_.channels;
  size_t frames = std::min(in.size() / in_.frame_bytes(), max_in_frames_);
  size_t out_room = out.size() / out_.frame_bytes();
  if (resampler_ == nullptr) {
    frames = std::min(frames, out_room);
  }
  if (frames == 0) {
    return d;
  }
  // Decode into a_ with the output channel layout. Decode each frame's
  // samples into the tail of a_ first when channel counts differ.
  float* a = a_.data();
  if (in_ch == out_ch) {
    decode_to_float(in_.sample, in.data(), a, frames * in_ch);
  } else {
    float tmp[kMaxChannels];
    const size_t fb = in_.frame_bytes();
    for (size_t f = 0; f < frames; ++f) {
      decode_to_float(in_.sample, in.data() + f * fb, tmp, in_ch);
      float* o = a + f * out_ch;
      if (out_ch == 1) {
        float sum = 0;
        for (size_t c = 0; c < in_ch; ++c) {
          sum += tmp[c];
        }
        o[0] = sum / static_cast<float>(in_ch);
      } else {
        for (size_t c = 0; c < out_ch; ++c) {
          o[c] = tmp[c % in_ch];
        }
      }
    }
  }
  if (resampler_ == nullptr) {
    encode_from_float(out_.sample, a, out.data(), frames * out_ch);
    d.in_bytes = frames * in_.frame_bytes();
    d.out_bytes = frames * out_.frame_bytes();
    return d;
  }
  spx_uint32_t in_len = static_cast<spx_uint32_t>(frames);
  spx_uint32_t out_len = static_cast<spx_uint32_t>(std::min(out_room, b_.size() / out_ch));
  speex_resampler_process_interleaved_float(resampler_, a, &in_len, b_.data(), &out_len);
  encode_from_float(out_.sample, b_.data(), out.data(), static_cast<size_t>(out_len) * out_ch);
  d.in_bytes = static_cast<size_t>(in_len) * in_.frame_bytes();
  d.out_bytes = static_cast<size_t>(out_len) * out_.frame_bytes();
  return d;
}

}  // namespace qaudio::agent
