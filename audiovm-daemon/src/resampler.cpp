// speexdsp resampler wrapper with allocation-free ratio steering (see the
// reasoning in resampler.hpp).
#include "resampler.hpp"

#include <speex/speex_resampler.h>

#include <algorithm>
#include <numeric>

namespace qaudio::daemon {
namespace {
// One grid unit of the ratio fraction: kScale units = nominal ratio, so one
// unit is exactly kAdjustStepPpm.
constexpr uint32_t kScale = 1000000 / Resampler::kAdjustStepPpm;  // 40000
constexpr int32_t kMaxUnits = Resampler::kMaxAdjustPpm / Resampler::kAdjustStepPpm;
static_assert(kScale * Resampler::kAdjustStepPpm == 1000000);
}  // namespace

Resampler::Resampler(SpeexResamplerState_* st, uint32_t channels, uint32_t in_rate,
                     uint32_t out_rate, bool steerable)
    : st_(st), channels_(channels), in_rate_(in_rate), out_rate_(out_rate),
      steerable_(steerable) {}

Resampler::~Resampler() {
  speex_resampler_destroy(st_);
}

Result<std::unique_ptr<Resampler>> Resampler::create(uint32_t channels, uint32_t in_rate,
                                                     uint32_t out_rate, int quality,
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
    // 1. Go to the grid point with the longest filter (the most
    //    down-sampling ratio) while not started: the history buffer is
    //    sized for it.
    r->apply_ratio(kMaxUnits);
    // 2. Mark the resampler started (its !started path reallocates the
    //    history on every ratio change).
    float zeros[8 * 16] = {};
    float sink[8 * 64];
    spx_uint32_t in_len = 16;
    spx_uint32_t out_len = 64;
    speex_resampler_process_interleaved_float(st, zeros, &in_len, sink, &out_len);
    // 3. Visit every grid point once: the sinc table grows to the largest
    //    any reachable ratio needs. From now on ratio changes never realloc.
    for (int32_t u = -kMaxUnits; u <= kMaxUnits; ++u) {
      r->apply_ratio(u);
    }
    r->apply_ratio(0);
  }
  speex_resampler_reset_mem(st);
  speex_resampler_skip_zeros(st);
  return r;
}

void Resampler::apply_ratio(int32_t units) {
  uint32_t g = std::gcd(in_rate_, out_rate_);
  uint32_t num = in_rate_ / g * static_cast<uint32_t>(static_cast<int32_t>(kScale) + units);
  uint32_t den = out_rate_ / g * kScale;
  speex_resampler_set_rate_frac(st_, num, den, in_rate_, out_rate_);
  adjust_ppm_ = units * kAdjustStepPpm;
}

void Resampler::set_adjust_ppm(int32_t ppm) {
  if (!steerable_) {
    return;
  }
  ppm = std::clamp(ppm, -kMaxAdjustPpm, kMaxAdjustPpm);
  // round to nearest grid unit
  int32_t units = (ppm >= 0 ? ppm + kAdjustStepPpm / 2 : ppm - kAdjustStepPpm / 2) / kAdjustStepPpm;
  units = std::clamp(units, -kMaxUnits, kMaxUnits);
  if (units * kAdjustStepPpm == adjust_ppm_) {
    return;
  }
  apply_ratio(units);
}

void Resampler::process(const float* in, size_t* in_frames, float* out, size_t* out_frames) {
  spx_uint32_t il = static_cast<spx_uint32_t>(std::min<size_t>(*in_frames, UINT32_MAX));
  spx_uint32_t ol = static_cast<spx_uint32_t>(std::min<size_t>(*out_frames, UINT32_MAX));
  speex_resampler_process_interleaved_float(st_, in, &il, out, &ol);
  *in_frames = il;
  *out_frames = ol;
}

void Resampler::reset() {
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
