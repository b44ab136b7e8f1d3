// Network channel tests (label network): agent-side client and daemon-side
// server over real UDP on loopback through the in-process impairment shim
// (net_harness.hpp): a tone's frequency, level and continuity under 5 % loss
// and 20 ms jitter, bounded added latency, wrong keys, tampering and
// replays refused, a vanishing peer and NAT rebinding. Drift compensation:
// net_drift_test.cpp.
//
//   ctest -L network      or      build/tests/net/net_channel_test
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "net_harness.hpp"
#include "tone.hpp"

namespace qaudio::test {
namespace {

struct ToneCheck {
  double freq = 0, amp = 0;
  size_t longest_gap_samples = 0;  // longest run of 2.5 ms blocks below half the level
};

// Analyses the server output from `from_s` to `to_s` seconds (stereo S16).
// A block is a gap when its RMS falls below `gap_fraction` of the tone's RMS.
ToneCheck check_tone(const std::vector<int16_t>& out,
                     double from_s,
                     double to_s,
                     double amp,
                     double gap_fraction = 0.5) {
  ToneCheck t;
  size_t a = static_cast<size_t>(from_s * 48000) * 2, b = static_cast<size_t>(to_s * 48000) * 2;
  b = std::min(b, out.size());
  if (a >= b) {
    return t;
  }
  std::vector<float> f(out.begin() + static_cast<std::ptrdiff_t>(a),
                       out.begin() + static_cast<std::ptrdiff_t>(b));
  for (auto& v : f) {
    v /= 32768.0f;
  }
  t.freq = frequency(f, 2, 0, 48000);
  // The level at the frequency measured, averaged over 100 ms blocks: the
  // drift correction plays the tone up to 0.1 % (1 Hz) fast or slow, and
  // not steadily (it follows the jitter-buffer depth), which a Goertzel
  // over seconds (0.1 Hz bins) would smear; 10 Hz bins do not mind.
  const size_t blk = 4800;
  double sum = 0;
  size_t blocks = 0;
  for (size_t i = 0; (i + blk) * 2 <= f.size(); i += blk) {
    sum += tone_amplitude(std::span<const float>(f).subspan(2 * i, 2 * blk), 2, 0, 48000,
                          t.freq > 0 ? t.freq : 1000);
    ++blocks;
  }
  t.amp = blocks ? sum / static_cast<double>(blocks) : 0;
  const size_t block = 120;  // 2.5 ms
  size_t run = 0;
  for (size_t i = 0; i + block <= f.size() / 2; i += block) {
    double acc = 0;
    for (size_t k = 0; k < block; ++k) {
      double v = f[2 * (i + k)];
      acc += v * v;
    }
    double rms = std::sqrt(acc / block);
    if (rms < gap_fraction * amp / std::sqrt(2.0)) {
      run += block;
      if (getenv("NET_GAP_DEBUG")) {
        std::printf("low block at %.4f s rms %.3f\n", from_s + i / 48000.0, rms);
      }
      t.longest_gap_samples = std::max(t.longest_gap_samples, run);
    } else {
      run = 0;
    }
  }
  return t;
}

// Seconds into `out` where the tone first appears.
double onset_s(const std::vector<int16_t>& out) {
  for (size_t i = 0; i < out.size(); i += 2) {
    if (std::abs(out[i]) > 1000) {
      return static_cast<double>(i / 2) / 48000.0;
    }
  }
  return 1e9;
}

double mean_latency_ms(const NetRig& rig, int64_t from_us) {
  double sum = 0;
  size_t n = 0;
  for (auto [t, l] : rig.latencies_us) {
    if (t >= from_us) {
      sum += static_cast<double>(l);
      ++n;
    }
  }
  return n ? sum / static_cast<double>(n) / 1000.0 : 1e9;
}

int64_t max_latency_us(const NetRig& rig, int64_t from_us) {
  int64_t m = 0;
  for (auto [t, l] : rig.latencies_us) {
    if (t >= from_us) {
      m = std::max(m, l);
    }
  }
  return m;
}

TEST(NetChannel, ToneArrivesCleanOnAPerfectLink) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.run_until(2'000'000);
  double on = onset_s(rig.output);
  ASSERT_LT(on, 0.3) << "the tone never started playing";
  auto t = check_tone(rig.output, on + 0.1, 2.0, rig.amp);
  EXPECT_NEAR(t.freq, 1000, 3);
  EXPECT_NEAR(amplitude_to_db(t.amp), amplitude_to_db(rig.amp), 1.0);
  EXPECT_EQ(t.longest_gap_samples, 0u);
  auto c = rig.server_counters();
  EXPECT_EQ(c.plc, 0u);
  EXPECT_EQ(c.fec, 0u);
  EXPECT_GT(c.played, 150u);
  EXPECT_LE(max_latency_us(rig, 500'000), 25'000) << "no jitter: at most a frame or two buffered";
  EXPECT_TRUE(rig.server->session("work")->connected(rig.now_us));
  EXPECT_GT(c.rtt_us, -1);
}

TEST(NetChannel, ToneStaysContinuousWithLossAndJitter) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.shim->loss = 0.05;
  rig.shim->jitter_us = 20'000;
  rig.run_until(8'000'000);
  double on = onset_s(rig.output);
  ASSERT_LT(on, 0.5);
  // Skip the first second while the jitter buffer learns the jitter.
  auto t = check_tone(rig.output, on + 1.0, 8.0, rig.amp);
  EXPECT_NEAR(t.freq, 1000, 3);
  EXPECT_NEAR(amplitude_to_db(t.amp), amplitude_to_db(rig.amp), 1.5);
  EXPECT_LE(t.longest_gap_samples, 480u) << "a gap longer than one 10 ms frame";
  auto c = rig.server_counters();
  EXPECT_GT(c.red + c.fec + c.plc, 10u) << "5 % loss must have been rebuilt or concealed";
  EXPECT_GT(c.red, c.plc) << "single losses are rebuilt from the redundant copy";
  EXPECT_GT(c.loss_pct, 1.0);
  EXPECT_LT(c.loss_pct, 12.0);
  EXPECT_GT(c.jitter_us, 2'000);
  double mean = mean_latency_ms(rig, 2'000'000);
  int64_t mx = max_latency_us(rig, 2'000'000);
  RecordProperty("mean_latency_ms", std::to_string(mean));
  std::printf(
      "loss+jitter: mean added latency %.1f ms, max %.1f ms, loss %.1f %%, red %llu, fec %llu, "
      "plc %llu, underruns %llu, dropped %llu, jitter %.1f ms, reported %.1f ms\n",
      mean, mx / 1000.0, c.loss_pct, static_cast<unsigned long long>(c.red),
      static_cast<unsigned long long>(c.fec), static_cast<unsigned long long>(c.plc),
      static_cast<unsigned long long>(c.underruns), static_cast<unsigned long long>(c.dropped),
      c.jitter_us / 1000.0, c.latency_us / 1000.0);
  EXPECT_LT(mean, 60.0) << "added latency goal: under 60 ms at 5 % loss";
  EXPECT_LT(mx, 90'000);
  // Reported latency is truthful: it covers the measured send->play time
  // plus the coder delay and a frame, within a frame's slack.
  EXPECT_NEAR(static_cast<double>(c.latency_us) / 1000.0, mean + 10.0 + 6.5, 15.0);
}

// A stall of the path (or of a loaded sender) drains the buffer: the target
// must deepen by the stall's length so the next stall like it is bridged
// without a gap, and give the extra depth back slowly once the path is calm.
TEST(NetChannel, JitterBufferDeepensAfterAStallAndDecaysLater) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.shim->loss = 0.05;
  rig.shim->jitter_us = 5'000;
  rig.run_until(3'000'000);
  auto before = rig.server_counters();
  EXPECT_EQ(before.boost_us, 0);
  rig.stall_until_us = rig.now_us + 120'000;
  rig.run_until(rig.now_us + 1'000'000);
  auto after = rig.server_counters();
  EXPECT_GE(after.underruns, before.underruns + 5) << "a 120 ms stall must run the buffer dry";
  EXPECT_GE(after.deepened, before.deepened + 1);
  EXPECT_GE(after.boost_us, 50'000) << "the target must grow by about the stall's length";
  EXPECT_GE(after.target_us, before.target_us + 50'000);
  // The same kind of stall again (a bit shorter) is now bridged: no dry pull, no gap.
  size_t mark = rig.output.size();
  rig.stall_until_us = rig.now_us + 80'000;
  rig.run_until(rig.now_us + 1'000'000);
  auto again = rig.server_counters();
  EXPECT_EQ(again.underruns, after.underruns) << "the deepened buffer did not bridge the stall";
  std::vector<int16_t> tail(rig.output.begin() + static_cast<std::ptrdiff_t>(mark),
                            rig.output.end());
  auto t = check_tone(tail, 0, 1.0, rig.amp);
  EXPECT_NEAR(t.freq, 1000, 3);
  EXPECT_LE(t.longest_gap_samples, 480u) << "a gap longer than one frame across the second stall";
  // Calm again: the allowance decays (one frame per 2 s) and latency follows.
  rig.run_until(rig.now_us + 26'000'000);
  auto calm = rig.server_counters();
  std::printf(
      "stall: target %.0f -> %.0f ms, boost %.0f ms; after calm target %.0f ms, boost %.0f ms, "
      "buffer %.1f ms\n",
      before.target_us / 1e3, after.target_us / 1e3, after.boost_us / 1e3, calm.target_us / 1e3,
      calm.boost_us / 1e3, calm.buffer_us / 1e3);
  EXPECT_LT(calm.boost_us, after.boost_us);
  EXPECT_LE(calm.boost_us, 10'000) << "the stall allowance never decayed";
  EXPECT_LT(calm.buffer_us, after.buffer_us) << "latency did not come back down";
}

// The gap rule over several loss patterns, not one lucky seed: with the
// redundant copy a lost packet is rebuilt exactly, so only two losses in a
// row cost a concealed frame (still no gap longer than one frame).
TEST(NetChannel, GapRuleHoldsOverSeveralLossPatterns) {
  Key k = generate_key();
  for (uint64_t seed : {1u, 2u, 3u, 4u}) {
    NetRig rig(k, k);
    rig.shim->rng.seed(seed);
    rig.shim->loss = 0.05;
    rig.shim->jitter_us = 20'000;
    rig.run_until(6'000'000);
    double on = onset_s(rig.output);
    ASSERT_LT(on, 0.5);
    auto t = check_tone(rig.output, on + 1.0, 6.0, rig.amp);
    auto c = rig.server_counters();
    std::printf("seed %llu: gap %zu samples, red %llu, plc %llu, loss %.1f %%\n",
                static_cast<unsigned long long>(seed), t.longest_gap_samples,
                static_cast<unsigned long long>(c.red), static_cast<unsigned long long>(c.plc),
                c.loss_pct);
    EXPECT_NEAR(t.freq, 1000, 3) << "seed " << seed;
    EXPECT_LE(t.longest_gap_samples, 480u) << "seed " << seed;
    EXPECT_GT(c.loss_pct, 1.0) << "seed " << seed;
  }
}

TEST(NetChannel, InBandFecRebuildsLostSpeechBandFrames) {
  Key k = generate_key();
  // At speech bitrates Opus codes in SILK/hybrid mode, whose packets carry
  // the previous frame again at low rate (LBRR): losses are rebuilt from it.
  NetRig rig(
      k, k,
      CodecParams{.channels = 2, .bitrate = 24000, .expected_loss_pct = 10, .redundancy = false});
  rig.shim->loss = 0.05;
  rig.shim->jitter_us = 20'000;
  rig.run_until(6'000'000);
  auto c = rig.server_counters();
  std::printf("speech-band: fec %llu, plc %llu, underruns %llu\n",
              static_cast<unsigned long long>(c.fec), static_cast<unsigned long long>(c.plc),
              static_cast<unsigned long long>(c.underruns));
  EXPECT_GT(c.fec, 5u);
  // LBRR is a low-rate copy: rebuilt frames come back 6-10 dB quieter than
  // the tone, so a gap here is a block 18 dB down (what silence would give).
  auto t = check_tone(rig.output, onset_s(rig.output) + 1.0, 6.0, rig.amp, 0.125);
  EXPECT_NEAR(t.freq, 1000, 3);
  EXPECT_LE(t.longest_gap_samples, 480u);
}

TEST(NetChannel, WrongKeyIsRefusedAndLogged) {
  Key k = generate_key();
  Key other = generate_key();
  testing::internal::CaptureStderr();
  NetRig rig(k, other);
  rig.run_until(1'000'000);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(rig.server->session("work")->connected(rig.now_us));
  EXPECT_GT(rig.server->rejected_unknown_key(), 3u);
  EXPECT_EQ(rig.server_counters().rx_packets, 0u);
  EXPECT_EQ(rig.server_counters().tx_packets, 0u) << "nothing is answered without the key";
  EXPECT_NE(err.find("refused"), std::string::npos) << err;
  EXPECT_NE(err.find("key is not configured"), std::string::npos) << err;
  EXPECT_NE(err.find("latest from 127.0.0.1:"), std::string::npos) << err;
  // Nothing plays.
  EXPECT_TRUE(std::all_of(rig.output.begin(), rig.output.end(), [](int16_t v) { return v == 0; }));
}

TEST(NetChannel, TamperedAndReplayedDatagramsAreRefused) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.shim->corrupt = true;
  testing::internal::CaptureStderr();
  rig.run_until(1'000'000);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_GT(rig.server->rejected_auth(), 3u);
  EXPECT_EQ(rig.server_counters().rx_packets, 0u);
  EXPECT_NE(err.find("authentication failed"), std::string::npos) << err;

  rig.shim->corrupt = false;
  rig.shim->duplicate = true;
  rig.run_until(3'000'000);
  auto c = rig.server_counters();
  EXPECT_GT(c.replays, 50u) << "every duplicate must be refused by the replay window";
  auto t = check_tone(rig.output, onset_s(rig.output) + 0.1, 3.0, rig.amp);
  EXPECT_NEAR(t.freq, 1000, 3);
  EXPECT_EQ(t.longest_gap_samples, 0u);
}

TEST(NetChannel, PeerVanishingAndReturningResumes) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.run_until(1'000'000);
  ASSERT_LT(onset_s(rig.output), 0.3);
  // The link goes away for 3 s: the server stops concealing and plays silence.
  rig.shim->blackout = true;
  rig.run_until(4'000'000);
  EXPECT_FALSE(rig.server->session("work")->connected(rig.now_us));
  auto quiet = check_tone(rig.output, 2.0, 4.0, rig.amp);
  EXPECT_LT(quiet.amp, 0.01) << "silence (not stale audio) while the peer is away";
  // It comes back from a new source port (NAT rebinding): authenticated
  // packets move the session to the new address and the tone resumes.
  rig.shim->blackout = false;
  rig.shim->rebind();
  rig.run_until(6'000'000);
  auto c = rig.server_counters();
  EXPECT_GE(c.address_changes, 1u);
  EXPECT_TRUE(rig.server->session("work")->connected(rig.now_us));
  auto back = check_tone(rig.output, 4.5, 6.0, rig.amp);
  EXPECT_NEAR(back.freq, 1000, 3);
  EXPECT_NEAR(amplitude_to_db(back.amp), amplitude_to_db(rig.amp), 1.0);
  EXPECT_EQ(back.longest_gap_samples, 0u);
}

TEST(NetChannel, RestartedAgentIsAcceptedAsANewSession) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.run_until(1'000'000);
  rig.drop_client();  // the agent process dies
  rig.run_until(2'000'000);
  rig.make_client();  // and starts again: new session, new source port
  rig.run_until(3'500'000);
  EXPECT_TRUE(rig.server->session("work")->connected(rig.now_us));
  auto back = check_tone(rig.output, 2.6, 3.5, rig.amp);
  EXPECT_NEAR(back.freq, 1000, 3);
  EXPECT_NEAR(amplitude_to_db(back.amp), amplitude_to_db(rig.amp), 1.0);
  EXPECT_EQ(back.longest_gap_samples, 0u);
}

TEST(NetChannel, MicrophoneFlowsFromDaemonToAgent) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.run_until(500'000);
  auto* srv = rig.server->session("work");
  auto* cli = rig.client->sessions()[0];
  std::vector<int16_t> mono(480), got;
  for (int f = 0; f < 100; ++f) {
    for (int i = 0; i < 480; ++i) {
      mono[i] = static_cast<int16_t>(
          std::lround(0.25 * 32767 * std::sin(2 * M_PI * 440 * (f * 480 + i) / 48000.0)));
    }
    ASSERT_TRUE(rig.server->send_audio(*srv, mono, rig.now_us));
    rig.run_until(rig.now_us + 10'000);
    std::vector<int16_t> out(480);
    cli->pull(out, rig.now_us);
    got.insert(got.end(), out.begin(), out.end());
  }
  EXPECT_EQ(cli->rx_channels(), 1);
  // Control state rides to the daemon side (the agent's mic start/stop).
  EXPECT_EQ(srv->peer_flags(rig.now_us), 0u);
  rig.client->set_state(*cli, kStateMicWanted);
  rig.run_until(rig.now_us + 20'000);
  EXPECT_EQ(srv->peer_flags(rig.now_us), kStateMicWanted);
  rig.client->set_state(*cli, 0);
  rig.run_until(rig.now_us + 20'000);
  EXPECT_EQ(srv->peer_flags(rig.now_us), 0u);
  // ... and is repaired by the keep-alives when the change itself was lost.
  rig.shim->blackout = true;
  rig.client->set_state(*cli, kStateMicWanted);
  rig.run_until(rig.now_us + 20'000);
  rig.shim->blackout = false;
  EXPECT_EQ(srv->peer_flags(rig.now_us), 0u);
  rig.run_until(rig.now_us + 400'000);
  EXPECT_EQ(srv->peer_flags(rig.now_us), kStateMicWanted);
  std::vector<float> f(got.begin() + 9600, got.end());
  for (auto& v : f) {
    v /= 32768.0f;
  }
  EXPECT_NEAR(frequency(f, 1, 0, 48000), 440, 3);
  EXPECT_NEAR(amplitude_to_db(tone_amplitude(f, 1, 0, 48000, 440)), amplitude_to_db(0.25), 1.0);
}

// The mic gate relies on it: the daemon's silence (all-zero frames) must
// cross the codec as exact zeros, before a tone and within a few frames
// after one, so a gated qube hears nothing at all.
TEST(NetCodec, DigitalSilenceStaysExactlyZero) {
  auto enc = AudioEncoder::create({.channels = 1, .frame_quarter_ms = 4});
  auto dec = AudioDecoder::create(1);
  ASSERT_TRUE(enc && dec);
  std::vector<int16_t> in(480), out(480);
  std::array<std::byte, kMaxAudioData> coded{};
  auto round = [&] {
    size_t n = (*enc)->encode(in, coded);
    EXPECT_GT(n, 0u);
    (*dec)->decode((*enc)->last_codec(), std::span(coded.data(), n), out, 480, false);
  };
  for (int f = 0; f < 50; ++f) {
    round();
    EXPECT_EQ((*enc)->last_codec(), Codec::Silence);
    ASSERT_TRUE(std::all_of(out.begin(), out.end(), [](int16_t v) { return v == 0; }))
        << "silence frame " << f << " decoded to non-zero samples";
  }
  (*dec)->conceal(out, 480);
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](int16_t v) { return v == 0; }))
      << "concealment after silence is not silent";
  for (int f = 0; f < 20; ++f) {
    for (int i = 0; i < 480; ++i) {
      in[i] = static_cast<int16_t>(
          std::lround(16000 * std::sin(2 * M_PI * 1000 * (f * 480 + i) / 48000.0)));
    }
    round();
  }
  std::fill(in.begin(), in.end(), int16_t{0});
  int first_silent = -1;
  for (int f = 0; f < 20 && first_silent < 0; ++f) {
    round();
    if (std::all_of(out.begin(), out.end(), [](int16_t v) { return v == 0; })) {
      first_silent = f;
    }
  }
  EXPECT_EQ(first_silent, 0) << "the first silent frame after a tone is not exact silence";
  (*dec)->conceal(out, 480);
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](int16_t v) { return v == 0; }))
      << "a frame lost in silence is concealed with sound";
  for (int f = 0; f < 20; ++f) {
    round();
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](int16_t v) { return v == 0; }));
  }
}

TEST(NetWire, KeysAndConfigErrorsAreClear) {
  EXPECT_FALSE(parse_key("abc"));
  EXPECT_FALSE(parse_key(std::string(64, 'g')));
  Key k = generate_key();
  auto back = parse_key(key_to_hex(k));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, k);
  NetEndpoint::Options o;
  o.peer = "127.0.0.1:9";
  EXPECT_FALSE(NetEndpoint::create(o)) << "no key";
  o.keys = {{"a", k}};
  o.peer = "nohostport";
  auto r = NetEndpoint::create(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("HOST:PORT"), std::string::npos);
  o.peer = "127.0.0.1:9";
  o.tx.passthrough = true;
  o.tx.frame_quarter_ms = 8;
  r = NetEndpoint::create(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("5 ms"), std::string::npos);
  NetEndpoint::Options s;
  s.server = true;
  s.bind = "127.0.0.1:0";
  s.keys = {{"a", k}, {"b", k}};
  r = NetEndpoint::create(s);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("same key"), std::string::npos);
}

TEST(NetWire, ReplayWindowAcceptsEachCounterOnce) {
  ReplayWindow w;
  EXPECT_TRUE(w.accept(5));
  EXPECT_FALSE(w.accept(5));
  EXPECT_TRUE(w.accept(3));
  EXPECT_TRUE(w.accept(100));
  EXPECT_FALSE(w.accept(3));
  EXPECT_TRUE(w.accept(99));
  EXPECT_TRUE(w.accept(5000));
  EXPECT_FALSE(w.accept(100)) << "too old to tell";
  EXPECT_TRUE(w.accept(4999));
}

TEST(NetChannel, PcmPassthroughOnALan) {
  Key k = generate_key();
  NetRig rig(k, k, CodecParams{.channels = 2, .frame_quarter_ms = 2, .passthrough = true});
  // The rig sends 10 ms frames; passthrough uses 5 ms, so feed it directly.
  rig.sending = false;
  rig.pulling = false;
  rig.run_until(300'000);
  auto* cli = rig.client->sessions()[0];
  auto* srv = rig.server->session("work");
  std::vector<int16_t> f(240 * 2), out(240 * 2), got;
  for (int n = 0; n < 100; ++n) {
    for (int i = 0; i < 240; ++i) {
      f[2 * i] = f[2 * i + 1] = static_cast<int16_t>(
          std::lround(0.5 * 32767 * std::sin(2 * M_PI * 1000 * (n * 240 + i) / 48000.0)));
    }
    ASSERT_TRUE(rig.client->send_audio(*cli, f, rig.now_us));
    rig.run_until(rig.now_us + 5'000);
    if (srv->pull(out, rig.now_us)) {
      got.insert(got.end(), out.begin(), out.end());
    }
  }
  ASSERT_GT(got.size(), 4800u);
  // Every played frame is a frame that was sent (resampled by the drift
  // correction: no longer bit-exact).
  EXPECT_EQ(srv->counters().plc, 0u);
  // From the second frame on: the resampler's band-limited onset rings a
  // little (below -48 dBFS) in the half millisecond before an abrupt start,
  // which a zero-crossing count would take for a tone.
  std::vector<float> fl(got.begin() + 480, got.end());
  for (auto& v : fl) {
    v /= 32768.0f;
  }
  EXPECT_NEAR(frequency(fl, 2, 0, 48000), 1000, 2);
}

}  // namespace
}  // namespace qaudio::test
