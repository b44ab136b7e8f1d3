// Sample-granular clock-drift compensation for the network channel's
// playout (docs/protocol.md 11.5): the sender's audio clock and ours differ
// by up to a few hundred ppm, so the receiver resamples the decoded audio by
// a ratio near 1, steered by a PI loop on the smoothed depth of what it
// holds (jitter-buffer frames + decoded samples not yet resampled),
// measured with sub-frame resolution, within +-1000 ppm (enough for
// +-500 ppm crystals at both ends; 1.7 cents, far below what an ear hears).
//
//  - DriftResampler: speexdsp (S16 interleaved, 48 kHz in and out) whose
//    ratio is (kDen + k) / kDen, k a whole number of ~16.7 ppm steps. All
//    memory is allocated in create(), which also visits every reachable
//    ratio once, so set_ppm() on the audio path only recomputes the sinc
//    table in place (never realloc()s: see the daemon's resampler.hpp for
//    the speexdsp 1.2 details). k = 0 (exactly 1:1) is never used: speexdsp
//    reduces 1:1 to a denominator of 1 and would truncate its sub-sample
//    position, a phase jump of up to one sample; near zero drift the ratio
//    dithers between +-1 step instead. Digital silence stays exact: a
//    history of zeros filters to exact zeros (checked by tests).
//  - DriftLoop: the PI controller (no allocation, plain arithmetic).
//
//   auto r = DriftResampler::create(2, 3);          // Result<unique_ptr<...>>
//   DriftLoop loop;
//   double ppm = loop.update(depth_samples, target_samples, 0.010);   // per pull
//   (*r)->set_ppm(ppm);                              // > 0: consume input faster
//   (*r)->process(in, &in_frames, out, &out_frames);  // speexdsp semantics
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "qaudio/result.hpp"

struct SpeexResamplerState_;

namespace qaudio::net {

class DriftResampler {
 public:
  static constexpr int32_t kMaxPpm = 1000;  // the ratios reachable: +-500 ppm crystals at both ends
  static constexpr uint32_t kDen = 60000;   // ratio (kDen + k) / kDen: steps of 16.7 ppm

  // Main thread. quality: speexdsp 0..10.
  static Result<std::unique_ptr<DriftResampler>> create(uint32_t channels, int quality);
  ~DriftResampler();
  DriftResampler(const DriftResampler&) = delete;
  DriftResampler& operator=(const DriftResampler&) = delete;

  // Audio path: consume input `ppm` faster (> 0) or slower than output is
  // produced; clamped to +-kMaxPpm, quantised to the step grid with
  // hysteresis (the ratio only changes when `ppm` is 3/4 of a step away).
  void set_ppm(double ppm);
  // The correction applied now, in ppm (never exactly 0, see above).
  double ppm() const { return static_cast<double>(steps_) * 1e6 / kDen; }
  // Audio path: consumes up to *in_frames, produces up to *out_frames; both
  // are updated to what was used / produced. Output stops when either runs out.
  void process(const int16_t* in, uint32_t* in_frames, int16_t* out, uint32_t* out_frames);
  // Audio path: forgets the history (zeros), bounded work, no allocation.
  void reset();
  // Delay through the filter, in input frames.
  uint32_t latency() const;
  uint32_t channels() const { return channels_; }

 private:
  DriftResampler(SpeexResamplerState_* st, uint32_t channels);
  void apply_steps(int32_t k);

  SpeexResamplerState_* st_;
  uint32_t channels_;
  int32_t steps_ = 0;
  int32_t max_steps_ = 0;
  std::vector<int16_t> flush_out_;  // reset() output scratch, allocated once
};

// PI loop on the smoothed depth: depth above target -> positive ppm (play
// the backlog out faster). The integral learns the clock skew and is only
// updated while the proportional part alone is within range (|error| <
// kMaxPpm / Kp, 62 samples on a clean link) and the output is not
// saturated, so a stall, a backlog or a target change of a frame does not
// wind it up; the proportional part answers those, saturating at kMaxPpm.
//
// Network jitter is measurement noise here (a frame arriving 20 ms late
// looks like 20 ms less depth): with `noise` = 1 + 3 * jitter / frame (1 on
// a clean link, ~3 at 20 ms of jitter) the smoothing gets that much longer
// and the gains that much lower (kKi by noise^2, keeping the damping), so
// the correction stays steady; the
// jitter buffer is that much deeper then, which the slower loop needs.
// The caller smooths the target (it moves with the jitter estimate).
class DriftLoop {
 public:
  // Depth changes by 0.048 samples/s per ppm of mismatch, so on a clean link
  // the loop's poles are both at -0.048 * kKp / 2 = -0.38/s (critically
  // damped: kKi = 0.048 * kKp^2 / 4), settling in ~15 s; a step of 800 ppm
  // moves the depth by at most ~40 samples (0.8 ms) on the way.
  static constexpr double kTau = 0.5;  // s, depth smoothing on a clean link
  static constexpr double kKp = 16.0;  // ppm per sample of error (clean link)
  static constexpr double kKi = 3.0;   // ppm per (sample * s) (clean link)

  // depth and target in samples (at 48 kHz); dt: seconds since the last
  // update (one pull); noise >= 1 (see above). Returns the correction to
  // apply, in ppm, within +-DriftResampler::kMaxPpm.
  double update(double depth, double target, double dt, double noise = 1.0);
  // The stream restarted: smoothing starts over; the skew learnt is kept
  // (it is a property of the two clocks, not of the stream).
  void restart() { avg_ = -1; }
  // The depth just changed by `delta` samples outside the loop's doing
  // (a frame skipped): shift the smoothed depth along.
  void shift(double delta) {
    if (avg_ >= 0) {
      avg_ += delta;
    }
  }
  double smoothed() const { return avg_ < 0 ? 0 : avg_; }
  double integral() const { return integral_; }

 private:
  double avg_ = -1;
  double integral_ = 0;
};

}  // namespace qaudio::net
