// Sessions against a stock-protocol qube written here from the protocol
// facts (docs/protocol.md §1), over the unix AND shm channels: raw PCM,
// cork/uncork/drain, mic start/stop, the ignored word 0x00010004, a 12-byte
// initial control message, odd ring sizes, peer restart -> reconnect.
#include <gtest/gtest.h>

#include "e2e_support.hpp"

namespace qaudio::e2e {
namespace {

using daemon::SessionProtocol;
using daemon::SessionState;

class StockSession : public ::testing::TestWithParam<std::string> {
 protected:
  void tweak(daemon::DaemonOptions& o) {
    o.session.backoff_initial = 20ms;
    o.session.backoff_max = 200ms;
  }
};

TEST_P(StockSession, connects_and_plays_raw_s16_at_44k1_without_a_hello) {
  DaemonHarness h(GetParam(), "wav", {{"work", 3}}, [&](auto& o) { tweak(o); });
  QubePeer q(h.peer_transport(), 3);
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").protocol, SessionProtocol::Stock);
  EXPECT_EQ(h.info("work").playback_format, kStockFormat);

  ToneWriter tone;  // S16LE 44.1 kHz stereo, 0.3
  tone.lead = 100ms;
  h.run_for(1200ms, [&] {
    q.poll();
    tone.pump(q.play());
  });
  ASSERT_TRUE(h.drive([&] { return h.info("work").counters.bytes_in == tone.bytes_sent; }, 2s,
                      [&] { q.poll(); }));
  auto c = h.info("work").counters;
  EXPECT_EQ(c.bytes_in, tone.bytes_sent);
  EXPECT_GT(c.frames_played, 44100u / 2);
  EXPECT_EQ(c.overruns, 0u);
  h.stop();

  auto w = read_wav(h.wav_path());
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->rate, 48000u);
  ASSERT_GT(w->frames(), 48000u / 2);
  // The middle of the stream: 440 Hz at amplitude 0.3 (unity gain).
  auto mid = mono(*w, w->frames() / 2 - 9600, w->frames() / 2 + 9600);
  EXPECT_NEAR(test::frequency(mid, 1, 0, 48000), 440.0, 3.0);
  // RMS, not Goertzel: the adaptive rate may pitch the tone by up to 0.5 %
  // while it pulls the 100 ms lead down to the target fill.
  EXPECT_NEAR(test::rms(mid, 1, 0) * std::sqrt(2.0), 0.3, 0.03);
}

TEST_P(StockSession,
       control_words_in_one_12_byte_message_start_the_mic_and_are_ignored_when_unknown) {
  DaemonHarness h(GetParam(), "null", {{"work", 3}}, [&](auto& o) { tweak(o); });
  QubePeer q(h.peer_transport(), 3);
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));

  // Three words in one write: the ignored 0x00010004, mic start, uncork.
  std::vector<std::byte> msg;
  for (auto w :
       {proto::StockWord::Unknown4, proto::StockWord::MicStart, proto::StockWord::Uncork}) {
    auto b = proto::word_bytes(w);
    msg.insert(msg.end(), b.begin(), b.end());
  }
  ASSERT_EQ(msg.size(), 12u);
  ASSERT_EQ(q.write_ctl(msg), 12u);
  ASSERT_TRUE(h.drive([&] { return h.info("work").mic_started; }, 3s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").counters.unknown_words, 0u);
  EXPECT_EQ(h.info("work").protocol, SessionProtocol::Stock);

  // Detached mic: the qube receives a valid, silent stream at the real rate.
  ASSERT_TRUE(h.drive([&] { return q.ctl_in.size() >= 44100 * 4 / 5; }, 5s, [&] { q.poll(); }));
  EXPECT_TRUE(test::all_zero_bytes(q.ctl_in));
  EXPECT_EQ(q.ctl_in.size() % 4, 0u);

  // An unknown word is counted and ignored; mic stop stops the data.
  q.write_ctl(proto::word_bytes(0x12345678u));
  q.write_word(proto::StockWord::MicStop);
  ASSERT_TRUE(h.drive([&] { return !h.info("work").mic_started; }, 3s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").counters.unknown_words, 1u);
  h.run_for(50ms, [&] { q.poll(); });
  size_t after_stop = q.ctl_in.size();
  h.run_for(300ms, [&] { q.poll(); });
  EXPECT_EQ(q.ctl_in.size(), after_stop);
  EXPECT_TRUE(h.running("work"));
}

TEST_P(StockSession, cork_drains_what_is_queued_then_stops_reading_until_uncork) {
  DaemonHarness h(GetParam(), "null", {{"work", 3}}, [&](auto& o) { tweak(o); });
  QubePeer q(h.peer_transport(), 3);
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));

  // 20 ms of audio (below the 40 ms prebuffer), then cork: it still plays.
  ToneWriter tone;
  auto pcm = tone.make(0, 882);
  ASSERT_EQ(q.write_pcm(pcm), pcm.size());
  ASSERT_TRUE(h.drive([&] { return h.info("work").counters.bytes_in == pcm.size(); }, 3s,
                      [&] { q.poll(); }));
  q.write_word(proto::StockWord::Cork);
  ASSERT_TRUE(h.drive(
      [&] {
        auto i = h.info("work");
        return i.corked && i.counters.frames_played >= 882 && i.counters.playback_fill_bytes == 0;
      },
      3s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").counters.underruns, 0u);  // the end of a drain is not an underrun

  // Written while corked: stays in the qube's channel.
  uint64_t in_before = h.info("work").counters.bytes_in;
  ASSERT_EQ(q.write_pcm(pcm), pcm.size());
  h.run_for(200ms, [&] { q.poll(); });
  EXPECT_EQ(h.info("work").counters.bytes_in, in_before);

  q.write_word(proto::StockWord::Uncork);
  ASSERT_TRUE(h.drive([&] { return h.info("work").counters.bytes_in == in_before + pcm.size(); },
                      3s, [&] { q.poll(); }));
  EXPECT_FALSE(h.info("work").corked);
}

TEST_P(StockSession, odd_ring_sizes_carry_every_byte) {
  DaemonHarness h(GetParam(), "null", {{"work", 3}}, [&](auto& o) { tweak(o); });
  QubePeer q(h.peer_transport(), 3, {4093, 4093}, {1021, 1021});
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  q.write_word(proto::StockWord::MicStart);

  ToneWriter tone;
  tone.lead = 60ms;
  h.run_for(700ms, [&] {
    q.poll();
    tone.pump(q.play());
  });
  ASSERT_TRUE(h.drive([&] { return h.info("work").counters.bytes_in == tone.bytes_sent; }, 3s,
                      [&] { q.poll(); }))
      << daemon::Daemon::format_counters(h.info("work")) << " sent " << tone.bytes_sent;
  EXPECT_GT(tone.bytes_sent, 44100u * 4 / 2);
  EXPECT_EQ(h.info("work").counters.overruns, 0u);
  EXPECT_GT(q.ctl_in.size(), 0u);  // mic data through a 1021-byte ring
  EXPECT_TRUE(test::all_zero_bytes(q.ctl_in));
}

TEST_P(StockSession, a_qube_that_restarts_is_reconnected_without_restarting_the_daemon) {
  DaemonHarness h(GetParam(), "null", {{"work", 3}, {"other", 4}}, [&](auto& o) { tweak(o); });
  ASSERT_TRUE(h.start());
  // Not up yet: the session waits and retries.
  h.run_for(100ms);
  EXPECT_EQ(h.info("work").state, SessionState::Waiting);

  QubePeer q(h.peer_transport(), 3);
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").counters.connects, 1u);

  q.close();  // the qube goes away
  ASSERT_TRUE(h.drive([&] { return !h.running("work"); }, 5s));
  EXPECT_EQ(h.info("work").counters.disconnects, 1u);

  ASSERT_TRUE(q.serve());  // and comes back
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").counters.connects, 2u);
  ToneWriter tone;
  auto pcm = tone.make(0, 4410);
  ASSERT_EQ(q.write_pcm(pcm), pcm.size());
  ASSERT_TRUE(h.drive([&] { return h.info("work").counters.bytes_in == pcm.size(); }, 3s,
                      [&] { q.poll(); }));
  EXPECT_EQ(h.info("other").state, SessionState::Waiting);
}

TEST_P(StockSession, attached_mic_delivers_the_device_input_and_detach_silences_it) {
  std::string mic_wav;
  DaemonHarness h(GetParam(), "null", {{"work", 3}}, [&](auto& o) { tweak(o); });
  mic_wav = h.dir() + "/mic.wav";
  write_wav_s16(mic_wav, test::sine(1000.0, 48000, 48000, 2, 0.5), 48000, 2);
  h.options().backend = "wav:" + h.dir() + "/out.wav,in=" + mic_wav;
  QubePeer q(h.peer_transport(), 3);
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  q.write_word(proto::StockWord::MicStart);
  ASSERT_TRUE(h.drive([&] { return q.ctl_in.size() >= 17640; }, 3s, [&] { q.poll(); }));
  EXPECT_TRUE(test::all_zero_bytes(q.ctl_in));  // not attached: silence

  ASSERT_TRUE(h.daemon().set_mic_attached("work", true).has_value());
  size_t mark = q.ctl_in.size();
  ASSERT_TRUE(
      h.drive([&] { return q.ctl_in.size() >= mark + 44100 * 4 / 2; }, 5s, [&] { q.poll(); }));
  // Skip the switch-over, then the 1 kHz tone at 0.5.
  std::span<const std::byte> tail(q.ctl_in.data() + mark + 44100 / 10 * 4,
                                  q.ctl_in.size() - mark - 44100 / 10 * 4);
  auto f = test::s16_to_float(tail);
  EXPECT_NEAR(test::frequency(f, 2, 0, 44100), 1000.0, 5.0);
  EXPECT_NEAR(test::tone_amplitude(f, 2, 0, 44100, 1000.0), 0.5, 0.05);

  ASSERT_TRUE(h.daemon().set_mic_attached("work", false).has_value());
  h.run_for(100ms, [&] { q.poll(); });  // what was queued before the detach
  mark = q.ctl_in.size();
  ASSERT_TRUE(h.drive([&] { return q.ctl_in.size() >= mark + 17640; }, 3s, [&] { q.poll(); }));
  EXPECT_TRUE(test::all_zero_bytes(std::span(q.ctl_in).subspan(mark)));
}

INSTANTIATE_TEST_SUITE_P(Channels, StockSession, ::testing::Values("unix", "shm"));

}  // namespace
}  // namespace qaudio::e2e
