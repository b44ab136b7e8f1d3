// Mixer benchmark: device frames mixed per second on one core for 1, 8 and
// 64 stereo streams with gain, against a memcpy of the same bytes in the
// same run (docs/benchmarks.md, "Mixer"). Goal: mixing 64 streams costs
// less than 5x the memcpy of their bytes.
//
//   BM_MixPlaybackStreams/N  the daemon's real path: N PlaybackStreams
//                            (F32LE 48 kHz stereo, volume 80 %) pulled from
//                            their rings, converted, gain applied, summed by
//                            mix_sources() - one 10 ms period per iteration
//   BM_MixKernel/N           gain + sum only, on float buffers
//   BM_RingMemcpy/N          the baseline: the same bytes memcpy'd out of N
//                            rings of the same size, refilled the same way
//   BM_Memcpy/N              one flat memcpy of the N streams' bytes (an
//                            L2-resident best case, for reference)
//
//   build/bench/qaudio-bench --benchmark_filter='Mix|Memcpy'
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "gain.hpp"
#include "mixing_backend.hpp"
#include "playback_stream.hpp"
#include "qaudio/spsc.hpp"

namespace {

using namespace qaudio;
using namespace qaudio::daemon;

constexpr DeviceFormat kDev{48000, 2};
constexpr size_t kPeriod = 480;  // 10 ms
constexpr size_t kSamples = kPeriod * 2;

std::vector<float> tone(size_t frames, double freq) {
  std::vector<float> v(frames * 2);
  for (size_t i = 0; i < frames; ++i) {
    v[2 * i] = v[2 * i + 1] = static_cast<float>(0.3 * std::sin(2 * M_PI * freq * i / 48000.0));
  }
  return v;
}

void BM_MixPlaybackStreams(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  constexpr size_t kRefillPeriods = 10;  // refill the rings every 100 ms
  std::vector<std::unique_ptr<PlaybackStream>> streams;
  std::vector<PlaybackSource*> sources;
  auto second = tone(kPeriod * kRefillPeriods, 1000.0);
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(second.data()),
                                   second.size() * sizeof(float));
  for (size_t i = 0; i < n; ++i) {
    auto s = PlaybackStream::create({.format = {SampleFormat::F32LE, 48000, 2},
                                     .device = kDev,
                                     .target_fill = std::chrono::milliseconds(10),
                                     .ring = std::chrono::milliseconds(250),
                                     .volume_percent = 80});
    if (!s) {
      state.SkipWithError(s.error().message.c_str());
      return;
    }
    (*s)->write(bytes);
    (*s)->write(bytes);
    sources.push_back(s->get());
    streams.push_back(std::move(*s));
  }
  std::vector<float> mix(kSamples), scratch(kSamples);
  PeriodTiming t;
  size_t periods = 0;
  for (auto _ : state) {
    mix_sources(sources, mix.data(), scratch.data(), kPeriod, 2, t);
    benchmark::DoNotOptimize(mix.data());
    if (++periods % kRefillPeriods == 0) {
      state.PauseTiming();
      for (auto& s : streams) {
        s->write(bytes);
      }
      state.ResumeTiming();
    }
  }
  state.counters["frames/s"] = benchmark::Counter(static_cast<double>(state.iterations() * kPeriod),
                                                  benchmark::Counter::kIsRate);
  state.counters["stream_frames/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kPeriod * n), benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * kSamples * sizeof(float)));
}
BENCHMARK(BM_MixPlaybackStreams)->Arg(1)->Arg(8)->Arg(64);

void BM_MixKernel(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<std::vector<float>> in(n, tone(kPeriod, 440.0));
  std::vector<GainRamp> gains(n, GainRamp(240, 0.8f));
  std::vector<float> mix(kSamples), scratch(kSamples);
  for (auto _ : state) {
    std::memcpy(mix.data(), in[0].data(), kSamples * sizeof(float));
    gains[0].apply(mix.data(), kPeriod, 2);
    for (size_t i = 1; i < n; ++i) {
      std::memcpy(scratch.data(), in[i].data(), kSamples * sizeof(float));
      gains[i].apply(scratch.data(), kPeriod, 2);
      mix_add(mix.data(), scratch.data(), kSamples);
    }
    benchmark::DoNotOptimize(mix.data());
  }
  state.counters["frames/s"] = benchmark::Counter(static_cast<double>(state.iterations() * kPeriod),
                                                  benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * kSamples * sizeof(float)));
}
BENCHMARK(BM_MixKernel)->Arg(1)->Arg(8)->Arg(64);

// The same bytes moved out of N rings of the same size, refilled the same
// way: the baseline the mixer is compared with.
void BM_RingMemcpy(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  constexpr size_t kRefillPeriods = 10;
  auto chunk = tone(kPeriod * kRefillPeriods, 1000.0);
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(chunk.data()),
                                   chunk.size() * sizeof(float));
  std::vector<std::unique_ptr<SpscByteRing>> rings;
  for (size_t i = 0; i < n; ++i) {
    rings.push_back(std::make_unique<SpscByteRing>(48000 * 8 / 4));  // 250 ms, as the streams
    rings.back()->write(bytes);
    rings.back()->write(bytes);
  }
  std::vector<float> dst(n * kSamples);
  size_t periods = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) {
      rings[i]->read(std::span<std::byte>(reinterpret_cast<std::byte*>(dst.data() + i * kSamples),
                                          kSamples * sizeof(float)));
    }
    benchmark::DoNotOptimize(dst.data());
    if (++periods % kRefillPeriods == 0) {
      state.PauseTiming();
      for (auto& r : rings) {
        r->write(bytes);
      }
      state.ResumeTiming();
    }
  }
  state.counters["frames/s"] = benchmark::Counter(static_cast<double>(state.iterations() * kPeriod),
                                                  benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * kSamples * sizeof(float)));
}
BENCHMARK(BM_RingMemcpy)->Arg(1)->Arg(8)->Arg(64);

void BM_Memcpy(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<float> src(n * kSamples, 0.25f), dst(n * kSamples);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), n * kSamples * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.counters["frames/s"] = benchmark::Counter(static_cast<double>(state.iterations() * kPeriod),
                                                  benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * kSamples * sizeof(float)));
}
BENCHMARK(BM_Memcpy)->Arg(1)->Arg(8)->Arg(64);

}  // namespace
