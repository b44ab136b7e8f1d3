// AgentSession: serves 4713/4714, negotiates, pumps PCM (see header).
#include "agent_session.hpp"

#include <poll.h>

#include <algorithm>
#include <cstring>

#include "qaudio/log.hpp"

namespace qaudio::agent {

using protocol::AgentNegotiator;
using Clock = AgentSession::Clock;
using namespace std::chrono_literals;

namespace {
constexpr auto kTick = 10ms;
constexpr auto kCorkDelay = 100ms;    // idle this long before corking (lets the tail drain)
constexpr auto kServeRetry = 1000ms;  // after a failed serve()
constexpr size_t kMaxControlBacklog = 1 << 16;
constexpr size_t kChunkFrames = 1024;
constexpr auto kTrimFade = 2ms;  // crossfade across a backlog trim
constexpr int64_t kTrimMaxStepNs = 100'000'000;

int64_t ns_of(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

std::optional<ProtocolMode> protocol_mode_from_string(std::string_view s) {
  if (s == "auto") {
    return ProtocolMode::Auto;
  }
  if (s == "stock") {
    return ProtocolMode::Stock;
  }
  if (s == "native") {
    return ProtocolMode::Native;
  }
  return std::nullopt;
}

std::string_view to_string(SessionPhase p) {
  switch (p) {
    case SessionPhase::Waiting:
      return "waiting";
    case SessionPhase::Negotiating:
      return "negotiating";
    case SessionPhase::Native:
      return "native";
    case SessionPhase::Stock:
      return "stock";
  }
  return "?";
}

AgentSession::AgentSession(EventLoop& loop,
                           AgentBackend& backend,
                           std::unique_ptr<Transport> transport,
                           AgentOptions opts)
    : loop_(loop),
      backend_(backend),
      transport_(std::move(transport)),
      opts_(opts),
      trimmer_(BacklogTrimmer::Config{.target_ns = int64_t{opts.latency_ms} * 1'000'000,
                                      .max_step_ns = kTrimMaxStepNs}) {}

AgentSession::~AgentSession() {
  stop();
}

Result<void> AgentSession::start() {
  if (auto r = backend_.start(loop_, *this); !r) {
    return r;
  }
  started_ = true;
  wake_watch_ = loop_.add_fd(backend_.rings().wake_fd(), POLLIN, [this](short) {
    backend_.rings().ack();
    pump_playback();
  });
  timer_ = loop_.add_timer(
      std::chrono::duration_cast<std::chrono::milliseconds>(kTick), [this] { on_timer(); }, true);
  log_info("backend %s: playback %s, capture %s", backend_.describe().c_str(),
           to_string(backend_.playback_format()).c_str(),
           to_string(backend_.capture_format()).c_str());
  serve();
  return {};
}

void AgentSession::stop() {
  if (!started_) {
    return;
  }
  started_ = false;
  if (ctl_ch_ && ctl_ch_->is_open() && phase_ == SessionPhase::Native) {
    send_message(protocol::PeerError::make(protocol::ErrorCode::ShuttingDown, "agent stopping"));
  }
  loop_.remove(play_watch_);
  loop_.remove(ctl_watch_);
  loop_.remove(wake_watch_);
  loop_.remove(timer_);
  loop_.remove(cork_timer_);
  if (play_ch_) {
    play_ch_->close();
  }
  if (ctl_ch_) {
    ctl_ch_->close();
  }
  play_ch_.reset();
  ctl_ch_.reset();
  backend_.stop();
}

void AgentSession::set_phase(SessionPhase p) {
  phase_ = p;
  stats_.phase.store(static_cast<int>(p));
}

// ------------------------------------------------------------ channels ----

void AgentSession::serve() {
  ChannelAddress play{opts_.domid, opts_.audiovm_domid, protocol::kPortPlayback};
  ChannelAddress ctl{opts_.domid, opts_.audiovm_domid, protocol::kPortControl};
  auto p = transport_->serve(play, opts_.playback_ring);
  auto c = p ? transport_->serve(ctl, opts_.control_ring) : std::move(p);
  if (!p || !c) {
    const auto& err = !p ? p.error() : c.error();
    log_error("cannot serve the audio ports for domain %u: %s (retrying)", opts_.audiovm_domid,
              err.message.c_str());
    play_ch_.reset();
    ctl_ch_.reset();
    return;  // on_timer() retries
  }
  play_ch_ = std::move(*p);
  ctl_ch_ = std::move(*c);
  play_watch_ = loop_.add_fd(play_ch_->fd(), POLLIN, [this](short) { on_channel_event(false); });
  ctl_watch_ = loop_.add_fd(ctl_ch_->fd(), POLLIN, [this](short) { on_channel_event(true); });
  set_phase(SessionPhase::Waiting);
  log_info("waiting for the audio domain (%u) on %s and %s", opts_.audiovm_domid,
           play_ch_->describe().c_str(), ctl_ch_->describe().c_str());
}

void AgentSession::disconnect(const std::string& why) {
  bool was_connected = phase_ != SessionPhase::Waiting;
  if (was_connected) {
    stats_.disconnects++;
    log_info("audio domain connection closed: %s; serving again", why.c_str());
  } else {
    log_info("re-serving: %s", why.c_str());
  }
  loop_.remove(play_watch_);
  loop_.remove(ctl_watch_);
  play_watch_ = ctl_watch_ = 0;
  if (play_ch_) {
    play_ch_->close();
  }
  if (ctl_ch_) {
    ctl_ch_->close();
  }
  play_ch_.reset();
  ctl_ch_.reset();
  neg_.reset();
  heartbeat_.reset();
  ctl_out_.clear();
  play_out_off_ = play_out_len_ = 0;
  play_capacity_ = 0;
  trim_frames_ = 0;
  trimmer_.reset();
  playback_ready_ = capture_ready_ = false;
  playback_fallback_tried_ = capture_fallback_tried_ = false;
  if (last_latency_) {
    last_latency_.reset();
    backend_.set_remote_latency(std::chrono::nanoseconds(0));  // withdraw a stale report
  }
  set_phase(SessionPhase::Waiting);
  if (started_) {
    serve();
  }
}

void AgentSession::set_audiovm_domid(uint32_t domid) {
  if (domid == opts_.audiovm_domid) {
    return;
  }
  log_info("audio domain changed from %u to %u", opts_.audiovm_domid, domid);
  opts_.audiovm_domid = domid;
  if (started_) {
    disconnect("audio domain changed");
  }
}

void AgentSession::on_channel_event(bool control) {
  Channel* ch = control ? ctl_ch_.get() : play_ch_.get();
  if (ch == nullptr) {
    return;
  }
  ch->handle_events();
  loop_.update_fd(control ? ctl_watch_ : play_watch_, ch->fd(), POLLIN);
  if (ch->state() == ChannelState::Closed) {
    disconnect(std::string(control ? "control" : "playback") + " channel closed by the peer");
    return;
  }
  maybe_begin_negotiation();
  if (!ctl_ch_) {
    return;
  }
  // Always read control (data_ready() also re-arms the wake-up of channels
  // that signal only a waiting reader).
  read_control();
  if (!ctl_ch_) {
    return;  // read_control disconnected
  }
  flush_control();
  if (ctl_ch_) {
    pump_playback();
  }
}

void AgentSession::maybe_begin_negotiation() {
  if (phase_ != SessionPhase::Waiting || !play_ch_ || !ctl_ch_ || !play_ch_->is_open() ||
      !ctl_ch_->is_open()) {
    return;
  }
  log_info("audio domain connected (%s)", ctl_ch_->describe().c_str());
  AgentNegotiator::Options o;
  o.timeout = opts_.negotiation_timeout;
  neg_.emplace(o);
  if (opts_.protocol == ProtocolMode::Stock) {
    set_phase(SessionPhase::Stock);
    on_negotiated();
    return;
  }
  set_phase(SessionPhase::Negotiating);
  auto hello = neg_->start(Clock::now());
  queue_control(hello);
}

void AgentSession::on_negotiated() {
  stats_.connections++;
  sent_corked_ = false;  // playback starts running
  sent_mic_ = false;     // the mic starts stopped
  if (phase_ == SessionPhase::Native) {
    log_info("native protocol v%u (daemon rate %u Hz, period %u)", neg_->version(),
             neg_->welcome()->device_rate, neg_->welcome()->period_frames);
    queue_control(neg_->hello_frame());
    heartbeat_.emplace(opts_.heartbeat_interval, opts_.heartbeat_misses);
    heartbeat_->start(Clock::now());
    send_message(protocol::PlaybackFormat{backend_.playback_format()});
    send_message(protocol::CaptureFormat{backend_.capture_format()});
  } else {
    log_info("stock protocol%s%s", neg_ && !neg_->fallback_reason().empty() ? ": " : "",
             neg_ ? std::string(neg_->fallback_reason()).c_str() : "");
    set_wire_playback(kStockFormat);
    set_wire_capture(kStockFormat);
  }
  send_state();
}

// ------------------------------------------------------------- control ----

void AgentSession::read_control() {
  switch (phase_) {
    case SessionPhase::Waiting:
      ctl_ch_->data_ready();  // arm the wake-up; nothing is expected yet
      break;
    case SessionPhase::Negotiating:
      read_control_negotiating();
      break;
    case SessionPhase::Native:
      read_control_native();
      break;
    case SessionPhase::Stock:
      read_control_stock();
      break;
  }
}

void AgentSession::read_control_negotiating() {
  std::array<std::byte, 1024> buf;
  while (phase_ == SessionPhase::Negotiating && ctl_ch_ && ctl_ch_->data_ready() > 0) {
    size_t n = ctl_ch_->read(buf);
    if (n == 0) {
      break;
    }
    size_t taken = neg_->feed(std::span(buf).first(n));
    if (neg_->state() == AgentNegotiator::State::Native) {
      set_phase(SessionPhase::Native);
      on_negotiated();
      // The rest belongs to the native session.
      std::span<const std::byte> rest = std::span(buf).subspan(taken, n - taken);
      auto& dec = neg_->decoder();
      while (!rest.empty() && ctl_ch_) {
        size_t k = dec.feed(rest);
        rest = rest.subspan(k);
        read_control_native();  // drains the decoder (and reads more)
        if (k == 0 && !rest.empty()) {
          disconnect("control stream overflow during negotiation");
          return;
        }
      }
      return;
    }
    if (neg_->state() == AgentNegotiator::State::Stock) {
      if (opts_.protocol == ProtocolMode::Native) {
        disconnect("no native daemon (" + std::string(neg_->fallback_reason()) +
                   ") and --protocol native");
        return;
      }
      set_phase(SessionPhase::Stock);
      on_negotiated();
      return;  // bytes after a non-welcome are not ours to interpret
    }
  }
}

void AgentSession::read_control_native() {
  auto& dec = neg_->decoder();
  for (;;) {
    // Drain complete frames first.
    for (;;) {
      auto r = dec.next();
      if (auto* m = std::get_if<protocol::Message>(&r)) {
        if (heartbeat_) {
          heartbeat_->on_peer_message(Clock::now());
        }
        handle_message(*m);
        if (!ctl_ch_ || phase_ != SessionPhase::Native) {
          return;
        }
        continue;
      }
      if (auto* e = std::get_if<protocol::DecodeError>(&r)) {
        std::string why = "protocol error from the daemon: " + e->reason;
        send_message(protocol::PeerError::make(protocol::ErrorCode::Protocol, e->reason));
        flush_control();
        disconnect(why);
        return;
      }
      break;  // NeedMore
    }
    if (!ctl_ch_ || ctl_ch_->data_ready() == 0) {
      return;
    }
    auto space = dec.write_space();
    if (space.empty()) {
      return;
    }
    size_t n = ctl_ch_->read(space);
    if (n == 0) {
      return;
    }
    dec.commit(n);
  }
}

void AgentSession::read_control_stock() {
  // Stock: the daemon sends raw mic PCM (S16LE 44.1 kHz stereo), nothing else.
  const size_t fb = kStockFormat.frame_bytes();
  while (ctl_ch_ && ctl_ch_->data_ready() >= fb) {
    size_t want = std::min(ctl_ch_->data_ready(), cap_buf_.size()) / fb * fb;
    if (want == 0) {
      return;
    }
    size_t n = ctl_ch_->read(std::span(cap_buf_).first(want));
    if (n == 0) {
      return;
    }
    // Channels deliver what data_ready() promised; a short read of a partial
    // frame would desynchronise the stereo pairs, so keep whole frames only.
    deliver_mic(std::span(cap_buf_).first(n / fb * fb));
  }
}

void AgentSession::handle_message(const protocol::Message& m) {
  using namespace protocol;
  if (auto* a = std::get_if<FormatAccepted>(&m)) {
    if (a->direction == StreamDirection::Playback) {
      set_wire_playback(a->format);
    } else {
      set_wire_capture(a->format);
    }
    log_info("daemon accepted %s format %s",
             a->direction == StreamDirection::Playback ? "playback" : "capture",
             to_string(a->format).c_str());
  } else if (auto* r = std::get_if<FormatRejected>(&m)) {
    bool play = r->direction == StreamDirection::Playback;
    bool& tried = play ? playback_fallback_tried_ : capture_fallback_tried_;
    log_warn("daemon rejected %s format %s (reason %u)", play ? "playback" : "capture",
             to_string(r->format).c_str(), static_cast<unsigned>(r->reason));
    if (!tried && !(r->format == kStockFormat)) {
      tried = true;
      if (play) {
        send_message(PlaybackFormat{kStockFormat});
      } else {
        send_message(CaptureFormat{kStockFormat});
      }
    } else {
      log_error("no %s format the daemon accepts; %s disabled on this connection",
                play ? "playback" : "capture", play ? "playback" : "microphone");
    }
  } else if (auto* l = std::get_if<Latency>(&m)) {
    last_latency_ = *l;
    stats_.latency_reports++;
    report_latency();
  } else if (auto* t = std::get_if<ClockTick>(&m)) {
    stats_.clock_ticks++;
    backend_.on_clock_tick(t->frames_played, t->device_time_ns, t->device_rate);
  } else if (auto* md = std::get_if<MicData>(&m)) {
    deliver_mic(md->pcm);
  } else if (auto* v = std::get_if<VolumeState>(&m)) {
    log_debug("volume %u/1000%s", v->volume_permille, v->muted ? " (muted)" : "");
  } else if (auto* ms = std::get_if<MicState>(&m)) {
    log_info("microphone %s, policy %s", ms->attached ? "attached" : "detached",
             ms->allowed ? "allows" : "denies");
  } else if (auto* e = std::get_if<PeerError>(&m)) {
    std::string text(e->message());
    disconnect("daemon error " + std::to_string(static_cast<unsigned>(e->code)) + ": " + text);
  }
  // Heartbeat: counted by on_peer_message; anything else is ignored.
}

void AgentSession::deliver_mic(std::span<const std::byte> pcm) {
  if (!capture_ready_ || !sent_mic_) {
    return;  // not asked for (or not agreed): nothing reaches the apps
  }
  const size_t fb = capture_wire_.frame_bytes();
  pcm = pcm.first(pcm.size() / fb * fb);
  auto& ring = backend_.rings().capture();
  if (!cap_conv_) {
    stats_.mic_bytes += ring.write(pcm);
    return;
  }
  while (!pcm.empty()) {
    auto d = cap_conv_->process(pcm, cap_out_);
    if (d.in_bytes == 0) {
      break;
    }
    pcm = pcm.subspan(d.in_bytes);
    stats_.mic_bytes += ring.write(std::span(cap_out_).first(d.out_bytes));
  }
}

void AgentSession::send_state() {
  if (!output_active_) {
    send_cork(true);
  }
  if (mic_in_use_) {
    send_mic(true);
  }
}

void AgentSession::send_cork(bool cork) {
  if (cork) {
    pump_playback();  // hand over what is queued before the cork
  }
  if (phase_ == SessionPhase::Native) {
    send_message(cork ? protocol::Message{protocol::Cork{}}
                      : protocol::Message{protocol::Uncork{}});
  } else {
    send_word(cork ? protocol::StockWord::Cork : protocol::StockWord::Uncork);
  }
  sent_corked_ = cork;
  (cork ? stats_.corks : stats_.uncorks)++;
  log_debug("playback %s", cork ? "corked" : "uncorked");
  if (!cork) {
    // Start from fresh data: what the ring holds is older than the cork.
    // The daemon prebuffers again: a new level for the trimmer.
    trim_frames_ = 0;
    trimmer_.reset();
    drop_stale_playback();
    if (play_conv_) {
      play_conv_->reset();
    }
  }
}

void AgentSession::send_mic(bool start) {
  if (phase_ == SessionPhase::Native) {
    send_message(start ? protocol::Message{protocol::MicStart{}}
                       : protocol::Message{protocol::MicStop{}});
  } else {
    send_word(start ? protocol::StockWord::MicStart : protocol::StockWord::MicStop);
  }
  sent_mic_ = start;
  (start ? stats_.mic_starts : stats_.mic_stops)++;
  if (cap_conv_) {
    cap_conv_->reset();
  }
  log_info("microphone %s requested", start ? "start" : "stop");
}

void AgentSession::send_message(const protocol::Message& m) {
  if (!neg_) {
    return;
  }
  uint8_t version = neg_->version() != 0 ? neg_->version() : protocol::kProtocolVersion;
  auto n = protocol::encode(m, frame_, version);
  if (!n) {
    log_error("cannot encode %s: %s",
              std::string(protocol::to_string(protocol::type_of(m))).c_str(),
              n.error().message.c_str());
    return;
  }
  queue_control(std::span(frame_).first(*n));
}

void AgentSession::send_word(protocol::StockWord w) {
  auto b = protocol::word_bytes(w);
  queue_control(b);
}

void AgentSession::queue_control(std::span<const std::byte> bytes) {
  if (!ctl_ch_) {
    return;
  }
  if (ctl_out_.empty()) {
    size_t n = ctl_ch_->write(bytes);
    bytes = bytes.subspan(n);
  }
  if (bytes.empty()) {
    return;
  }
  if (ctl_out_.size() + bytes.size() > kMaxControlBacklog) {
    log_warn("the daemon does not read its control channel; dropping the connection");
    // Deferred: disconnect() may not run while a caller walks the channel.
    loop_.post([this] {
      if (ctl_ch_ && ctl_out_.size() > kMaxControlBacklog / 2) {
        disconnect("control backlog");
      }
    });
    return;
  }
  ctl_out_.insert(ctl_out_.end(), bytes.begin(), bytes.end());
}

void AgentSession::flush_control() {
  if (!ctl_ch_ || ctl_out_.empty()) {
    return;
  }
  size_t n = ctl_ch_->write(ctl_out_);
  ctl_out_.erase(ctl_out_.begin(), ctl_out_.begin() + static_cast<ptrdiff_t>(n));
}

// ------------------------------------------------------------ playback ----

void AgentSession::set_wire_playback(StreamFormat f) {
  const StreamFormat src = backend_.playback_format();
  wire_format_ = f;
  play_conv_.reset();
  play_in_.assign(kChunkFrames * src.frame_bytes(), std::byte{0});
  if (!(f == src)) {
    auto c = PcmConverter::create(src, f, kChunkFrames);
    if (!c) {
      log_error("playback: %s", c.error().message.c_str());
      return;
    }
    play_conv_ = std::move(*c);
    play_out_.assign(play_conv_->max_out_bytes(play_in_.size()), std::byte{0});
  } else {
    play_out_.assign(play_in_.size(), std::byte{0});
  }
  play_out_off_ = play_out_len_ = 0;
  const size_t max_trim = static_cast<size_t>(kTrimMaxStepNs * src.rate / 1'000'000'000) +
                          src.rate * static_cast<size_t>(kTrimFade.count()) / 1000;
  trim_buf_.assign(max_trim * src.frame_bytes(), std::byte{0});
  trim_frames_ = 0;
  trimmer_.reset();
  playback_ready_ = true;
  log_info("playback on the wire: %s%s", to_string(f).c_str(),
           play_conv_ ? " (converted)" : " (as the app plays it)");
  drop_stale_playback();
  pump_playback();
}

void AgentSession::set_wire_capture(StreamFormat f) {
  const StreamFormat dst = backend_.capture_format();
  capture_wire_ = f;
  cap_conv_.reset();
  cap_buf_.assign(std::max<size_t>(8192 / f.frame_bytes(), 1) * f.frame_bytes(), std::byte{0});
  if (!(f == dst)) {
    auto c = PcmConverter::create(f, dst, cap_buf_.size() / f.frame_bytes());
    if (!c) {
      log_error("capture: %s", c.error().message.c_str());
      return;
    }
    cap_conv_ = std::move(*c);
    cap_out_.assign(cap_conv_->max_out_bytes(cap_buf_.size()), std::byte{0});
  }
  capture_ready_ = true;
}

void AgentSession::drop_stale_playback() {
  auto& ring = backend_.rings().playback();
  const StreamFormat src = backend_.playback_format();
  const size_t fb = src.frame_bytes();
  size_t keep = 0;
  bool connected = phase_ == SessionPhase::Native || phase_ == SessionPhase::Stock;
  if (!(connected && sent_corked_)) {
    uint32_t ms =
        opts_.max_queue_ms != 0 ? opts_.max_queue_ms : std::max<uint32_t>(opts_.latency_ms * 4, 40);
    keep = src.bytes_for_ms(ms);
    if (trim_frames_ > 0) {  // a trim waits for its frames: room for them too
      const size_t fade = src.rate * static_cast<size_t>(kTrimFade.count()) / 1000;
      keep += (trim_frames_ + fade) * fb;
    }
  }
  size_t have = ring.readable() / fb * fb;
  if (have > keep) {
    stats_.dropped_bytes += ring.skip((have - keep) / fb * fb);
  }
}

void AgentSession::pump_playback() {
  drop_stale_playback();
  bool connected = phase_ == SessionPhase::Native || phase_ == SessionPhase::Stock;
  if (!connected || !playback_ready_ || sent_corked_ || !play_ch_) {
    return;
  }
  auto& ring = backend_.rings().playback();
  const size_t fb = backend_.playback_format().frame_bytes();
  for (;;) {
    if (play_out_off_ < play_out_len_) {
      size_t n = play_ch_->write(
          std::span(play_out_).subspan(play_out_off_, play_out_len_ - play_out_off_));
      play_out_off_ += n;
      stats_.playback_bytes += n;
      if (play_out_off_ < play_out_len_) {
        return;  // the channel is full: its fd wakes us when space frees
      }
    }
    play_out_off_ = play_out_len_ = 0;
    if (trim_frames_ > 0) {
      if (!splice_trim()) {
        return;  // holding until the trim's frames are in (the daemon has them queued)
      }
      continue;
    }
    size_t space = play_ch_->buffer_space();
    size_t avail = ring.readable() / fb * fb;
    if (space == 0 || avail == 0) {
      return;
    }
    if (!play_conv_) {
      size_t n = std::min({avail, space / fb * fb, play_out_.size()});
      if (n == 0) {
        n = std::min(avail, fb);  // less than a frame of room: write it in parts
      }
      play_out_len_ = ring.read(std::span(play_out_).first(n));
    } else {
      size_t n = ring.read(std::span(play_in_).first(std::min(avail, play_in_.size())));
      auto d = play_conv_->process(std::span(play_in_).first(n), play_out_);
      play_out_len_ = d.out_bytes;
    }
  }
}

// A decided trim: once trim + fade frames are in the ring, replace them by
// the fade frames of the crossfade (splice_drop) and queue those for 4713.
// Returns false while the frames are not all in yet.
bool AgentSession::splice_trim() {
  const StreamFormat src = backend_.playback_format();
  const size_t fb = src.frame_bytes();
  const size_t fade = src.rate * static_cast<size_t>(kTrimFade.count()) / 1000;
  const size_t need = (trim_frames_ + fade) * fb;
  auto& ring = backend_.rings().playback();
  if (ring.readable() < need) {
    return false;
  }
  std::span<std::byte> buf = std::span(trim_buf_).first(need);
  ring.read(buf);
  const size_t n = splice_drop(buf, src, trim_frames_, fade);
  stats_.trims++;
  stats_.trimmed_frames += trim_frames_;
  log_debug("trimmed a backlog of %.1f ms", static_cast<double>(trim_frames_) * 1e3 / src.rate);
  trim_frames_ = 0;
  if (!play_conv_) {
    std::memcpy(play_out_.data(), buf.data(), std::min(n, play_out_.size()));
    play_out_len_ = std::min(n, play_out_.size());
  } else {
    auto d = play_conv_->process(buf.first(n), play_out_);
    play_out_len_ = d.out_bytes;
  }
  return true;
}

// Native: the queue (agent ring + daemon buffer) for the trimmer; decides
// a trim when one is due.
void AgentSession::observe_backlog(Clock::time_point now) {
  if (!opts_.trim_backlog || phase_ != SessionPhase::Native || !playback_ready_ || sent_corked_ ||
      !last_latency_) {
    return;
  }
  const StreamFormat src = backend_.playback_format();
  auto bytes_ns = [](size_t bytes, const StreamFormat& f) {
    return static_cast<int64_t>(static_cast<double>(bytes) / static_cast<double>(f.frame_bytes()) *
                                1e9 / f.rate);
  };
  // The channel is left out: the daemon reads it at once (a backlog there
  // shows in the daemon buffer soon after), and on unix its in-flight count
  // includes the kernel's per-write overhead, which would trim real audio.
  const int64_t queue = bytes_ns(backend_.rings().playback().readable(), src) +
                        static_cast<int64_t>(last_latency_->daemon_buffer_ns);
  trimmer_.observe(queue, ns_of(now));
  const int64_t level = trimmer_.level_ns();
  backend_.on_queue(
      std::chrono::nanoseconds(queue),
      std::chrono::nanoseconds(level > 0 ? level : int64_t{opts_.latency_ms} * 1'000'000), true);
  if (trim_frames_ == 0) {
    if (int64_t d = trimmer_.due(ns_of(now)); d > 0) {
      trim_frames_ = static_cast<size_t>(static_cast<double>(d) * src.rate / 1e9);
    }
  }
}

// --------------------------------------------------------------- timer ----

void AgentSession::on_timer() {
  auto now = Clock::now();
  if (!play_ch_ || !ctl_ch_) {
    if (now - last_serve_try_ >= kServeRetry) {
      last_serve_try_ = now;
      serve();
    }
    return;
  }
  if (phase_ == SessionPhase::Negotiating) {
    neg_->poll(now);
    if (neg_->state() == AgentNegotiator::State::Stock) {
      if (opts_.protocol == ProtocolMode::Native) {
        disconnect("no native daemon answered within the timeout and --protocol native");
        return;
      }
      set_phase(SessionPhase::Stock);
      on_negotiated();
    }
  }
  if (phase_ == SessionPhase::Native && heartbeat_) {
    if (heartbeat_->peer_gone(now)) {
      disconnect("the daemon stopped answering heartbeats");
      return;
    }
    if (auto hb = heartbeat_->due(now)) {
      send_message(*hb);
    }
  }
  read_control();
  if (!ctl_ch_) {
    return;
  }
  flush_control();
  observe_backlog(now);
  if (phase_ == SessionPhase::Stock && playback_ready_ && !sent_corked_) {
    // Stock: no reports; what the agent sees queued is its ring + the channel.
    const StreamFormat src = backend_.playback_format();
    auto ns = [](size_t bytes, const StreamFormat& f) {
      return static_cast<int64_t>(static_cast<double>(bytes) /
                                  static_cast<double>(f.frame_bytes()) * 1e9 / f.rate);
    };
    backend_.on_queue(std::chrono::nanoseconds(ns(backend_.rings().playback().readable(), src) +
                                               ns(channel_in_flight(), wire_format_)),
                      std::chrono::milliseconds(opts_.latency_ms), false);
  }
  pump_playback();
  if (playback_ready_ && !sent_corked_ && now - last_queue_log_ >= std::chrono::seconds(1)) {
    last_queue_log_ = now;
    log_queue();
  }
}

void AgentSession::report_latency() {
  if (!last_latency_) {
    return;
  }
  // Our own queue beyond the backend's: the playback ring plus what the
  // channel may hold (bounded by its ring, counted at half full).
  const StreamFormat src = backend_.playback_format();
  auto bytes_ns = [](size_t bytes, const StreamFormat& f) {
    return std::chrono::nanoseconds(static_cast<int64_t>(
        static_cast<double>(bytes) / static_cast<double>(f.frame_bytes()) * 1e9 / f.rate));
  };
  auto queue = bytes_ns(backend_.rings().playback().readable(), src) +
               bytes_ns(channel_in_flight(), wire_format_);
  auto remote =
      std::chrono::nanoseconds(last_latency_->device_latency_ns + last_latency_->daemon_buffer_ns);
  backend_.set_remote_latency(queue + remote);
}

// Playback bytes written to 4713 that the daemon has not read yet: the
// channel's capacity (the most room it ever showed on this connection) minus
// its room now.
size_t AgentSession::channel_in_flight() {
  if (!play_ch_ || !play_ch_->is_open()) {
    return 0;
  }
  const size_t space = play_ch_->buffer_space();
  play_capacity_ = std::max(play_capacity_, space);
  return play_capacity_ - space + (play_out_len_ - play_out_off_);
}

// Once a second at debug level: where the playback latency is, stage by stage.
void AgentSession::log_queue() {
  const StreamFormat src = backend_.playback_format();
  auto ms = [](size_t bytes, const StreamFormat& f) {
    return static_cast<double>(bytes) / static_cast<double>(f.frame_bytes()) * 1e3 / f.rate;
  };
  log_debug(
      "playback queue: backend %.1f ms, agent ring %.1f ms, channel %.1f ms, daemon %.1f ms, "
      "device %.1f ms",
      static_cast<double>(backend_.own_latency().count()) / 1e6,
      ms(backend_.rings().playback().readable(), src), ms(channel_in_flight(), wire_format_),
      last_latency_ ? static_cast<double>(last_latency_->daemon_buffer_ns) / 1e6 : -1.0,
      last_latency_ ? static_cast<double>(last_latency_->device_latency_ns) / 1e6 : -1.0);
}

// ------------------------------------------------------------ listener ----

void AgentSession::on_output_active(bool active) {
  output_active_ = active;
  bool connected = phase_ == SessionPhase::Native || phase_ == SessionPhase::Stock;
  if (!connected) {
    return;
  }
  if (active && sent_corked_) {
    send_cork(false);
    pump_playback();
  } else if (!active && !sent_corked_) {
    // Cork after the tail drained: on_timer() checks again in kCorkDelay.
    loop_.remove(cork_timer_);
    cork_timer_ =
        loop_.add_timer(std::chrono::duration_cast<std::chrono::milliseconds>(kCorkDelay), [this] {
          cork_timer_ = 0;
          bool connected_now = phase_ == SessionPhase::Native || phase_ == SessionPhase::Stock;
          if (connected_now && !output_active_ && !sent_corked_) {
            send_cork(true);
          }
        });
  }
}

void AgentSession::on_mic_in_use(bool in_use) {
  mic_in_use_ = in_use;
  bool connected = phase_ == SessionPhase::Native || phase_ == SessionPhase::Stock;
  if (connected && in_use != sent_mic_) {
    send_mic(in_use);
  }
}

void AgentSession::on_backend_error(const std::string& message) {
  log_error("sound system: %s", message.c_str());
  fatal_ = message;
  loop_.quit();
}

}  // namespace qaudio::agent
