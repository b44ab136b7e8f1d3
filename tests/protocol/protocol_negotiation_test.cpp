// Negotiation state machines driven without channels or real time:
// native<->native, native agent<->stock daemon (timeout fallback on an
// injected clock), stock agent<->native daemon, and the edge cases.
#include <gtest/gtest.h>

#include "qaudio/negotiation.hpp"

namespace qaudio::protocol {
namespace {

using namespace std::chrono_literals;
using State = AgentNegotiator::State;
using DState = DaemonNegotiator::State;

const Clock::time_point t0{};

std::vector<std::byte> to_vec(std::span<const std::byte> s) {
  return {s.begin(), s.end()};
}

// Feeds `in` to the daemon `chunk` bytes at a time; returns the bytes it did
// not take (they belong to the next stage).
std::vector<std::byte> feed_daemon(DaemonNegotiator& d,
                                   std::span<const std::byte> in,
                                   size_t chunk) {
  size_t pos = 0;
  while (pos < in.size()) {
    size_t n = std::min(chunk, in.size() - pos);
    size_t took = d.feed(in.subspan(pos, n));
    pos += took;
    if (took < n) {
      break;
    }
  }
  return to_vec(in.subspan(pos));
}

TEST(ProtocolNegotiation, NativeAgentAndNativeDaemonAgreeOnVersionOne) {
  for (size_t chunk : {1, 3, 8, 64}) {
    SCOPED_TRACE(chunk);
    AgentNegotiator agent({.timeout = 500ms});
    DaemonNegotiator daemon({.device_rate = 48000, .period_frames = 256});
    auto hello = agent.start(t0);
    EXPECT_EQ(agent.state(), State::AwaitingWelcome);
    EXPECT_EQ(agent.deadline(), t0 + 500ms);

    EXPECT_TRUE(feed_daemon(daemon, hello, chunk).empty());
    ASSERT_EQ(daemon.state(), DState::Welcomed);
    auto reply = to_vec(daemon.take_reply());
    EXPECT_TRUE(daemon.take_reply().empty());  // sent once
    ASSERT_EQ(reply.size(), kFrameHeaderSize + 16);

    size_t pos = 0;
    while (pos < reply.size()) {
      pos += agent.feed(std::span(reply).subspan(pos, std::min(chunk, reply.size() - pos)));
    }
    ASSERT_EQ(agent.state(), State::Native);
    EXPECT_EQ(agent.version(), 1);
    EXPECT_EQ(agent.welcome()->device_rate, 48000u);
    EXPECT_EQ(agent.welcome()->period_frames, 256u);

    // The agent's framed Hello, then its first native message, in one write.
    auto stream = to_vec(agent.hello_frame());
    ASSERT_TRUE(encode(PlaybackFormat{{SampleFormat::F32LE, 48000, 2}}, stream));
    auto rest = feed_daemon(daemon, stream, chunk);
    ASSERT_EQ(daemon.state(), DState::Native);
    EXPECT_EQ(daemon.version(), 1);
    EXPECT_EQ(daemon.hello()->capabilities, kCapAll);
    daemon.decoder().feed(rest);
    auto r = daemon.decoder().next();
    ASSERT_TRUE(std::holds_alternative<Message>(r));
    EXPECT_EQ(std::get<Message>(r), (Message{PlaybackFormat{{SampleFormat::F32LE, 48000, 2}}}));
  }
}

TEST(ProtocolNegotiation, BytesAfterTheWelcomeStayInTheAgentsDecoder) {
  AgentNegotiator agent;
  DaemonNegotiator daemon;
  daemon.feed(agent.start(t0));
  auto stream = to_vec(daemon.take_reply());
  ASSERT_TRUE(encode(VolumeState{700, false}, stream));
  EXPECT_EQ(agent.feed(stream), stream.size());
  ASSERT_EQ(agent.state(), State::Native);
  auto r = agent.decoder().next();
  ASSERT_TRUE(std::holds_alternative<Message>(r));
  EXPECT_EQ(std::get<Message>(r), (Message{VolumeState{700, false}}));
}

TEST(ProtocolNegotiation, NativeAgentFallsBackToStockAfterTheTimeout) {
  AgentNegotiator agent({.timeout = 200ms});
  agent.start(t0);
  // A stock daemon ignores the hello and sends nothing on 4714.
  agent.poll(t0 + 199ms);
  EXPECT_EQ(agent.state(), State::AwaitingWelcome);
  agent.poll(t0 + 200ms);
  EXPECT_EQ(agent.state(), State::Stock);
  EXPECT_EQ(agent.fallback_reason(), "timeout: no welcome within 200 ms");
  // Late bytes are not taken.
  std::vector<std::byte> late;
  ASSERT_TRUE(encode(Welcome{}, late));
  EXPECT_EQ(agent.feed(late), 0u);
  EXPECT_EQ(agent.state(), State::Stock);
}

TEST(ProtocolNegotiation, DefaultTimeoutIsFiveHundredMilliseconds) {
  AgentNegotiator agent;
  agent.start(t0);
  EXPECT_EQ(agent.deadline(), t0 + 500ms);
}

TEST(ProtocolNegotiation, AgentFallsBackWhenTheDaemonSendsSomethingElse) {
  // Raw PCM from a daemon that is not ours: not a frame.
  AgentNegotiator agent;
  agent.start(t0);
  std::vector<std::byte> pcm(64, std::byte{0x7f});
  agent.feed(pcm);
  EXPECT_EQ(agent.state(), State::Stock);
  EXPECT_NE(agent.fallback_reason().find("no native daemon"), std::string_view::npos);

  // A valid frame that is not a Welcome.
  AgentNegotiator agent2;
  agent2.start(t0);
  std::vector<std::byte> hb;
  ASSERT_TRUE(encode(Heartbeat{1}, hb));
  agent2.feed(hb);
  EXPECT_EQ(agent2.state(), State::Stock);
  EXPECT_EQ(agent2.fallback_reason(), "no native daemon: first message was heartbeat, not welcome");
}

TEST(ProtocolNegotiation, StockAgentIsServedStockAndItsFirstWordIsReplayed) {
  DaemonNegotiator daemon;
  // The 12-byte initial message of three stock words.
  std::vector<std::byte> in;
  for (uint32_t w : {0x00010004u, 0x00020001u, 0x00010001u}) {
    auto b = word_bytes(w);
    in.insert(in.end(), b.begin(), b.end());
  }
  auto rest = feed_daemon(daemon, in, 5);
  ASSERT_EQ(daemon.state(), DState::Stock);
  EXPECT_TRUE(daemon.take_reply().empty());  // a stock agent never sees a framed byte
  StockControlDecoder stock;
  std::vector<uint32_t> got;
  auto replay = daemon.replay();
  while (auto w = stock.next(replay)) {
    got.push_back(*w);
  }
  std::span<const std::byte> tail(rest);
  while (auto w = stock.next(tail)) {
    got.push_back(*w);
  }
  EXPECT_EQ(got, (std::vector<uint32_t>{0x00010004, 0x00020001, 0x00010001}));
}

TEST(ProtocolNegotiation, DaemonWithNativeDisabledServesANativeAgentStock) {
  DaemonNegotiator daemon({.native_enabled = false});
  AgentNegotiator agent;
  daemon.feed(agent.start(t0));
  EXPECT_EQ(daemon.state(), DState::Stock);
  EXPECT_TRUE(daemon.take_reply().empty());
  agent.poll(t0 + 1s);
  EXPECT_EQ(agent.state(), State::Stock);
}

TEST(ProtocolNegotiation, NoCommonVersionMeansSilentStock) {
  DaemonNegotiator daemon({.min_version = 1, .max_version = 1});
  AgentNegotiator agent({.min_version = 2, .max_version = 3});
  auto hello = agent.start(t0);
  daemon.feed(hello);
  EXPECT_EQ(daemon.state(), DState::Stock);
  EXPECT_TRUE(daemon.take_reply().empty());
}

TEST(ProtocolNegotiation, MalformedVersionWordMeansStockAndTheWordIsReplayed) {
  DaemonNegotiator daemon;
  std::vector<std::byte> in;
  for (uint32_t w : {kHelloMagic, 0x00020000u}) {  // magic, then cork
    auto b = word_bytes(w);
    in.insert(in.end(), b.begin(), b.end());
  }
  daemon.feed(in);
  ASSERT_EQ(daemon.state(), DState::Stock);
  auto replay = daemon.replay();
  StockControlDecoder stock;
  EXPECT_EQ(stock.next(replay), 0x00020000u);
}

TEST(ProtocolNegotiation, AgentThatGaveUpBeforeTheWelcomeTurnsTheDaemonStock) {
  // The daemon answered, but the agent's timeout had passed: it speaks stock.
  DaemonNegotiator daemon;
  AgentNegotiator agent({.timeout = 10ms});
  daemon.feed(agent.start(t0));
  ASSERT_EQ(daemon.state(), DState::Welcomed);
  agent.poll(t0 + 10ms);
  ASSERT_EQ(agent.state(), State::Stock);
  auto mic = word_bytes(StockWord::MicStart);
  daemon.feed(mic);
  ASSERT_EQ(daemon.state(), DState::Stock);
  auto replay = daemon.replay();
  StockControlDecoder stock;
  EXPECT_EQ(stock.next(replay), 0x00010001u);
}

TEST(ProtocolNegotiation, AFirstFrameOtherThanHelloFailsTheDaemon) {
  DaemonNegotiator daemon;
  daemon.feed(encode_hello({}));
  std::vector<std::byte> cork;
  ASSERT_TRUE(encode(Cork{}, cork));
  daemon.feed(cork);
  EXPECT_EQ(daemon.state(), DState::Failed);
  EXPECT_EQ(daemon.failure(), "first frame after welcome was cork, expected hello");

  DaemonNegotiator daemon2;
  daemon2.feed(encode_hello({}));
  std::vector<std::byte> junk(8, std::byte{0x33});
  daemon2.feed(junk);
  EXPECT_EQ(daemon2.state(), DState::Failed);
  EXPECT_NE(daemon2.failure().find("version 51"), std::string_view::npos);
}

// ------------------------------------------------------------ heartbeats ----

TEST(ProtocolHeartbeat, SendsOnePerIntervalWithIncreasingSequence) {
  HeartbeatMonitor hb(1s, 3);
  hb.start(t0);
  EXPECT_FALSE(hb.due(t0 + 999ms));
  auto a = hb.due(t0 + 1s);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->seq, 0u);
  EXPECT_FALSE(hb.due(t0 + 1500ms));
  auto b = hb.due(t0 + 2s);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->seq, 1u);
}

TEST(ProtocolHeartbeat, PeerIsGoneAfterMissLimitSilentIntervals) {
  HeartbeatMonitor hb(1s, 3);
  hb.start(t0);
  EXPECT_FALSE(hb.peer_gone(t0 + 2999ms));
  hb.on_peer_message(t0 + 2s);
  EXPECT_FALSE(hb.peer_gone(t0 + 4999ms));
  EXPECT_TRUE(hb.peer_gone(t0 + 5s));
  EXPECT_EQ(hb.next_deadline(), t0 + 1s);
}

}  // namespace
}  // namespace qaudio::protocol
