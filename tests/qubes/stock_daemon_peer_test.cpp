// Our agent (auto protocol, the default) against the stock Qubes audio-qube
// daemon, written here from the protocol facts (docs/protocol.md §1) over the
// unix channel. The stock daemon ignores the hello (two unknown words), reads
// raw S16LE 44.1 kHz stereo on 4713, control words on 4714, and answers mic
// start with raw mic PCM on 4714, in whatever chunk sizes it likes. What
// tests/agent/agent_session_test.cpp covers for a forced-stock agent is not
// repeated; these cover the auto agent's whole life with a stock daemon:
// odd ring sizes, mic PCM in odd chunks (split frames), mic stop, and a
// stock daemon that restarts (new fallback, mic started again because the
// new daemon starts with the mic stopped).
#include <gtest/gtest.h>

#include "session_harness.hpp"

namespace qaudio::agent::test {
namespace {

using protocol::StockWord;
constexpr StreamFormat kAppFormat{SampleFormat::F32LE, 48000, 2};

AgentOptions auto_opts() {
  AgentOptions o;
  o.protocol = ProtocolMode::Auto;
  o.negotiation_timeout = 150ms;
  o.playback_ring = {8191, 1021};  // odd sizes: the qube (vchan server) picks them
  o.control_ring = {1021, 8191};
  return o;
}

// Reads control words until `want` shows up (other words are allowed
// before it, e.g. uncork); false at the deadline.
bool expect_word(DaemonPeer& d, StockWord want, std::vector<uint32_t>* seen = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto w = d.read_words(1, 500ms);
    if (w.empty()) {
      continue;
    }
    if (seen) {
      seen->push_back(w[0]);
    }
    if (w[0] == static_cast<uint32_t>(want)) {
      return true;
    }
  }
  return false;
}

// The stock daemon's mic: S16LE 44.1 kHz stereo tone, written in odd chunks.
void send_mic(DaemonPeer& d, double freq, size_t frames) {
  auto pcm = make_tone(kStockFormat, freq, 0.4, frames);
  size_t off = 0;
  const size_t pieces[] = {1001, 3, 4095, 77, 2};
  for (size_t i = 0; off < pcm.size(); ++i) {
    size_t n = std::min(pieces[i % 5], pcm.size() - off);
    d.write(*d.ctl, std::span(pcm).subspan(off, n));
    off += n;
  }
}

std::vector<std::byte> collect_mic(SessionHarness& h, size_t bytes) {
  std::vector<std::byte> mic;
  qaudio::test::wait_until(
      [&] {
        auto m = h.backend().take_mic();
        mic.insert(mic.end(), m.begin(), m.end());
        return mic.size() >= bytes;
      },
      5000ms, 2ms);
  return mic;
}

TEST(StockDaemonPeer, auto_agent_plays_raw_pcm_and_records_mic_pcm_sent_in_odd_chunks) {
  SessionHarness h("unix", auto_opts());
  h.backend().set_output_active(true);
  auto d = h.connect_daemon();
  auto hello = d.read_words(2);
  ASSERT_EQ(hello.size(), 2u);
  EXPECT_EQ(hello[0], protocol::kHelloMagic);  // the stock daemon ignores both words
  ASSERT_TRUE(h.wait_phase(SessionPhase::Stock));

  // Playback: raw S16LE 44.1 kHz stereo, 1 kHz at 0.5 from a 48 kHz F32 app.
  auto tone = make_tone(kAppFormat, 1000.0, 0.5, 48000 * 2);
  std::vector<std::byte> got;
  const size_t want = 44100 / 2 * 4;
  h.stream(tone, [&] { return read_some(*d.play, got, want); });
  ASSERT_EQ(got.size(), want);
  auto f = to_float(got, kStockFormat);
  for (size_t ch = 0; ch < 2; ++ch) {
    EXPECT_NEAR(tone_peak(f, 2, ch, 44100, 1000.0, 2205), 0.5, 0.01);
    EXPECT_NEAR(zero_cross_freq(f, 2, ch, 44100, 2205), 1000.0, 2.0);
  }

  // Mic: start word, then the stock daemon's PCM in odd chunks.
  h.backend().set_mic_in_use(true);
  ASSERT_TRUE(expect_word(d, StockWord::MicStart));
  send_mic(d, 440.0, 44100 / 2);
  auto mic = collect_mic(h, 23000u * 8);
  ASSERT_GE(mic.size(), 23000u * 8);
  auto m = to_float(mic, kAppFormat);
  EXPECT_NEAR(tone_peak(m, 2, 0, 48000, 440.0, 2400, 19200), 0.4, 0.005);
  EXPECT_NEAR(zero_cross_freq(m, 2, 1, 48000, 2400), 440.0, 1.0);
  h.backend().set_mic_in_use(false);
  ASSERT_TRUE(expect_word(d, StockWord::MicStop));
  // Playback idle: cork, the stock daemon drains.
  h.backend().set_output_active(false);
  ASSERT_TRUE(expect_word(d, StockWord::Cork));
  h.backend().set_output_active(true);
  ASSERT_TRUE(expect_word(d, StockWord::Uncork));
}

TEST(StockDaemonPeer, a_restarted_stock_daemon_gets_a_new_fallback_and_the_mic_start_again) {
  SessionHarness h("unix", auto_opts());
  h.backend().set_output_active(true);
  h.backend().set_mic_in_use(true);
  {
    auto d = h.connect_daemon();
    ASSERT_EQ(d.read_words(2).size(), 2u);
    ASSERT_TRUE(h.wait_phase(SessionPhase::Stock));
    ASSERT_TRUE(expect_word(d, StockWord::MicStart));
    send_mic(d, 440.0, 4410);
    ASSERT_GE(collect_mic(h, 4000u * 8).size(), 4000u * 8);  // minus the resampler's delay
    d.close();
  }
  ASSERT_TRUE(qaudio::test::wait_until([&] { return h.session().stats().disconnects.load() == 1; },
                                       5000ms, 2ms));
  (void)h.backend().take_mic();
  // The stock daemon comes back: mic stopped on its side until asked again.
  auto d = h.connect_daemon();
  auto hello = d.read_words(2);
  ASSERT_EQ(hello.size(), 2u);
  EXPECT_EQ(hello[0], protocol::kHelloMagic);
  ASSERT_TRUE(h.wait_phase(SessionPhase::Stock));
  std::vector<uint32_t> seen;
  ASSERT_TRUE(expect_word(d, StockWord::MicStart, &seen));
  send_mic(d, 660.0, 44100 / 4);
  auto mic = collect_mic(h, 11000u * 8);
  ASSERT_GE(mic.size(), 11000u * 8);
  auto m = to_float(mic, kAppFormat);
  EXPECT_NEAR(zero_cross_freq(m, 2, 0, 48000, 1200), 660.0, 2.0);
  // And playback reaches the new daemon.
  auto tone = make_tone(kAppFormat, 1000.0, 0.5, 48000);
  std::vector<std::byte> got;
  h.stream(tone, [&] { return read_some(*d.play, got, 44100 / 5 * 4); });
  auto f = to_float(got, kStockFormat);
  EXPECT_NEAR(tone_peak(f, 2, 0, 44100, 1000.0, 2205), 0.5, 0.01);
}

}  // namespace
}  // namespace qaudio::agent::test
