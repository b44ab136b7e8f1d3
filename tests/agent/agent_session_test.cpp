// AgentSession over the unix and shm channels with a fake backend and a
// daemon written in the test from the protocol (stock and native).
#include "agent_session.hpp"

#include <gtest/gtest.h>

#include "session_harness.hpp"
#include "tone.hpp"

namespace qaudio::agent::test {
namespace {

using protocol::StockWord;

constexpr StreamFormat kAppFormat{SampleFormat::F32LE, 48000, 2};

uint32_t w(StockWord s) {
  return static_cast<uint32_t>(s);
}

class AgentSessionTest : public ::testing::TestWithParam<std::string> {
 protected:
  AgentOptions opts(ProtocolMode mode, std::chrono::milliseconds timeout = 200ms) {
    AgentOptions o;
    o.protocol = mode;
    o.negotiation_timeout = timeout;
    return o;
  }
};

// Streams a 1 kHz tone at 0.5 as the app and returns `seconds` of what
// reached 4713, decoded from `wire`.
std::vector<float> stream_tone(SessionHarness& h,
                               DaemonPeer& d,
                               const StreamFormat& wire,
                               double seconds) {
  auto tone = make_tone(kAppFormat, 1000.0, 0.5, static_cast<size_t>(48000 * (seconds + 1)));
  std::vector<std::byte> got;
  size_t want = static_cast<size_t>(wire.rate * seconds) * wire.frame_bytes();
  h.stream(tone, [&] { return read_some(*d.play, got, want); });
  return to_float(got, wire);
}

TEST_P(AgentSessionTest, stock_mode_sends_no_hello_and_converts_to_s16_44k1) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Stock));
  h.backend().set_output_active(true);
  auto d = h.connect_daemon();
  ASSERT_TRUE(h.wait_phase(SessionPhase::Stock));
  auto f = stream_tone(h, d, kStockFormat, 0.5);
  ASSERT_EQ(f.size(), 44100u);
  for (size_t ch = 0; ch < 2; ++ch) {
    EXPECT_NEAR(tone_peak(f, 2, ch, 44100, 1000.0, 2205), 0.5, 0.01);
    EXPECT_NEAR(zero_cross_freq(f, 2, ch, 44100, 2205), 1000.0, 2.0);
  }
  // Nothing was said on 4714: playback starts running, no hello in stock mode.
  d.ctl->handle_events();
  EXPECT_EQ(d.ctl->data_ready(), 0u);
  // Going idle corks (the first control word ever sent).
  h.backend().set_output_active(false);
  EXPECT_EQ(d.read_words(1), (std::vector<uint32_t>{w(StockWord::Cork)}));
}

TEST_P(AgentSessionTest, auto_mode_sends_hello_then_falls_back_to_stock_after_timeout) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Auto, 100ms));
  h.backend().set_output_active(true);
  auto d = h.connect_daemon();
  auto hello = d.read_words(2);
  ASSERT_EQ(hello.size(), 2u);
  EXPECT_EQ(hello[0], protocol::kHelloMagic);
  EXPECT_EQ(protocol::classify(hello[1]), protocol::ControlKind::Unknown);  // stock ignores it
  ASSERT_TRUE(h.wait_phase(SessionPhase::Stock));
  auto f = stream_tone(h, d, kStockFormat, 0.3);
  EXPECT_NEAR(tone_peak(f, 2, 0, 44100, 1000.0, 2205), 0.5, 0.01);
}

TEST_P(AgentSessionTest, native_mode_keeps_the_app_format_bit_exact) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Auto, 2000ms));
  h.backend().set_output_active(true);
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  auto pf = nd.expect<protocol::PlaybackFormat>();
  ASSERT_TRUE(pf);
  EXPECT_EQ(pf->format, kAppFormat);
  auto cf = nd.expect<protocol::CaptureFormat>();
  ASSERT_TRUE(cf);
  ASSERT_TRUE(h.wait_phase(SessionPhase::Native));
  nd.send(protocol::FormatAccepted{protocol::StreamDirection::Playback, kAppFormat});
  // Bytes on 4713 are exactly the app's bytes from the first one sent on.
  auto tone = make_tone(kAppFormat, 1000.0, 0.5, 48000);
  std::vector<std::byte> got;
  h.stream(tone, [&] { return read_some(*d.play, got, 9600 * 8); });
  ASSERT_GE(got.size(), 9600u * 8);
  auto it = std::search(tone.begin(), tone.end(), got.begin(), got.begin() + 64);
  ASSERT_NE(it, tone.end());
  size_t start = static_cast<size_t>(it - tone.begin());
  EXPECT_EQ(start % 8, 0u);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), tone.begin() + static_cast<ptrdiff_t>(start)));
  EXPECT_EQ(h.session().stats().connections.load(), 1u);
}

TEST_P(AgentSessionTest, native_rejected_format_falls_back_to_stock_format) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Native, 2000ms));
  h.backend().set_output_active(true);
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  auto pf = nd.expect<protocol::PlaybackFormat>();
  ASSERT_TRUE(pf);
  nd.send(protocol::FormatRejected{protocol::StreamDirection::Playback,
                                   protocol::RejectReason::Unsupported, pf->format});
  auto again = nd.expect<protocol::PlaybackFormat>();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->format, kStockFormat);
  nd.send(protocol::FormatAccepted{protocol::StreamDirection::Playback, kStockFormat});
  auto f = stream_tone(h, d, kStockFormat, 0.3);
  EXPECT_NEAR(tone_peak(f, 2, 1, 44100, 1000.0, 2205), 0.5, 0.01);
  EXPECT_NEAR(zero_cross_freq(f, 2, 1, 44100, 2205), 1000.0, 2.0);
}

TEST_P(AgentSessionTest, native_idle_output_corks_and_active_uncorks) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Native, 2000ms));
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  EXPECT_TRUE(nd.expect<protocol::Cork>());  // idle from the start
  h.backend().set_output_active(true);
  EXPECT_TRUE(nd.expect<protocol::Uncork>());
  h.backend().set_output_active(false);
  EXPECT_TRUE(nd.expect<protocol::Cork>());
}

TEST_P(AgentSessionTest, stock_cork_uncork_and_mic_words_follow_the_apps) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Stock));
  auto d = h.connect_daemon();
  EXPECT_EQ(d.read_words(1), (std::vector<uint32_t>{w(StockWord::Cork)}));
  h.backend().set_output_active(true);
  EXPECT_EQ(d.read_words(1), (std::vector<uint32_t>{w(StockWord::Uncork)}));
  h.backend().set_mic_in_use(true);
  EXPECT_EQ(d.read_words(1), (std::vector<uint32_t>{w(StockWord::MicStart)}));
  h.backend().set_mic_in_use(false);
  EXPECT_EQ(d.read_words(1), (std::vector<uint32_t>{w(StockWord::MicStop)}));
  EXPECT_EQ(h.session().stats().mic_starts.load(), 1u);
}

TEST_P(AgentSessionTest, stock_mic_pcm_reaches_the_capture_ring_converted) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Stock));
  h.backend().set_output_active(true);
  auto d = h.connect_daemon();
  ASSERT_TRUE(h.wait_phase(SessionPhase::Stock));
  h.backend().set_mic_in_use(true);
  EXPECT_EQ(d.read_words(1), (std::vector<uint32_t>{w(StockWord::MicStart)}));
  EXPECT_TRUE(h.backend().take_mic().empty());
  auto tone = make_tone(kStockFormat, 440.0, 0.3, 44100 / 2);
  d.write(*d.ctl, tone);
  std::vector<std::byte> mic;
  ASSERT_TRUE(qaudio::test::wait_until(
      [&] {
        auto m = h.backend().take_mic();
        mic.insert(mic.end(), m.begin(), m.end());
        return mic.size() >= 23000u * 8;
      },
      5000ms, 2ms));
  auto f = to_float(mic, kAppFormat);
  EXPECT_NEAR(tone_peak(f, 2, 0, 48000, 440.0, 2400, 19200), 0.3, 0.005);
  EXPECT_NEAR(zero_cross_freq(f, 2, 0, 48000, 2400), 440.0, 1.0);
}

TEST_P(AgentSessionTest, native_mic_data_reaches_the_capture_ring_exactly) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Native, 2000ms));
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  auto cf = nd.expect<protocol::CaptureFormat>();
  ASSERT_TRUE(cf);
  nd.send(protocol::FormatAccepted{protocol::StreamDirection::Capture, cf->format});
  h.backend().set_mic_in_use(true);
  ASSERT_TRUE(nd.expect<protocol::MicStart>());
  auto tone = make_tone(kAppFormat, 440.0, 0.3, 1024);
  for (size_t off = 0; off < tone.size(); off += 2048) {
    nd.send(protocol::MicData{std::span(tone).subspan(off, 2048)});
  }
  std::vector<std::byte> mic;
  ASSERT_TRUE(qaudio::test::wait_until(
      [&] {
        auto m = h.backend().take_mic();
        mic.insert(mic.end(), m.begin(), m.end());
        return mic.size() >= tone.size();
      },
      5000ms, 2ms));
  EXPECT_EQ(mic, tone);
}

TEST_P(AgentSessionTest, latency_and_clock_ticks_reach_the_backend) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Native, 2000ms));
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  nd.send(protocol::Latency{5'000'000, 3'000'000});
  nd.send(protocol::ClockTick{96000, 123, 48000});
  ASSERT_TRUE(qaudio::test::wait_until(
      [&] { return h.backend().last_tick_frames_.load() == 96000; }, 3000ms, 2ms));
  EXPECT_GE(h.backend().remote_latency_ns_.load(), 8'000'000);
  EXPECT_LT(h.backend().remote_latency_ns_.load(), 200'000'000);
  // The daemon leaves: the stale report is withdrawn.
  d.close();
  EXPECT_TRUE(qaudio::test::wait_until([&] { return h.backend().remote_latency_ns_.load() == 0; },
                                       3000ms, 2ms));
}

TEST_P(AgentSessionTest, reconnects_after_the_daemon_leaves_with_a_fresh_negotiation) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Auto, 100ms));
  h.backend().set_output_active(true);
  {
    auto d = h.connect_daemon();
    ASSERT_EQ(d.read_words(2).size(), 2u);  // hello
    ASSERT_TRUE(h.wait_phase(SessionPhase::Stock));
    d.close();
  }
  ASSERT_TRUE(qaudio::test::wait_until([&] { return h.session().stats().disconnects.load() == 1; },
                                       5000ms, 2ms));
  // A native daemon comes back: the agent says hello again and goes native.
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  ASSERT_TRUE(h.wait_phase(SessionPhase::Native));
  nd.send(protocol::FormatAccepted{protocol::StreamDirection::Playback, kAppFormat});
  auto f = stream_tone(h, d, kAppFormat, 0.2);
  EXPECT_NEAR(tone_peak(f, 2, 0, 48000, 1000.0), 0.5, 0.01);
  EXPECT_EQ(h.session().stats().connections.load(), 2u);
}

TEST_P(AgentSessionTest, silent_native_daemon_is_dropped_after_missed_heartbeats) {
  AgentOptions o = opts(ProtocolMode::Native, 2000ms);
  o.heartbeat_interval = 50ms;
  SessionHarness h(GetParam(), o);
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  EXPECT_TRUE(nd.expect<protocol::Heartbeat>());
  ASSERT_TRUE(qaudio::test::wait_until([&] { return h.session().stats().disconnects.load() == 1; },
                                       5000ms, 2ms));
  // And it serves again.
  auto d2 = h.connect_daemon();
  EXPECT_TRUE(d2.ctl && d2.play);
}

TEST_P(AgentSessionTest, new_audio_domain_id_serves_for_that_domain) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Stock));
  auto d = h.connect_daemon();
  ASSERT_TRUE(h.wait_phase(SessionPhase::Stock));
  h.on_loop([&] { h.session().set_audiovm_domid(7); });
  auto d7 = h.connect_daemon(7);
  ASSERT_TRUE(d7.ctl);
  EXPECT_EQ(d7.read_words(1), (std::vector<uint32_t>{w(StockWord::Cork)}));
  EXPECT_EQ(h.session().stats().connections.load(), 2u);
}

TEST_P(AgentSessionTest, forced_native_without_answer_reconnects_instead_of_stock) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Native, 100ms));
  auto d = h.connect_daemon();
  ASSERT_EQ(d.read_words(2).size(), 2u);
  ASSERT_TRUE(qaudio::test::wait_until([&] { return h.session().phase() == SessionPhase::Waiting; },
                                       5000ms, 2ms));
  EXPECT_EQ(h.session().stats().connections.load(), 0u);
}

TEST_P(AgentSessionTest, garbage_from_a_native_daemon_closes_the_connection) {
  SessionHarness h(GetParam(), opts(ProtocolMode::Native, 2000ms));
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  std::vector<std::byte> junk(64, std::byte{0xFF});
  d.write(*d.ctl, junk);
  ASSERT_TRUE(qaudio::test::wait_until([&] { return h.session().stats().disconnects.load() == 1; },
                                       5000ms, 2ms));
}

// A stall left 150 ms queued in the daemon (its Latency reports say so):
// the agent drops the excess from its own stream, crossfaded, until the
// reported queue is back at its level; the tone that reaches 4713 stays a
// continuous tone (no step larger than the tone's own slope).
TEST_P(AgentSessionTest, native_backlog_after_a_stall_is_trimmed_without_a_click) {
  // No stale-data bound here: on a loaded machine it would cut the stream
  // (by design, a hard drop) and hide what this test checks, the trim.
  AgentOptions o = opts(ProtocolMode::Native, 2000ms);
  o.max_queue_ms = 2000;
  SessionHarness h(GetParam(), o);
  h.backend().set_output_active(true);
  auto d = h.connect_daemon();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  ASSERT_TRUE(h.wait_phase(SessionPhase::Native));
  nd.send(protocol::FormatAccepted{protocol::StreamDirection::Playback, kAppFormat});
  const auto& st = h.session().stats();
  // The app plays a 1 kHz tone at 0.5 in real time (5 ms chunks by the
  // clock, as a sound server would), for as long as the test runs.
  auto tone = make_tone(kAppFormat, 1000.0, 0.5, 48000 * 30);
  const size_t fb = kAppFormat.frame_bytes();
  std::vector<std::byte> got;
  size_t written = 0;
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  const auto stall_at = start + 2500ms;  // after the settling window and one more
  constexpr uint64_t kLevel = 10'000'000, kStall = 150'000'000;
  auto step = [&] {
    auto now = std::chrono::steady_clock::now();
    size_t due =
        static_cast<size_t>(std::chrono::duration<double>(now - start).count() * 48000) * fb;
    due = std::min(due, tone.size());
    if (due > written) {
      written += h.backend().play(std::span(tone).subspan(written, due - written));
    }
    // The daemon's buffer: the level, + the stall's backlog minus what the
    // agent trimmed since (the trimmed audio never reaches the daemon).
    if (now - last_report >= 20ms) {
      last_report = now;
      uint64_t buffer = kLevel;
      if (now >= stall_at) {
        uint64_t trimmed = st.trimmed_frames.load() * 1'000'000'000ull / 48000;
        buffer += kStall > trimmed ? kStall - trimmed : 0;
      }
      nd.send(protocol::Latency{5'000'000, buffer});
    }
    read_some(*d.play, got, got.size() + 65536);
  };
  // Trimmed back to within 5 ms (the tolerance) of the level.
  const uint64_t want = (kStall - 5'000'000) * 48000 / 1'000'000'000;
  auto deadline = start + 15s;
  while (std::chrono::steady_clock::now() < deadline && st.trimmed_frames.load() < want) {
    step();
  }
  EXPECT_GE(st.trimmed_frames.load(), want);
  EXPECT_LE(st.trimmed_frames.load(), kStall * 48000 / 1'000'000'000);  // never below the level
  EXPECT_GE(st.trims.load(), 2u);                                       // 100 ms at most per step
  EXPECT_LE(st.trims.load(), 3u);
  // Another second: no further trim, and the audio keeps flowing.
  size_t before = got.size();
  deadline = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < deadline) {
    step();
  }
  EXPECT_GT(got.size(), before + 48000u / 2 * fb);
  EXPECT_LE(st.trims.load(), 3u);
  // Continuity: a 1 kHz sine of 0.5 moves at most 0.065 per frame; a hard
  // cut would jump by up to 1.0.
  auto pcm = to_float(got, kAppFormat);
  ASSERT_GT(pcm.size(), 2u * 48000);
  float max_step = 0;
  size_t at = 0;
  for (size_t i = 2; i < pcm.size(); i += 2) {
    if (std::fabs(pcm[i] - pcm[i - 2]) > max_step) {
      max_step = std::fabs(pcm[i] - pcm[i - 2]);
      at = i / 2;
    }
  }
  EXPECT_LT(max_step, 0.08f) << "at frame " << at << " of " << pcm.size() / 2;
  EXPECT_NEAR(qaudio::test::frequency(pcm, 2, 0, 48000), 1000.0, 5.0);
  EXPECT_GT(qaudio::test::tone_amplitude(std::span(pcm).last(2 * 48000), 2, 0, 48000, 1000.0), 0.4);
}

INSTANTIATE_TEST_SUITE_P(Channels, AgentSessionTest, ::testing::Values("unix", "shm"));

}  // namespace
}  // namespace qaudio::agent::test
