// Drift compensation for the network channel's playout: a steerable
// speexdsp resampler without allocation on the audio path, and its PI loop
// (see net_drift.hpp).
#include "net_drift.hpp"

#include <speex/speex_resampler.h>

#include <algorithm>
#include <cmath>

namespace qaudio::net {

namespace {
constexpr uint32_t kRate = 48000;
constexpr uint32_t kFlushChunk = 64;  // input frames per reset() step
}  // namespace

DriftResampler::DriftResampler(SpeexResamplerState_* st, uint32_t channels)
    : st_(st), channels_(channels), flush_out_(size_t{kFlushChunk} * 2 * channels) {}

DriftResampler::~DriftResampler() {
  speex_resampler_destroy(st_);
}

Result<std::unique_ptr<DriftResampler>> DriftResampler::create(uint32_t channels, int quality) {
  if (channels < 1 || channels > 2) {
    return fail("net drift resampler: " + std::to_string(channels) +
                " channels (the network channel carries 1 or 2)");
  }
  int err = 0;
  SpeexResamplerState* st =
      speex_resampler_init(channels, kRate, kRate, std::clamp(quality, 0, 10), &err);
  if (!st || err != RESAMPLER_ERR_SUCCESS) {
    return fail(std::string("net drift resampler: speexdsp init failed: ") +
                speex_resampler_strerror(err));
  }
  std::unique_ptr<DriftResampler> r(new DriftResampler(st, channels));
  r->max_steps_ = static_cast<int32_t>(uint64_t{kDen} * kMaxPpm / 1'000'000);
  // 1. While not started, go to the most down-sampling ratio (the longest
  //    filter): the history buffer is sized for it.
  r->apply_steps(r->max_steps_);
  // 2. Mark the resampler started (before that, every ratio change
  //    reallocates its history).
  int16_t zeros[2 * 16] = {};
  int16_t sink[2 * 64];
  spx_uint32_t in_len = 16, out_len = 64;
  speex_resampler_process_interleaved_int(st, zeros, &in_len, sink, &out_len);
  // 3. Visit every reachable ratio once: the sinc table grows to the largest
  //    any of them needs; from now on a ratio change never reallocates.
  for (int32_t k = -r->max_steps_; k <= r->max_steps_; ++k) {
    if (k != 0) {
      r->apply_steps(k);
    }
  }
  r->apply_steps(1);
  r->reset();
  return r;
}

void DriftResampler::apply_steps(int32_t k) {
  speex_resampler_set_rate_frac(st_, static_cast<uint32_t>(static_cast<int32_t>(kDen) + k), kDen,
                                kRate, kRate);
  steps_ = k;
}

void DriftResampler::set_ppm(double ppm) {
  ppm = std::clamp(ppm, -double{kMaxPpm}, double{kMaxPpm});
  const double want = ppm * kDen / 1e6;  // in steps
  if (std::fabs(want - steps_) < 0.75) {
    return;  // hysteresis: no table recomputation for noise
  }
  auto k = static_cast<int32_t>(std::lround(want));
  if (k == 0) {
    k = want >= 0 ? 1 : -1;
  }
  k = std::clamp(k, -max_steps_, max_steps_);
  if (k != steps_) {
    apply_steps(k);
  }
}

void DriftResampler::process(const int16_t* in,
                             uint32_t* in_frames,
                             int16_t* out,
                             uint32_t* out_frames) {
  spx_uint32_t il = *in_frames, ol = *out_frames;
  speex_resampler_process_interleaved_int(st_, in, &il, out, &ol);
  *in_frames = il;
  *out_frames = ol;
}

void DriftResampler::reset() {
  // speex_resampler_reset_mem() (1.2.1) clears only nb_channels *
  // (filt_len - 1) contiguous samples of a per-channel-strided history, so
  // the second channel would keep old audio: push zeros through the filter
  // first (in = NULL means zeros to speexdsp), then reset the positions.
  uint32_t flush = 2 * latency() + 16;
  while (flush > 0) {
    spx_uint32_t il = std::min(flush, kFlushChunk);
    spx_uint32_t ol = static_cast<spx_uint32_t>(flush_out_.size() / channels_);
    speex_resampler_process_interleaved_int(st_, nullptr, &il, flush_out_.data(), &ol);
    if (il == 0) {
      break;
    }
    flush -= std::min(flush, static_cast<uint32_t>(il));
  }
  // No skip_zeros(): the filter's first outputs are its zero history, so
  // output and input stay in step from the first sample (a constant delay
  // of latency() frames, reported) and one frame in takes one frame out.
  speex_resampler_reset_mem(st_);
}

uint32_t DriftResampler::latency() const {
  return static_cast<uint32_t>(speex_resampler_get_input_latency(st_));
}

double DriftLoop::update(double depth, double target, double dt, double noise) {
  const double max = DriftResampler::kMaxPpm;
  noise = std::max(noise, 1.0);
  if (avg_ < 0) {
    avg_ = depth;
  }
  avg_ += (depth - avg_) * std::min(1.0, dt / (kTau * noise));
  const double err = avg_ - target;
  const double p = kKp / noise * err;
  const double out = p + integral_;
  // Conditional integration (anti-windup): not while the error is large,
  // nor while it would push a saturated output further.
  const bool saturated = (out >= max && err > 0) || (out <= -max && err < 0);
  if (std::fabs(p) < max && !saturated) {
    integral_ = std::clamp(integral_ + kKi / (noise * noise) * err * dt, -max, max);
  }
  return std::clamp(p + integral_, -max, max);
}

}  // namespace qaudio::net
