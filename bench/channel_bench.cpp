// Channel benchmarks: streaming throughput (4 KiB chunks, a writer thread to a
// reader thread) and round-trip wake-up latency (4-byte ping-pong; reported as
// the median one-way time, RTT/2) for the shm and unix transports against a
// plain pipe measured in the same run. Both ends use the event-loop pattern
// (poll the fd, handle_events, then read/write without blocking); the pipe
// baseline polls and reads/writes non-blocking the same way.
//
//   build/bench/qaudio-bench --benchmark_filter=Channel
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "qaudio/channel.hpp"

namespace {

using namespace std::chrono_literals;
using qaudio::Channel;

constexpr size_t kChunk = 4096;
constexpr size_t kPerIteration = 8 << 20;  // bytes streamed per benchmark iteration
constexpr size_t kRing = 64 << 10;  // default ring / socket buffer / pipe size (a pipe's default)

// One direction of a byte stream, polled like an event loop would.
struct Sink {
  virtual ~Sink() = default;
  virtual size_t put(const std::byte* p, size_t n) = 0;  // non-blocking
  virtual void wait_room() = 0;                          // poll until writable again
};
struct Source {
  virtual ~Source() = default;
  virtual size_t get(std::byte* p, size_t n) = 0;
  virtual void wait_data() = 0;
};

struct ChannelEnd : Sink, Source {
  explicit ChannelEnd(Channel& c) : ch(c) {}
  size_t put(const std::byte* p, size_t n) override { return ch.write({p, n}); }
  size_t get(std::byte* p, size_t n) override { return ch.read({p, n}); }
  void wait_room() override {
    if (ch.buffer_space() == 0) {  // also asks the reader for a wake-up
      wait();
    }
  }
  void wait_data() override {
    if (ch.data_ready() == 0) {  // also asks the writer for a wake-up
      wait();
    }
  }
  void wait() {
    pollfd p{ch.fd(), POLLIN, 0};
    ::poll(&p, 1, 1000);
    ch.handle_events();
  }
  Channel& ch;
};

struct PipeEnd : Sink, Source {
  PipeEnd(int rfd, int wfd) : r(rfd), w(wfd) {}
  size_t put(const std::byte* p, size_t n) override {
    ssize_t k = ::write(w, p, n);
    return k > 0 ? static_cast<size_t>(k) : 0;
  }
  size_t get(std::byte* p, size_t n) override {
    ssize_t k = ::read(r, p, n);
    return k > 0 ? static_cast<size_t>(k) : 0;
  }
  void wait_room() override {
    pollfd p{w, POLLOUT, 0};
    ::poll(&p, 1, 1000);
  }
  void wait_data() override {
    pollfd p{r, POLLIN, 0};
    ::poll(&p, 1, 1000);
  }
  int r, w;
};

void send_all(Sink& s, const std::byte* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    size_t k = s.put(p + done, n - done);
    done += k;
    if (k == 0) {
      s.wait_room();
    }
  }
}

void recv_all(Source& s, std::byte* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    size_t k = s.get(p + done, n - done);
    done += k;
    if (k == 0) {
      s.wait_data();
    }
  }
}

// A connected channel pair over a private directory.
struct ChannelPair {
  explicit ChannelPair(const std::string& kind, size_t ring = kRing) {
    char tmpl[] = "/tmp/qaudio-bench.XXXXXX";
    dir = ::mkdtemp(tmpl);
    auto t = qaudio::make_transport(kind + ":" + dir);
    if (!t) {
      error = t.error().message;
      return;
    }
    transport = std::move(*t);
    qaudio::ChannelAddress addr{7, 0, 4713};
    auto s = transport->serve(addr, {ring, ring});
    if (!s) {
      error = s.error().message;
      return;
    }
    server = std::move(*s);
    auto c = transport->connect(addr, 0ms);
    if (!c) {
      error = c.error().message;
      return;
    }
    client = std::move(*c);
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!(server->is_open() && client->is_open()) &&
           std::chrono::steady_clock::now() < deadline) {
      pollfd p[2] = {{server->fd(), POLLIN, 0}, {client->fd(), POLLIN, 0}};
      ::poll(p, 2, 50);
      server->handle_events();
      client->handle_events();
    }
    if (!server->is_open() || !client->is_open()) {
      error = "channel pair did not open";
    }
  }
  ~ChannelPair() {
    server.reset();
    client.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string dir, error;
  std::unique_ptr<qaudio::Transport> transport;
  std::unique_ptr<Channel> server, client;
};

struct Pipes {
  explicit Pipes(size_t ring = kRing) {
    int a[2], b[2];
    if (::pipe2(a, O_NONBLOCK | O_CLOEXEC) != 0 || ::pipe2(b, O_NONBLOCK | O_CLOEXEC) != 0) {
      std::abort();
    }
    ::fcntl(a[1], F_SETPIPE_SZ, static_cast<int>(ring));
    ::fcntl(b[1], F_SETPIPE_SZ, static_cast<int>(ring));
    std::memcpy(fwd, a, sizeof(a));
    std::memcpy(back, b, sizeof(b));
  }
  ~Pipes() {
    for (int fd : {fwd[0], fwd[1], back[0], back[1]}) {
      ::close(fd);
    }
  }
  int fwd[2], back[2];
};

void stream(benchmark::State& state, Sink& tx, Source& rx) {
  std::vector<std::byte> out(kChunk, std::byte{0x5a});
  std::vector<std::byte> in(kChunk);
  for (auto _ : state) {
    std::thread reader([&] {
      size_t got = 0;
      while (got < kPerIteration) {
        size_t k = rx.get(in.data(), in.size());
        got += k;
        if (k == 0) {
          rx.wait_data();
        }
      }
    });
    for (size_t sent = 0; sent < kPerIteration; sent += kChunk) {
      send_all(tx, out.data(), kChunk);
    }
    reader.join();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPerIteration));
}

// Ping-pong of 4-byte messages; the echo side runs in its own thread.
void ping_pong(benchmark::State& state, Sink& a_tx, Source& a_rx, Sink& b_tx, Source& b_rx) {
  constexpr uint32_t kStop = 0xFFFFFFFFu;
  std::thread echo([&] {
    for (;;) {
      uint32_t v;
      recv_all(b_rx, reinterpret_cast<std::byte*>(&v), 4);
      send_all(b_tx, reinterpret_cast<std::byte*>(&v), 4);
      if (v == kStop) {
        return;
      }
    }
  });
  std::vector<double> rtt_us;
  uint32_t seq = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    uint32_t v = seq++, r = 0;
    send_all(a_tx, reinterpret_cast<std::byte*>(&v), 4);
    recv_all(a_rx, reinterpret_cast<std::byte*>(&r), 4);
    rtt_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    if (r != v) {
      state.SkipWithError("echo mismatch");
      break;
    }
  }
  uint32_t stop = kStop, r = 0;
  send_all(a_tx, reinterpret_cast<std::byte*>(&stop), 4);
  recv_all(a_rx, reinterpret_cast<std::byte*>(&r), 4);
  echo.join();
  if (!rtt_us.empty()) {
    std::sort(rtt_us.begin(), rtt_us.end());
    state.counters["one_way_median_us"] = rtt_us[rtt_us.size() / 2] / 2;
    state.counters["rtt_p99_us"] = rtt_us[rtt_us.size() * 99 / 100];
  }
}

// Argument: the ring size asked for (socket buffer for unix, pipe size).
void BM_ChannelThroughput(benchmark::State& state, const char* kind) {
  ChannelPair pair(kind, static_cast<size_t>(state.range(0)));
  if (!pair.error.empty()) {
    state.SkipWithError(pair.error.c_str());
    return;
  }
  ChannelEnd tx(*pair.server), rx(*pair.client);
  stream(state, tx, rx);
}

void BM_ChannelThroughputPipe(benchmark::State& state) {
  Pipes p(static_cast<size_t>(state.range(0)));
  PipeEnd tx(p.fwd[0], p.fwd[1]);
  stream(state, tx, tx);
}

void BM_ChannelWakeup(benchmark::State& state, const char* kind) {
  ChannelPair pair(kind);
  if (!pair.error.empty()) {
    state.SkipWithError(pair.error.c_str());
    return;
  }
  ChannelEnd a(*pair.server), b(*pair.client);
  ping_pong(state, a, a, b, b);
}

void BM_ChannelWakeupPipe(benchmark::State& state) {
  Pipes p;
  PipeEnd a(p.back[0], p.fwd[1]), b(p.fwd[0], p.back[1]);
  ping_pong(state, a, a, b, b);
}

BENCHMARK_CAPTURE(BM_ChannelThroughput, shm, "shm")
    ->Arg(64 << 10)
    ->Arg(256 << 10)
    ->Arg(1 << 20)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_ChannelThroughput, unix, "unix")
    ->Arg(64 << 10)
    ->Arg(256 << 10)
    ->Arg(1 << 20)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ChannelThroughputPipe)
    ->Name("BM_ChannelThroughput/pipe")
    ->Arg(64 << 10)
    ->Arg(256 << 10)
    ->Arg(1 << 20)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_ChannelWakeup, shm, "shm")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_ChannelWakeup, unix, "unix")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_ChannelWakeupPipe)
    ->Name("BM_ChannelWakeup/pipe")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
