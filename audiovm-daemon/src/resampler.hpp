// Rate conversion for the daemon's streams: a thin wrapper over speexdsp's
// resampler (interleaved float) that can steer its ratio by a few hundred
// ppm on the real-time thread WITHOUT allocating.
//
// Why this is needed: speex_resampler_set_rate_frac() calls update_filter(),
// which realloc()s the sinc table when the new ratio needs a larger one
// (filter length grows for down-sampling ratios; direct tables are
// filt_len * den_rate long) and realloc()s the history buffer when the
// filter length grows. Both only ever grow. So the wrapper quantises the
// ratio adjustment to a fixed grid (kAdjustStepPpm steps within
// +-kMaxAdjustPpm) and, at creation (main thread), visits every grid point
// once: afterwards every reachable ratio fits the already allocated buffers,
// and set_adjust_ppm() on the RT thread only recomputes the table in place.
// The ratio is always given with a large denominator (in_rate * 1e6), so the
// resampler uses its interpolated table, whose size does not depend on the
// denominator.
//
//   auto r = Resampler::create(2, 44100, 48000, 4, /*steerable=*/true);
//   (*r)->set_adjust_ppm(+120);      // RT: consume input 120 ppm faster
//   (*r)->process(in, in_frames, out, out_frames);
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "qaudio/result.hpp"

struct SpeexResamplerState_;

namespace qaudio::daemon {

class Resampler {
 public:
  static constexpr int32_t kMaxAdjustPpm = 5000;  // +-0.5 %
  static constexpr int32_t kAdjustStepPpm = 25;

  // Main thread. quality: speexdsp 0..10. steerable: allow set_adjust_ppm.
  static Result<std::unique_ptr<Resampler>> create(uint32_t channels, uint32_t in_rate,
                                                   uint32_t out_rate, int quality,
                                                   bool steerable);
  ~Resampler();
  Resampler(const Resampler&) = delete;
  Resampler& operator=(const Resampler&) = delete;

  // RT: consumes up to *in_frames, produces up to *out_frames; both are
  // updated to what was actually used/produced.
  void process(const float* in, size_t* in_frames, float* out, size_t* out_frames);
  // RT: consume input `ppm` faster (> 0) or slower than nominal; clamped to
  // +-kMaxAdjustPpm and quantised to kAdjustStepPpm. No allocation.
  void set_adjust_ppm(int32_t ppm);
  int32_t adjust_ppm() const { return adjust_ppm_; }
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
  Resampler(SpeexResamplerState_* st, uint32_t channels, uint32_t in_rate, uint32_t out_rate,
            bool steerable);
  void apply_ratio(int32_t ppm);

  SpeexResamplerState_* st_;
  uint32_t channels_;
  uint32_t in_rate_;
  uint32_t out_rate_;
  bool steerable_;
  int32_t adjust_ppm_ = 0;
};

}  // namespace qaudio::daemon
