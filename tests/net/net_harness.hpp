// Test harness for the network channel: a client (agent side) and a server
// (daemon side) NetEndpoint talking over real UDP on loopback THROUGH an
// in-process impairment shim the test controls (random loss, random delay,
// corruption, duplication, blackout, NAT rebinding). Time is virtual: the
// test advances a microsecond clock; every datagram is handed on at its
// virtual release time and waited for with poll(), never with sleeps, so
// results do not depend on how loaded the machine is.
//
//   NetRig rig(key, key);                 // same key on both ends
//   rig.shim.loss = 0.05; rig.shim.jitter_us = 20000;
//   rig.run_until(4'000'000);             // sends a 1 kHz tone, pulls the output
//   rig.output  (server-side S16 stereo), rig.latencies_us, counters()
//   rig.send_period_us = 9997;            // the sender's clock 300 ppm fast
//   rig.on_pull = [&](NetSession& s) {...}; // after every pull (sample counters)
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "net_endpoint.hpp"
#include "net_shim.hpp"

namespace qaudio::test {

using namespace qaudio::net;

struct NetRig {
  std::unique_ptr<NetEndpoint> server, client;
  std::unique_ptr<Shim> shim;
  Key server_key{}, client_key{};
  int64_t now_us = 0;
  uint32_t frame = 480;             // samples per frame the rig sends and pulls
  int64_t pull_period_us = 10'000;  // the server's frame clock (one frame per pull)
  double send_period_us = 10'000;   // the client's frame clock (drift: != pull period)
  double next_send_us = 0;
  int64_t next_pull_us = 5'000, next_tick_us = 0;
  bool sending = true;
  bool pulling = true;  // the rig plays the server side out every 10 ms
  double tone_hz = 1000, amp = 0.5;
  uint64_t tone_pos = 0;
  std::map<uint32_t, int64_t> sent_at;                    // seq -> virtual send time
  std::vector<int16_t> output;                            // server-side playout, stereo S16
  std::vector<std::pair<int64_t, int64_t>> latencies_us;  // (pull time, send->play)
  uint32_t client_seq = 0;
  uint64_t expected_from_endpoints = 0;
  int64_t stall_until_us = 0;                // the path holds every datagram until then (a stall)
  std::function<void(NetSession&)> on_pull;  // called after every pull, if set

  NetRig(const Key& skey, const Key& ckey, CodecParams tx = {})
      : server_key(skey), client_key(ckey) {
    NetEndpoint::Options so;
    so.server = true;
    so.bind = "127.0.0.1:0";
    so.keys = {{"work", skey}};
    so.tx = {.channels = 1};
    auto s = NetEndpoint::create(so);
    EXPECT_TRUE(s) << s.error().message;
    server = std::move(*s);
    shim = std::make_unique<Shim>(server->local_port());
    make_client(tx);
  }

  void make_client(CodecParams tx = {}) {
    NetEndpoint::Options co;
    co.bind = "127.0.0.1:0";
    co.peer = "127.0.0.1:" + std::to_string(shim->client_facing_port());
    co.keys = {{"audiovm", client_key}};
    co.tx = tx;
    auto c = NetEndpoint::create(co);
    EXPECT_TRUE(c) << c.error().message;
    client = std::move(*c);
    client_seq = 0;
    sent_at.clear();
  }

  SessionCounters server_counters() { return server->session("work")->counters(); }
  SessionCounters client_counters() { return client->sessions()[0]->counters(); }
  uint64_t tx_total() {
    return server_counters().tx_packets + client_counters().tx_packets + client_gone_tx;
  }
  uint64_t client_gone_tx = 0;
  void drop_client() {
    client_gone_tx += client_counters().tx_packets;
    client.reset();
  }

  // Wait (real time, poll) until the shim has read everything the endpoints sent.
  void collect() {
    uint64_t want =
        (client ? client_counters().tx_packets : 0) + server_counters().tx_packets + client_gone_tx;
    int64_t deadline = mono_us() + 2'000'000;
    while (shim->received < want && mono_us() < deadline) {
      pollfd p[2] = {{shim->a, POLLIN, 0}, {shim->b, POLLIN, 0}};
      poll(p, 2, 100);
      shim->drain(now_us);
    }
  }

  void deliver(NetEndpoint& ep,
               const std::vector<std::byte>& bytes,
               int from_fd,
               const sockaddr* to,
               socklen_t to_len) {
    sendto(from_fd, bytes.data(), bytes.size(), 0, to, to_len);
    pollfd p{ep.fd(), POLLIN, 0};
    poll(&p, 1, 200);  // loopback delivery is immediate; this only guards a loaded kernel
    ep.handle_events(now_us);
  }

  void release() {
    if (now_us < stall_until_us) {
      return;
    }
    while (!shim->queue.empty() && shim->queue.front().release_us <= now_us) {
      auto p = std::move(shim->queue.front());
      shim->queue.pop_front();
      if (p.to_server) {
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        to.sin_port = htons(shim->server_port);
        deliver(*server, p.bytes, shim->b, reinterpret_cast<sockaddr*>(&to), sizeof to);
      } else if (client && shim->client_len) {
        deliver(*client, p.bytes, shim->a, reinterpret_cast<sockaddr*>(&shim->client_addr),
                shim->client_len);
      }
    }
  }

  void send_frame() {
    auto* s = client->sessions()[0];
    const uint32_t n = frame;
    std::vector<int16_t> f(n * 2);
    for (uint32_t i = 0; i < n; ++i) {
      double v = amp * std::sin(2 * M_PI * tone_hz * static_cast<double>(tone_pos + i) / 48000);
      f[2 * i] = f[2 * i + 1] = static_cast<int16_t>(std::lround(v * 32767));
    }
    if (client->send_audio(*s, f, now_us)) {
      sent_at[client_seq++] = now_us;
      tone_pos += n;
    }
  }

  // Advances virtual time in 500 us steps until `end_us`.
  void run_until(int64_t end_us) {
    for (; now_us < end_us; now_us += 500) {
      if (client) {
        client->handle_events(now_us);
      }
      server->handle_events(now_us);
      if (now_us >= next_tick_us) {
        if (client) {
          client->tick(now_us);
        }
        server->tick(now_us);
        next_tick_us += 10'000;
      }
      if (now_us >= next_send_us) {
        if (client && sending) {
          send_frame();
        }
        next_send_us += send_period_us;
      }
      collect();
      release();
      if (pulling && now_us >= next_pull_us) {
        auto* s = server->session("work");
        std::vector<int16_t> out(size_t{frame} * 2);
        bool playing = s->pull(out, now_us);
        output.insert(output.end(), out.begin(), out.end());
        if (playing) {
          auto it = sent_at.find(s->last_played_seq());
          if (it != sent_at.end()) {
            latencies_us.emplace_back(now_us, now_us - it->second);
          }
        }
        if (on_pull) {
          on_pull(*s);
        }
        next_pull_us += pull_period_us;
      }
    }
  }
};

}  // namespace qaudio::test
