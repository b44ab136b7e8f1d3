// Rate conversion for the daemon's streams: a thin wrapper over speexdsp's
// resampler (interleaved float) that can steer its ratio by a few hundred
// ppm on the real-time thread WITHOUT allocating.
//
// Why this needs care (speexdsp 1.2 resample.c):
//  - speex_resampler_set_rate_frac() calls update_filter(), which realloc()s
//    the sinc table when the new ratio needs a larger one (the filter gets
//    longer for down-sampling ratios; direct tables are filt_len * den
//    long) and realloc()s the history when the filter grows; while the
//    resampler has not processed anything yet it reallocs the history on
//    every call. Both buffers only ever grow.
//  - It rescales its fractional positions with a 32-bit muldiv; when that
//    overflows it returns early with a half-updated state, and the next
//    process() reads outside its tables.
// So a steerable resampler uses ratios num / 60000 with num = num0 + k
// (num0 = the nominal ratio * 60000, k within +-kMaxAdjustPpm): the
// denominator stays below 65536 (no overflow), the step is ~17-20 ppm, and
// at creation (main thread) the resampler is started and then visits every
// k once, so every reachable ratio fits the buffers already allocated and
// set_adjust_ppm() on the RT thread only recomputes the table in place
// (a few hundred sinc evaluations). The nominal ratio is rounded to
// 1/60000 (< 10 ppm): irrelevant for the adaptive streams that steer.
//   auto r = Resampler::create(2, 44100, 48000, 4, /*steerable=*/true);
//   (*r)->set_adjust_ppm(+120);      // RT: consume input 120 ppm faster
//   (*r)->process(in, in_frames, out, out_frames);
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "qaudio/result.hpp"

struct SpeexResamplerState_;

namespace qaudio::daemon {

class Resampler {
 public:
  static constexpr int32_t kMaxAdjustPpm = 5000;  // +-0.5 %

  // Main thread. quality: speexdsp 0..10. steerable: allow set_adjust_ppm.
  static Result<std::unique_ptr<Resampler>> create(uint32_t channels,
                                                   uint32_t in_rate,
                                                   uint32_t out_rate,
                                                   int quality,
                                                   bool steerable);
  ~Resampler();
  Resampler(const Resampler&) = delete;
  Resampler& operator=(const Resampler&) = delete;

  // RT: consumes up to *in_frames, produces up to *out_frames; both are
  // updated to what was actually used/produced.
  void process(const float* in, size_t* in_frames, float* out, size_t* out_frames);
  // RT: consume input `ppm` faster (> 0) or slower than nominal; clamped to
  // +-kMaxAdjustPpm and rounded to the nearest step. No allocation.
  void set_adjust_ppm(int32_t ppm);
  int32_t adjust_ppm() const { return adjust_ppm_; }
  // Size of one steering step in ppm (0 if not steerable).
  int32_t step_ppm() const;
  // RT: clears the history (after a flush / gap). No allocation.
  void reset();
  // Input frames needed to produce `out_frames` (upper estimate).
  size_t input_for_output(size_t out_frames) const;
  // Delay through the filter, in input frames.
  uint32_t input_latency() const;
  uint32_t channels() const { return channels_; }
  uint32_t in_rate() const { return in_rate_; }
  uint32_t out_rate() const { return out_rate_; }

 private:
  Resampler(SpeexResamplerState_* st,
            uint32_t channels,
            uint32_t in_rate,
            uint32_t out_rate,
            bool steerable);
  void apply_steps(int32_t k);

  SpeexResamplerState_* st_;
  uint32_t channels_;
  uint32_t in_rate_;
  uint32_t out_rate_;
  bool steerable_;
  int32_t adjust_ppm_ = 0;
  uint32_t num0_ = 0;
  int32_t max_steps_ = 0;
  int32_t steps_ = 0;
  static constexpr size_t kFlushChunk = 256;
  std::vector<float> flush_out_;  // reset() output scratch, allocated once
};

}  // namespace qaudio::daemon
