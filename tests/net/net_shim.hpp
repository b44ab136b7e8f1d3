// In-process impairment shim for the network channel (tests and bench): a
// UDP relay on loopback between a client and a server endpoint that drops,
// delays (jitter, so also reorders), corrupts, duplicates or blacks out
// datagrams, and can change its server-facing source port (NAT rebinding).
// The owner calls drain(now) to read what endpoints sent and forwards
// queued datagrams whose release time has come.
//
//   Shim shim(server_port);  shim.loss = 0.05;  shim.jitter_us = 20000;
//   client peer = 127.0.0.1:shim.client_facing_port()
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <random>
#include <vector>

namespace qaudio::test {

inline int udp_socket_on_loopback() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("net shim: udp socket on 127.0.0.1");
    std::abort();
  }
  return fd;
}

inline uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// client <-> [a | shim | b] <-> server
struct Shim {
  double loss = 0;            // probability a datagram is dropped (each direction)
  int64_t jitter_us = 0;      // extra delay uniform in [0, jitter_us]
  int64_t base_delay_us = 0;  // fixed one-way delay
  bool blackout = false;      // drop everything
  bool corrupt = false;       // flip a bit in every client->server datagram
  bool duplicate = false;     // deliver client->server datagrams twice
  uint64_t received = 0, dropped = 0;

  int a = -1, b = -1;
  uint16_t server_port = 0;
  sockaddr_storage client_addr{};
  socklen_t client_len = 0;
  std::mt19937_64 rng{12345};

  struct Pending {
    int64_t release_us;
    bool to_server;
    std::vector<std::byte> bytes;
  };
  std::deque<Pending> queue;

  explicit Shim(uint16_t server) : server_port(server) {
    a = udp_socket_on_loopback();
    b = udp_socket_on_loopback();
  }
  ~Shim() {
    ::close(a);
    ::close(b);
  }
  uint16_t client_facing_port() const { return port_of(a); }
  // NAT rebinding: the server now sees the client from a new source port.
  void rebind() {
    ::close(b);
    b = udp_socket_on_loopback();
  }
  // Reads what the endpoints sent; returns the number of datagrams.
  size_t drain(int64_t now_us) {
    size_t n = 0;
    for (int fd : {a, b}) {
      for (;;) {
        std::byte buf[2048];
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        ssize_t r = recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (r < 0) {
          break;
        }
        ++n;
        ++received;
        bool to_server = fd == a;
        if (to_server) {
          client_addr = from;
          client_len = len;
        }
        std::uniform_real_distribution<double> u(0, 1);
        if (blackout || u(rng) < loss) {
          ++dropped;
          continue;
        }
        int64_t delay = base_delay_us;
        if (jitter_us > 0) {
          delay += std::uniform_int_distribution<int64_t>(0, jitter_us)(rng);
        }
        Pending p{now_us + delay, to_server, std::vector<std::byte>(buf, buf + r)};
        if (to_server && corrupt) {
          p.bytes[p.bytes.size() / 2] ^= std::byte{0x01};
        }
        // Keep the queue ordered by release time (reordering is what jitter does).
        auto it = queue.end();
        while (it != queue.begin() && std::prev(it)->release_us > p.release_us) {
          --it;
        }
        if (to_server && duplicate) {
          it = queue.insert(it, p);
          ++it;
        }
        queue.insert(it, std::move(p));
      }
    }
    return n;
  }
};

}  // namespace qaudio::test
