// Test harness for AgentSession: a session with a FakeAgentBackend running on
// its own event-loop thread, and a "daemon" side that connects to the ports
// as the audio domain would (stock or native, written from the protocol).
//
//   SessionHarness h("unix", opts);          // serves at once
//   auto d = h.connect_daemon();             // both channels open
//   auto words = d.read_words(1, 2s);        // stock control words
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <functional>
#include <thread>

#include "agent_session.hpp"
#include "agent_tone.hpp"
#include "fake_backend.hpp"
#include "qaudio/channel.hpp"
#include "qaudio/negotiation.hpp"
#include "sound_servers.hpp"

namespace qaudio::agent::test {

using namespace std::chrono_literals;

constexpr uint32_t kQube = 5;
constexpr uint32_t kAudioVm = 1;

// The audio-domain end of one connection.
struct DaemonPeer {
  std::unique_ptr<Channel> play;
  std::unique_ptr<Channel> ctl;

  // Reads exactly n bytes from a channel (or fewer at the deadline).
  static std::vector<std::byte> read_n(Channel& ch, size_t n, std::chrono::milliseconds t) {
    std::vector<std::byte> out(n);
    out.resize(read_all(ch, out, t));
    return out;
  }
  std::vector<uint32_t> read_words(size_t n, std::chrono::milliseconds t = 3000ms) {
    auto b = read_n(*ctl, n * 4, t);
    std::vector<uint32_t> w(b.size() / 4);
    std::memcpy(w.data(), b.data(), w.size() * 4);
    return w;
  }
  void write(Channel& ch, std::span<const std::byte> b) {
    ASSERT_EQ(write_all(ch, b, 3000ms), b.size());
  }
  void close() {
    if (play) {
      play->close();
    }
    if (ctl) {
      ctl->close();
    }
  }
};

class SessionHarness {
 public:
  SessionHarness(const std::string& kind,
                 AgentOptions opts,
                 StreamFormat playback = {SampleFormat::F32LE, 48000, 2},
                 StreamFormat capture = {SampleFormat::F32LE, 48000, 2})
      : dir_("agent-" + kind), backend_(playback, capture), opts_(opts) {
    spec_ = kind + ":" + dir_.path();
    opts_.domid = kQube;
    if (opts_.audiovm_domid == 0) {
      opts_.audiovm_domid = kAudioVm;
    }
    auto t = make_transport(spec_);
    EXPECT_TRUE(t) << t.error().message;
    session_ = std::make_unique<AgentSession>(loop_, backend_, std::move(*t), opts_);
    loop_.post([this] {
      auto r = session_->start();
      EXPECT_TRUE(r) << r.error().message;
    });
    thread_ = std::thread([this] { loop_.run(); });
    EXPECT_TRUE(qaudio::test::wait_until([&] { return backend_.started_.load(); }, 5000ms, 1ms));
  }
  ~SessionHarness() {
    loop_.post([this] {
      session_->stop();
      loop_.quit();
    });
    thread_.join();
  }

  // Connects both ports as the audio domain (retrying until served).
  DaemonPeer connect_daemon(uint32_t audiovm = kAudioVm) {
    DaemonPeer p;
    auto t = make_transport(spec_);
    auto play = (*t)->connect({kQube, audiovm, 4713}, 5000ms);
    EXPECT_TRUE(play) << play.error().message;
    auto ctl = (*t)->connect({kQube, audiovm, 4714}, 5000ms);
    EXPECT_TRUE(ctl) << ctl.error().message;
    if (play && ctl) {
      p.play = std::move(*play);
      p.ctl = std::move(*ctl);
    }
    return p;
  }

  // Runs fn on the loop thread and waits for it.
  void on_loop(std::function<void()> fn) {
    std::atomic<bool> done{false};
    loop_.post([&] {
      fn();
      done = true;
    });
    qaudio::test::wait_until([&] { return done.load(); }, 5000ms, 1ms);
  }

  // Plays `pcm` "as an app" in real-time-ish chunks (keeping <= 20 ms queued)
  // while `reader` drains the daemon side; stops when reader returns true.
  void stream(const std::vector<std::byte>& pcm,
              const std::function<bool()>& reader,
              std::chrono::milliseconds timeout = 10000ms) {
    const auto fmt = backend_.playback_format();
    const size_t chunk = fmt.bytes_for_ms(5);
    const size_t ahead = fmt.bytes_for_ms(20);
    size_t off = 0;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      while (off < pcm.size() && backend_.rings().playback().readable() < ahead) {
        size_t n = std::min(chunk, pcm.size() - off);
        off += backend_.play(std::span(pcm).subspan(off, n));
      }
      if (reader()) {
        return;
      }
    }
    ADD_FAILURE() << "stream: reader not satisfied before the deadline";
  }

  bool wait_phase(SessionPhase p, std::chrono::milliseconds t = 5000ms) {
    return qaudio::test::wait_until([&] { return session_->phase() == p; }, t, 2ms);
  }

  AgentSession& session() { return *session_; }
  FakeAgentBackend& backend() { return backend_; }
  EventLoop& loop() { return loop_; }

 private:
  qaudio::test::TempDir dir_;
  std::string spec_;
  EventLoop loop_;
  FakeAgentBackend backend_;
  AgentOptions opts_;
  std::unique_ptr<AgentSession> session_;
  std::thread thread_;
};

// Reads from a channel into `out` until it holds `want` bytes; polls briefly
// (a reader step for SessionHarness::stream).
inline bool read_some(Channel& ch, std::vector<std::byte>& out, size_t want) {
  pollfd p{ch.fd(), POLLIN, 0};
  poll(&p, 1, 5);
  ch.handle_events();
  std::array<std::byte, 8192> buf;
  while (out.size() < want) {
    size_t n = ch.read(std::span(buf).first(std::min(buf.size(), want - out.size())));
    if (n == 0) {
      break;
    }
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
  }
  return out.size() >= want;
}

// A native daemon on a DaemonPeer: negotiates and decodes frames.
class NativeDaemon {
 public:
  explicit NativeDaemon(DaemonPeer& p) : p_(p) {}

  // Reads the hello, writes the Welcome, waits for the framed Hello.
  bool negotiate(std::chrono::milliseconds t = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + t;
    std::array<std::byte, 1> b;
    while (neg_.state() != protocol::DaemonNegotiator::State::Native &&
           std::chrono::steady_clock::now() < deadline) {
      if (read_all(*p_.ctl, b, 50ms) == 1) {
        neg_.feed(b);
        auto r = neg_.take_reply();
        if (!r.empty()) {
          write_all(*p_.ctl, r, 1000ms);
        }
      }
      if (neg_.state() == protocol::DaemonNegotiator::State::Stock ||
          neg_.state() == protocol::DaemonNegotiator::State::Failed) {
        return false;
      }
    }
    return neg_.state() == protocol::DaemonNegotiator::State::Native;
  }

  // Next message from the agent (nullopt at the deadline).
  std::optional<protocol::Message> next(std::chrono::milliseconds t = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + t;
    auto& dec = neg_.decoder();
    for (;;) {
      auto r = dec.next();
      if (auto* m = std::get_if<protocol::Message>(&r)) {
        return *m;
      }
      if (std::get_if<protocol::DecodeError>(&r)) {
        return std::nullopt;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return std::nullopt;
      }
      auto space = dec.write_space();
      size_t n = read_all(*p_.ctl, space.first(std::min<size_t>(space.size(), 1)), 20ms);
      dec.commit(n);
    }
  }
  // Next message of type T, skipping others (heartbeats).
  template <class T>
  std::optional<T> expect(std::chrono::milliseconds t = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
      auto m = next(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
      if (!m) {
        return std::nullopt;
      }
      if (auto* v = std::get_if<T>(&*m)) {
        return *v;
      }
      seen_.push_back(*m);
    }
    return std::nullopt;
  }
  void send(const protocol::Message& m) {
    std::vector<std::byte> out;
    ASSERT_TRUE(protocol::encode(m, out));
    p_.write(*p_.ctl, out);
  }
  std::vector<protocol::Message> seen_;

 private:
  DaemonPeer& p_;
  protocol::DaemonNegotiator neg_;
};

}  // namespace qaudio::agent::test
