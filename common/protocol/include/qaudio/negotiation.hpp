// Native-protocol negotiation on port 4714 and heartbeats, as pure state
// machines: no channels, no clocks of their own (the caller passes `now`),
// so tests drive them byte by byte. docs/protocol.md has the diagrams.
//
// Agent:                                   Daemon:
//   AgentNegotiator a({.timeout = 500ms});   DaemonNegotiator d({...device...});
//   write(a.start(now));                     size_t used = d.feed(bytes);
//   a.feed(bytes_from_4714); a.poll(now);    write(d.take_reply());
//   a.state(): Native -> write(a.hello_frame())  d.state(): Stock -> stock decoder gets
//              Stock  -> speak stock                 d.replay() then bytes[used..]
//                                                     Native -> d.decoder() holds the rest
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "qaudio/protocol.hpp"

namespace qaudio::protocol {

using Clock = std::chrono::steady_clock;

inline constexpr std::chrono::milliseconds kDefaultNegotiationTimeout{500};

// ----------------------------------------------------------- agent side ----

class AgentNegotiator {
 public:
  enum class State {
    Idle,             // start() not called
    AwaitingWelcome,  // hello sent, deadline armed
    Native,           // Welcome received: send hello_frame(), then speak native
    Stock,            // timeout, or the daemon sent something other than a Welcome
  };
  struct Options {
    std::chrono::nanoseconds timeout = kDefaultNegotiationTimeout;
    uint8_t min_version = kMinProtocolVersion;
    uint8_t max_version = kProtocolVersion;
    uint32_t capabilities = kCapAll;
  };

  AgentNegotiator() : AgentNegotiator(Options{}) {}
  explicit AgentNegotiator(Options o);

  // Returns the 8 hello bytes to write on 4714 and arms the deadline.
  std::array<std::byte, kHelloSize> start(Clock::time_point now);
  // Bytes read from 4714 while AwaitingWelcome; returns the count taken.
  // Bytes after the Welcome stay in decoder() for the native session; once
  // Native, give any bytes not taken to decoder().feed(). In Stock, drop them.
  size_t feed(std::span<const std::byte> in);
  // Falls back to Stock once the deadline has passed.
  void poll(Clock::time_point now);

  State state() const { return state_; }
  Clock::time_point deadline() const { return deadline_; }
  const std::optional<Welcome>& welcome() const { return welcome_; }
  uint8_t version() const { return welcome_ ? welcome_->version : 0; }
  // Why it fell back to stock (empty while not Stock, "timeout" on timeout).
  std::string_view fallback_reason() const { return reason_; }
  // The framed Hello to send once Native (encoded with the chosen version).
  std::span<const std::byte> hello_frame() const { return {hello_.data(), hello_len_}; }
  FrameDecoder& decoder() { return decoder_; }

 private:
  void to_stock(std::string reason);

  Options opt_;
  State state_ = State::Idle;
  Clock::time_point deadline_{};
  std::optional<Welcome> welcome_;
  FrameDecoder decoder_;
  std::string reason_;
  std::array<std::byte, kFrameHeaderSize + 4> hello_{};
  size_t hello_len_ = 0;
};

// ---------------------------------------------------------- daemon side ----

class DaemonNegotiator {
 public:
  enum class State {
    AwaitingFirstWord,    // nothing decided yet
    AwaitingVersionWord,  // saw kHelloMagic
    Welcomed,             // Welcome sent; waiting for the agent's framed Hello
    Native,               // got Hello: decoder() carries the session
    Stock,                // stock session: replay() + the rest go to a stock decoder
    Failed,               // protocol error after the Welcome: close the connection
  };
  struct Options {
    bool native_enabled = true;  // false: every agent is served stock
    uint8_t min_version = kMinProtocolVersion;
    uint8_t max_version = kProtocolVersion;
    uint32_t capabilities = kCapAll;
    uint32_t device_rate = 48000;
    uint32_t period_frames = 480;
  };

  DaemonNegotiator() : DaemonNegotiator(Options{}) {}
  explicit DaemonNegotiator(Options o);

  // Bytes read from 4714 (qube -> audio domain). Returns the count taken;
  // once the state is Stock/Native/Failed it takes nothing more.
  size_t feed(std::span<const std::byte> in);

  State state() const { return state_; }
  // The Welcome frame to write, once (empty otherwise).
  std::span<const std::byte> take_reply();
  // Stock: bytes already taken that belong to the stock control stream.
  std::span<const std::byte> replay() const { return {replay_.data(), replay_len_}; }
  const std::optional<Hello>& hello() const { return hello_; }
  uint8_t version() const { return version_; }
  std::string_view failure() const { return reason_; }
  FrameDecoder& decoder() { return decoder_; }

 private:
  void to_stock(const std::byte* bytes, size_t n);

  Options opt_;
  State state_ = State::AwaitingFirstWord;
  std::array<std::byte, 4> word_{};
  size_t word_len_ = 0;
  std::array<std::byte, 8> replay_{};
  size_t replay_len_ = 0;
  std::array<std::byte, kFrameHeaderSize + 16> reply_{};
  size_t reply_len_ = 0;
  uint8_t version_ = 0;
  std::optional<Hello> hello_;
  FrameDecoder decoder_;
  std::string reason_;
};

// ------------------------------------------------------------ heartbeats ----

// Sends a Heartbeat every `interval`; the peer is gone after `miss_limit`
// intervals without any message from it (any message counts, not only
// heartbeats).
class HeartbeatMonitor {
 public:
  explicit HeartbeatMonitor(std::chrono::nanoseconds interval = std::chrono::seconds(1),
                            unsigned miss_limit = 3)
      : interval_(interval), miss_limit_(miss_limit) {}

  void start(Clock::time_point now);
  void on_peer_message(Clock::time_point now) { last_heard_ = now; }
  // A heartbeat to send now, or nullopt when none is due.
  std::optional<Heartbeat> due(Clock::time_point now);
  bool peer_gone(Clock::time_point now) const;
  // The earliest time due() or peer_gone() can change: a poll timeout.
  Clock::time_point next_deadline() const;

 private:
  std::chrono::nanoseconds interval_;
  unsigned miss_limit_;
  Clock::time_point last_sent_{};
  Clock::time_point last_heard_{};
  uint32_t seq_ = 0;
};

}  // namespace qaudio::protocol
