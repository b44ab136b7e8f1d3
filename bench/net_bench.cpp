// Network channel benchmarks (issue 10):
//  - NetCodec/*: Opus encode + decode of one stereo 48 kHz frame; the
//    core_pct counter is CPU time per frame / frame duration * 100, i.e. the
//    share of one core a stereo stream costs for coding (goal: < 2 %).
//  - NetCodecPlayout: the same coding plus the receiver's drift resampler
//    (DriftResampler, steered as the playout does), each part timed on its
//    own in the same loop: coding_pct, resample_pct and their ratio
//    (playout_ratio = (coding + resampling) / coding).
//  - NetLoopbackLatency/*: a client and a server endpoint in REAL time on
//    loopback through the impairment shim (clean, and 5 % loss + 20 ms
//    jitter); counters are the mean and max added latency (send -> playout
//    start) and the latency the session reports.
//
//   build/bench/qaudio-bench --benchmark_filter=Net
#include <benchmark/benchmark.h>
#include <poll.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "../tests/net/net_shim.hpp"
#include "net_drift.hpp"
#include "net_endpoint.hpp"

using namespace qaudio::net;

namespace {

std::vector<int16_t> tone_frame(uint32_t samples, uint64_t pos) {
  std::vector<int16_t> f(samples * 2);
  for (uint32_t i = 0; i < samples; ++i) {
    double t = static_cast<double>(pos + i) / 48000.0;
    double v = 0.4 * std::sin(2 * M_PI * 440 * t) + 0.2 * std::sin(2 * M_PI * 3100 * t);
    f[2 * i] = static_cast<int16_t>(v * 32767);
    f[2 * i + 1] = static_cast<int16_t>(0.8 * v * 32767);
  }
  return f;
}

double thread_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// A second of varied input in frames of n samples, cycled by the benchmarks.
std::vector<std::vector<int16_t>> one_second_of_frames(uint32_t n) {
  std::vector<std::vector<int16_t>> frames;
  for (uint32_t i = 0; i < 48000 / n; ++i) {
    frames.push_back(tone_frame(n, uint64_t{i} * n));
  }
  return frames;
}

void NetCodec(benchmark::State& st) {
  CodecParams p;
  p.channels = 2;
  p.frame_quarter_ms = static_cast<uint8_t>(st.range(0));
  p.bitrate = static_cast<int>(st.range(1));
  p.complexity = static_cast<int>(st.range(2));
  auto enc = AudioEncoder::create(p);
  auto dec = AudioDecoder::create(2);
  if (!enc || !dec) {
    st.SkipWithError("codec create failed");
    return;
  }
  const uint32_t n = frame_samples(p.frame_quarter_ms);
  const auto frames = one_second_of_frames(n);
  std::vector<std::byte> coded(kMaxAudioData);
  std::vector<int16_t> out(n * 2);
  size_t i = 0;
  const double c0 = thread_cpu_s();
  for (auto _ : st) {
    size_t len = (*enc)->encode(frames[i++ % frames.size()], coded);
    (*dec)->decode(Codec::Opus, std::span(coded.data(), len), out, n, false);
    benchmark::DoNotOptimize(out.data());
  }
  // Thread CPU time over the audio time coded: % of one core per stereo stream.
  double cpu_s = thread_cpu_s() - c0;
  double audio_s = static_cast<double>(st.iterations()) * n / 48000.0;
  st.counters["core_pct"] = 100.0 * cpu_s / audio_s;
  st.SetLabel(std::to_string(p.frame_quarter_ms * 5 / 2) + " ms, " +
              std::to_string(p.bitrate / 1000) + " kbit/s, complexity " +
              std::to_string(p.complexity));
}
// frame (2.5 ms units), bitrate, complexity
BENCHMARK(NetCodec)
    ->Args({4, 96000, 5})
    ->Args({8, 96000, 5})
    ->Args({4, 96000, 10})
    ->Args({4, 64000, 5})
    ->Unit(benchmark::kMicrosecond);

void NetCodecPlayout(benchmark::State& st) {
  CodecParams p;
  p.channels = 2;
  auto enc = AudioEncoder::create(p);
  auto dec = AudioDecoder::create(2);
  auto rs = DriftResampler::create(2, NetSession::kResamplerQuality);
  if (!enc || !dec || !rs) {
    st.SkipWithError("codec or resampler create failed");
    return;
  }
  const uint32_t n = frame_samples(p.frame_quarter_ms);
  const auto frames = one_second_of_frames(n);
  std::vector<std::byte> coded(kMaxAudioData);
  std::vector<int16_t> decoded(n * 2), out(n * 2);
  uint32_t pos = n;  // decoded frame consumed so far (as NetSession's fifo_)
  size_t i = 0;
  double coding_s = 0, resample_s = 0;
  uint64_t out_frames = 0;
  for (auto _ : st) {
    // The steering as it moves in the playout: slowly, around +300 ppm.
    (*rs)->set_ppm(300 + 200 * std::sin(static_cast<double>(i) * 0.01));
    uint32_t produced = 0;
    while (produced < n) {
      if (pos == n) {
        double t0 = thread_cpu_s();
        size_t len = (*enc)->encode(frames[i++ % frames.size()], coded);
        (*dec)->decode(Codec::Opus, std::span(coded.data(), len), decoded, n, false);
        coding_s += thread_cpu_s() - t0;
        pos = 0;
      }
      double t0 = thread_cpu_s();
      uint32_t in = n - pos, got = n - produced;
      (*rs)->process(decoded.data() + size_t{pos} * 2, &in, out.data() + size_t{produced} * 2,
                     &got);
      resample_s += thread_cpu_s() - t0;
      pos += in;
      produced += got;
    }
    out_frames += n;
    benchmark::DoNotOptimize(out.data());
  }
  double audio_s = static_cast<double>(out_frames) / 48000.0;
  st.counters["coding_pct"] = 100.0 * coding_s / audio_s;
  st.counters["resample_pct"] = 100.0 * resample_s / audio_s;
  st.counters["playout_ratio"] = coding_s > 0 ? (coding_s + resample_s) / coding_s : 0;
  st.SetLabel("10 ms, 96 kbit/s, complexity 5, + drift resampler (speexdsp quality " +
              std::to_string(NetSession::kResamplerQuality) + ")");
}
BENCHMARK(NetCodecPlayout)->Unit(benchmark::kMicrosecond);

void NetLoopbackLatency(benchmark::State& st) {
  const bool impaired = st.range(0) != 0;
  double mean_ms = 0, max_ms = 0, reported_ms = 0, conceal = 0;
  for (auto _ : st) {
    Key k = generate_key();
    NetEndpoint::Options so;
    so.server = true;
    so.bind = "127.0.0.1:0";
    so.keys = {{"work", k}};
    so.tx.channels = 1;
    auto server = NetEndpoint::create(so);
    qaudio::test::Shim shim((*server)->local_port());
    if (impaired) {
      shim.loss = 0.05;
      shim.jitter_us = 20'000;
    }
    NetEndpoint::Options co;
    co.bind = "127.0.0.1:0";
    co.peer = "127.0.0.1:" + std::to_string(shim.client_facing_port());
    co.keys = {{"audiovm", k}};
    auto client = NetEndpoint::create(co);
    if (!server || !client) {
      st.SkipWithError("endpoint create failed");
      return;
    }
    NetEndpoint& s = **server;
    NetEndpoint& c = **client;
    NetSession* ss = s.session("work");
    NetSession* cs = c.sessions()[0];
    const int64_t t0 = mono_us();
    int64_t next_send = t0, next_pull = t0 + 5000, next_tick = t0;
    std::map<uint32_t, int64_t> sent;
    uint32_t seq = 0;
    uint64_t pos = 0;
    std::vector<int16_t> out(960);
    std::vector<int64_t> lat;
    const int64_t end = t0 + 4'000'000;
    for (int64_t now = mono_us(); now < end; now = mono_us()) {
      if (now >= next_tick) {
        c.tick(now);
        s.tick(now);
        next_tick += 20'000;
      }
      if (now >= next_send) {
        auto f = tone_frame(480, pos);
        if (c.send_audio(*cs, f, now)) {
          sent[seq++] = now;
          pos += 480;
        }
        next_send += 10'000;
      }
      if (now >= next_pull) {
        if (ss->pull(out, now) && now > t0 + 1'500'000) {
          auto it = sent.find(ss->last_played_seq());
          if (it != sent.end()) {
            lat.push_back(now - it->second);
          }
        }
        next_pull += 10'000;
      }
      shim.drain(now);
      while (!shim.queue.empty() && shim.queue.front().release_us <= now) {
        auto p = std::move(shim.queue.front());
        shim.queue.pop_front();
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (p.to_server) {
          to.sin_port = htons(shim.server_port);
          sendto(shim.b, p.bytes.data(), p.bytes.size(), 0, reinterpret_cast<sockaddr*>(&to),
                 sizeof to);
        } else {
          sendto(shim.a, p.bytes.data(), p.bytes.size(), 0,
                 reinterpret_cast<sockaddr*>(&shim.client_addr), shim.client_len);
        }
      }
      int64_t wake = std::min({next_send, next_pull, next_tick});
      if (!shim.queue.empty()) {
        wake = std::min(wake, shim.queue.front().release_us);
      }
      pollfd fds[4] = {
          {s.fd(), POLLIN, 0}, {c.fd(), POLLIN, 0}, {shim.a, POLLIN, 0}, {shim.b, POLLIN, 0}};
      int ms = static_cast<int>(std::max<int64_t>(0, (wake - mono_us() + 999) / 1000));
      poll(fds, 4, ms);
      now = mono_us();
      s.handle_events(now);
      c.handle_events(now);
    }
    double sum = 0;
    int64_t mx = 0;
    for (auto l : lat) {
      sum += static_cast<double>(l);
      mx = std::max(mx, l);
    }
    mean_ms = lat.empty() ? -1 : sum / static_cast<double>(lat.size()) / 1000.0;
    max_ms = static_cast<double>(mx) / 1000.0;
    auto cc = ss->counters();
    reported_ms = static_cast<double>(cc.latency_us) / 1000.0;
    conceal = static_cast<double>(cc.fec + cc.plc);
  }
  st.counters["added_mean_ms"] = mean_ms;
  st.counters["added_max_ms"] = max_ms;
  st.counters["reported_ms"] = reported_ms;
  st.counters["concealed"] = conceal;
  st.SetLabel(impaired ? "5 % loss, 20 ms jitter" : "clean loopback");
}
BENCHMARK(NetLoopbackLatency)->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
