// Shared fixture for the channel tests: a private temp directory, a transport
// ("unix" or "shm") over it, and helpers that pump both ends of a pair until a
// condition holds (polling with a deadline, never sleeping to synchronise).
//
//   class ChannelShm : public ChannelFixture { ... kind() returns "shm" };
//   auto [srv, cli] = open_pair({4096, 4096});
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qaudio/channel.hpp"

namespace qaudio::testing {

using namespace std::chrono_literals;
using ChannelPtr = std::unique_ptr<Channel>;

inline std::vector<std::byte> pattern(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = std::byte(x >> 24);
  }
  return v;
}

// Polls the given channels' fds (handle_events() on each wake-up) until
// `done()` or the deadline. Returns done().
inline bool pump_until(std::initializer_list<Channel*> chans,
                       const std::function<bool()>& done,
                       std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (auto* c : chans) {
      c->handle_events();
    }
    if (done()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::vector<pollfd> p;
    for (auto* c : chans) {
      p.push_back({c->fd(), POLLIN, 0});
    }
    ::poll(p.data(), p.size(), 50);
  }
}

// Waits until `ch.fd()` polls readable; true when it did before the deadline.
inline bool fd_wakes(Channel& ch, std::chrono::milliseconds timeout = 5s) {
  pollfd p{ch.fd(), POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

class ChannelFixture : public ::testing::Test {
 public:
  virtual std::string kind() const = 0;

  void SetUp() override {
    char tmpl[] = "/tmp/qaudio-chan.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto t = make_transport(kind() + ":" + dir_);
    ASSERT_TRUE(t) << t.error().message;
    transport_ = std::move(*t);
  }

  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  ChannelPtr serve(RingSizes sizes = {}) {
    auto s = transport_->serve(addr_, sizes);
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }

  // A connected pair, both Open: the client connects with a zero timeout (one
  // attempt) and both ends are pumped until their handshakes complete.
  std::pair<ChannelPtr, ChannelPtr> open_pair(RingSizes sizes = {}) {
    ChannelPtr srv = serve(sizes);
    if (!srv) {
      return {};
    }
    auto c = transport_->connect(addr_, 0ms);
    EXPECT_TRUE(c) << c.error().message;
    if (!c) {
      return {};
    }
    ChannelPtr cli = std::move(*c);
    bool ok = pump_until({srv.get(), cli.get()}, [&] { return srv->is_open() && cli->is_open(); });
    EXPECT_TRUE(ok) << "server " << to_string(srv->state()) << ", client "
                    << to_string(cli->state());
    return {std::move(srv), std::move(cli)};
  }

  std::string dir_;
  std::unique_ptr<Transport> transport_;
  ChannelAddress addr_{5, 0, 4713};
};

class ChannelUnix : public ChannelFixture {
 public:
  std::string kind() const override { return "unix"; }
};

class ChannelShm : public ChannelFixture {
 public:
  std::string kind() const override { return "shm"; }
};

}  // namespace qaudio::testing
