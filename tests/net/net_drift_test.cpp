// Clock-drift compensation of the network channel (label network; design in
// docs/protocol.md 11.5, code in common/net/net_drift.{hpp,cpp}):
//  - DriftResampler alone: input consumed at the steered rate, exact zeros
//    stay exact zeros, no allocation when the ratio changes, a tone stays
//    clean across ratio changes;
//  - a whole session (net_harness.hpp, virtual time) whose sender clock runs
//    300 and 800 ppm fast and slow, through Opus and PCM passthrough, for
//    65 s: no frame skipped, none concealed, the depth held on target, the
//    correction converged to the skew, and the tone without a click;
//  - the gate's digital silence crossing a drifting link as exact zeros;
//  - a skew beyond the resampler's range falling back to frame steps.
//
//   ctest -L network      or      build/tests/net/net_drift_test
#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "net_drift.hpp"
#include "net_harness.hpp"
#include "tone.hpp"

namespace qaudio::test {
namespace {

std::vector<int16_t> sine_frames(double freq, size_t frames, uint32_t channels, double amp) {
  std::vector<int16_t> v(frames * channels);
  for (size_t i = 0; i < frames; ++i) {
    auto s = static_cast<int16_t>(
        std::lround(amp * 32767 * std::sin(2 * kPi * freq * static_cast<double>(i) / 48000)));
    for (uint32_t c = 0; c < channels; ++c) {
      v[i * channels + c] = s;
    }
  }
  return v;
}

// Runs `in` through `r` in 480-frame output blocks; returns the output.
std::vector<int16_t> run_through(DriftResampler& r, const std::vector<int16_t>& in, size_t* used) {
  const uint32_t ch = r.channels();
  std::vector<int16_t> out;
  std::vector<int16_t> block(480 * ch);
  size_t pos = 0;
  while (pos < in.size() / ch) {
    uint32_t il = static_cast<uint32_t>(std::min<size_t>(in.size() / ch - pos, 480));
    uint32_t ol = 480;
    r.process(in.data() + pos * ch, &il, block.data(), &ol);
    pos += il;
    out.insert(out.end(), block.begin(), block.begin() + static_cast<std::ptrdiff_t>(ol * ch));
    if (il == 0 && ol == 0) {
      break;
    }
  }
  *used = pos;
  return out;
}

TEST(DriftResampler, ConsumesInputAtTheSteeredRate) {
  for (double ppm : {1000.0, 300.0, -300.0, -1000.0}) {
    auto r = DriftResampler::create(2, 3);
    ASSERT_TRUE(r) << r.error().message;
    (*r)->set_ppm(ppm);
    EXPECT_NEAR((*r)->ppm(), ppm, 1e6 / DriftResampler::kDen / 2 + 1e-9);
    // 10 s of input; the output count tells the ratio.
    auto in = sine_frames(1000, 480000, 2, 0.5);
    size_t used = 0;
    auto out = run_through(**r, in, &used);
    EXPECT_EQ(used, 480000u);
    double measured = (480000.0 / static_cast<double>(out.size() / 2) - 1) * 1e6;
    EXPECT_NEAR(measured, (*r)->ppm(), 5) << "asked " << ppm;
  }
}

TEST(DriftResampler, NeverRunsExactlyOneToOne) {
  auto r = DriftResampler::create(1, 3);
  ASSERT_TRUE(r);
  (*r)->set_ppm(0);
  EXPECT_NE((*r)->ppm(), 0.0);
  (*r)->set_ppm(-5);
  (*r)->set_ppm(-12);
  EXPECT_LT((*r)->ppm(), 0.0);
  (*r)->set_ppm(1e9);
  EXPECT_NEAR((*r)->ppm(), DriftResampler::kMaxPpm, 1);
  (*r)->set_ppm(-1e9);
  EXPECT_NEAR((*r)->ppm(), -DriftResampler::kMaxPpm, 1);
}

// The mic gate's silence is exact zeros; it must come out exact zeros at any
// correction, right after a reset and long after a tone.
TEST(DriftResampler, ExactZerosStayExactZerosAtAnyCorrection) {
  for (uint32_t ch : {1u, 2u}) {
    auto r = DriftResampler::create(ch, 3);
    ASSERT_TRUE(r);
    std::vector<int16_t> zeros(48000 * ch, 0);
    for (double ppm : {1000.0, 17.0, -17.0, -640.0}) {
      (*r)->set_ppm(ppm);
      size_t used = 0;
      auto out = run_through(**r, zeros, &used);
      ASSERT_GT(out.size(), 0u);
      EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](int16_t v) { return v == 0; }))
          << ch << " channel(s), " << ppm << " ppm";
    }
    // After a tone: the filter's tail (its delay plus its half length) and
    // nothing after it.
    auto tone = sine_frames(997, 4800, ch, 0.9);
    size_t used = 0;
    (*r)->set_ppm(433);
    run_through(**r, tone, &used);
    auto out = run_through(**r, zeros, &used);
    const size_t tail = 2 * (*r)->latency() + 2;
    ASSERT_GT(out.size() / ch, tail);
    EXPECT_TRUE(std::all_of(out.begin() + static_cast<std::ptrdiff_t>(tail * ch), out.end(),
                            [](int16_t v) { return v == 0; }))
        << "non-zero samples after a tone's tail";
    // And after reset(): exact zeros from the first sample, on both channels.
    run_through(**r, tone, &used);
    (*r)->reset();
    out = run_through(**r, zeros, &used);
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](int16_t v) { return v == 0; }))
        << "reset() left old audio in the history";
  }
}

// Ratio changes on the audio path recompute speexdsp's table in place:
// nothing is allocated once create() returned.
TEST(DriftResampler, ChangingTheRatioAllocatesNothing) {
  auto r = DriftResampler::create(2, 3);
  ASSERT_TRUE(r);
  auto in = sine_frames(1000, 4800, 2, 0.5);
  std::vector<int16_t> out(4800 * 2);
  const size_t before = mallinfo2().uordblks;
  for (int i = 0; i < 2000; ++i) {
    (*r)->set_ppm(((i * 37) % 2001) - 1000);
    uint32_t il = 480, ol = 480;
    (*r)->process(in.data() + (i % 9) * 960, &il, out.data(), &ol);
    if (i % 100 == 0) {
      (*r)->reset();
    }
  }
  EXPECT_EQ(mallinfo2().uordblks, before) << "the resampler allocated on the audio path";
}

// The largest step between samples a sine of `freq` and amplitude `amp` has.
double max_step(double freq, double amp) {
  return 2 * std::sin(kPi * freq / 48000) * amp * 32767;
}

TEST(DriftResampler, ToneHasNoClickAcrossRatioChanges) {
  auto r = DriftResampler::create(1, 3);
  ASSERT_TRUE(r);
  auto in = sine_frames(1050, 480000, 1, 0.5);
  std::vector<int16_t> out;
  std::vector<int16_t> block(480);
  size_t pos = 0;
  for (int i = 0; pos < in.size(); ++i) {
    (*r)->set_ppm(1000 * std::sin(i * 0.05));  // sweeps the whole range, both ways
    uint32_t il = static_cast<uint32_t>(std::min<size_t>(in.size() - pos, 480)), ol = 480;
    (*r)->process(in.data() + pos, &il, block.data(), &ol);
    pos += il;
    out.insert(out.end(), block.begin(), block.begin() + ol);
  }
  double worst = 0;
  for (size_t i = 4800; i < out.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(out[i]) - out[i - 1]));
  }
  EXPECT_LT(worst, max_step(1050 * 1.001, 0.5) * 1.02 + 2) << "a click at a ratio change";
}

// ------------------------------------------------------------ whole session

struct SkewCase {
  const char* name;
  bool pcm;    // PCM passthrough, 5 ms frames; else Opus, 10 ms frames
  double ppm;  // sender clock relative to the receiver's
};

class SenderClockSkew : public testing::TestWithParam<SkewCase> {};

TEST_P(SenderClockSkew, IsFollowedSampleGranularly) {
  const SkewCase& sc = GetParam();
  Key k = generate_key();
  CodecParams tx;
  if (sc.pcm) {
    tx = CodecParams{.channels = 2, .frame_quarter_ms = 2, .passthrough = true};
  }
  NetRig rig(k, k, tx);
  rig.frame = sc.pcm ? 240 : 480;
  rig.pull_period_us = sc.pcm ? 5'000 : 10'000;
  const double frame_us = static_cast<double>(rig.pull_period_us);
  rig.send_period_us = frame_us / (1 + sc.ppm * 1e-6);
  const double skew = (frame_us / rig.send_period_us - 1) * 1e6;
  // 1050 Hz: a 10 ms frame is 10.5 cycles (a 5 ms frame 5.25), so a skipped
  // or repeated frame would flip the phase: a step no sine of it makes.
  rig.tone_hz = 1050;
  struct Sample {
    int64_t t_us;
    int32_t ppm;
    int64_t depth_us, target_us;
  };
  std::vector<Sample> trace;
  rig.on_pull = [&](NetSession& s) {
    auto c = s.counters();
    trace.push_back({rig.now_us, c.drift_ppm, c.depth_us, c.target_us});
  };
  const int64_t end_us = 65'000'000;
  rig.run_until(end_us);
  auto c = rig.server_counters();

  // No frame skipped, none concealed: the drift went into the resampler.
  EXPECT_EQ(c.dropped, 0u);
  EXPECT_EQ(c.underruns, 0u);
  EXPECT_EQ(c.plc, 0u);
  EXPECT_EQ(c.fec, 0u);
  EXPECT_GT(c.played, static_cast<uint64_t>(60e6 / frame_us));

  // The depth held on target (within a frame) from the second second on,
  // and the correction converged to the skew.
  int64_t worst_depth = 0;
  int64_t converged_us = 0;  // from then on within 30 ppm of the skew
  double residual = 0;
  size_t tail = 0;
  for (const auto& s : trace) {
    if (s.t_us >= 2'000'000) {
      worst_depth = std::max<int64_t>(worst_depth, std::llabs(s.depth_us - s.target_us));
    }
    if (std::fabs(s.ppm - skew) > 30) {
      converged_us = s.t_us;
    }
    if (s.t_us >= end_us - 20'000'000) {
      residual += s.ppm - skew;
      ++tail;
    }
  }
  residual /= static_cast<double>(std::max<size_t>(tail, 1));
  EXPECT_LE(worst_depth, static_cast<int64_t>(frame_us)) << "depth left target +- 1 frame";
  EXPECT_LE(converged_us, 35'000'000) << "the correction did not settle within 30 ppm";

  // The tone: no step larger than the sine's own (a click), and every 10 ms
  // block at the level sent (within 0.5 dB), from 1 s after it started.
  size_t onset = 0;
  while (onset < rig.output.size() && std::abs(rig.output[onset]) < 1000) {
    onset += 2;
  }
  onset /= 2;
  ASSERT_LT(onset, 48000u) << "the tone never started";
  const double f_out = rig.tone_hz * (1 + skew * 1e-6);
  const size_t from = onset + 48000, frames = rig.output.size() / 2;
  double worst_step = 0, worst_db = 0;
  for (size_t i = from; i < frames; ++i) {
    worst_step = std::max(
        worst_step, std::fabs(static_cast<double>(rig.output[2 * i]) - rig.output[2 * (i - 1)]));
  }
  std::vector<float> blk(480 * 2);
  for (size_t i = from; i + 480 <= frames; i += 480) {
    for (size_t j = 0; j < 480 * 2; ++j) {
      blk[j] = static_cast<float>(rig.output[2 * i + j]) / 32768.0f;
    }
    double db = amplitude_to_db(tone_amplitude(blk, 2, 0, 48000, f_out) / rig.amp);
    worst_db = std::max(worst_db, std::fabs(db));
  }
  const double allowed_step = max_step(f_out, rig.amp) * (sc.pcm ? 1.02 : 1.10);
  std::printf(
      "%s: skew %+.1f ppm, correction %+d ppm (residual over the last 20 s %+.1f ppm), settled "
      "within 30 ppm after %.1f s, depth off target by at most %.2f ms, largest step %.0f "
      "(sine's own %.0f), worst 10 ms block %.2f dB, dropped %llu, plc %llu\n",
      sc.name, skew, c.drift_ppm, residual, static_cast<double>(converged_us) / 1e6,
      static_cast<double>(worst_depth) / 1e3, worst_step, max_step(f_out, rig.amp), worst_db,
      static_cast<unsigned long long>(c.dropped), static_cast<unsigned long long>(c.plc));
  EXPECT_LT(worst_step, allowed_step) << "a discontinuity in the tone";
  EXPECT_LT(worst_db, 0.5) << "a 10 ms block off the tone's level";
  EXPECT_NEAR(residual, 0, 10);
}

INSTANTIATE_TEST_SUITE_P(NetDrift,
                         SenderClockSkew,
                         testing::Values(SkewCase{"OpusFast300", false, 300},
                                         SkewCase{"OpusSlow300", false, -300},
                                         SkewCase{"OpusFast800", false, 800},
                                         SkewCase{"OpusSlow800", false, -800},
                                         SkewCase{"PcmFast300", true, 300},
                                         SkewCase{"PcmSlow300", true, -300},
                                         SkewCase{"PcmFast800", true, 800},
                                         SkewCase{"PcmSlow800", true, -800}),
                         [](const testing::TestParamInfo<SkewCase>& i) { return i.param.name; });

// The daemon's gated mic (or a muted app) sends exact zeros: across a link
// whose clocks differ they must stay exact zeros, with the correction on.
TEST(NetDrift, DigitalSilenceStaysExactlyZeroWithACorrection) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.send_period_us = 10'000 / (1 + 300e-6);
  rig.amp = 0;  // silence: sent as the Silence codec, decoded to exact zeros
  rig.run_until(20'000'000);
  auto c = rig.server_counters();
  EXPECT_NEAR(c.drift_ppm, 300, 30) << "the correction must be on for this test to mean much";
  EXPECT_GT(c.played, 1500u);
  EXPECT_TRUE(std::all_of(rig.output.begin(), rig.output.end(), [](int16_t v) { return v == 0; }))
      << "digital silence came out with non-zero samples";
  // A tone, then silence again: exact zeros once the tone has played out
  // (buffer, resampler input and filter: well under 100 ms).
  rig.amp = 0.5;
  rig.run_until(22'000'000);
  rig.amp = 0;
  const size_t mark = rig.output.size();
  rig.run_until(25'000'000);
  std::vector<int16_t> after(rig.output.begin() + static_cast<std::ptrdiff_t>(mark),
                             rig.output.end());
  size_t last = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    if (after[i] != 0) {
      last = i;
    }
  }
  EXPECT_LT(last / 2, 4800u) << "non-zero samples more than 100 ms after the tone stopped";
  EXPECT_NEAR(rig.server_counters().drift_ppm, 300, 60);
}

// Beyond the resampler's +-1000 ppm (a 0.5 % skew, a broken clock) the
// correction saturates and the rest is made up in whole frames as before:
// a skipped frame when fast, a concealed one when slow; never a gap longer
// than a frame, and the latency does not grow.
TEST(NetDrift, SkewBeyondTheResamplerRangeFallsBackToFrameSteps) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.send_period_us = 9'950;  // the agent's clock runs 0.5 % fast
  rig.run_until(12'000'000);
  auto c = rig.server_counters();
  EXPECT_NEAR(c.drift_ppm, DriftResampler::kMaxPpm, 10);
  EXPECT_GE(c.dropped, 3u) << "the surplus beyond 1000 ppm must be skipped";
  int64_t worst = 0;
  for (auto [t, l] : rig.latencies_us) {
    if (t >= 8'000'000) {
      worst = std::max(worst, l);
    }
  }
  EXPECT_LT(worst, 45'000) << "latency must not grow with drift";

  NetRig slow(k, k);
  slow.send_period_us = 10'050;  // 0.5 % slow: the buffer refills by concealing
  slow.run_until(14'000'000);
  auto s = slow.server_counters();
  EXPECT_NEAR(s.drift_ppm, -DriftResampler::kMaxPpm, 10);
  EXPECT_GE(s.underruns, 3u);
  for (auto* r : {&rig, &slow}) {
    // No block of 2.5 ms below half the level for longer than a frame.
    size_t on = 0;
    while (on < r->output.size() && std::abs(r->output[on]) < 1000) {
      on += 2;
    }
    size_t run = 0, longest = 0;
    for (size_t i = on / 2 + 24000; i + 120 <= r->output.size() / 2; i += 120) {
      double acc = 0;
      for (size_t j = 0; j < 120; ++j) {
        double v = r->output[2 * (i + j)] / 32768.0;
        acc += v * v;
      }
      if (std::sqrt(acc / 120) < 0.5 * r->amp / std::sqrt(2.0)) {
        run += 120;
        longest = std::max(longest, run);
      } else {
        run = 0;
      }
    }
    EXPECT_LE(longest, 480u) << "a gap longer than one frame";
  }
}

}  // namespace
}  // namespace qaudio::test
