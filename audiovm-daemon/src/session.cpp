// A session per configured qube: connection life cycle with backoff, the
// playback and mic pumps, and the stock / native protocol on port 4714
// (see session.hpp for the behaviour).
#include "session.hpp"

#include <poll.h>

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstring>

#include "qaudio/log.hpp"

namespace qaudio::daemon {

namespace proto = qaudio::protocol;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {
constexpr size_t kIoChunk = 16384;          // bytes per channel read
constexpr size_t kMaxReadsPerWake = 8;      // bounds the work one wake-up does
constexpr size_t kMaxOutBytes = 16 * 1024;  // required control frames not yet sent
constexpr uint32_t kCapsOffered = proto::kCapAll;

// Mirrors PlaybackStream's ring sizing (max of the configured ring and twice
// the target fill plus one conversion chunk of 1024 frames, rounded up to a
// power of two): the most a qube can make us hold for it.
size_t ring_bound(const StreamFormat& f,
                  std::chrono::milliseconds ring,
                  std::chrono::milliseconds target) {
  size_t t = f.bytes_for_ms(static_cast<uint32_t>(target.count()));
  size_t r = f.bytes_for_ms(static_cast<uint32_t>(ring.count()));
  return std::bit_ceil(std::max(r, 2 * t + 1024 * f.frame_bytes()));
}

int64_t ms_since(EventLoop::Clock::time_point t) {
  return duration_cast<milliseconds>(EventLoop::Clock::now() - t).count();
}
}  // namespace

std::string_view to_string(SessionState s) {
  switch (s) {
    case SessionState::Waiting:
      return "waiting";
    case SessionState::Connecting:
      return "connecting";
    case SessionState::Running:
      return "running";
    case SessionState::Stopped:
      return "stopped";
  }
  return "invalid";
}

std::string_view to_string(SessionProtocol p) {
  switch (p) {
    case SessionProtocol::None:
      return "none";
    case SessionProtocol::Stock:
      return "stock";
    case SessionProtocol::Negotiating:
      return "negotiating";
    case SessionProtocol::Native:
      return "native";
  }
  return "invalid";
}

// Wraps the PlaybackStream the backend pulls and keeps the last PeriodTiming
// (a seqlock of atomics: the RT thread never waits, readers retry) so that
// ClockTick can report the device clock.
class Session::TimedSource final : public PlaybackSource {
 public:
  explicit TimedSource(PlaybackStream* stream) : stream_(stream) {}

  size_t pull(std::span<float> out, size_t frames, const PeriodTiming& t) override {
    uint32_t s = seq_.load(std::memory_order_relaxed);
    seq_.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    frames_.store(t.device_frames, std::memory_order_relaxed);
    time_ns_.store(t.device_time_ns, std::memory_order_relaxed);
    latency_us_.store(t.device_latency_us, std::memory_order_relaxed);
    seq_.store(s + 2, std::memory_order_release);
    return stream_->pull(out, frames, t);
  }

  // The last timing, or nullopt before the first period.
  std::optional<PeriodTiming> last() const {
    for (int attempt = 0; attempt < 16; ++attempt) {
      uint32_t s1 = seq_.load(std::memory_order_acquire);
      if (s1 & 1u) {
        continue;
      }
      PeriodTiming t;
      t.device_frames = frames_.load(std::memory_order_relaxed);
      t.device_time_ns = time_ns_.load(std::memory_order_relaxed);
      t.device_latency_us = latency_us_.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (seq_.load(std::memory_order_relaxed) == s1) {
        if (s1 == 0) {
          return std::nullopt;
        }
        return t;
      }
    }
    return std::nullopt;
  }

 private:
  PlaybackStream* stream_;
  std::atomic<uint32_t> seq_{0};
  std::atomic<uint64_t> frames_{0};
  std::atomic<int64_t> time_ns_{0};
  std::atomic<uint32_t> latency_us_{0};
};

Session::Session(EventLoop& loop,
                 Transport& transport,
                 Backend& backend,
                 SessionConfig config,
                 const QubeState& state)
    : loop_(loop),
      transport_(transport),
      backend_(backend),
      cfg_(std::move(config)),
      backoff_(cfg_.backoff_initial),
      heartbeat_(cfg_.heartbeat_interval, cfg_.heartbeat_misses),
      volume_percent_(std::min(state.volume_percent, kMaxVolumePercent)),
      muted_(state.muted),
      buf_(kIoChunk),
      ctl_buf_(kIoChunk),
      mic_buf_(kIoChunk) {}

Session::~Session() {
  stop();
}

void Session::start() {
  if (state_ == SessionState::Running || state_ == SessionState::Connecting) {
    return;
  }
  state_ = SessionState::Waiting;
  backoff_ = cfg_.backoff_initial;
  try_connect();
}

void Session::stop() {
  if (state_ == SessionState::Stopped) {
    return;
  }
  if (state_ == SessionState::Running || state_ == SessionState::Connecting) {
    close_session("daemon stopping", false);
  }
  if (reconnect_timer_ != 0) {
    loop_.remove(reconnect_timer_);
    reconnect_timer_ = 0;
  }
  state_ = SessionState::Stopped;
}

// --------------------------------------------------------- connection ----

void Session::try_connect() {
  if (state_ != SessionState::Waiting) {
    return;
  }
  auto play =
      transport_.connect({cfg_.domid, cfg_.audio_domid, proto::kPortPlayback}, milliseconds(0));
  std::string err;
  if (!play) {
    err = play.error().message;
  } else {
    auto ctl =
        transport_.connect({cfg_.domid, cfg_.audio_domid, proto::kPortControl}, milliseconds(0));
    if (!ctl) {
      err = ctl.error().message;
      (*play)->close();
    } else {
      play_ch_ = std::move(*play);
      ctl_ch_ = std::move(*ctl);
    }
  }
  if (!err.empty()) {
    if (!logged_waiting_) {
      log_info("%s: waiting for the qube (%s)", cfg_.name.c_str(), err.c_str());
      logged_waiting_ = true;
    } else {
      log_debug("%s: not reachable yet (%s)", cfg_.name.c_str(), err.c_str());
    }
    schedule_reconnect();
    return;
  }
  state_ = SessionState::Connecting;
  connect_started_ = EventLoop::Clock::now();
  play_watch_ = loop_.add_fd(play_ch_->fd(), POLLIN, [this](short) { on_channel_event(0); });
  ctl_watch_ = loop_.add_fd(ctl_ch_->fd(), POLLIN, [this](short) { on_channel_event(1); });
  tick_timer_ = loop_.add_timer(
      cfg_.tick, [this] { on_tick(); }, true);
  check_handshake();
}

void Session::schedule_reconnect() {
  if (reconnect_timer_ != 0) {
    loop_.remove(reconnect_timer_);
  }
  reconnect_timer_ = loop_.add_timer(backoff_, [this] {
    reconnect_timer_ = 0;
    try_connect();
  });
  backoff_ = std::min(backoff_ * 2, cfg_.backoff_max);
}

void Session::check_handshake() {
  if (state_ != SessionState::Connecting) {
    return;
  }
  play_ch_->handle_events();
  ctl_ch_->handle_events();
  loop_.update_fd(play_watch_, play_ch_->fd(), POLLIN);
  loop_.update_fd(ctl_watch_, ctl_ch_->fd(), POLLIN);
  if (play_ch_->state() == ChannelState::Closed || ctl_ch_->state() == ChannelState::Closed) {
    close_session("the qube closed the channel during the handshake", false);
    return;
  }
  if (play_ch_->is_open() && ctl_ch_->is_open()) {
    on_connected();
    return;
  }
  if (ms_since(connect_started_) > cfg_.handshake_timeout.count()) {
    close_session("handshake timed out", false);
  }
}

void Session::on_connected() {
  auto r = open_playback(kStockFormat, /*adaptive=*/true);
  if (!r) {
    close_session("cannot open the playback stream: " + r.error().message, false);
    return;
  }
  state_ = SessionState::Running;
  connected_at_ = EventLoop::Clock::now();
  logged_waiting_ = false;
  last_error_.clear();
  totals_.connects++;
  proto::DaemonNegotiator::Options o;
  o.native_enabled = cfg_.native_enabled;
  o.capabilities = kCapsOffered;
  DeviceFormat dev = backend_.format();
  o.device_rate = std::clamp(dev.rate, proto::kMinDeviceRate, proto::kMaxDeviceRate);
  o.period_frames = std::clamp<uint32_t>(dev.rate * static_cast<uint32_t>(cfg_.tick.count()) / 1000,
                                         1, proto::kMaxPeriodFrames);
  neg_ = std::make_unique<proto::DaemonNegotiator>(o);
  stock_ = proto::StockControlDecoder{};
  report_timer_ = loop_.add_timer(
      cfg_.report_interval, [this] { on_report(); }, true);
  log_info("%s: connected (domid %u, %s)", cfg_.name.c_str(), cfg_.domid,
           play_ch_->describe().c_str());
  // Data may already be waiting (wake-ups are edge-like).
  pump_playback();
  if (state_ == SessionState::Running) {
    read_control();
  }
}

void Session::close_session(const std::string& why, bool protocol_error) {
  bool was_running = state_ == SessionState::Running;
  if (was_running || state_ == SessionState::Connecting) {
    if (protocol_error) {
      log_warn("%s: closing the session: %s", cfg_.name.c_str(), why.c_str());
    } else if (was_running) {
      log_info("%s: disconnected: %s", cfg_.name.c_str(), why.c_str());
    } else {
      log_debug("%s: connection attempt failed: %s", cfg_.name.c_str(), why.c_str());
    }
  }
  // Streams leave the backend before they are destroyed.
  close_capture();
  close_playback();
  for (EventLoop::Id* id : {&play_watch_, &ctl_watch_, &tick_timer_, &report_timer_}) {
    if (*id != 0) {
      loop_.remove(*id);
      *id = 0;
    }
  }
  if (play_ch_) {
    play_ch_->close();
    play_ch_.reset();
  }
  if (ctl_ch_) {
    ctl_ch_->close();
    ctl_ch_.reset();
  }
  neg_.reset();
  frames_.reset();
  out_.clear();
  caps_ = 0;
  version_ = 0;
  draining_ = false;
  corked_ = false;
  if (mic_started_ && mic_observer_) {
    mic_observer_(cfg_.name, false);
  }
  mic_started_ = false;
  play_format_ = kStockFormat;
  cap_format_ = kStockFormat;
  if (was_running) {
    totals_.disconnects++;
    if (ms_since(connected_at_) >= cfg_.stable_after.count()) {
      backoff_ = cfg_.backoff_initial;
    }
  }
  if (protocol_error) {
    totals_.protocol_errors++;
  }
  last_error_ = why;
  state_ = SessionState::Waiting;
  schedule_reconnect();
}

void Session::on_channel_event(int which) {
  if (state_ == SessionState::Connecting) {
    check_handshake();
    return;
  }
  if (state_ != SessionState::Running) {
    return;
  }
  if (which == 0) {
    play_ch_->handle_events();
    pump_playback();
  } else {
    ctl_ch_->handle_events();
    read_control();
    if (state_ == SessionState::Running) {
      flush_out();
      pump_mic();
    }
  }
  if (state_ == SessionState::Running &&
      (play_ch_->state() == ChannelState::Closed || ctl_ch_->state() == ChannelState::Closed)) {
    close_session("the qube closed the channel", false);
  }
}

void Session::on_tick() {
  if (state_ == SessionState::Connecting) {
    check_handshake();
    return;
  }
  if (state_ != SessionState::Running) {
    return;
  }
  play_ch_->handle_events();
  ctl_ch_->handle_events();
  pump_playback();
  read_control();
  if (state_ != SessionState::Running) {
    return;
  }
  flush_out();
  pump_mic();
  if (playback_ && log_level() <= LogLevel::Debug) {
    auto c = playback_->counters();
    if (c.underruns > logged_underruns_) {
      log_debug("%s: playback underrun (%" PRIu64 " on this stream; %s, fill %.1f ms)",
                cfg_.name.c_str(), c.underruns, draining_ ? "draining" : "playing",
                static_cast<double>(c.fill_bytes) * 1e3 /
                    static_cast<double>(play_format_.frame_bytes() * play_format_.rate));
    }
    logged_underruns_ = c.underruns;
  }
  if (out_.size() > kMaxOutBytes) {
    close_session("the qube does not read its control channel", true);
    return;
  }
  if (draining_ && playback_) {
    auto c = playback_->counters();
    if (c.fill_bytes == 0 && !c.running) {
      ignored_underruns_ += c.underruns - drain_underruns_;
      playback_->set_corked(true);
      corked_ = true;
      draining_ = false;
      log_debug("%s: drained, corked", cfg_.name.c_str());
    } else if (!c.running && !drain_padded_) {
      // Below the start threshold: pad with silence so the tail still plays.
      size_t target = play_format_.bytes_for_ms(static_cast<uint32_t>(play_target().count()));
      if (c.fill_bytes < target) {
        std::vector<std::byte> zeros(target - c.fill_bytes);
        playback_->write(zeros);
      }
      drain_padded_ = true;
    }
  }
  if (neg_ && neg_->state() != proto::DaemonNegotiator::State::AwaitingFirstWord &&
      ms_since(connected_at_) > cfg_.handshake_timeout.count()) {
    close_session("the native handshake did not complete", true);
    return;
  }
  if (play_ch_->state() == ChannelState::Closed || ctl_ch_->state() == ChannelState::Closed) {
    close_session("the qube closed the channel", false);
  }
}

void Session::on_report() {
  if (state_ != SessionState::Running || !frames_) {
    return;
  }
  auto now = proto::Clock::now();
  if ((caps_ & proto::kCapHeartbeat) != 0) {
    if (heartbeat_.peer_gone(now)) {
      close_session("no message from the qube within the heartbeat limit", false);
      return;
    }
    if (auto hb = heartbeat_.due(now)) {
      send(*hb, Priority::Droppable);
    }
  }
  send_latency(false);
  if (!corked_ && !draining_) {
    send_clock_tick();
  }
}

// Latency: after the Hello and each FormatAccepted (force), else when either
// value moved by more than 1 ms; at most once per report interval.
void Session::send_latency(bool force) {
  if (!frames_ || (caps_ & proto::kCapLatency) == 0 || !playback_) {
    return;
  }
  auto timing = timed_ ? timed_->last() : std::nullopt;
  auto c = playback_->counters();
  uint64_t device_us = timing ? timing->device_latency_us : 0;
  uint64_t total_us = std::max<uint64_t>(c.latency_us, device_us);
  proto::Latency l;
  l.device_latency_ns = std::min<uint64_t>(device_us * 1000, proto::kMaxLatencyNs);
  l.daemon_buffer_ns = std::min<uint64_t>((total_us - device_us) * 1000, proto::kMaxLatencyNs);
  auto moved = [](uint64_t a, uint64_t b) { return (a > b ? a - b : b - a) > 1'000'000; };
  if (!force && !moved(l.device_latency_ns, last_latency_.device_latency_ns) &&
      !moved(l.daemon_buffer_ns, last_latency_.daemon_buffer_ns)) {
    return;
  }
  if (send(l, Priority::Droppable)) {
    last_latency_ = l;
  }
}

void Session::send_clock_tick() {
  if (!frames_ || (caps_ & proto::kCapClockTicks) == 0) {
    return;
  }
  auto timing = timed_ ? timed_->last() : std::nullopt;
  if (!timing) {
    return;
  }
  proto::ClockTick t;
  t.frames_played = timing->device_frames;
  if (cfg_.test_tick_skew_ppm != 0) {  // test hook: a device clock that is off
    const int64_t skew =
        static_cast<int64_t>(t.frames_played) * cfg_.test_tick_skew_ppm / 1'000'000;
    t.frames_played = static_cast<uint64_t>(static_cast<int64_t>(t.frames_played) + skew);
  }
  t.device_time_ns = static_cast<uint64_t>(std::max<int64_t>(timing->device_time_ns, 0));
  t.device_rate = std::clamp(backend_.format().rate, proto::kMinDeviceRate, proto::kMaxDeviceRate);
  send(t, Priority::Droppable);
}

// ----------------------------------------------------------- playback ----

Result<void> Session::open_playback(const StreamFormat& fmt, bool adaptive) {
  PlaybackConfig pc;
  pc.format = fmt;
  pc.device = backend_.format();
  // Stock qubes (adaptive rate) keep stock's prebuffer; native qubes a small one.
  play_native_ = !adaptive;
  pc.target_fill = play_target();
  pc.ring = std::max(cfg_.playback_ring, 2 * pc.target_fill);
  pc.adaptive_rate = adaptive;
  // A relay (the network bridge's qube side) only reports the volume; the
  // audio domain at the far end applies it.
  pc.volume_percent = cfg_.apply_gain ? volume_percent_ : kDefaultVolumePercent;
  pc.muted = cfg_.apply_gain && muted_;
  auto s = PlaybackStream::create(pc);
  if (!s) {
    return fail(s.error());
  }
  close_playback();
  playback_ = std::move(*s);
  timed_ = std::make_unique<TimedSource>(playback_.get());
  play_format_ = fmt;
  if (corked_ || draining_) {
    playback_->set_corked(true);
    corked_ = true;
    draining_ = false;
  }
  StreamInfo info{cfg_.name, cfg_.label, output_device_};
  if (play_native_) {
    info.buffer = cfg_.native_buffer;
  }
  auto h = backend_.add_playback(info, timed_.get());
  if (!h) {
    return fail("backend refused the playback stream: " + h.error().message);
  }
  play_handle_ = *h;
  play_added_ = true;
  return {};
}

void Session::close_playback() {
  if (play_added_) {
    backend_.remove_playback(play_handle_);
    play_added_ = false;
  }
  if (playback_) {
    fold_counters();
  }
  timed_.reset();
  playback_.reset();
}

size_t Session::playback_ring_bound() const {
  return ring_bound(play_format_, std::max(cfg_.playback_ring, 2 * play_target()), play_target());
}

void Session::fold_counters() {
  auto c = playback_->counters();
  totals_.underruns += c.underruns;
  totals_.overruns += c.overruns;
  totals_.frames_played += c.frames_consumed;
}

void Session::pump_playback() {
  if (state_ != SessionState::Running || !playback_ || draining_ || corked_) {
    return;
  }
  for (size_t i = 0; i < kMaxReadsPerWake; ++i) {
    size_t space = playback_->writable();
    if (space == 0) {
      break;  // back-pressure: the rest stays in the qube's vchan
    }
    size_t avail = play_ch_->data_ready();
    if (avail == 0) {
      break;
    }
    size_t n = std::min({space, avail, buf_.size()});
    size_t got = play_ch_->read(std::span(buf_).first(n));
    if (got == 0) {
      break;
    }
    if (!playback_allowed_) {  // qaudio.Play deny: same pacing, no audio
      std::fill_n(buf_.begin(), got, std::byte{0});
      totals_.playback_discarded_bytes += got;
    }
    playback_->write(std::span<const std::byte>(buf_).first(got));
    totals_.bytes_in += got;
  }
}

void Session::cork(bool corked) {
  if (!playback_) {
    return;
  }
  if (corked) {
    if (corked_ || draining_) {
      return;
    }
    draining_ = true;
    drain_padded_ = false;
    drain_underruns_ = playback_->counters().underruns;
    log_debug("%s: cork: draining", cfg_.name.c_str());
  } else {
    draining_ = false;
    if (corked_) {
      corked_ = false;
      playback_->set_corked(false);
    }
    log_debug("%s: uncork", cfg_.name.c_str());
    send_clock_tick();
    pump_playback();
  }
}

// ---------------------------------------------------- control channel ----

void Session::read_control() {
  for (size_t i = 0; i < kMaxReadsPerWake && state_ == SessionState::Running; ++i) {
    size_t avail = ctl_ch_->data_ready();
    if (avail == 0) {
      break;
    }
    // Its own buffer: a word handled here may pump playback (uncork), which
    // reads 4713 into buf_ while the rest of these words wait in ctl_buf_.
    size_t got = ctl_ch_->read(std::span(ctl_buf_).first(std::min(avail, ctl_buf_.size())));
    if (got == 0) {
      break;
    }
    totals_.control_bytes_in += got;
    process_control(std::span<const std::byte>(ctl_buf_).first(got));
  }
}

void Session::process_control(std::span<const std::byte> bytes) {
  using NS = proto::DaemonNegotiator::State;
  while (!bytes.empty() && state_ == SessionState::Running) {
    if (frames_) {
      process_native(bytes);
      return;
    }
    if (!neg_) {
      process_stock(bytes);
      return;
    }
    size_t used = neg_->feed(bytes);
    bytes = bytes.subspan(used);
    auto reply = neg_->take_reply();
    if (!reply.empty()) {
      out_.insert(out_.end(), reply.begin(), reply.end());
      flush_out();
    }
    switch (neg_->state()) {
      case NS::Stock: {
        auto replay = neg_->replay();
        std::array<std::byte, 8> copy{};
        size_t n = std::min(replay.size(), copy.size());
        std::memcpy(copy.data(), replay.data(), n);
        neg_.reset();
        process_stock(std::span<const std::byte>(copy.data(), n));
        break;
      }
      case NS::Native:
        enter_native();
        process_native({});
        break;
      case NS::Failed:
        close_session("native handshake failed: " + std::string(neg_->failure()), true);
        return;
      default:
        if (used == 0) {
          return;  // cannot happen: the negotiator takes bytes until decided
        }
        break;
    }
  }
}

void Session::process_stock(std::span<const std::byte> bytes) {
  while (auto w = stock_.next(bytes)) {
    handle_stock_word(*w);
    if (state_ != SessionState::Running) {
      return;
    }
  }
}

void Session::handle_stock_word(uint32_t word) {
  switch (proto::classify(word)) {
    case proto::ControlKind::MicStart:
      mic_start();
      break;
    case proto::ControlKind::MicStop:
      mic_stop();
      break;
    case proto::ControlKind::Cork:
      cork(true);
      break;
    case proto::ControlKind::Uncork:
      cork(false);
      break;
    case proto::ControlKind::Ignored:
      break;
    case proto::ControlKind::Unknown:
    case proto::ControlKind::NativeHello:
      totals_.unknown_words++;
      log_debug("%s: ignoring control word 0x%08x", cfg_.name.c_str(), word);
      break;
  }
}

void Session::enter_native() {
  frames_ = std::make_unique<proto::FrameDecoder>(neg_->decoder());
  version_ = neg_->version();
  caps_ = (neg_->hello() ? neg_->hello()->capabilities : 0) & kCapsOffered;
  neg_.reset();
  heartbeat_ = proto::HeartbeatMonitor(cfg_.heartbeat_interval, cfg_.heartbeat_misses);
  heartbeat_.start(proto::Clock::now());
  log_info("%s: native protocol v%u (capabilities 0x%x)", cfg_.name.c_str(), version_, caps_);
  if ((caps_ & proto::kCapVolumeState) != 0) {
    send(proto::VolumeState{static_cast<uint16_t>(volume_percent_ * 10), muted_},
         Priority::Required);
  }
  if ((caps_ & proto::kCapMicState) != 0) {
    send(proto::MicState{mic_attached_, mic_allowed_}, Priority::Required);
  }
  last_latency_ = {};
  send_latency(true);
}

void Session::process_native(std::span<const std::byte> bytes) {
  for (;;) {
    if (!bytes.empty()) {
      bytes = bytes.subspan(frames_->feed(bytes));
    }
    auto r = frames_->next();
    if (auto* m = std::get_if<proto::Message>(&r)) {
      heartbeat_.on_peer_message(proto::Clock::now());
      handle_native(*m);
      if (state_ != SessionState::Running) {
        return;
      }
      continue;
    }
    if (auto* e = std::get_if<proto::DecodeError>(&r)) {
      std::string why = "malformed native message: " + e->reason;
      out_.clear();  // the error goes out first and alone
      send(proto::PeerError::make(proto::ErrorCode::Protocol, why), Priority::Droppable);
      close_session(why, true);
      return;
    }
    if (bytes.empty()) {
      return;  // NeedMore
    }
  }
}

void Session::handle_native(const proto::Message& m) {
  if (auto* pf = std::get_if<proto::PlaybackFormat>(&m)) {
    // Bytes already on 4713 were written in the old format: consume them
    // first (what the old stream cannot take is dropped).
    pump_playback();
    for (size_t i = 0; i < kMaxReadsPerWake && play_ch_->data_ready() > 0; ++i) {
      size_t got =
          play_ch_->read(std::span(buf_).first(std::min(play_ch_->data_ready(), buf_.size())));
      if (got == 0) {
        break;
      }
      totals_.bytes_in += got;
    }
    auto r = pf->format.valid() ? open_playback(pf->format, /*adaptive=*/false)
                                : Result<void>(fail("invalid format"));
    if (!r) {
      log_warn("%s: playback format %s rejected: %s", cfg_.name.c_str(),
               to_string(pf->format).c_str(), r.error().message.c_str());
      if (!playback_ || !play_added_) {
        close_session("cannot open the playback stream: " + r.error().message, false);
        return;
      }
      send(proto::FormatRejected{proto::StreamDirection::Playback, proto::RejectReason::Unsupported,
                                 pf->format},
           Priority::Required);
      return;
    }
    log_info("%s: playback format %s", cfg_.name.c_str(), to_string(pf->format).c_str());
    send(proto::FormatAccepted{proto::StreamDirection::Playback, pf->format}, Priority::Required);
    send_latency(true);
    pump_playback();
  } else if (auto* cf = std::get_if<proto::CaptureFormat>(&m)) {
    if (!cf->format.valid()) {
      send(proto::FormatRejected{proto::StreamDirection::Capture, proto::RejectReason::Unsupported,
                                 cf->format},
           Priority::Required);
      return;
    }
    StreamFormat old = cap_format_;
    cap_format_ = cf->format;
    if (capture_) {
      close_capture();
      if (auto r = open_capture(); !r) {
        cap_format_ = old;
        log_warn("%s: capture format %s rejected: %s", cfg_.name.c_str(),
                 to_string(cf->format).c_str(), r.error().message.c_str());
        (void)open_capture();
        send(proto::FormatRejected{proto::StreamDirection::Capture,
                                   proto::RejectReason::Unsupported, cf->format},
             Priority::Required);
        return;
      }
    }
    send(proto::FormatAccepted{proto::StreamDirection::Capture, cf->format}, Priority::Required);
  } else if (std::holds_alternative<proto::Cork>(m)) {
    cork(true);
  } else if (std::holds_alternative<proto::Uncork>(m)) {
    cork(false);
  } else if (std::holds_alternative<proto::MicStart>(m)) {
    mic_start();
  } else if (std::holds_alternative<proto::MicStop>(m)) {
    mic_stop();
  } else if (std::holds_alternative<proto::Heartbeat>(m) ||
             std::holds_alternative<proto::Hello>(m)) {
    // Any message counts as a sign of life (done by the caller).
  } else if (auto* pe = std::get_if<proto::PeerError>(&m)) {
    close_session("the qube reported an error: " + std::string(pe->message()), false);
  } else {
    close_session(
        "unexpected " + std::string(proto::to_string(proto::type_of(m))) + " from the qube", true);
  }
}

bool Session::flush_out() {
  if (out_.empty() || !ctl_ch_) {
    return out_.empty();
  }
  size_t n = std::min(out_.size(), ctl_ch_->buffer_space());
  if (n > 0) {
    size_t w = ctl_ch_->write(std::span<const std::byte>(out_).first(n));
    out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(w));
  }
  return out_.empty();
}

bool Session::send(const proto::Message& m, Priority prio) {
  if (!ctl_ch_) {
    return false;
  }
  proto::FrameBuffer fb;
  auto n = proto::encode(m, fb, version_ ? version_ : proto::kProtocolVersion);
  if (!n) {
    log_warn("%s: cannot encode %s: %s", cfg_.name.c_str(),
             std::string(proto::to_string(proto::type_of(m))).c_str(), n.error().message.c_str());
    return false;
  }
  std::span<const std::byte> frame(fb.data(), *n);
  if (prio == Priority::Droppable) {
    if (!out_.empty() || ctl_ch_->buffer_space() < frame.size()) {
      totals_.dropped_reports++;
      return false;
    }
    size_t w = ctl_ch_->write(frame);
    out_.insert(out_.end(), frame.begin() + static_cast<std::ptrdiff_t>(w), frame.end());
    return true;
  }
  out_.insert(out_.end(), frame.begin(), frame.end());
  flush_out();
  return true;
}

// --------------------------------------------------------- microphone ----

void Session::mic_start() {
  if (mic_started_) {
    return;
  }
  mic_started_ = true;
  if (auto r = open_capture(); !r) {
    log_warn("%s: cannot open the microphone stream: %s", cfg_.name.c_str(),
             r.error().message.c_str());
    return;
  }
  if (!(mic_attached_ && mic_allowed_)) {
    log_info("%s wants the microphone (not attached: it records silence)", cfg_.name.c_str());
  } else {
    log_info("%s: microphone started", cfg_.name.c_str());
  }
  if (mic_observer_) {
    mic_observer_(cfg_.name, true);
  }
}

void Session::mic_stop() {
  if (!mic_started_) {
    return;
  }
  mic_started_ = false;
  close_capture();
  log_debug("%s: microphone stopped", cfg_.name.c_str());
  if (mic_observer_) {
    mic_observer_(cfg_.name, false);
  }
}

Result<void> Session::open_capture() {
  CaptureConfig cc;
  cc.format = cap_format_;
  cc.device = backend_.format();
  auto c = CaptureStream::create(cc);
  if (!c) {
    return fail(c.error());
  }
  capture_ = std::move(*c);
  capture_->set_open(mic_attached_ && mic_allowed_);
  auto h = backend_.add_capture(StreamInfo{cfg_.name, cfg_.label, ""}, capture_.get());
  if (!h) {
    capture_.reset();
    return fail("backend refused the capture stream: " + h.error().message);
  }
  cap_handle_ = *h;
  cap_added_ = true;
  return {};
}

void Session::close_capture() {
  if (cap_added_) {
    backend_.remove_capture(cap_handle_);
    cap_added_ = false;
  }
  if (capture_) {
    auto c = capture_->counters();
    totals_.mic_overruns += c.overruns;
    totals_.mic_dropped_bytes += c.dropped_bytes;
    capture_.reset();
  }
}

void Session::pump_mic() {
  if (state_ != SessionState::Running || !capture_) {
    return;
  }
  const size_t fb = cap_format_.frame_bytes();
  if (EventLoop::Clock::now() < mic_discard_until_) {
    discard_mic();
  }
  if (flush_out()) {
    for (size_t i = 0; i < kMaxReadsPerWake; ++i) {
      size_t space = ctl_ch_->buffer_space();
      size_t avail = capture_->readable();
      size_t chunk;
      if (frames_) {
        if (space <= proto::kFrameHeaderSize) {
          break;
        }
        chunk = std::min({avail, proto::kMaxMicData, space - proto::kFrameHeaderSize});
      } else {
        chunk = std::min({avail, space, mic_buf_.size()});
      }
      chunk = chunk / fb * fb;
      if (chunk == 0) {
        break;
      }
      size_t got = capture_->read(std::span(mic_buf_).first(chunk));
      if (got == 0) {
        break;
      }
      std::span<const std::byte> pcm(mic_buf_.data(), got);
      if (frames_) {
        proto::FrameBuffer frame;
        auto n = proto::encode(proto::MicData{pcm}, frame, version_);
        if (!n) {
          break;
        }
        size_t w = ctl_ch_->write(std::span<const std::byte>(frame.data(), *n));
        out_.insert(out_.end(), frame.begin() + static_cast<std::ptrdiff_t>(w),
                    frame.begin() + static_cast<std::ptrdiff_t>(*n));
      } else {
        size_t w = ctl_ch_->write(pcm);
        out_.insert(out_.end(), pcm.begin() + static_cast<std::ptrdiff_t>(w), pcm.end());
      }
      totals_.bytes_out += got;
      if (!out_.empty()) {
        break;
      }
    }
  }
  // A qube that does not read loses the oldest audio, never our memory.
  size_t limit =
      std::max(cap_format_.bytes_for_ms(static_cast<uint32_t>(cfg_.mic_queue.count())), fb);
  size_t queued = capture_->readable();
  if (queued > limit) {
    size_t drop = (queued - limit + fb - 1) / fb * fb;
    size_t dropped = 0;
    while (dropped < drop) {
      size_t got = capture_->read(
          std::span(mic_buf_).first(std::min(drop - dropped, mic_buf_.size() / fb * fb)));
      if (got == 0) {
        break;
      }
      dropped += got;
    }
    totals_.mic_overruns++;
    totals_.mic_dropped_bytes += dropped;
  }
}

void Session::discard_mic() {
  const size_t fb = cap_format_.frame_bytes();
  for (size_t i = 0; i < 64 && capture_ && capture_->readable() >= fb; ++i) {
    if (capture_->read(std::span(mic_buf_).first(mic_buf_.size() / fb * fb)) == 0) {
      break;
    }
  }
}

// ------------------------------------------------------------ settings ----

void Session::set_volume(uint32_t percent) {
  percent = std::min(percent, kMaxVolumePercent);
  if (percent == volume_percent_) {
    return;
  }
  volume_percent_ = percent;
  if (playback_ && cfg_.apply_gain) {
    playback_->set_volume_percent(percent);
  }
  if (frames_ && (caps_ & proto::kCapVolumeState) != 0) {
    send(proto::VolumeState{static_cast<uint16_t>(percent * 10), muted_}, Priority::Required);
  }
}

void Session::set_muted(bool muted) {
  if (muted == muted_) {
    return;
  }
  muted_ = muted;
  if (playback_ && cfg_.apply_gain) {
    playback_->set_muted(muted);
  }
  if (frames_ && (caps_ & proto::kCapVolumeState) != 0) {
    send(proto::VolumeState{static_cast<uint16_t>(volume_percent_ * 10), muted_},
         Priority::Required);
  }
}

void Session::set_mic_attached(bool attached) {
  set_mic_state(attached, mic_allowed_);
}

void Session::set_mic_state(bool attached, bool allowed) {
  if (attached == mic_attached_ && allowed == mic_allowed_) {
    return;
  }
  const bool was_open = mic_attached_ && mic_allowed_;
  const bool attached_changed = attached != mic_attached_;
  mic_attached_ = attached;
  mic_allowed_ = allowed;
  if (capture_) {
    capture_->set_open(mic_attached_ && mic_allowed_);
    if (was_open && !(mic_attached_ && mic_allowed_)) {
      // Nothing recorded before the gate closed may reach the qube after it:
      // drop what is queued now and whatever a period in flight adds.
      discard_mic();
      mic_discard_until_ = EventLoop::Clock::now() + 2 * std::max(cfg_.tick, milliseconds(10));
    }
  }
  if (frames_ && (caps_ & proto::kCapMicState) != 0) {
    send(proto::MicState{mic_attached_, mic_allowed_}, Priority::Required);
  }
  if (attached_changed) {
    log_info("%s: microphone %s", cfg_.name.c_str(), attached ? "attached" : "detached");
  } else {
    log_info("%s: microphone %s by policy", cfg_.name.c_str(), allowed ? "allowed" : "denied");
  }
}

void Session::set_playback_allowed(bool allowed) {
  if (allowed != playback_allowed_) {
    playback_allowed_ = allowed;
    log_info("%s: playback %s", cfg_.name.c_str(),
             allowed ? "allowed" : "denied by policy (discarded)");
  }
}

SessionProtocol Session::protocol() const {
  if (state_ != SessionState::Running) {
    return SessionProtocol::None;
  }
  if (frames_) {
    return SessionProtocol::Native;
  }
  if (neg_ && neg_->state() != proto::DaemonNegotiator::State::AwaitingFirstWord) {
    return SessionProtocol::Negotiating;
  }
  return SessionProtocol::Stock;
}

Result<void> Session::set_output_device(const std::string& device) {
  if (play_added_) {
    if (auto r = backend_.set_device(play_handle_, device); !r) {
      return r;
    }
  }
  output_device_ = device;
  return {};
}

SessionInfo Session::info() const {
  SessionInfo i;
  i.name = cfg_.name;
  i.domid = cfg_.domid;
  i.label = cfg_.label;
  i.state = state_;
  i.protocol = protocol();
  i.playback_format = play_format_;
  i.capture_format = cap_format_;
  i.volume_percent = volume_percent_;
  i.muted = muted_;
  i.corked = corked_ || draining_;
  i.mic_started = mic_started_;
  i.mic_attached = mic_attached_;
  i.last_error = last_error_;
  i.output_device = output_device_;
  i.counters = totals_;
  SessionCounters& c = i.counters;
  if (playback_) {
    auto p = playback_->counters();
    c.underruns += p.underruns;
    c.overruns += p.overruns;
    c.frames_played += p.frames_consumed;
    c.latency_us = p.latency_us;
    c.level = p.level;
    c.playback_fill_bytes = p.fill_bytes;
    c.playback_ring_bytes = static_cast<uint32_t>(playback_ring_bound());
    if (draining_) {
      c.underruns -= std::min(c.underruns, p.underruns - drain_underruns_);
    }
  }
  c.underruns -= std::min(c.underruns, ignored_underruns_);
  if (capture_) {
    auto cc = capture_->counters();
    c.mic_overruns += cc.overruns;
    c.mic_dropped_bytes += cc.dropped_bytes;
    c.mic_queue_bytes = cc.fill_bytes;
  }
  return i;
}

}  // namespace qaudio::daemon
