// qaudio-net-bridge: carries a qube's playback and microphone over the network channel
// (common/net, docs/protocol.md section 11) between an UNCHANGED
// qubes-audio-agent and qubes-audiovm-daemon. Two roles:
//
//   --role qube     on the qube's machine: the audio-domain side of the
//                   agent's vchan (stock protocol: S16LE 44.1 kHz stereo on
//                   4713), resampled to 48 kHz, Opus-coded, sent over UDP.
//   --role audiovm  in the audio domain: receives, de-jitters, decodes, and
//                   plays the QUBE side of a vchan toward the daemon (native
//                   protocol, S16LE 48 kHz stereo), so the daemon applies
//                   volume, mute and policy as for a local qube; the mic
//                   comes back the same way (CaptureFormat 48 kHz mono,
//                   MicStart/MicStop following the remote agent), gated by
//                   the daemon's mic gate exactly as for a local qube.
//                   With --control it reports each peer's network counters
//                   to the daemon (net_report; shown by qvm-audio list).
//
//   qaudio-net-bridge --role audiovm --listen 0.0.0.0:4713
//       --peer work:5:/etc/qubes/audio-net/work.key --channel unix:/run/qaudio --audio-domid 1
//       --control /run/qubes-audiovm/control.sock
//   qaudio-net-bridge --role qube --connect audiovm.example:4713 --key /etc/qaudio/net.key
//       --channel unix:/run/qaudio --domid 5 --audiovm-domid 1
//
// SIGUSR1 / exit print one line of session counters per peer on stdout.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net_endpoint.hpp"
#include "qaudio/channel.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/format.hpp"
#include "qaudio/log.hpp"
#include "qaudio/negotiation.hpp"
#include "qaudio/protocol.hpp"
#include "resampler.hpp"

namespace {

using namespace qaudio;
namespace proto = qaudio::protocol;
using Clock = std::chrono::steady_clock;

EventLoop* g_loop = nullptr;
volatile sig_atomic_t g_dump = 0;
void on_signal(int sig) {
  if (sig == SIGUSR1) {
    g_dump = 1;
  } else if (g_loop != nullptr) {
    g_loop->quit();
  }
}

struct Options {
  std::string role;
  std::string listen = "0.0.0.0:4713";
  std::string connect;
  std::string key_file;
  std::vector<std::string> peers;  // NAME:DOMID:KEYFILE
  std::string channel;
  std::string control;  // audiovm: the daemon's control socket (net_report)
  uint32_t domid = 0;
  uint32_t audio_domid = 0;
  int bitrate = 96000;
  int frame_ms = 10;
  bool verbose = false;
};

void print_counters(net::NetEndpoint& ep) {
  for (auto* s : ep.sessions()) {
    auto c = s->counters();
    std::printf(
        "net %s: connected=%d tx_packets=%" PRIu64 " tx_bytes=%" PRIu64 " rx_packets=%" PRIu64
        " rx_bytes=%" PRIu64 " played=%" PRIu64 " red=%" PRIu64 " fec=%" PRIu64 " plc=%" PRIu64
        " underruns=%" PRIu64 " late=%" PRIu64 " dropped=%" PRIu64
        " loss_pct=%.2f jitter_ms=%.1f rtt_ms=%.1f latency_ms=%.1f drift_ppm=%d refused=%" PRIu64
        "\n",
        s->name().c_str(), s->connected(net::mono_us()) ? 1 : 0, c.tx_packets, c.tx_bytes,
        c.rx_packets, c.rx_bytes, c.played, c.red, c.fec, c.plc, c.underruns, c.late, c.dropped,
        c.loss_pct, c.jitter_us / 1000.0, c.rtt_us / 1000.0, c.latency_us / 1000.0, c.drift_ppm,
        ep.rejected_unknown_key() + ep.rejected_auth() + ep.rejected_malformed());
  }
  std::fflush(stdout);
}

// ----------------------------------------------------------- audiovm role

// Reports every peer's session counters to the daemon's control socket
// (method net_report, docs/control-api.md) about once a second, so `list`
// and `qvm-audio list` show them for the remote qube. Non-blocking: a
// report that does not fit the socket buffer, or a daemon that is not
// there, costs that report only; the next one reconnects.
class NetReporter {
 public:
  NetReporter(EventLoop& loop, std::string path) : loop_(loop), path_(std::move(path)) {}
  ~NetReporter() { disconnect(); }

  void report(net::NetEndpoint& ep, int64_t now_us) {
    if (fd_ < 0 && !connect_socket()) {
      return;
    }
    for (auto* s : ep.sessions()) {
      auto c = s->counters();
      Prev& p = prev_[s->name()];
      double secs = p.at_us > 0 ? static_cast<double>(now_us - p.at_us) / 1e6 : 0;
      double tx_kbps = secs > 0 ? static_cast<double>(c.tx_bytes - p.tx) * 8 / 1000 / secs : 0;
      double rx_kbps = secs > 0 ? static_cast<double>(c.rx_bytes - p.rx) * 8 / 1000 / secs : 0;
      p = {now_us, c.tx_bytes, c.rx_bytes};
      bool connected = s->connected(now_us);
      char buf[1024];
      int n = std::snprintf(
          buf, sizeof buf,
          "{\"id\":%" PRIu64
          ",\"method\":\"net_report\",\"params\":{\"qube\":\"%s\","
          "\"network\":{\"peer\":\"%s\",\"connected\":%s,\"tx_bytes\":%" PRIu64
          ",\"rx_bytes\":%" PRIu64 ",\"tx_packets\":%" PRIu64 ",\"rx_packets\":%" PRIu64
          ",\"tx_kbps\":%.1f,\"rx_kbps\":%.1f,\"loss_pct\":%.2f,\"jitter_ms\":%.1f,"
          "\"rtt_ms\":%.1f,\"latency_ms\":%.1f,\"buffer_ms\":%.1f,\"drift_ppm\":%d,"
          "\"red\":%" PRIu64 ",\"fec\":%" PRIu64 ",\"plc\":%" PRIu64 ",\"underruns\":%" PRIu64
          ",\"late\":%" PRIu64 ",\"dropped\":%" PRIu64 "}}}\n",
          ++id_, s->name().c_str(), connected ? s->peer_address().c_str() : "",
          connected ? "true" : "false", c.tx_bytes, c.rx_bytes, c.tx_packets, c.rx_packets, tx_kbps,
          rx_kbps, std::clamp(c.loss_pct, 0.0, 100.0), c.jitter_us / 1000.0,
          c.rtt_us < 0 ? -1.0 : c.rtt_us / 1000.0, c.latency_us / 1000.0, c.buffer_us / 1000.0,
          c.drift_ppm, c.red, c.fec, c.plc, c.underruns, c.late, c.dropped);
      if (n <= 0 || static_cast<size_t>(n) >= sizeof buf) {
        continue;
      }
      ssize_t w = ::send(fd_, buf, static_cast<size_t>(n), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        continue;  // the daemon is slow to read: skip this report
      }
      if (w != n) {
        log_info("net-bridge: the daemon's control socket %s closed; reconnecting", path_.c_str());
        disconnect();
        return;
      }
    }
  }

 private:
  struct Prev {
    int64_t at_us = 0;
    uint64_t tx = 0, rx = 0;
  };

  bool connect_socket() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (fd < 0 || path_.size() >= sizeof a.sun_path) {
      if (fd >= 0) {
        ::close(fd);
      }
      return false;
    }
    std::memcpy(a.sun_path, path_.c_str(), path_.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (!warned_) {
        log_warn(
            "net-bridge: cannot reach the daemon's control socket %s (%s); network "
            "counters are not shown in qvm-audio list until it is there",
            path_.c_str(), std::strerror(errno));
        warned_ = true;
      }
      ::close(fd);
      return false;
    }
    fd_ = fd;
    warned_ = false;
    prev_.clear();
    rid_ = loop_.add_fd(fd_, POLLIN, [this](short) { read_replies(); });
    log_info("net-bridge: reporting network counters to %s", path_.c_str());
    return true;
  }

  void read_replies() {
    char buf[4096];
    for (;;) {
      ssize_t r = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (r > 0) {
        if (!refused_ && std::string_view(buf, static_cast<size_t>(r)).find("\"error\"") !=
                             std::string_view::npos) {
          refused_ = true;  // said once: the same report would be refused every second
          log_warn("net-bridge: the daemon refused a network report: %.*s",
                   static_cast<int>(std::min<ssize_t>(r, 300)), buf);
        }
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
      }
      disconnect();  // closed by the daemon
      return;
    }
  }

  void disconnect() {
    if (rid_ != 0) {
      loop_.remove(rid_);
      rid_ = 0;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  EventLoop& loop_;
  std::string path_;
  int fd_ = -1;
  EventLoop::Id rid_ = 0;
  uint64_t id_ = 0;
  bool warned_ = false, refused_ = false;
  std::map<std::string, Prev> prev_;
};

// One remote qube: network session -> the qube side of a local vchan pair.
class QubeSide {
 public:
  QubeSide(EventLoop& loop,
           Transport& t,
           net::NetEndpoint& ep,
           net::NetSession& s,
           uint32_t domid,
           uint32_t audio)
      : loop_(loop), t_(t), ep_(ep), s_(s), domid_(domid), audio_(audio) {}

  bool serve() {
    close_all();
    auto p = t_.serve({domid_, audio_, proto::kPortPlayback}, {65536, 65536});
    auto c = t_.serve({domid_, audio_, proto::kPortControl}, {16384, 16384});
    if (!p || !c) {
      log_error("net-bridge %s: cannot serve the vchan ports: %s", s_.name().c_str(),
                (!p ? p.error() : c.error()).message.c_str());
      return false;
    }
    play_ = std::move(*p);
    ctl_ = std::move(*c);
    pw_ = loop_.add_fd(play_->fd(), POLLIN, [this](short) { events(); });
    cw_ = loop_.add_fd(ctl_->fd(), POLLIN, [this](short) { events(); });
    mode_ = Mode::Connecting;
    capture_ok_ = mic_on_ = false;
    mic_fill_ = 0;
    return true;
  }

  // Every frame period: one frame from the jitter buffer to the daemon.
  void frame(int64_t now_us) {
    if (!play_ || !ctl_) {
      return;
    }
    events();
    if (mode_ == Mode::Negotiating && neg_) {
      neg_->poll(Clock::now());
      if (neg_->state() == proto::AgentNegotiator::State::Stock) {
        log_error(
            "net-bridge %s: the daemon speaks only the stock protocol (44.1 kHz); the "
            "network bridge needs the native one (48 kHz): drop --stock-only",
            s_.name().c_str());
        mode_ = Mode::Failed;
      }
    }
    if (mode_ == Mode::Playing && now_us - last_hb_us_ >= 1'000'000) {
      last_hb_us_ = now_us;
      send(proto::Heartbeat{hb_seq_++});
    }
    update_mic(now_us);
    std::array<int16_t, 960> pcm{};
    s_.pull(pcm, now_us);  // always pull: the jitter buffer plays on its own clock
    if (s_.rx_channels() == 1) {
      for (int i = 479; i >= 0; --i) {
        pcm[2 * i] = pcm[2 * i + 1] = pcm[i];
      }
    }
    if (mode_ != Mode::Playing || s_.rx_frame_samples() != 480) {
      return;
    }
    auto bytes = std::as_bytes(std::span(pcm));
    if (play_->buffer_space() < bytes.size()) {
      ++overruns_;
      return;
    }
    play_->write(bytes);
  }

 private:
  enum class Mode { Connecting, Negotiating, AwaitingFormat, Playing, Failed };

  // The remote agent's mic start/stop (the peer's State flags) becomes the
  // native MicStart/MicStop toward the daemon. The daemon's gate decides
  // what the MicData carries (the tone when attached and allowed, silence
  // otherwise); this side only carries it.
  void update_mic(int64_t now_us) {
    bool want = (s_.peer_flags(now_us) & net::kStateMicWanted) != 0;
    if (!capture_ok_ || want == mic_on_) {
      return;
    }
    mic_on_ = want;
    mic_fill_ = 0;
    send(want ? proto::Message{proto::MicStart{}} : proto::Message{proto::MicStop{}});
    log_info("net-bridge %s: the remote qube %s the microphone", s_.name().c_str(),
             want ? "opened" : "closed");
  }

  // MicData (S16LE 48 kHz mono, the capture format asked for) in 10 ms frames
  // to the network. No allocation: a fixed frame buffer.
  void on_mic_data(std::span<const std::byte> pcm) {
    const size_t samples = pcm.size() / 2;
    for (size_t i = 0; i < samples; ++i) {
      int16_t v;
      std::memcpy(&v, pcm.data() + 2 * i, 2);
      mic_frame_[mic_fill_++] = v;
      if (mic_fill_ == mic_frame_.size()) {
        mic_fill_ = 0;
        if (!ep_.send_audio(s_, mic_frame_, net::mono_us())) {
          ++mic_unsent_;  // the peer is not connected: nothing to send to
        }
      }
    }
  }

  void close_all() {
    for (auto* id : {&pw_, &cw_}) {
      if (*id != 0) {
        loop_.remove(*id);
        *id = 0;
      }
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
    if (play_->state() == ChannelState::Closed || ctl_->state() == ChannelState::Closed) {
      log_info("net-bridge %s: the daemon left; serving again", s_.name().c_str());
      serve();
      return;
    }
    if (mode_ == Mode::Connecting && play_->is_open() && ctl_->is_open()) {
      neg_ = std::make_unique<proto::AgentNegotiator>();
      ctl_->write(neg_->start(Clock::now()));
      mode_ = Mode::Negotiating;
    }
    std::array<std::byte, 8192> buf;
    while (ctl_ && ctl_->data_ready() > 0) {
      size_t n = ctl_->read(buf);
      if (n == 0) {
        break;
      }
      on_control(std::span<const std::byte>(buf.data(), n));
    }
  }

  void on_control(std::span<const std::byte> in) {
    if (mode_ == Mode::Negotiating) {
      in = in.subspan(neg_->feed(in));
      if (neg_->state() != proto::AgentNegotiator::State::Native) {
        return;
      }
      ctl_->write(neg_->hello_frame());
      send(proto::PlaybackFormat{StreamFormat{SampleFormat::S16LE, 48000, 2}});
      mode_ = Mode::AwaitingFormat;
      log_info("net-bridge %s: native protocol with the daemon", s_.name().c_str());
    }
    if (!neg_ || neg_->state() != proto::AgentNegotiator::State::Native) {
      return;
    }
    auto& dec = neg_->decoder();
    for (;;) {
      if (!in.empty()) {
        in = in.subspan(dec.feed(in));
      }
      auto r = dec.next();
      if (auto* m = std::get_if<proto::Message>(&r)) {
        if (auto* fa = std::get_if<proto::FormatAccepted>(m)) {
          if (fa->direction == proto::StreamDirection::Playback) {
            mode_ = Mode::Playing;
            // The mic leg: S16LE 48 kHz mono, 10 ms = one Opus frame per 480 samples.
            send(proto::CaptureFormat{StreamFormat{SampleFormat::S16LE, 48000, 1}});
          } else {
            capture_ok_ = true;
          }
        } else if (auto* md = std::get_if<proto::MicData>(m)) {
          if (capture_ok_) {
            on_mic_data(md->pcm);
          }
        } else if (auto* fr = std::get_if<proto::FormatRejected>(m)) {
          if (fr->direction == proto::StreamDirection::Capture) {
            log_error("net-bridge %s: the daemon rejected S16LE 48 kHz mono capture: no mic",
                      s_.name().c_str());
          } else {
            log_error("net-bridge %s: the daemon rejected S16LE 48 kHz stereo", s_.name().c_str());
            mode_ = Mode::Failed;
          }
        }
        continue;
      }
      if (auto* e = std::get_if<proto::DecodeError>(&r)) {
        log_error("net-bridge %s: bad frame from the daemon: %s", s_.name().c_str(),
                  e->reason.c_str());
        serve();
        return;
      }
      if (in.empty()) {
        return;
      }
    }
  }

  void send(const proto::Message& m) {
    proto::FrameBuffer fb;
    auto n = proto::encode(m, fb, neg_ ? neg_->version() : proto::kProtocolVersion);
    if (n && ctl_) {
      ctl_->write(std::span<const std::byte>(fb.data(), *n));
    }
  }

  EventLoop& loop_;
  Transport& t_;
  net::NetEndpoint& ep_;
  net::NetSession& s_;
  bool capture_ok_ = false, mic_on_ = false;
  std::array<int16_t, 480> mic_frame_{};
  size_t mic_fill_ = 0;
  uint64_t mic_unsent_ = 0;
  uint32_t domid_, audio_;
  std::unique_ptr<Channel> play_, ctl_;
  EventLoop::Id pw_ = 0, cw_ = 0;
  Mode mode_ = Mode::Connecting;
  std::unique_ptr<proto::AgentNegotiator> neg_;
  int64_t last_hb_us_ = 0;
  uint32_t hb_seq_ = 0;
  uint64_t overruns_ = 0;
};

int run_audiovm(const Options& o) {
  net::NetEndpoint::Options eo;
  eo.server = true;
  eo.bind = o.listen;
  eo.tx.channels = 1;
  std::vector<uint32_t> domids;
  for (const auto& spec : o.peers) {
    auto a = spec.find(':');
    auto b = a == std::string::npos ? a : spec.find(':', a + 1);
    if (b == std::string::npos) {
      std::fprintf(stderr, "net-bridge: --peer %s: want NAME:DOMID:KEYFILE\n", spec.c_str());
      return 2;
    }
    auto key = net::load_key_file(spec.substr(b + 1));
    if (!key) {
      std::fprintf(stderr, "net-bridge: %s\n", key.error().message.c_str());
      return 2;
    }
    std::string name = spec.substr(0, a);
    if (name.empty() || name.size() > 31 ||
        name.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
            std::string::npos) {
      std::fprintf(stderr, "net-bridge: --peer %s: the qube name must be 1-31 of [A-Za-z0-9_.-]\n",
                   spec.c_str());
      return 2;
    }
    eo.keys.push_back({name, *key});
    domids.push_back(static_cast<uint32_t>(std::stoul(spec.substr(a + 1, b - a - 1))));
  }
  auto ep = net::NetEndpoint::create(eo);
  if (!ep) {
    std::fprintf(stderr, "net-bridge: %s\n", ep.error().message.c_str());
    return 2;
  }
  auto t = make_transport(o.channel);
  if (!t) {
    std::fprintf(stderr, "net-bridge: %s\n", t.error().message.c_str());
    return 2;
  }
  EventLoop loop;
  std::vector<std::unique_ptr<QubeSide>> sides;
  auto sessions = (*ep)->sessions();
  for (size_t i = 0; i < sessions.size(); ++i) {
    sides.push_back(
        std::make_unique<QubeSide>(loop, **t, **ep, *sessions[i], domids[i], o.audio_domid));
    if (!sides.back()->serve()) {
      return 1;
    }
  }
  loop.add_fd((*ep)->fd(), POLLIN, [&](short) { (*ep)->handle_events(net::mono_us()); });
  std::unique_ptr<NetReporter> reporter;
  if (!o.control.empty()) {
    reporter = std::make_unique<NetReporter>(loop, o.control);
  }
  int64_t next_report = net::mono_us() + 1'000'000;
  // Frames are paced by the monotonic clock (the timer only wakes us up).
  int64_t next_frame = net::mono_us();
  loop.add_timer(
      std::chrono::milliseconds(2),
      [&] {
        int64_t now = net::mono_us();
        (*ep)->tick(now);
        while (now >= next_frame) {
          for (auto& s : sides) {
            s->frame(now);
          }
          next_frame += 10'000;
        }
        if (reporter && now >= next_report) {
          next_report = now + 1'000'000;
          reporter->report(**ep, now);
        }
        if (g_dump) {
          g_dump = 0;
          print_counters(**ep);
        }
      },
      true);
  log_info("net-bridge: audiovm side on %s, %zu peer(s)", (*ep)->describe().c_str(),
           sessions.size());
  g_loop = &loop;
  loop.run();
  g_loop = nullptr;
  print_counters(**ep);
  return 0;
}

// -------------------------------------------------------------- qube role

int run_qube(const Options& o) {
  auto key = net::load_key_file(o.key_file);
  if (!key) {
    std::fprintf(stderr, "net-bridge: %s\n", key.error().message.c_str());
    return 2;
  }
  net::NetEndpoint::Options eo;
  eo.bind = o.connect.find('[') == 0 ? "[::]:0" : "0.0.0.0:0";
  eo.peer = o.connect;
  eo.keys = {{"audiovm", *key}};
  eo.tx.bitrate = o.bitrate;
  eo.tx.frame_quarter_ms = static_cast<uint8_t>(o.frame_ms * 2 / 5);
  auto ep = net::NetEndpoint::create(eo);
  if (!ep) {
    std::fprintf(stderr, "net-bridge: %s\n", ep.error().message.c_str());
    return 2;
  }
  auto t = make_transport(o.channel);
  if (!t) {
    std::fprintf(stderr, "net-bridge: %s\n", t.error().message.c_str());
    return 2;
  }
  auto rs = daemon::Resampler::create(2, 44100, 48000, 4, false);
  auto mic_rs = daemon::Resampler::create(2, 48000, 44100, 4, false);
  if (!rs || !mic_rs) {
    std::fprintf(stderr, "net-bridge: %s\n", (!rs ? rs : mic_rs).error().message.c_str());
    return 2;
  }
  EventLoop loop;
  std::unique_ptr<Channel> play, ctl;
  EventLoop::Id pw = 0, cw = 0;
  const uint32_t frame = net::frame_samples(eo.tx.frame_quarter_ms);
  std::vector<float> in_f, out_f(8192 * 2), pending;
  std::vector<int16_t> pcm(frame * 2);
  std::array<std::byte, 16384> buf;
  // The mic leg: the agent's stock mic start/stop words become the State
  // flag the audiovm side turns into MicStart/MicStop toward the daemon;
  // while started, one received frame (48 kHz mono) per 10 ms is resampled
  // to the stock format (S16LE 44.1 kHz stereo) and written to 4714. Before
  // the audio arrives (and when the network is away) that is silence: the
  // agent keeps a valid, paced source. Buffers are sized once, here.
  bool mic_started = false;
  proto::StockControlDecoder words;
  std::array<int16_t, 960> mic_pcm{};
  std::array<float, 960> mic_in{};
  std::array<float, 2048> mic_out{};
  std::array<int16_t, 2048> mic_s16{};
  uint64_t mic_overruns = 0;
  auto set_mic = [&](bool on) {
    if (on != mic_started) {
      log_info("net-bridge: the agent %s the microphone", on ? "started" : "stopped");
    }
    mic_started = on;
    (*ep)->set_state(*(*ep)->sessions()[0], on ? net::kStateMicWanted : 0);
  };
  auto mic_frame = [&](int64_t now_us) {
    auto& s = *(*ep)->sessions()[0];
    s.pull(mic_pcm, now_us);  // always pull: the jitter buffer plays on its own clock
    if (!mic_started || !ctl || s.rx_frame_samples() != 480) {
      return;
    }
    const bool mono = s.rx_channels() == 1;
    for (size_t i = 0; i < 480; ++i) {
      float l = static_cast<float>(mic_pcm[mono ? i : 2 * i]) / 32768.0f;
      float r = static_cast<float>(mic_pcm[mono ? i : 2 * i + 1]) / 32768.0f;
      mic_in[2 * i] = l;
      mic_in[2 * i + 1] = r;
    }
    size_t used = 480, made = mic_out.size() / 2;
    (*mic_rs)->process(mic_in.data(), &used, mic_out.data(), &made);
    for (size_t i = 0; i < made * 2; ++i) {
      mic_s16[i] =
          static_cast<int16_t>(std::lround(std::clamp(mic_out[i], -1.0f, 1.0f) * 32767.0f));
    }
    auto bytes = std::as_bytes(std::span(mic_s16.data(), made * 2));
    if (ctl->buffer_space() < bytes.size()) {
      ++mic_overruns;  // the agent does not read its mic: drop, never block
      return;
    }
    ctl->write(bytes);
  };
  auto drop_channels = [&] {
    for (auto* id : {&pw, &cw}) {
      if (*id) {
        loop.remove(*id);
        *id = 0;
      }
    }
    play.reset();
    ctl.reset();
    words = {};
    set_mic(false);  // the agent left: its mic is closed
  };
  auto on_events = [&] {
    if (!play || !ctl) {
      return;
    }
    play->handle_events();
    ctl->handle_events();
    if (!play->is_open() || !ctl->is_open()) {
      log_info("net-bridge: the agent left; reconnecting");
      drop_channels();
      return;
    }
    while (ctl->data_ready() > 0) {
      size_t n = ctl->read(buf);
      if (n == 0) {
        break;
      }
      std::span<const std::byte> in(buf.data(), n);
      while (auto w = words.next(in)) {
        if (*w == static_cast<uint32_t>(proto::StockWord::MicStart)) {
          set_mic(true);
        } else if (*w == static_cast<uint32_t>(proto::StockWord::MicStop)) {
          set_mic(false);
        }  // cork/uncork and the unknown words: playback just runs (the stock daemon's way)
      }
    }
    for (;;) {
      size_t n = play->read(buf);
      if (n == 0) {
        break;
      }
      size_t samples = n / 2;  // S16LE; a split sample is impossible: 4-byte frames, 4-aligned
      in_f.resize(samples);
      for (size_t i = 0; i < samples; ++i) {
        int16_t s;
        std::memcpy(&s, buf.data() + 2 * i, 2);
        in_f[i] = static_cast<float>(s) / 32768.0f;
      }
      size_t in_frames = samples / 2;
      const float* src = in_f.data();
      while (in_frames > 0) {
        size_t used = in_frames, made = out_f.size() / 2;
        (*rs)->process(src, &used, out_f.data(), &made);
        pending.insert(pending.end(), out_f.begin(),
                       out_f.begin() + static_cast<std::ptrdiff_t>(made * 2));
        src += used * 2;
        in_frames -= used;
        if (used == 0 && made == 0) {
          break;
        }
      }
      size_t off = 0;
      while (pending.size() - off >= frame * 2) {
        for (size_t i = 0; i < frame * 2; ++i) {
          float v = std::clamp(pending[off + i], -1.0f, 1.0f);
          pcm[i] = static_cast<int16_t>(std::lround(v * 32767.0f));
        }
        off += frame * 2;
        auto& s = *(*ep)->sessions()[0];
        (void)(*ep)->send_audio(s, pcm, net::mono_us());  // dropped until the server answered
      }
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(off));
    }
  };
  auto try_connect = [&] {
    if (play) {
      return;
    }
    auto p =
        (*t)->connect({o.domid, o.audio_domid, proto::kPortPlayback}, std::chrono::milliseconds(0));
    if (!p) {
      return;
    }
    auto c = (*t)->connect({o.domid, o.audio_domid, proto::kPortControl},
                           std::chrono::milliseconds(500));
    if (!c) {
      return;
    }
    play = std::move(*p);
    ctl = std::move(*c);
    pw = loop.add_fd(play->fd(), POLLIN, [&](short) { on_events(); });
    cw = loop.add_fd(ctl->fd(), POLLIN, [&](short) { on_events(); });
    log_info("net-bridge: connected to the agent (stock protocol, S16LE 44.1 kHz)");
  };
  loop.add_fd((*ep)->fd(), POLLIN, [&](short) { (*ep)->handle_events(net::mono_us()); });
  int64_t next_frame = net::mono_us(), next_poll = 0;
  loop.add_timer(
      std::chrono::milliseconds(2),
      [&] {
        int64_t now = net::mono_us();
        if (now >= next_poll) {
          next_poll = now + 20'000;
          (*ep)->tick(now);
          try_connect();
          on_events();
        }
        // Mic frames paced by the monotonic clock, as on the audiovm side.
        while (now >= next_frame) {
          mic_frame(now);
          next_frame += 10'000;
        }
        if (g_dump) {
          g_dump = 0;
          print_counters(**ep);
        }
      },
      true);
  log_info("net-bridge: qube side, server %s", o.connect.c_str());
  g_loop = &loop;
  loop.run();
  g_loop = nullptr;
  (*ep)->send_bye(net::mono_us());
  print_counters(**ep);
  if (mic_overruns) {
    log_warn("net-bridge: %llu mic frame(s) dropped: the agent did not read its mic",
             static_cast<unsigned long long>(mic_overruns));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"qaudio-net-bridge: a qube's audio over the network channel (UDP, Opus, AEAD)"};
  app.add_option("--role", o.role, "qube | audiovm")
      ->required()
      ->check(CLI::IsMember({"qube", "audiovm"}));
  app.add_option("--listen", o.listen, "audiovm: HOST:PORT to receive on (default 0.0.0.0:4713)");
  app.add_option("--peer", o.peers, "audiovm: NAME:DOMID:KEYFILE, one per remote qube");
  app.add_option("--connect", o.connect, "qube: the audio domain's HOST:PORT");
  app.add_option("--key", o.key_file, "qube: this qube's key file (64 hex digits, mode 0600)");
  app.add_option("--channel", o.channel, "local vchan transport: unix:DIR | shm:DIR | xen")
      ->required();
  app.add_option("--domid", o.domid, "qube: the agent's domid (the vchan server)");
  app.add_option("--audio-domid", o.audio_domid, "audiovm: the daemon's domid");
  app.add_option("--audiovm-domid", o.audio_domid, "qube: the audio domain's domid");
  app.add_option("--control", o.control,
                 "audiovm: the daemon's control socket; the bridge reports each remote qube's "
                 "network counters there (qvm-audio list)");
  app.add_option("--bitrate", o.bitrate, "qube: Opus bitrate (default 96000)");
  app.add_option("--frame-ms", o.frame_ms, "qube: 10 or 20")->check(CLI::IsMember({10, 20}));
  app.add_flag("-v,--verbose", o.verbose, "log more");
  CLI11_PARSE(app, argc, argv);
  set_log_tag("net-bridge");
  if (o.verbose) {
    set_log_level(LogLevel::Debug);
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGUSR1, on_signal);
  signal(SIGPIPE, SIG_IGN);
  if (o.role == "audiovm") {
    if (o.peers.empty()) {
      std::fprintf(stderr, "net-bridge: --role audiovm needs at least one --peer\n");
      return 2;
    }
    return run_audiovm(o);
  }
  if (o.connect.empty() || o.key_file.empty()) {
    std::fprintf(stderr, "net-bridge: --role qube needs --connect and --key\n");
    return 2;
  }
  return run_qube(o);
}
