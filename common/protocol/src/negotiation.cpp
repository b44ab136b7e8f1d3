// Negotiation state machines (agent and daemon side) and the heartbeat
// monitor of qaudio/negotiation.hpp. Pure: bytes and times in, decisions out.
#include "qaudio/negotiation.hpp"

#include <algorithm>
#include <cstring>

namespace qaudio::protocol {
namespace {

uint32_t le32(const std::array<std::byte, 4>& b) {
  return static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
         static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24;
}

// True when a word is in the stock control ranges 0x0001xxxx / 0x0002xxxx.
bool stock_range(uint32_t w) {
  return (w >> 16) == 1 || (w >> 16) == 2;
}

std::string type_name(const Message& m) {
  return std::string(to_string(type_of(m)));
}

}  // namespace

// ----------------------------------------------------------- agent side ----

AgentNegotiator::AgentNegotiator(Options o) : opt_(o) {
  decoder_.accept_versions(opt_.min_version, opt_.max_version);
}

std::array<std::byte, kHelloSize> AgentNegotiator::start(Clock::time_point now) {
  state_ = State::AwaitingWelcome;
  deadline_ = now + opt_.timeout;
  return encode_hello({opt_.min_version, opt_.max_version});
}

void AgentNegotiator::to_stock(std::string reason) {
  state_ = State::Stock;
  reason_ = std::move(reason);
}

size_t AgentNegotiator::feed(std::span<const std::byte> in) {
  size_t taken = 0;
  while (state_ == State::AwaitingWelcome && taken < in.size()) {
    taken += decoder_.feed(in.subspan(taken));
    auto r = decoder_.next();
    if (auto* e = std::get_if<DecodeError>(&r)) {
      to_stock("no native daemon: " + e->reason);
      break;
    }
    auto* m = std::get_if<Message>(&r);
    if (m == nullptr) {
      continue;  // NeedMore
    }
    auto* w = std::get_if<Welcome>(m);
    if (w == nullptr) {
      to_stock("no native daemon: first message was " + type_name(*m) + ", not welcome");
      break;
    }
    if (w->version < opt_.min_version || w->version > opt_.max_version ||
        decoder_.last_version() != w->version) {
      to_stock("welcome chose version " + std::to_string(w->version) + ", which we do not speak");
      break;
    }
    welcome_ = *w;
    decoder_.accept_versions(w->version, w->version);
    auto n = encode(Hello{opt_.capabilities}, hello_, w->version);
    hello_len_ = n ? *n : 0;
    state_ = State::Native;
  }
  return taken;
}

void AgentNegotiator::poll(Clock::time_point now) {
  if (state_ == State::AwaitingWelcome && now >= deadline_) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(opt_.timeout).count();
    to_stock("timeout: no welcome within " + std::to_string(ms) + " ms");
  }
}

// ---------------------------------------------------------- daemon side ----

DaemonNegotiator::DaemonNegotiator(Options o) : opt_(o) {}

std::span<const std::byte> DaemonNegotiator::take_reply() {
  std::span<const std::byte> r(reply_.data(), reply_len_);
  reply_len_ = 0;  // the span stays valid: reply_ is never written again
  return r;
}

void DaemonNegotiator::to_stock(const std::byte* bytes, size_t n) {
  std::memcpy(replay_.data(), bytes, n);
  replay_len_ = n;
  state_ = State::Stock;
}

size_t DaemonNegotiator::feed(std::span<const std::byte> in) {
  size_t taken = 0;
  while (taken < in.size()) {
    if (state_ == State::Stock || state_ == State::Native || state_ == State::Failed) {
      return taken;
    }
    bool framing = state_ == State::Welcomed && word_len_ == 4;
    if (!framing) {
      word_[word_len_++] = in[taken++];
      if (word_len_ < 4) {
        continue;
      }
    }
    uint32_t w = le32(word_);
    if (state_ == State::AwaitingFirstWord) {
      word_len_ = 0;
      if (w == kHelloMagic && opt_.native_enabled) {
        state_ = State::AwaitingVersionWord;
      } else {
        to_stock(word_.data(), 4);
      }
      continue;
    }
    if (state_ == State::AwaitingVersionWord) {
      word_len_ = 0;
      auto hw = parse_version_word(w);
      if (!hw) {
        to_stock(word_.data(), 4);
        continue;
      }
      uint8_t v = std::min(hw->max_version, opt_.max_version);
      if (v < std::max(hw->min_version, opt_.min_version)) {
        to_stock(word_.data(), 4);  // no common version: stay silent, serve stock
        continue;
      }
      Welcome welcome{v,
                      opt_.min_version,
                      opt_.max_version,
                      opt_.capabilities,
                      opt_.device_rate,
                      opt_.period_frames};
      auto n = encode(welcome, reply_, v);
      if (!n) {
        reason_ = "cannot build welcome: " + n.error().message;
        state_ = State::Failed;
        return taken;
      }
      reply_len_ = *n;
      version_ = v;
      decoder_.accept_versions(v, v);
      state_ = State::Welcomed;
      continue;
    }
    // Welcomed: the first word tells a late stock fallback from the framed Hello.
    if (!framing) {
      if (stock_range(w)) {
        to_stock(word_.data(), 4);  // the agent gave up waiting and speaks stock
        continue;
      }
      decoder_.feed(word_);
    } else {
      taken += decoder_.feed(in.subspan(taken));
    }
    auto r = decoder_.next();
    if (auto* e = std::get_if<DecodeError>(&r)) {
      reason_ = e->reason;
      state_ = State::Failed;
    } else if (auto* m = std::get_if<Message>(&r)) {
      if (auto* h = std::get_if<Hello>(m)) {
        hello_ = *h;
        state_ = State::Native;
      } else {
        reason_ = "first frame after welcome was " + type_name(*m) + ", expected hello";
        state_ = State::Failed;
      }
    }
  }
  return taken;
}

// ------------------------------------------------------------ heartbeats ----

void HeartbeatMonitor::start(Clock::time_point now) {
  last_sent_ = now;
  last_heard_ = now;
  seq_ = 0;
}

std::optional<Heartbeat> HeartbeatMonitor::due(Clock::time_point now) {
  if (now - last_sent_ < interval_) {
    return std::nullopt;
  }
  last_sent_ = now;
  return Heartbeat{seq_++};
}

bool HeartbeatMonitor::peer_gone(Clock::time_point now) const {
  return now - last_heard_ >= interval_ * miss_limit_;
}

Clock::time_point HeartbeatMonitor::next_deadline() const {
  return std::min(last_sent_ + interval_, last_heard_ + interval_ * miss_limit_);
}

}  // namespace qaudio::protocol
