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
#include "relay_backend.hpp"
#include "session.hpp"

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
  std::string name = "qube";  // qube: the agent's name in logs
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
    view_ = {0, 0, 1000};
    daemon_latency_us_ = 0;
    pending_len_ = pending_written_ = 0;
    corked_ = false;
    pace_ppm_ = 0;
    capture_ok_ = mic_on_ = false;
    mic_fill_ = 0;
    return true;
  }

  // From the loop's timer (~2 ms): the frames that are due, paced by
  // CLOCK_MONOTONIC slowed or sped up by pace_ppm_ (below), then the slice of
  // the current frame that is due. After a stall of this process the missed
  // frames are not sent in a burst (that would stay in the daemon as
  // latency): the jitter buffer keeps them and trims its own surplus.
  void tick(int64_t now_us) {
    const int64_t period = frame_period_us();
    if (now_us > next_frame_us_ + 3 * period) {
      next_frame_us_ = now_us;
    }
    while (now_us >= next_frame_us_) {
      frame(now_us);
      next_frame_us_ += period;
    }
    drain(now_us);
  }

  // One frame from the jitter buffer to the daemon.
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
    report_view();
    const size_t n = s_.rx_frame_samples();
    std::array<int16_t, kMaxFrame * 2> pcm{};
    // Always pull: the jitter buffer plays on its own clock.
    const bool playing =
        n <= kMaxFrame && s_.pull(std::span(pcm.data(), n * s_.rx_channels()), now_us);
    if (s_.rx_channels() == 1) {
      for (size_t i = n; i-- > 0;) {
        pcm[2 * i] = pcm[2 * i + 1] = pcm[i];
      }
    }
    if (mode_ != Mode::Playing) {
      return;
    }
    flush(pending_.size());  // what is left of the previous frame goes first
    // No stream from the qube (it stopped sending, or has not started):
    // cork the daemon's stream rather than feed it silence, so it starts
    // again from its small prebuffer, never from a backlog of silence.
    if (!playing) {
      set_corked(true);
      return;
    }
    set_corked(false);
    pending_ = pcm;
    pending_len_ = n * 2;
    pending_written_ = 0;
    pending_start_us_ = now_us;
    drain(now_us);
  }

  // The frame goes to the daemon in slices as it becomes due (one per timer
  // tick, ~2 ms), not 10 ms at once: the daemon keeps only a small
  // prebuffer for native qubes, sized for an agent that writes a few ms at
  // a time; a whole frame every 10 ms would drain it to zero between frames.
  void drain(int64_t now_us) {
    if (!play_ || mode_ != Mode::Playing || pending_len_ == 0) {
      return;
    }
    const int64_t span_us = static_cast<int64_t>(pending_len_ / 2) * 1'000'000 / 48000;
    const int64_t elapsed = std::clamp<int64_t>(now_us - pending_start_us_ + 2000, 0, span_us);
    flush(static_cast<size_t>(elapsed * static_cast<int64_t>(pending_len_ / 2) / span_us) * 2);
  }

 private:
  // Writes the pending frame up to `upto` samples (interleaved stereo).
  void flush(size_t upto) {
    upto = std::min(upto, pending_len_);
    if (upto <= pending_written_ || !play_) {
      return;
    }
    auto bytes =
        std::as_bytes(std::span(pending_.data() + pending_written_, upto - pending_written_));
    pending_written_ = upto;
    if (play_->buffer_space() < bytes.size()) {
      ++overruns_;
      return;
    }
    play_->write(bytes);
  }

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

  int64_t frame_period_us() const {
    const double nominal = static_cast<double>(s_.rx_frame_samples()) * 1e6 / 48000.0;
    return static_cast<int64_t>(std::lround(nominal * (1.0 + pace_ppm_ * 1e-6)));
  }

  void set_corked(bool corked) {
    if (corked == corked_) {
      return;
    }
    corked_ = corked;
    pending_len_ = pending_written_ = 0;
    pace_ppm_ = 0;
    send(corked ? proto::Message{proto::Cork{}} : proto::Message{proto::Uncork{}});
    if (!corked && play_) {
      // A lead of silence ahead of the first frame: the daemon's prebuffer
      // for native qubes (8 ms) is sized for a local agent; frames that come
      // off a network jitter buffer and a timer need a little more headroom.
      std::array<std::byte, kLeadBytes> lead{};
      if (play_->buffer_space() >= lead.size()) {
        play_->write(lead);
      }
    }
    log_debug("net-bridge %s: %s the daemon's stream", s_.name().c_str(),
              corked ? "corked" : "uncorked");
  }

  // The daemon's buffer for this qube, from its Latency reports (at most 10
  // per second). It starts near its native prebuffer + the lead (~18 ms)
  // and stays there while the device's clock is this machine's monotonic
  // clock; a device clock that differs (a sound card's crystal, tens of
  // ppm) moves it slowly. Outside a +-6 ms band around 18 ms, frames are
  // handed over up to 500 ppm slower or faster (proportional, no integral:
  // no wind-up, and the jitter buffer's own rate follower absorbs it), which
  // holds a 50 ppm clock difference about 5 ms outside the band.
  void steer(double daemon_buffer_ms) {
    constexpr double kSetpointMs = 18.0, kBandMs = 6.0, kKp = 10.0, kLimit = 500.0;
    const double err = daemon_buffer_ms - kSetpointMs;
    const double outside = err > kBandMs ? err - kBandMs : err < -kBandMs ? err + kBandMs : 0.0;
    pace_ppm_ = corked_ ? 0.0 : std::clamp(kKp * outside, -kLimit, kLimit);
  }

  void set_flag(uint32_t flag, bool on) {
    view_.flags = on ? (view_.flags | flag) : (view_.flags & ~flag);
  }

  // What the daemon tells its agent about this qube goes on to the remote
  // qube side (State packet), which tells the remote agent: the mic gate,
  // volume and mute, and the playback latency from the remote send time to
  // audible = the network leg (packetisation, coder delay, RTT/2, time in
  // the jitter buffer) + the daemon's buffer and device latency.
  void report_view() {
    net::StatePayload st = view_;
    if (mode_ == Mode::Playing) {
      const int64_t net_us = std::max<int64_t>(0, s_.counters().latency_us);
      st.latency_us = static_cast<uint32_t>(std::min<uint64_t>(
          net::kStateMaxLatencyUs, static_cast<uint64_t>(net_us) + daemon_latency_us_));
    } else {
      st = {};  // no daemon session: nothing to report, the mic is closed
    }
    st.volume_permille = std::min(st.volume_permille, net::kStateMaxVolumePermille);
    ep_.set_state(s_, st);
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
            corked_ = false;
            set_corked(true);  // until the qube's stream arrives
            // The mic leg: S16LE 48 kHz mono, 10 ms = one Opus frame per 480 samples.
            send(proto::CaptureFormat{StreamFormat{SampleFormat::S16LE, 48000, 1}});
          } else {
            capture_ok_ = true;
          }
        } else if (auto* md = std::get_if<proto::MicData>(m)) {
          if (capture_ok_) {
            on_mic_data(md->pcm);
          }
        } else if (auto* l = std::get_if<proto::Latency>(m)) {
          daemon_latency_us_ = (l->device_latency_ns + l->daemon_buffer_ns) / 1000;
          steer(static_cast<double>(l->daemon_buffer_ns) / 1e6);
        } else if (auto* v = std::get_if<proto::VolumeState>(m)) {
          view_.volume_permille = v->volume_permille;
          set_flag(net::kStateMuted, v->muted);
        } else if (auto* ms = std::get_if<proto::MicState>(m)) {
          set_flag(net::kStateMicAttached, ms->attached);
          set_flag(net::kStateMicAllowed, ms->allowed);
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
  net::StatePayload view_{0, 0, 1000};               // the daemon's MicState/VolumeState, as flags
  static constexpr size_t kMaxFrame = 960;           // 20 ms at 48 kHz
  static constexpr size_t kLeadBytes = 10 * 48 * 4;  // 10 ms of S16 stereo
  std::array<int16_t, kMaxFrame * 2> pending_{};     // the frame being handed to the daemon
  size_t pending_len_ = 0;                           // samples in it (stereo)
  size_t pending_written_ = 0;
  int64_t next_frame_us_ = 0;
  bool corked_ = false;
  // Pacing: the daemon plays native streams at its device's clock and does
  // not rate-match them; this side follows its buffer instead (steer()), so
  // a device clock that differs from this machine's monotonic clock does not
  // pile up latency.
  double pace_ppm_ = 0;
  int64_t pending_start_us_ = 0;
  uint64_t daemon_latency_us_ = 0;
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
  // Each side paces its frames itself (the timer only wakes us up).
  loop.add_timer(
      std::chrono::milliseconds(2),
      [&] {
        int64_t now = net::mono_us();
        (*ep)->tick(now);
        for (auto& s : sides) {
          s->tick(now);
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

// The qube side plays the audio domain toward the agent with the daemon's
// own Session on a RelayBackend whose device is the network: stock or
// native agent alike (negotiation, formats, cork, mic start/stop, heartbeats),
// and toward a native agent the far audio domain's view of this qube: the
// playback latency (network leg + far bridge + far daemon) in its Latency
// reports, so apps keep audio and video in sync; volume and mute
// (VolumeState, applied at the far end only), and the mic gate (MicState,
// mirrored here as a second gate). One network frame per period, paced by
// CLOCK_MONOTONIC; ClockTicks give the agent that clock.
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
  auto& net_session = *(*ep)->sessions()[0];
  const uint32_t frame = net::frame_samples(eo.tx.frame_quarter_ms);
  // The Session's stream is pulled in steps of at most 10 ms and a longer
  // network frame is assembled from them: its ring then only needs to cover
  // a step, and the agent's backlog trimmer (which samples the reported
  // buffer) sees the same small sawtooth as with a local daemon.
  const uint32_t step = std::min<uint32_t>(frame, 480);
  const int64_t step_us = static_cast<int64_t>(step) * 1000 / 48;
  bridge::RelayBackend be({48000, 2}, step);

  EventLoop loop;
  daemon::SessionConfig sc;
  sc.name = o.name;
  sc.domid = o.domid;
  sc.audio_domid = o.audio_domid;
  sc.apply_gain = false;
  // The agent's chunks (a few ms) must cover one whole network frame per
  // pull, with room for the agent's scheduling jitter (15 ms: a loaded
  // machine delays an ordinary thread by 10+ ms now and then).
  sc.native_target_fill = std::chrono::milliseconds(step_us / 1000 + 15);
  daemon::Session session(loop, **t, be, sc, daemon::QubeState{});
  bool mic_wanted = false;
  session.set_mic_observer([&](const std::string&, bool started) {
    if (started != mic_wanted) {
      log_info("net-bridge: the agent %s the microphone", started ? "started" : "stopped");
    }
    mic_wanted = started;
    (*ep)->set_state(net_session, mic_wanted ? net::kStateMicWanted : 0);
  });

  // Buffers sized once.
  std::vector<float> mix(step * 2), mic(step * 2);
  std::vector<int16_t> pcm(frame * 2), mic_pcm(frame * 2);
  uint64_t frames_total = 0, unsent = 0;
  size_t assembled = 0;  // frames of the current network frame pulled so far
  bool frame_sound = false;
  int64_t next_frame = net::mono_us(), next_poll = 0, last_sound_us = -1'000'000'000;
  uint32_t remote_latency_us = 0;
  net::StatePayload applied{};
  bool applied_once = false;
  // Until the far side has said, the latency is estimated from what this
  // side knows: two frames (packetisation + the far jitter buffer's least)
  // + the coder's delay + half the round trip.
  auto latency_us = [&]() -> uint32_t {
    if (remote_latency_us != 0) {
      return remote_latency_us;
    }
    auto c = net_session.counters();
    const int64_t frame_us = static_cast<int64_t>(frame) * 1000 / 48;
    return static_cast<uint32_t>(2 * frame_us + 6500 + (c.rtt_us > 0 ? c.rtt_us / 2 : 0));
  };
  // The far daemon's view of this qube, as its native agent hears it.
  auto apply_peer_state = [&](int64_t now) {
    net::StatePayload st = net_session.peer_state(now);
    remote_latency_us = st.latency_us;
    if (applied_once && st.flags == applied.flags &&
        st.volume_permille == applied.volume_permille) {
      return;
    }
    applied = st;
    applied_once = true;
    session.set_mic_state((st.flags & net::kStateMicAttached) != 0,
                          (st.flags & net::kStateMicAllowed) != 0);
    if (st.volume_permille != 0) {
      session.set_volume((st.volume_permille + 5) / 10);
    }
    session.set_muted((st.flags & net::kStateMuted) != 0);
  };
  auto period = [&](int64_t start_us, int64_t now) {
    daemon::PeriodTiming timing;
    timing.device_frames = frames_total;
    // This step leaves with the frame it completes.
    timing.device_latency_us =
        latency_us() + static_cast<uint32_t>((frame - assembled - step) * 1000 / 48);
    timing.device_time_ns = (start_us + timing.device_latency_us) * 1000;
    // Playback: one frame to the network. After 300 ms of digital silence
    // (corked, or nothing playing) nothing is sent, so an idle qube costs
    // the network and the far audio domain nothing; the far side ends the
    // stream and restarts it cleanly when sound returns.
    be.pull(mix, timing);
    for (size_t i = 0; i < mix.size(); ++i) {
      int16_t v = static_cast<int16_t>(std::lround(std::clamp(mix[i], -1.0f, 1.0f) * 32767.0f));
      pcm[assembled * 2 + i] = v;
      frame_sound |= v != 0;
    }
    assembled += step;
    if (assembled == frame) {
      assembled = 0;
      if (frame_sound) {
        last_sound_us = start_us;
      }
      frame_sound = false;
      if (start_us - last_sound_us < 300'000 && !(*ep)->send_audio(net_session, pcm, now)) {
        ++unsent;  // the far side is not connected yet
      }
    }
    // Microphone: the jitter buffer plays on its own clock, always, as many
    // of its frames (the audio domain sends 10 ms) as make one period; the
    // Session's capture stream converts them to the agent's format and
    // gates them.
    const size_t rxf = net_session.rx_frame_samples();
    const size_t rxc = net_session.rx_channels();
    size_t filled = 0;
    std::fill(mic_pcm.begin(), mic_pcm.end(), int16_t{0});
    while (rxf > 0 && filled + rxf <= step) {
      net_session.pull(std::span(mic_pcm.data() + filled * rxc, rxf * rxc), now);
      filled += rxf;
    }
    for (size_t i = 0; i < step; ++i) {
      const bool have = i < filled;
      mic[2 * i] = have ? static_cast<float>(mic_pcm[rxc == 1 ? i : 2 * i]) / 32768.0f : 0.0f;
      mic[2 * i + 1] =
          have ? static_cast<float>(mic_pcm[rxc == 1 ? i : 2 * i + 1]) / 32768.0f : 0.0f;
    }
    be.push_mic(mic, timing);
    frames_total += step;
  };
  loop.add_fd((*ep)->fd(), POLLIN, [&](short) { (*ep)->handle_events(net::mono_us()); });
  loop.add_timer(
      std::chrono::milliseconds(2),
      [&] {
        int64_t now = net::mono_us();
        if (now >= next_poll) {
          next_poll = now + 20'000;
          (*ep)->tick(now);
        }
        apply_peer_state(now);
        if (now > next_frame + 20 * step_us) {
          next_frame = now;  // far behind (suspend, overload): resynchronise, no burst
        }
        while (now >= next_frame) {
          period(next_frame, now);
          next_frame += step_us;
        }
        if (g_dump) {
          g_dump = 0;
          print_counters(**ep);
        }
      },
      true);
  session.start();
  log_info("net-bridge: qube side, server %s", o.connect.c_str());
  g_loop = &loop;
  loop.run();
  g_loop = nullptr;
  session.stop();
  (*ep)->send_bye(net::mono_us());
  print_counters(**ep);
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
  app.add_option("--name", o.name, "qube: this qube's name, for the logs (default qube)");
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
