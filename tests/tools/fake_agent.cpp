// qaudio-fake-agent: a test peer that speaks the QUBE side of the audio
// channels, standing in for the real agent in the demo and the daemon's
// end-to-end tests. It serves vchan ports 4713/4714 (the qube is the vchan
// server) over a transport and plays a sine tone in real time, in the stock
// protocol (S16LE 44.1 kHz stereo, raw) or the native one (AgentNegotiator,
// then PlaybackFormat, e.g. 48 kHz F32). When the daemon goes away it serves
// again, so the daemon can reconnect.
//
// Options: --channel SPEC --domid N [--audio-domid N] [--name NAME]
//   --protocol stock|native  --freq HZ --amplitude A --seconds S (0 = until SIGTERM)
//   --format s16|s32|f32 --rate HZ --channels N   (native playback format)
//   --mic (start the mic) --record FILE (raw mic bytes received)
//   --ring-play BYTES --ring-ctl BYTES (ring sizes asked for; odd sizes welcome)
//   misbehaviours: --garbage --oversize-frame --flood --never-read --reconnect-loop
// At exit it prints one line of counters on stdout:
//   agent work: protocol=native sessions=1 pcm_bytes=... mic_bytes=... latency_msgs=...
//
//   qaudio-fake-agent --channel unix:/tmp/q --domid 1 --name work --freq 440 --seconds 4
#include <poll.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "qaudio/channel.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/format.hpp"
#include "qaudio/log.hpp"
#include "qaudio/negotiation.hpp"
#include "qaudio/protocol.hpp"

namespace {

using namespace qaudio;
namespace proto = qaudio::protocol;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string channel;
  uint32_t domid = 0;
  uint32_t audio_domid = 0;
  std::string name = "qube";
  std::string protocol = "stock";
  double freq = 440;
  double amplitude = 0.3;
  double seconds = 0;
  std::string format = "f32";
  uint32_t rate = 48000;
  uint32_t channels = 2;
  bool mic = false;
  std::string record;
  size_t ring_play = 65536;
  size_t ring_ctl = 16384;
  bool garbage = false;
  bool oversize = false;
  bool flood = false;
  bool never_read = false;
  bool reconnect_loop = false;
};

EventLoop* g_loop = nullptr;
void on_signal(int) {
  if (g_loop != nullptr) {
    g_loop->quit();
  }
}

class Agent {
 public:
  explicit Agent(Options o) : o_(std::move(o)) {}

  int run() {
    auto t = make_transport(o_.channel);
    if (!t) {
      std::fprintf(stderr, "fake-agent: %s\n", t.error().message.c_str());
      return 2;
    }
    transport_ = std::move(*t);
    if (!o_.record.empty()) {
      record_.open(o_.record, std::ios::binary | std::ios::trunc);
    }
    if (!serve()) {
      return 1;
    }
    loop_.add_timer(
        std::chrono::milliseconds(5), [this] { tick(); }, true);
    if (o_.seconds > 0) {
      loop_.add_timer(std::chrono::milliseconds(std::llround(o_.seconds * 1000)),
                      [this] { loop_.quit(); });
    }
    g_loop = &loop_;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    loop_.run();
    g_loop = nullptr;
    std::printf("agent %s: protocol=%s sessions=%" PRIu64 " pcm_bytes=%" PRIu64
                " mic_bytes=%" PRIu64 " latency_msgs=%" PRIu64 " clock_ticks=%" PRIu64
                " volume_permille=%d muted=%d"
                " mic_attached=%d format_accepted=%d heartbeats=%" PRIu64 "\n",
                o_.name.c_str(), proto_name(), sessions_, pcm_bytes_, mic_bytes_, latency_msgs_,
                clock_ticks_, volume_permille_, muted_ ? 1 : 0, mic_attached_ ? 1 : 0,
                format_accepted_ ? 1 : 0, heartbeats_);
    std::fflush(stdout);
    return 0;
  }

 private:
  enum class Mode { Connecting, Negotiating, AwaitingFormat, Playing };

  const char* proto_name() const {
    return o_.protocol == "native" ? (native_ ? "native" : "stock-fallback") : "stock";
  }

  bool serve() {
    close_all();
    auto p = transport_->serve({o_.domid, o_.audio_domid, proto::kPortPlayback},
                               {o_.ring_play, o_.ring_play});
    auto c = transport_->serve({o_.domid, o_.audio_domid, proto::kPortControl},
                               {o_.ring_ctl, o_.ring_ctl});
    if (!p || !c) {
      std::fprintf(stderr, "fake-agent %s: cannot serve: %s\n", o_.name.c_str(),
                   (!p ? p.error() : c.error()).message.c_str());
      return false;
    }
    play_ = std::move(*p);
    ctl_ = std::move(*c);
    play_watch_ = loop_.add_fd(play_->fd(), POLLIN, [this](short) { events(); });
    ctl_watch_ = loop_.add_fd(ctl_->fd(), POLLIN, [this](short) { events(); });
    mode_ = Mode::Connecting;
    return true;
  }

  void close_all() {
    for (auto* id : {&play_watch_, &ctl_watch_}) {
      if (*id != 0) {
        loop_.remove(*id);
        *id = 0;
      }
    }
    if (play_) {
      play_->close();
    }
    if (ctl_) {
      ctl_->close();
    }
    play_.reset();
    ctl_.reset();
  }

  void events() {
    if (!play_ || !ctl_) {
      return;
    }
    play_->handle_events();
    ctl_->handle_events();
    loop_.update_fd(play_watch_, play_->fd(), POLLIN);
    loop_.update_fd(ctl_watch_, ctl_->fd(), POLLIN);
    if (play_->state() == ChannelState::Closed || ctl_->state() == ChannelState::Closed) {
      // The daemon left (or never finished): serve again for its reconnect.
      serve();
      return;
    }
    if (mode_ == Mode::Connecting) {
      if (play_->is_open() && ctl_->is_open()) {
        on_open();
      }
      return;
    }
    read_control();
    play();
  }

  void on_open() {
    ++sessions_;
    auto now = Clock::now();
    if (o_.reconnect_loop) {
      // Connect, say hello, leave: a qube that reconnects in a loop.
      auto h = proto::encode_hello({});
      ctl_->write(h);
      serve();
      return;
    }
    if (o_.protocol == "native") {
      neg_ = std::make_unique<proto::AgentNegotiator>();
      auto hello = neg_->start(now);
      ctl_->write(hello);
      mode_ = Mode::Negotiating;
    } else {
      start_stock();
    }
  }

  void start_stock() {
    native_ = false;
    fmt_ = kStockFormat;
    if (o_.mic) {
      ctl_->write(proto::word_bytes(proto::StockWord::MicStart));
    }
    start_playing();
  }

  void start_playing() {
    mode_ = Mode::Playing;
    carry_.clear();
    t0_ = Clock::now();
    frames_sent_ = 0;
  }

  void read_control() {
    if (o_.never_read || !ctl_) {
      return;
    }
    std::array<std::byte, 8192> buf;
    for (int i = 0; i < 16 && ctl_ && ctl_->data_ready() > 0; ++i) {
      size_t n = ctl_->read(buf);
      if (n == 0) {
        break;
      }
      handle_control(std::span<const std::byte>(buf.data(), n));
    }
  }

  void handle_control(std::span<const std::byte> in) {
    if (mode_ == Mode::Negotiating) {
      size_t used = neg_->feed(in);
      in = in.subspan(used);
      if (neg_->state() == proto::AgentNegotiator::State::Native) {
        enter_native();
      } else if (neg_->state() == proto::AgentNegotiator::State::Stock) {
        start_stock();
        return;
      } else {
        return;
      }
    }
    if (!native_) {
      // Stock: raw mic PCM.
      mic_bytes_ += in.size();
      if (record_) {
        record_.write(reinterpret_cast<const char*>(in.data()),
                      static_cast<std::streamsize>(in.size()));
      }
      return;
    }
    proto::FrameDecoder& dec = neg_->decoder();
    for (;;) {
      if (!in.empty()) {
        in = in.subspan(dec.feed(in));
      }
      auto r = dec.next();
      if (auto* m = std::get_if<proto::Message>(&r)) {
        handle_native(*m);
        continue;
      }
      if (auto* e = std::get_if<proto::DecodeError>(&r)) {
        std::fprintf(stderr, "fake-agent %s: bad frame from the daemon: %s\n", o_.name.c_str(),
                     e->reason.c_str());
        serve();
        return;
      }
      if (in.empty()) {
        return;
      }
    }
  }

  void enter_native() {
    native_ = true;
    ctl_->write(neg_->hello_frame());
    auto sf = sample_format_from_string(o_.format);
    fmt_ = StreamFormat{sf ? *sf : SampleFormat::F32LE, o_.rate, o_.channels};
    send(proto::PlaybackFormat{fmt_});
    if (o_.mic) {
      send(proto::CaptureFormat{fmt_});
      send(proto::MicStart{});
    }
    mode_ = Mode::AwaitingFormat;
    if (o_.oversize) {
      // A header announcing 60000 bytes: beyond any message's maximum.
      std::array<std::byte, 8> h{std::byte{1},    std::byte{0},    std::byte{0x20}, std::byte{0},
                                 std::byte{0x60}, std::byte{0xea}, std::byte{0},    std::byte{0}};
      ctl_->write(h);
    }
  }

  void handle_native(const proto::Message& m) {
    if (auto* fa = std::get_if<proto::FormatAccepted>(&m)) {
      if (fa->direction == proto::StreamDirection::Playback) {
        format_accepted_ = true;
        start_playing();
      }
    } else if (std::holds_alternative<proto::FormatRejected>(m)) {
      std::fprintf(stderr, "fake-agent %s: format rejected\n", o_.name.c_str());
    } else if (std::holds_alternative<proto::Latency>(m)) {
      ++latency_msgs_;
    } else if (auto* ct = std::get_if<proto::ClockTick>(&m)) {
      ++clock_ticks_;
      (void)ct;
    } else if (auto* vs = std::get_if<proto::VolumeState>(&m)) {
      volume_permille_ = vs->volume_permille;
      muted_ = vs->muted;
    } else if (auto* ms = std::get_if<proto::MicState>(&m)) {
      mic_attached_ = ms->attached;
    } else if (auto* md = std::get_if<proto::MicData>(&m)) {
      mic_bytes_ += md->pcm.size();
      if (record_) {
        record_.write(reinterpret_cast<const char*>(md->pcm.data()),
                      static_cast<std::streamsize>(md->pcm.size()));
      }
    } else if (std::holds_alternative<proto::Heartbeat>(m)) {
      ++heartbeats_;
    }
  }

  void send(const proto::Message& m) {
    proto::FrameBuffer fb;
    auto n = proto::encode(m, fb, neg_ ? neg_->version() : proto::kProtocolVersion);
    if (n) {
      ctl_->write(std::span<const std::byte>(fb.data(), *n));
    }
  }

  void tick() {
    if (!play_ || !ctl_) {
      return;
    }
    events();
    if (!play_ || !ctl_) {
      return;
    }
    auto now = Clock::now();
    if (mode_ == Mode::Negotiating) {
      neg_->poll(now);
      if (neg_->state() == proto::AgentNegotiator::State::Stock) {
        start_stock();
      }
    }
    if (native_ && mode_ != Mode::Connecting && now - last_hb_ >= std::chrono::seconds(1)) {
      last_hb_ = now;
      send(proto::Heartbeat{hb_seq_++});
    }
    if (o_.garbage && mode_ != Mode::Connecting && mode_ != Mode::Negotiating) {
      std::array<std::byte, 64> g;
      for (auto& b : g) {
        b = std::byte(rng_() & 0xff);
      }
      ctl_->write(g);
    }
    play();
  }

  void play() {
    if (mode_ != Mode::Playing || !play_) {
      return;
    }
    if (!carry_.empty()) {
      // The channel took part of a frame last time: finish it first.
      size_t w = play_->write(carry_);
      pcm_bytes_ += w;
      carry_.erase(carry_.begin(), carry_.begin() + static_cast<std::ptrdiff_t>(w));
      if (!carry_.empty()) {
        return;
      }
    }
    const size_t fb = fmt_.frame_bytes();
    size_t space = play_->buffer_space() / fb;
    size_t due;
    if (o_.flood) {
      due = space;
    } else {
      double elapsed = std::chrono::duration<double>(Clock::now() - t0_).count();
      uint64_t target = static_cast<uint64_t>(elapsed * fmt_.rate);
      due = target > frames_sent_ ? static_cast<size_t>(target - frames_sent_) : 0;
    }
    due = std::min({due, space, size_t{4096}});
    if (due == 0) {
      return;
    }
    std::vector<std::byte>& out = scratch_;
    out.resize(due * fb);
    for (size_t i = 0; i < due; ++i) {
      double v = o_.amplitude *
                 std::sin(2.0 * M_PI * o_.freq * static_cast<double>(frames_sent_ + i) / fmt_.rate);
      for (uint32_t c = 0; c < fmt_.channels; ++c) {
        std::byte* p = out.data() + i * fb + c * sample_bytes(fmt_.sample);
        if (fmt_.sample == SampleFormat::S16LE) {
          int16_t s = static_cast<int16_t>(std::lround(v * 32767.0));
          std::memcpy(p, &s, 2);
        } else if (fmt_.sample == SampleFormat::S32LE) {
          int32_t s = static_cast<int32_t>(std::llround(v * 2147483647.0));
          std::memcpy(p, &s, 4);
        } else {
          float s = static_cast<float>(v);
          std::memcpy(p, &s, 4);
        }
      }
    }
    size_t w = play_->write(out);
    frames_sent_ += due;
    pcm_bytes_ += w;
    carry_.assign(out.begin() + static_cast<std::ptrdiff_t>(w), out.end());
  }

  Options o_;
  EventLoop loop_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Channel> play_;
  std::unique_ptr<Channel> ctl_;
  EventLoop::Id play_watch_ = 0;
  EventLoop::Id ctl_watch_ = 0;
  Mode mode_ = Mode::Connecting;
  std::unique_ptr<proto::AgentNegotiator> neg_;
  bool native_ = false;
  StreamFormat fmt_ = kStockFormat;
  Clock::time_point t0_{};
  Clock::time_point last_hb_{};
  uint32_t hb_seq_ = 0;
  uint64_t frames_sent_ = 0;
  std::vector<std::byte> scratch_;
  std::vector<std::byte> carry_;
  std::ofstream record_;
  std::mt19937 rng_{12345};

  uint64_t sessions_ = 0;
  uint64_t pcm_bytes_ = 0;
  uint64_t mic_bytes_ = 0;
  uint64_t latency_msgs_ = 0;
  uint64_t clock_ticks_ = 0;
  uint64_t heartbeats_ = 0;
  int volume_permille_ = -1;
  bool muted_ = false;
  bool mic_attached_ = false;
  bool format_accepted_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"qaudio-fake-agent: a test peer speaking the qube side of the audio channels"};
  app.add_option("--channel", o.channel, "unix:DIR | shm:DIR | xen")->required();
  app.add_option("--domid", o.domid, "this qube's domid (the vchan server)")->required();
  app.add_option("--audio-domid", o.audio_domid, "the audio domain's domid (default 0)");
  app.add_option("--name", o.name, "name shown in the counters line");
  app.add_option("--protocol", o.protocol, "stock or native")
      ->check(CLI::IsMember({"stock", "native"}));
  app.add_option("--freq", o.freq, "tone frequency in Hz (default 440)");
  app.add_option("--amplitude", o.amplitude, "tone amplitude 0..1 (default 0.3)");
  app.add_option("--seconds", o.seconds, "run time; 0 = until SIGTERM");
  app.add_option("--format", o.format, "native playback sample format: s16le|s32le|f32le");
  app.add_option("--rate", o.rate, "native playback rate (default 48000)");
  app.add_option("--channels", o.channels, "native playback channels (default 2)");
  app.add_flag("--mic", o.mic, "start the microphone");
  app.add_option("--record", o.record, "write received mic bytes to FILE (raw)");
  app.add_option("--ring-play", o.ring_play, "4713 ring size asked for (bytes)");
  app.add_option("--ring-ctl", o.ring_ctl, "4714 ring size asked for (bytes)");
  app.add_flag("--garbage", o.garbage, "write random bytes on 4714 all the time");
  app.add_flag("--oversize-frame", o.oversize, "send a frame header beyond the maximum size");
  app.add_flag("--flood", o.flood, "write PCM as fast as the channel takes it");
  app.add_flag("--never-read", o.never_read, "never read 4714 (mic data, control)");
  app.add_flag("--reconnect-loop", o.reconnect_loop, "accept, say hello, close, repeat");
  CLI11_PARSE(app, argc, argv);
  if (o.format == "f32" || o.format == "s16" || o.format == "s32") {
    o.format += "le";
  }
  if (!sample_format_from_string(o.format)) {
    std::fprintf(stderr, "fake-agent: unknown --format %s\n", o.format.c_str());
    return 2;
  }
  set_log_tag("fake-agent");
  return Agent(std::move(o)).run();
}
