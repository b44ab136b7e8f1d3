// Sessions with a native agent (written here with AgentNegotiator):
// negotiation, a 48 kHz F32 stream that stays 48 kHz, Latency/ClockTick with
// sane values, VolumeState/MicState pushed on change, heartbeat timeout, and
// a malformed frame closing only that session, which then reconnects.
#include <gtest/gtest.h>

#include "e2e_support.hpp"

namespace qaudio::e2e {
namespace {

using daemon::SessionProtocol;

constexpr StreamFormat kF32_48k{SampleFormat::F32LE, 48000, 2};

void fast(daemon::DaemonOptions& o) {
  o.session.backoff_initial = 20ms;
  o.session.backoff_max = 200ms;
}

struct NativeFixture {
  explicit NativeFixture(const std::string& backend,
                         std::function<void(daemon::DaemonOptions&)> t = fast)
      : h("unix", backend, {{"work", 5}}, std::move(t)), q(h.peer_transport(), 5), a(q) {}

  // Serves, waits for the daemon, negotiates, sends PlaybackFormat.
  void negotiate(const StreamFormat& fmt) {
    ASSERT_TRUE(q.serve());
    ASSERT_TRUE(h.start());
    ASSERT_TRUE(h.drive([&] { return q.open(); }, 5s, [&] { q.poll(); }));
    a.start();
    ASSERT_TRUE(h.drive([&] { return a.native(); }, 5s, [&] { a.poll(); }));
    ASSERT_TRUE(h.drive([&] { return h.info("work").protocol == SessionProtocol::Native; }, 5s,
                        [&] { a.poll(); }));
    a.send(proto::PlaybackFormat{fmt});
    ASSERT_TRUE(h.drive([&] { return !a.accepted.empty(); }, 5s, [&] { a.poll(); }));
  }

  DaemonHarness h;
  QubePeer q;
  NativeAgent a;
};

TEST(NativeSession, f32_48k_is_accepted_as_asked_and_played_at_48k) {
  NativeFixture f("wav");
  f.negotiate(kF32_48k);
  EXPECT_EQ(f.a.accepted[0].direction, proto::StreamDirection::Playback);
  EXPECT_EQ(f.a.accepted[0].format, kF32_48k);
  EXPECT_EQ(f.h.info("work").playback_format, kF32_48k);

  ToneWriter tone;
  tone.fmt = kF32_48k;
  tone.freq = 1000;
  tone.amp = 0.25;
  tone.lead = 100ms;
  f.h.run_for(1200ms, [&] {
    f.a.poll();
    tone.pump(f.q.play());
  });
  ASSERT_TRUE(f.h.drive([&] { return f.h.info("work").counters.bytes_in == tone.bytes_sent; }, 2s,
                        [&] { f.a.poll(); }));
  f.h.stop();
  auto w = read_wav(f.h.wav_path());
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->rate, 48000u);
  auto mid = mono(*w, w->frames() / 2 - 9600, w->frames() / 2 + 9600);
  EXPECT_NEAR(test::frequency(mid, 1, 0, 48000), 1000.0, 2.0);
  EXPECT_NEAR(test::tone_amplitude(mid, 1, 0, 48000, 1000.0), 0.25, 0.02);
}

TEST(NativeSession, latency_and_clock_ticks_arrive_with_sane_values) {
  NativeFixture f("null");
  f.negotiate(kF32_48k);
  ToneWriter tone;
  tone.fmt = kF32_48k;
  ASSERT_TRUE(f.h.drive([&] { return f.a.ticks.size() >= 5 && !f.a.latencies.empty(); }, 5s,
                        [&] {
                          f.a.poll();
                          tone.pump(f.q.play());
                        }));
  for (const auto& l : f.a.latencies) {
    EXPECT_LT(l.device_latency_ns, 1'000'000'000u);
    EXPECT_LT(l.daemon_buffer_ns, 1'000'000'000u);
  }
  for (size_t i = 1; i < f.a.ticks.size(); ++i) {
    const auto& p = f.a.ticks[i - 1];
    const auto& t = f.a.ticks[i];
    EXPECT_EQ(t.device_rate, 48000u);
    EXPECT_GE(t.frames_played, p.frames_played);
    EXPECT_GE(t.device_time_ns, p.device_time_ns);
    if (t.device_time_ns > p.device_time_ns + 50'000'000) {
      // The counter advances at the device rate (loosely: scheduling jitter).
      double rate = double(t.frames_played - p.frames_played) * 1e9 /
                    double(t.device_time_ns - p.device_time_ns);
      EXPECT_NEAR(rate, 48000.0, 4800.0);
    }
  }
}

TEST(NativeSession, volume_and_mic_state_are_pushed_after_hello_and_on_change) {
  NativeFixture f("null");
  f.negotiate(kF32_48k);
  ASSERT_FALSE(f.a.volumes.empty());
  EXPECT_EQ(f.a.volumes[0].volume_permille, 1000);
  ASSERT_FALSE(f.a.mic_states.empty());
  EXPECT_FALSE(f.a.mic_states[0].attached);

  ASSERT_TRUE(f.h.daemon().set_volume("work", 50).has_value());
  ASSERT_TRUE(f.h.drive([&] { return f.a.volumes.size() >= 2; }, 3s, [&] { f.a.poll(); }));
  EXPECT_EQ(f.a.volumes.back().volume_permille, 500);
  ASSERT_TRUE(f.h.daemon().set_mute("work", true).has_value());
  ASSERT_TRUE(f.h.drive([&] { return f.a.volumes.size() >= 3; }, 3s, [&] { f.a.poll(); }));
  EXPECT_TRUE(f.a.volumes.back().muted);
  ASSERT_TRUE(f.h.daemon().set_mic_attached("work", true).has_value());
  ASSERT_TRUE(f.h.drive([&] { return f.a.mic_states.size() >= 2; }, 3s, [&] { f.a.poll(); }));
  EXPECT_TRUE(f.a.mic_states.back().attached);
}

TEST(NativeSession, mic_data_frames_are_whole_frames_of_the_capture_format) {
  NativeFixture f("null");
  f.negotiate(kF32_48k);
  constexpr StreamFormat kMono16{SampleFormat::S16LE, 48000, 1};
  f.a.send(proto::CaptureFormat{kMono16});
  f.a.send(proto::MicStart{});
  ASSERT_TRUE(f.h.drive([&] { return f.a.mic.size() >= 48000 * 2 / 4; }, 5s, [&] { f.a.poll(); }));
  EXPECT_EQ(f.a.accepted.back().direction, proto::StreamDirection::Capture);
  EXPECT_EQ(f.a.accepted.back().format, kMono16);
  EXPECT_EQ(f.a.mic.size() % 2, 0u);
  EXPECT_TRUE(test::all_zero_bytes(f.a.mic));  // detached: silence
  EXPECT_TRUE(f.h.info("work").mic_started);
}

TEST(NativeSession, a_silent_agent_is_dropped_after_three_heartbeat_intervals_and_reconnected) {
  NativeFixture f("null", [](daemon::DaemonOptions& o) {
    fast(o);
    o.session.heartbeat_interval = 100ms;
  });
  f.negotiate(kF32_48k);
  // The agent stops sending anything at all (still reads).
  ASSERT_TRUE(f.h.drive([&] { return f.h.info("work").counters.disconnects == 1; }, 5s,
                        [&] { f.q.poll(); }));
  EXPECT_EQ(f.h.info("work").counters.protocol_errors, 0u);
  EXPECT_NE(f.h.info("work").last_error.find("heartbeat"), std::string::npos);
  ASSERT_TRUE(f.q.serve());
  ASSERT_TRUE(f.h.drive([&] { return f.h.running("work"); }, 5s, [&] { f.q.poll(); }));
}

TEST(NativeSession, a_malformed_frame_closes_the_session_which_reconnects_later) {
  NativeFixture f("null");
  f.negotiate(kF32_48k);
  // A header announcing a payload beyond the 4096-byte maximum.
  std::array<std::byte, 8> bad{std::byte{1},    std::byte{0},    std::byte{0x20}, std::byte{0},
                               std::byte{0x00}, std::byte{0x20}, std::byte{0},    std::byte{0}};
  f.q.write_ctl(bad);
  ASSERT_TRUE(f.h.drive([&] { return f.h.info("work").counters.protocol_errors == 1; }, 5s,
                        [&] { f.q.poll(); }));
  EXPECT_NE(f.h.info("work").last_error.find("malformed"), std::string::npos);
  ASSERT_TRUE(f.q.serve());
  ASSERT_TRUE(f.h.drive([&] { return f.h.running("work"); }, 5s, [&] { f.q.poll(); }));
  EXPECT_EQ(f.h.info("work").protocol, SessionProtocol::Stock);  // until a new hello
}

TEST(NativeSession, stock_only_daemon_never_answers_the_hello) {
  NativeFixture f("null", [](daemon::DaemonOptions& o) {
    fast(o);
    o.native_enabled = false;
  });
  ASSERT_TRUE(f.q.serve());
  ASSERT_TRUE(f.h.start());
  ASSERT_TRUE(f.h.drive([&] { return f.q.open(); }, 5s, [&] { f.q.poll(); }));
  f.a.start();
  f.h.run_for(300ms, [&] { f.a.poll(); });
  EXPECT_TRUE(f.q.ctl_in.empty());
  EXPECT_EQ(f.h.info("work").protocol, SessionProtocol::Stock);
}

}  // namespace
}  // namespace qaudio::e2e
