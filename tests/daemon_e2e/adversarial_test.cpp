// A hostile qube next to a good one: garbage, oversize or truncated frames,
// a flood faster than real time, never reading, reconnecting in a loop. The
// bad qube's session may be cut; the good qube's 440 Hz tone reaches the WAV
// output continuous (every 10 ms block at the right level after start-up),
// and the bad session stays within its bounds (ring fill, mic queue).
#include <gtest/gtest.h>

#include <random>

#include "e2e_support.hpp"

namespace qaudio::e2e {
namespace {

enum class Evil {
  GarbageNative,
  GarbageStock,
  Oversize,
  Truncated,
  Flood,
  NeverRead,
  ReconnectLoop
};

std::string name_of(Evil e) {
  switch (e) {
    case Evil::GarbageNative:
      return "garbage_native";
    case Evil::GarbageStock:
      return "garbage_stock";
    case Evil::Oversize:
      return "oversize_frame";
    case Evil::Truncated:
      return "truncated_frame";
    case Evil::Flood:
      return "flood";
    case Evil::NeverRead:
      return "never_read";
    case Evil::ReconnectLoop:
      return "reconnect_loop";
  }
  return "?";
}

// The hostile qube: re-serves whenever the daemon leaves, then misbehaves.
class EvilQube {
 public:
  EvilQube(Transport& t, Evil kind) : kind_(kind), peer_(t, 2) {}

  bool serve() {
    agent_ = std::make_unique<NativeAgent>(peer_);
    done_ = false;
    return peer_.serve();
  }

  void step() {
    if (kind_ == Evil::NeverRead) {
      peer_.read_ctl = false;
    }
    if (agent_->started) {
      agent_->poll();
    } else {
      peer_.poll();
    }
    if (peer_.play() != nullptr && (peer_.play()->state() == ChannelState::Closed ||
                                    peer_.ctl()->state() == ChannelState::Closed)) {
      serve();  // the daemon cut us: be there for its reconnect
      return;
    }
    if (!peer_.open()) {
      return;
    }
    bool native_kind =
        kind_ == Evil::GarbageNative || kind_ == Evil::Oversize || kind_ == Evil::Truncated;
    if (native_kind && !agent_->started) {
      agent_->start();
      return;
    }
    switch (kind_) {
      case Evil::GarbageNative:
        if (agent_->native()) {
          garbage(peer_.ctl());
        }
        break;
      case Evil::GarbageStock:
        garbage(peer_.ctl());
        garbage(peer_.play());
        break;
      case Evil::Oversize:
        if (agent_->native() && !done_) {
          std::array<std::byte, 8> h{std::byte{1},    std::byte{0},    std::byte{0x70},
                                     std::byte{0},    std::byte{0xff}, std::byte{0xff},
                                     std::byte{0xff}, std::byte{0x7f}};
          peer_.write_ctl(h);
          done_ = true;
        }
        break;
      case Evil::Truncated:
        if (agent_->native() && !done_) {
          // A Heartbeat header announcing 4 bytes, then only 2 of them.
          std::array<std::byte, 10> h{std::byte{1}, std::byte{0}, std::byte{0x70}, std::byte{0},
                                      std::byte{4}, std::byte{0}, std::byte{0},    std::byte{0},
                                      std::byte{9}, std::byte{9}};
          peer_.write_ctl(h);
          done_ = true;
        }
        break;
      case Evil::Flood: {
        size_t space = peer_.play()->buffer_space();
        if (space > 0) {
          std::vector<std::byte> junk(std::min<size_t>(space, 65536), std::byte{0x55});
          flood_bytes_ += peer_.write_pcm(junk);
        }
        break;
      }
      case Evil::NeverRead:
        if (!done_) {
          peer_.write_word(proto::StockWord::MicStart);
          done_ = true;
        }
        break;
      case Evil::ReconnectLoop:
        peer_.close();
        serve();
        break;
    }
  }

 private:
  void garbage(Channel* ch) {
    std::array<std::byte, 256> g;
    for (auto& b : g) {
      b = std::byte(rng_() & 0xff);
    }
    ch->write(g);
  }

  Evil kind_;
  QubePeer peer_;
  std::unique_ptr<NativeAgent> agent_;
  bool done_ = false;
  uint64_t flood_bytes_ = 0;
  std::mt19937 rng_{42};
};

class Adversarial : public ::testing::TestWithParam<Evil> {};

TEST_P(Adversarial, the_good_qube_keeps_playing_and_the_bad_one_stays_bounded) {
  const Evil kind = GetParam();
  DaemonHarness h("unix", "wav", {{"work", 1}, {"evil", 2}}, [](daemon::DaemonOptions& o) {
    o.session.target_fill = 100ms;  // room for a busy, sanitised test machine
    o.session.native_target_fill = 100ms;
    o.session.heartbeat_interval = 100ms;
  });
  QubePeer good(h.peer_transport(), 1);
  EvilQube evil(h.peer_transport(), kind);
  ASSERT_TRUE(good.serve());
  ASSERT_TRUE(evil.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.daemon().set_mute("evil", true).has_value());  // output = the good tone only
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s,
                      [&] {
                        good.poll();
                        evil.step();
                      }));

  ToneWriter tone;  // stock S16LE 44.1 kHz, 440 Hz at 0.3
  tone.lead = 250ms;
  auto t0 = Clock::now();
  h.run_for(2000ms, [&] {
    good.poll();
    tone.pump(good.play());
    evil.step();
  });
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();

  auto bad = h.info("evil");
  auto ok = h.info("work");
  EXPECT_EQ(ok.state, daemon::SessionState::Running);
  EXPECT_EQ(ok.counters.disconnects, 0u);
  // Bounds of the bad session, whatever it did.
  EXPECT_LE(bad.counters.playback_fill_bytes, bad.counters.playback_ring_bytes);
  EXPECT_LE(bad.counters.mic_queue_bytes, kStockFormat.bytes_for_ms(500));
  switch (kind) {
    case Evil::GarbageNative:
    case Evil::Oversize:
      EXPECT_GE(bad.counters.protocol_errors, 1u);
      break;
    case Evil::Truncated:
      EXPECT_GE(bad.counters.disconnects, 1u);  // heartbeat limit: nothing complete arrived
      break;
    case Evil::GarbageStock:
      EXPECT_GT(bad.counters.unknown_words, 0u);
      break;
    case Evil::Flood:
      // Read only as fast as the device consumes, plus one ring.
      EXPECT_EQ(bad.counters.overruns, 0u);
      EXPECT_LE(bad.counters.bytes_in,
                bad.counters.playback_ring_bytes + static_cast<uint64_t>((elapsed + 0.2) * 176400));
      break;
    case Evil::NeverRead:
      EXPECT_TRUE(bad.mic_started);
      EXPECT_EQ(bad.state, daemon::SessionState::Running);
      break;
    case Evil::ReconnectLoop:
      // Backoff 100 ms doubling: a handful of attempts in 2 s, not hundreds.
      EXPECT_LE(bad.counters.connects, 8u);
      EXPECT_GE(bad.counters.connects, 2u);
      break;
  }
  h.stop();

  auto w = read_wav(h.wav_path());
  ASSERT_TRUE(w.has_value());
  auto rms = block_rms(*w, 480);  // 10 ms blocks at 48 kHz
  size_t start = 0;
  while (start < rms.size() && rms[start] < 0.1) {
    ++start;
  }
  ASSERT_LT(start + 40, rms.size()) << "the good tone never started";
  const double expected = 0.3 / std::sqrt(2.0);
  size_t bad_blocks = 0;
  // After 200 ms of start-up, until 100 ms before the end (the daemon stop).
  for (size_t i = start + 20; i + 10 < rms.size(); ++i) {
    if (std::abs(rms[i] - expected) > 0.2 * expected) {
      ++bad_blocks;
      ADD_FAILURE() << "block " << i << " rms " << rms[i] << " (expected " << expected << ")";
      if (bad_blocks > 5) {
        break;
      }
    }
  }
  auto mid = mono(*w, (start + 20) * 480, w->frames() - 4800);
  EXPECT_NEAR(test::frequency(mid, 1, 0, 48000), 440.0, 4.0);
}

INSTANTIATE_TEST_SUITE_P(Daemon,
                         Adversarial,
                         ::testing::Values(Evil::GarbageNative,
                                           Evil::GarbageStock,
                                           Evil::Oversize,
                                           Evil::Truncated,
                                           Evil::Flood,
                                           Evil::NeverRead,
                                           Evil::ReconnectLoop),
                         [](const auto& i) { return name_of(i.param); });

}  // namespace
}  // namespace qaudio::e2e
