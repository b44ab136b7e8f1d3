// The network channel's State packet (docs/protocol.md 11.3): the audio
// domain's view of a remote qube (mic gate, mute, volume, playback latency)
// reaches the qube side, a change of flags or volume is sent at once, a
// latency that moved rides the next keep-alive, a lost change is repaired,
// and every malformed State payload is refused without touching what the
// receiver knew.
//
//   ctest -R NetState
#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "net_harness.hpp"
#include "net_wire.hpp"

namespace qaudio::test {
namespace {

std::array<std::byte, kStateSize> bytes_of(const StatePayload& st) {
  std::array<std::byte, kStateSize> b{};
  write_state(st, b);
  return b;
}

TEST(NetState, RoundTripsEveryField) {
  StatePayload st{kStateMicAttached | kStateMicAllowed | kStateMuted, 123'456, 1500};
  auto b = bytes_of(st);
  auto back = parse_state(b);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, st);
  // Little-endian layout: flags, latency, volume, six zero bytes.
  EXPECT_EQ(static_cast<uint8_t>(b[0]), 0x0e);
  EXPECT_EQ(static_cast<uint8_t>(b[4]), 0x40);  // 123456 = 0x01e240
  EXPECT_EQ(static_cast<uint8_t>(b[5]), 0xe2);
  EXPECT_EQ(static_cast<uint8_t>(b[6]), 0x01);
  EXPECT_EQ(static_cast<uint8_t>(b[8]), 0xdc);  // 1500 = 0x05dc
  EXPECT_EQ(static_cast<uint8_t>(b[9]), 0x05);
  for (size_t i = 10; i < kStateSize; ++i) {
    EXPECT_EQ(b[i], std::byte{0}) << i;
  }
}

TEST(NetState, MalformedPayloadsAreRefusedWithAReason) {
  const auto good = bytes_of(StatePayload{kStateMicWanted, 0, 0});
  struct Case {
    const char* what;
    size_t at;
    uint8_t value;
  };
  for (const Case& c : {Case{"unknown flag", 0, 0x10}, Case{"unknown high flag", 3, 0x80},
                        Case{"reserved byte", 10, 1}, Case{"last reserved byte", 15, 0xff}}) {
    auto b = good;
    b[c.at] = static_cast<std::byte>(c.value);
    auto r = parse_state(b);
    EXPECT_FALSE(r) << c.what;
    if (!r) {
      EXPECT_NE(r.error().message.find("state payload"), std::string::npos) << c.what;
    }
  }
  auto b = bytes_of(StatePayload{0, kStateMaxLatencyUs, 0});
  EXPECT_TRUE(parse_state(b));
  b = bytes_of(StatePayload{0, kStateMaxLatencyUs + 1, 0});
  EXPECT_FALSE(parse_state(b));
  b = bytes_of(StatePayload{0, 0, kStateMaxVolumePermille + 1});
  EXPECT_FALSE(parse_state(b));
  std::array<std::byte, kStateSize - 8> old_size{};  // the 8-byte State of version 1
  EXPECT_FALSE(parse_state(old_size));
  std::array<std::byte, kStateSize + 1> longer{};
  EXPECT_FALSE(parse_state(longer));
}

TEST(NetState, TheAudioDomainsViewReachesTheQubeSide) {
  Key k = generate_key();
  NetRig rig(k, k);
  rig.run_until(500'000);
  auto* srv = rig.server->session("work");
  auto* cli = rig.client->sessions()[0];
  ASSERT_NE(srv, nullptr);
  EXPECT_EQ(cli->peer_state(rig.now_us), StatePayload{});

  // Flags and volume: sent at once.
  StatePayload st{kStateMicAttached | kStateMicAllowed, 41'000, 800};
  rig.server->set_state(*srv, st);
  rig.run_until(rig.now_us + 20'000);
  EXPECT_EQ(cli->peer_state(rig.now_us), st);

  // A latency that moved alone waits for the next keep-alive (<= 250 ms).
  StatePayload later = st;
  later.latency_us = 52'000;
  rig.server->set_state(*srv, later);
  rig.run_until(rig.now_us + 400'000);
  EXPECT_EQ(cli->peer_state(rig.now_us).latency_us, 52'000u);

  // Mute and volume lost on the way are repaired by the keep-alives.
  StatePayload muted = later;
  muted.flags |= kStateMuted;
  muted.volume_permille = 1200;
  rig.shim->blackout = true;
  rig.server->set_state(*srv, muted);
  rig.run_until(rig.now_us + 20'000);
  rig.shim->blackout = false;
  EXPECT_EQ(cli->peer_state(rig.now_us), later);
  rig.run_until(rig.now_us + 400'000);
  EXPECT_EQ(cli->peer_state(rig.now_us), muted);

  // The other direction still carries the agent's mic flag only.
  rig.client->set_state(*cli, kStateMicWanted);
  rig.run_until(rig.now_us + 20'000);
  EXPECT_EQ(srv->peer_state(rig.now_us), (StatePayload{kStateMicWanted, 0, 0}));
}

}  // namespace
}  // namespace qaudio::test
