// speexdsp resampler wrapper with allocation-free ratio steering (see the
// reasoning in resampler.hpp).
#include "resampler.hpp"

#include <speex/speex_resampler.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qaudio::daemon {
namespace {
// Steerable ratios are num / kDen with num = num0 + k. kDen stays below
// 65536 so that speexdsp's rescaling of its fractional positions on a
// ratio change (samp_frac_num * new_den / old_den, 32-bit) can never
// overflow: on overflow speex_resampler_set_rate_frac() returns early with
// a half-updated state and the next process() reads outside its tables.
constexpr uint32_t kDen = 60000;
}  // namespace

Resampler::Resampler(SpeexResamplerState_* st,
                     uint32_t channels,
                     uint32_t in_rate,
                     uint32_t out_rate,
                     bool steerable)
    : st_(st),
      channels_(channels),
      in_rate_(in_rate),
      out_rate_(out_rate),
      steerable_(steerable),
      flush_out_((kFlushChunk * 4 * out_rate / in_rate + 64) * channels) {}

Resampler::~Resampler() {
  speex_resampler_destroy(st_);
}

Result<std::unique_ptr<Resampler>> Resampler::create(uint32_t channels,
                                                     uint32_t in_rate,
                                                     uint32_t out_rate,
                                                     int quality,
                                                     bool steerable) {
  if (channels < 1 || channels > 8 || in_rate == 0 || out_rate == 0 || in_rate > 384000 ||
      out_rate > 384000) {
    return fail("resampler: unsupported parameters");
  }
  quality = std::clamp(quality, 0, 10);
  int err = 0;
  SpeexResamplerState* st = speex_resampler_init(channels, in_rate, out_rate, quality, &err);
  if (!st || err != RESAMPLER_ERR_SUCCESS) {
    return fail(std::string("speexdsp resampler init failed: ") + speex_resampler_strerror(err));
  }
  std::unique_ptr<Resampler> r(new Resampler(st, channels, in_rate, out_rate, steerable));
  if (steerable) {
    r->num0_ =
        static_cast<uint32_t>((static_cast<uint64_t>(kDen) * in_rate + out_rate / 2) / out_rate);
    r->max_steps_ = static_cast<int32_t>(static_cast<uint64_t>(r->num0_) * kMaxAdjustPpm / 1000000);
    // 1. Go to the grid point with the longest filter (the most
    //    down-sampling ratio) while not started: the history buffer is
    //    sized for it.
    r->apply_steps(r->max_steps_);
    // 2. Mark the resampler started (its !started path reallocates the
    //    history on every ratio change).
    float zeros[8 * 16] = {};
    float sink[8 * 64];
    spx_uint32_t in_len = 16;
    spx_uint32_t out_len = 64;
    speex_resampler_process_interleaved_float(st, zeros, &in_len, sink, &out_len);
    // 3. Visit every grid point once: the sinc table grows to the largest
    //    any reachable ratio needs. From now on ratio changes never realloc.
    for (int32_t k = -r->max_steps_; k <= r->max_steps_; ++k) {
      r->apply_steps(k);
    }
    r->apply_steps(0);
  }
  speex_resampler_reset_mem(st);
  speex_resampler_skip_zeros(st);
  return r;
}

void Resampler::apply_steps(int32_t k) {
  speex_resampler_set_rate_frac(st_, static_cast<uint32_t>(static_cast<int32_t>(num0_) + k), kDen,
                                in_rate_, out_rate_);
  steps_ = k;
  adjust_ppm_ = static_cast<int32_t>(std::lround(k * 1e6 / num0_));
}

void Resampler::set_adjust_ppm(int32_t ppm) {
  if (!steerable_) {
    return;
  }
  ppm = std::clamp(ppm, -kMaxAdjustPpm, kMaxAdjustPpm);
  auto k = static_cast<int32_t>(std::lround(static_cast<double>(ppm) * num0_ / 1e6));
  k = std::clamp(k, -max_steps_, max_steps_);
  if (k != steps_) {
    apply_steps(k);
  }
}

int32_t Resampler::step_ppm() const {
  return steerable_ ? static_cast<int32_t>(std::lround(1e6 / num0_)) : 0;
}

void Resampler::process(const float* in, size_t* in_frames, float* out, size_t* out_frames) {
  spx_uint32_t il = static_cast<spx_uint32_t>(std::min<size_t>(*in_frames, UINT32_MAX));
  spx_uint32_t ol = static_cast<spx_uint32_t>(std::min<size_t>(*out_frames, UINT32_MAX));
  speex_resampler_process_interleaved_float(st_, in, &il, out, &ol);
  *in_frames = il;
  *out_frames = ol;
}

void Resampler::reset() {
  // speex_resampler_reset_mem() clears only nb_channels * (filt_len - 1)
  // contiguous samples of a per-channel-strided history, so channels > 0
  // would keep old audio. Push zeros through the filter first (in = NULL
  // means zeros to speexdsp), then reset the positions.
  size_t flush = 2 * input_latency() + 16;
  while (flush > 0) {
    spx_uint32_t in_len = static_cast<spx_uint32_t>(std::min<size_t>(flush, kFlushChunk));
    spx_uint32_t out_len = static_cast<spx_uint32_t>(flush_out_.size() / channels_);
    speex_resampler_process_interleaved_float(st_, nullptr, &in_len, flush_out_.data(), &out_len);
    if (in_len == 0) {
      break;
    }
    flush -= in_len;
  }
  speex_resampler_reset_mem(st_);
  speex_resampler_skip_zeros(st_);
}

size_t Resampler::input_for_output(size_t out_frames) const {
  double ratio = static_cast<double>(in_rate_) / out_rate_ * (1.0 + adjust_ppm_ * 1e-6);
  return static_cast<size_t>(static_cast<double>(out_frames) * ratio) + 2;
}

uint32_t Resampler::input_latency() const {
  return static_cast<uint32_t>(speex_resampler_get_input_latency(st_));
}

}  // namespace qaudio::daemon
