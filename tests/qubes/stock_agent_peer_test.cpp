// Our daemon against a stock Qubes agent, written here from the protocol
// facts (docs/protocol.md §1, DESIGN.md "Stock Qubes protocol") over the
// unix channel (the socket scheme of the Qubes vchan-socket test library).
// What tests/daemon_e2e/session_test.cpp already covers (raw PCM at 44.1 kHz,
// the 12-byte three-word message, 0x00010004 and unknown words ignored,
// cork drain, odd rings, reconnect, attach/detach) is not repeated; these are
// the points it leaves open:
//   - a stock agent never receives anything it did not ask for: no Welcome,
//     no frame, no mic bytes before mic start;
//   - the 12-byte FIRST message (cork + mic start + 0x00010004) right at
//     connect, before any PCM, and PCM split at odd sizes (half frames);
//   - after the qube restarts, the new connection starts as stock Qubes
//     does: playback running (no uncork needed), mic stopped.
#include <gtest/gtest.h>

#include "e2e_support.hpp"

namespace qaudio::e2e {
namespace {

using daemon::SessionProtocol;

void tweak(daemon::DaemonOptions& o) {
  o.session.backoff_initial = 20ms;
  o.session.backoff_max = 200ms;
}

std::vector<std::byte> words(std::initializer_list<uint32_t> ws) {
  std::vector<std::byte> out;
  for (uint32_t w : ws) {
    auto b = proto::word_bytes(w);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

TEST(StockAgentPeer, nothing_reaches_a_stock_agent_before_it_starts_the_mic) {
  DaemonHarness h("unix", "null", {{"work", 3}}, tweak);
  QubePeer q(h.peer_transport(), 3);
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  // Playback starts running: PCM is consumed without an uncork, in pieces
  // that split frames and samples (odd sizes).
  ToneWriter tone;
  auto pcm = tone.make(0, 4410);
  size_t off = 0;
  for (size_t piece : {1u, 3u, 1001u, 7u, 2047u}) {
    ASSERT_EQ(q.write_pcm(std::span(pcm).subspan(off, piece)), piece);
    off += piece;
  }
  ASSERT_EQ(q.write_pcm(std::span(pcm).subspan(off)), pcm.size() - off);
  ASSERT_TRUE(h.drive([&] { return h.info("work").counters.bytes_in == pcm.size(); }, 3s,
                      [&] { q.poll(); }));
  EXPECT_FALSE(h.info("work").corked);
  // The daemon's native side waits for a hello that never comes: it must
  // stay silent on 4714 (no Welcome, no frame, no mic audio).
  h.run_for(300ms, [&] { q.poll(); });
  EXPECT_TRUE(q.ctl_in.empty()) << q.ctl_in.size() << " bytes sent to a stock agent";
  EXPECT_EQ(h.info("work").protocol, SessionProtocol::Stock);
  EXPECT_FALSE(h.info("work").mic_started);
}

TEST(StockAgentPeer, a_twelve_byte_first_message_corks_and_starts_the_mic) {
  DaemonHarness h("unix", "null", {{"work", 3}}, tweak);
  QubePeer q(h.peer_transport(), 3);
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.drive([&] { return q.open(); }, 5s, [&] { q.poll(); }));
  // The very first bytes on 4714, before any PCM: three words in one write.
  auto msg = words({0x00020000u, 0x00010001u, 0x00010004u});  // cork, mic start, ignored
  ASSERT_EQ(msg.size(), 12u);
  ASSERT_EQ(q.write_ctl(msg), 12u);
  ASSERT_TRUE(h.drive(
      [&] {
        auto i = h.info("work");
        return i.corked && i.mic_started;
      },
      3s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").protocol, SessionProtocol::Stock);
  EXPECT_EQ(h.info("work").counters.unknown_words, 0u);  // 0x00010004 is not even counted
  // Corked: PCM stays in the qube's ring. The mic (detached) is silent.
  ToneWriter tone;
  auto pcm = tone.make(0, 2205);
  ASSERT_EQ(q.write_pcm(pcm), pcm.size());
  ASSERT_TRUE(h.drive([&] { return q.ctl_in.size() >= 8820; }, 3s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").counters.bytes_in, 0u);
  EXPECT_TRUE(test::all_zero_bytes(q.ctl_in));
  // Uncork and mic stop in one 8-byte write.
  ASSERT_EQ(q.write_ctl(words({0x00020001u, 0x00010000u})), 8u);
  ASSERT_TRUE(h.drive(
      [&] {
        auto i = h.info("work");
        return i.counters.bytes_in == pcm.size() && !i.mic_started && !i.corked;
      },
      3s, [&] { q.poll(); }))
      << daemon::Daemon::format_counters(h.info("work"));
}

TEST(StockAgentPeer, a_restarted_qube_starts_again_with_playback_running_and_mic_stopped) {
  DaemonHarness h("unix", "null", {{"work", 3}}, tweak);
  QubePeer q(h.peer_transport(), 3, {4099, 4099}, {997, 997});  // odd rings
  ASSERT_TRUE(q.serve());
  ASSERT_TRUE(h.start());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  ASSERT_EQ(q.write_ctl(words({0x00020000u, 0x00010001u})), 8u);  // cork + mic start
  ASSERT_TRUE(h.drive([&] { return h.info("work").mic_started && h.info("work").corked; }, 3s,
                      [&] { q.poll(); }));
  ASSERT_TRUE(h.drive([&] { return !q.ctl_in.empty(); }, 3s, [&] { q.poll(); }));

  // The qube restarts (its agent too): new channels, new ring sizes.
  q.close();
  ASSERT_TRUE(h.drive([&] { return !h.running("work"); }, 5s));
  QubePeer q2(h.peer_transport(), 3, {8191, 8191}, {4093, 4093});
  ASSERT_TRUE(q2.serve());
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q2.poll(); }));
  auto i = h.info("work");
  EXPECT_FALSE(i.corked);
  EXPECT_FALSE(i.mic_started);
  EXPECT_EQ(i.counters.connects, 2u);
  ToneWriter tone;
  auto pcm = tone.make(0, 1500);  // fits the new 8191-byte ring
  ASSERT_EQ(q2.write_pcm(pcm), pcm.size());
  ASSERT_TRUE(h.drive([&] { return h.info("work").counters.bytes_in == pcm.size(); }, 3s,
                      [&] { q2.poll(); }));
  h.run_for(200ms, [&] { q2.poll(); });
  EXPECT_TRUE(q2.ctl_in.empty());  // mic stopped until the new agent asks
  ASSERT_EQ(q2.write_ctl(words({0x00010001u})), 4u);
  ASSERT_TRUE(h.drive([&] { return q2.ctl_in.size() >= 17640; }, 3s, [&] { q2.poll(); }));
  EXPECT_EQ(q2.ctl_in.size() % 4, 0u);
}

}  // namespace
}  // namespace qaudio::e2e
