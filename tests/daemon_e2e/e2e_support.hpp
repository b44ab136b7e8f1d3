// Helpers for the daemon's end-to-end tests: a WAV reader, an in-process
// qube peer (serves 4713/4714 like a qube, stock or native), a real-time
// tone writer, and a harness that drives the Daemon's event loop with
// deadlines (no sleeps: run_once() until a condition holds).
//
//   DaemonHarness h("unix", "null", {{"work", 1}});
//   QubePeer q(h.peer_transport(), 1);  q.serve();
//   ASSERT_TRUE(h.drive([&] { return h.info("work").state == SessionState::Running; }, 5s,
//                       [&] { q.poll(); }));
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon.hpp"
#include "qaudio/channel.hpp"
#include "qaudio/negotiation.hpp"
#include "qaudio/protocol.hpp"
#include "sound_servers.hpp"
#include "tone.hpp"

namespace qaudio::e2e {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace proto = qaudio::protocol;

// ------------------------------------------------------------------ WAV ----

struct Wav {
  uint32_t rate = 0;
  uint32_t channels = 0;
  std::vector<float> samples;  // interleaved
  size_t frames() const { return channels ? samples.size() / channels : 0; }
};

inline std::optional<Wav> read_wav(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto u32 = [&](size_t o) {
    uint32_t v;
    std::memcpy(&v, b.data() + o, 4);
    return v;
  };
  auto u16 = [&](size_t o) {
    uint16_t v;
    std::memcpy(&v, b.data() + o, 2);
    return v;
  };
  if (b.size() < 12 || std::memcmp(b.data(), "RIFF", 4) != 0 ||
      std::memcmp(b.data() + 8, "WAVE", 4) != 0) {
    return std::nullopt;
  }
  Wav w;
  uint16_t fmt = 0, bits = 0;
  size_t pos = 12;
  while (pos + 8 <= b.size()) {
    uint32_t len = u32(pos + 4);
    size_t body = pos + 8;
    if (std::memcmp(b.data() + pos, "fmt ", 4) == 0 && body + 16 <= b.size()) {
      fmt = u16(body);
      w.channels = u16(body + 2);
      w.rate = u32(body + 4);
      bits = u16(body + 14);
      if (fmt == 0xFFFE && body + 26 <= b.size()) {
        fmt = u16(body + 24);  // WAVE_FORMAT_EXTENSIBLE: sub-format GUID's first word
      }
    } else if (std::memcmp(b.data() + pos, "data", 4) == 0) {
      size_t n = std::min<size_t>(len, b.size() - body);
      if (fmt == 1 && bits == 16) {
        w.samples.resize(n / 2);
        for (size_t i = 0; i < w.samples.size(); ++i) {
          w.samples[i] = static_cast<int16_t>(u16(body + 2 * i)) / 32768.0f;
        }
      } else if (fmt == 3 && bits == 32) {
        w.samples.resize(n / 4);
        std::memcpy(w.samples.data(), b.data() + body, w.samples.size() * 4);
      } else {
        return std::nullopt;
      }
      return w.channels ? std::optional<Wav>(w) : std::nullopt;
    }
    pos = body + len + (len & 1);
  }
  return std::nullopt;
}

// Writes a 16-bit PCM WAV (for the wav backend's in= microphone).
inline void write_wav_s16(const std::string& path,
                          const std::vector<float>& s,
                          uint32_t rate,
                          uint32_t channels) {
  std::ofstream o(path, std::ios::binary);
  auto put32 = [&](uint32_t v) { o.write(reinterpret_cast<const char*>(&v), 4); };
  auto put16 = [&](uint16_t v) { o.write(reinterpret_cast<const char*>(&v), 2); };
  uint32_t data = static_cast<uint32_t>(s.size() * 2);
  o.write("RIFF", 4);
  put32(36 + data);
  o.write("WAVEfmt ", 8);
  put32(16);
  put16(1);
  put16(static_cast<uint16_t>(channels));
  put32(rate);
  put32(rate * channels * 2);
  put16(static_cast<uint16_t>(channels * 2));
  put16(16);
  o.write("data", 4);
  put32(data);
  for (float f : s) {
    put16(static_cast<uint16_t>(static_cast<int16_t>(std::lround(f * 32767.0f))));
  }
}

// RMS of channel 0 in consecutive blocks of `block` frames.
inline std::vector<double> block_rms(const Wav& w, size_t block) {
  std::vector<double> out;
  for (size_t f = 0; f + block <= w.frames(); f += block) {
    double acc = 0;
    for (size_t i = 0; i < block; ++i) {
      double v = w.samples[(f + i) * w.channels];
      acc += v * v;
    }
    out.push_back(std::sqrt(acc / block));
  }
  return out;
}

// Channel 0 of frames [from, to) as a mono float vector.
inline std::vector<float> mono(const Wav& w, size_t from, size_t to) {
  std::vector<float> m;
  for (size_t f = from; f < std::min(to, w.frames()); ++f) {
    m.push_back(w.samples[f * w.channels]);
  }
  return m;
}

// ------------------------------------------------------------- qube peer ----

// The qube side of one qube's two channels, in-process. poll() accepts the
// daemon, acknowledges wake-ups and collects what the daemon wrote on 4714.
class QubePeer {
 public:
  QubePeer(Transport& t,
           uint32_t domid,
           RingSizes play = {65536, 65536},
           RingSizes ctl = {16384, 16384})
      : t_(t), domid_(domid), play_sizes_(play), ctl_sizes_(ctl) {}

  bool serve() {
    close();
    auto p = t_.serve({domid_, 0, proto::kPortPlayback}, play_sizes_);
    auto c = t_.serve({domid_, 0, proto::kPortControl}, ctl_sizes_);
    if (!p || !c) {
      return false;
    }
    play_ = std::move(*p);
    ctl_ = std::move(*c);
    return true;
  }
  void close() {
    if (play_) {
      play_->close();
    }
    if (ctl_) {
      ctl_->close();
    }
    play_.reset();
    ctl_.reset();
  }
  void poll() {
    if (!play_ || !ctl_) {
      return;
    }
    play_->handle_events();
    ctl_->handle_events();
    if (read_ctl && ctl_->is_open()) {
      std::byte buf[8192];
      for (int i = 0; i < 64 && ctl_->data_ready() > 0; ++i) {
        size_t n = ctl_->read(buf);
        if (n == 0) {
          break;
        }
        ctl_in.insert(ctl_in.end(), buf, buf + n);
      }
    }
  }
  bool open() const { return play_ && ctl_ && play_->is_open() && ctl_->is_open(); }
  bool closed() const {
    return !play_ || !ctl_ || play_->state() == ChannelState::Closed ||
           ctl_->state() == ChannelState::Closed;
  }
  size_t write_pcm(std::span<const std::byte> b) { return play_ ? play_->write(b) : 0; }
  size_t write_ctl(std::span<const std::byte> b) { return ctl_ ? ctl_->write(b) : 0; }
  size_t write_word(proto::StockWord w) { return write_ctl(proto::word_bytes(w)); }
  Channel* play() { return play_.get(); }
  Channel* ctl() { return ctl_.get(); }

  std::vector<std::byte> ctl_in;  // bytes the daemon sent on 4714
  bool read_ctl = true;

 private:
  Transport& t_;
  uint32_t domid_;
  RingSizes play_sizes_, ctl_sizes_;
  std::unique_ptr<Channel> play_, ctl_;
};

// Writes a sine in real time (plus `lead` ahead) in `fmt` to a channel.
struct ToneWriter {
  StreamFormat fmt = kStockFormat;
  double freq = 440;
  double amp = 0.3;
  std::chrono::milliseconds lead{0};
  Clock::time_point t0{};
  uint64_t frames_sent = 0;
  uint64_t bytes_sent = 0;
  bool started = false;

  std::vector<std::byte> make(uint64_t first, size_t frames) const {
    const size_t fb = fmt.frame_bytes(), sb = sample_bytes(fmt.sample);
    std::vector<std::byte> out(frames * fb);
    for (size_t i = 0; i < frames; ++i) {
      double v = amp * std::sin(2.0 * test::kPi * freq * static_cast<double>(first + i) / fmt.rate);
      for (uint32_t c = 0; c < fmt.channels; ++c) {
        std::byte* p = out.data() + i * fb + c * sb;
        if (fmt.sample == SampleFormat::S16LE) {
          int16_t s = static_cast<int16_t>(std::lround(v * 32767.0));
          std::memcpy(p, &s, 2);
        } else if (fmt.sample == SampleFormat::S32LE) {
          int32_t s = static_cast<int32_t>(std::llround(v * 2147483647.0));
          std::memcpy(p, &s, 4);
        } else {
          float s = static_cast<float>(v);
          std::memcpy(p, &s, 4);
        }
      }
    }
    return out;
  }

  // Writes what is due; returns bytes written. A short write that splits a
  // frame keeps the rest for the next call (the channel took those bytes).
  size_t pump(Channel* ch) {
    if (ch == nullptr || !ch->is_open()) {
      return 0;
    }
    size_t written = 0;
    if (!carry.empty()) {
      size_t w = ch->write(carry);
      carry.erase(carry.begin(), carry.begin() + static_cast<std::ptrdiff_t>(w));
      bytes_sent += w;
      written += w;
      if (!carry.empty()) {
        return written;
      }
    }
    auto now = Clock::now();
    if (!started) {
      started = true;
      t0 = now;
    }
    double elapsed = std::chrono::duration<double>(now - t0 + lead).count();
    uint64_t target = static_cast<uint64_t>(elapsed * fmt.rate);
    size_t due = target > frames_sent ? static_cast<size_t>(target - frames_sent) : 0;
    due = std::min(due, ch->buffer_space() / fmt.frame_bytes());
    if (due == 0) {
      return written;
    }
    auto bytes = make(frames_sent, due);
    size_t w = ch->write(bytes);
    frames_sent += due;
    bytes_sent += w;
    carry.assign(bytes.begin() + static_cast<std::ptrdiff_t>(w), bytes.end());
    return written + w;
  }
  std::vector<std::byte> carry;
};

// Native agent logic on top of a QubePeer: negotiation, then frames.
struct NativeAgent {
  explicit NativeAgent(QubePeer& p) : peer(p) {}
  QubePeer& peer;
  proto::AgentNegotiator neg{proto::AgentNegotiator::Options{5s}};
  bool started = false;
  size_t consumed = 0;
  std::vector<proto::MessageType> types;
  std::vector<proto::Latency> latencies;
  std::vector<proto::ClockTick> ticks;
  std::vector<proto::VolumeState> volumes;
  std::vector<proto::MicState> mic_states;
  std::vector<proto::FormatAccepted> accepted;
  std::vector<std::byte> mic;
  bool decode_error = false;

  void start() {
    auto h = neg.start(Clock::now());
    peer.write_ctl(h);
    started = true;
  }
  bool native() const { return neg.state() == proto::AgentNegotiator::State::Native; }
  void send(const proto::Message& m) {
    proto::FrameBuffer fb;
    auto n = proto::encode(m, fb, neg.version());
    ASSERT_TRUE(n.has_value());
    ASSERT_EQ(peer.write_ctl(std::span<const std::byte>(fb.data(), *n)), *n);
  }
  void poll() {
    peer.poll();
    std::span<const std::byte> in(peer.ctl_in.data() + consumed, peer.ctl_in.size() - consumed);
    consumed = peer.ctl_in.size();
    if (neg.state() == proto::AgentNegotiator::State::AwaitingWelcome) {
      in = in.subspan(neg.feed(in));
      if (native()) {
        peer.write_ctl(neg.hello_frame());
      }
    }
    if (!native()) {
      return;
    }
    auto& dec = neg.decoder();
    for (;;) {
      if (!in.empty()) {
        in = in.subspan(dec.feed(in));
      }
      auto r = dec.next();
      if (auto* m = std::get_if<proto::Message>(&r)) {
        types.push_back(proto::type_of(*m));
        if (auto* l = std::get_if<proto::Latency>(m)) {
          latencies.push_back(*l);
        } else if (auto* t = std::get_if<proto::ClockTick>(m)) {
          ticks.push_back(*t);
        } else if (auto* v = std::get_if<proto::VolumeState>(m)) {
          volumes.push_back(*v);
        } else if (auto* s = std::get_if<proto::MicState>(m)) {
          mic_states.push_back(*s);
        } else if (auto* a = std::get_if<proto::FormatAccepted>(m)) {
          accepted.push_back(*a);
        } else if (auto* d = std::get_if<proto::MicData>(m)) {
          mic.insert(mic.end(), d->pcm.begin(), d->pcm.end());
        }
        continue;
      }
      if (std::holds_alternative<proto::DecodeError>(r)) {
        decode_error = true;
        return;
      }
      if (in.empty()) {
        return;
      }
    }
  }
};

// --------------------------------------------------------------- harness ----

struct QubeSpec {
  QubeSpec(std::string n, uint32_t d, std::optional<uint32_t> v = std::nullopt)
      : name(std::move(n)), domid(d), volume(v) {}
  std::string name;
  uint32_t domid;
  std::optional<uint32_t> volume;
};

class DaemonHarness {
 public:
  // transport: "unix" or "shm"; backend: "null" or "wav" (file in the temp dir).
  DaemonHarness(const std::string& transport,
                const std::string& backend,
                std::vector<QubeSpec> qubes,
                std::function<void(daemon::DaemonOptions&)> tweak = {})
      : dir_("daemon-e2e") {
    opt_.channel = transport + ":" + dir_.path();
    wav_path_ = dir_.path() + "/out.wav";
    opt_.backend = backend == "wav" ? "wav:" + wav_path_ : backend;
    for (auto& q : qubes) {
      daemon::QubeConfig c;
      c.name = q.name;
      c.domid = q.domid;
      c.initial_volume = q.volume;
      opt_.qubes.push_back(c);
    }
    if (tweak) {
      tweak(opt_);
    }
    auto t = make_transport(opt_.channel);
    EXPECT_TRUE(t.has_value());
    if (t) {
      peer_transport_ = std::move(*t);
    }
  }
  ~DaemonHarness() { stop(); }

  // Creates and starts the daemon (again, after stop(), for restart tests).
  bool start() {
    auto d = daemon::Daemon::create(opt_);
    EXPECT_TRUE(d.has_value()) << (d ? "" : d.error().message);
    if (!d) {
      return false;
    }
    daemon_ = std::move(*d);
    auto r = daemon_->start();
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    return r.has_value();
  }
  void stop() {
    if (daemon_) {
      daemon_->stop();
      daemon_.reset();
    }
  }

  // Runs the daemon's loop (and `each` after every round) until `cond`
  // holds or `timeout` passes.
  bool drive(const std::function<bool()>& cond,
             std::chrono::milliseconds timeout,
             const std::function<void()>& each = {}) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      daemon_->loop().run_once(2ms);
      if (each) {
        each();
      }
      if (cond()) {
        return true;
      }
      if (Clock::now() >= deadline) {
        return false;
      }
    }
  }
  // Runs for `d` regardless (e.g. to let real-time audio flow).
  void run_for(std::chrono::milliseconds d, const std::function<void()>& each = {}) {
    (void)drive([] { return false; }, d, each);
  }

  daemon::SessionInfo info(const std::string& q) const {
    auto i = daemon_->info(q);
    EXPECT_TRUE(i.has_value());
    return i ? *i : daemon::SessionInfo{};
  }
  bool running(const std::string& q) const {
    return info(q).state == daemon::SessionState::Running;
  }

  daemon::Daemon& daemon() { return *daemon_; }
  Transport& peer_transport() { return *peer_transport_; }
  daemon::DaemonOptions& options() { return opt_; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& wav_path() const { return wav_path_; }

 private:
  test::TempDir dir_;
  daemon::DaemonOptions opt_;
  std::string wav_path_;
  std::unique_ptr<Transport> peer_transport_;
  std::unique_ptr<daemon::Daemon> daemon_;
};

}  // namespace qaudio::e2e
