// Network channel endpoints: sessions, handshake, jitter buffer (see net_endpoint.hpp
// and docs/protocol.md, "Network channel").
#include "net_endpoint.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>

#include "qaudio/log.hpp"

namespace qaudio::net {

int64_t mono_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000;
}

namespace {

int32_t seq_diff(uint32_t a, uint32_t b) {  // a - b with wrap-around
  return static_cast<int32_t>(a - b);
}

bool same_address(const sockaddr_storage& a,
                  socklen_t al,
                  const sockaddr_storage& b,
                  socklen_t bl) {
  return al == bl && std::memcmp(&a, &b, al) == 0;
}

uint64_t random_session() {
  uint64_t v = 0;
  while (v == 0) {
    randombytes_buf(&v, sizeof v);
  }
  return v;
}

}  // namespace

Result<std::pair<sockaddr_storage, socklen_t>> resolve_address(std::string_view spec) {
  std::string host, port;
  if (!spec.empty() && spec.front() == '[') {
    auto close = spec.find(']');
    if (close == std::string_view::npos || close + 1 >= spec.size() || spec[close + 1] != ':') {
      return fail("net address '" + std::string(spec) + "': want [IPV6]:PORT");
    }
    host = std::string(spec.substr(1, close - 1));
    port = std::string(spec.substr(close + 2));
  } else {
    auto colon = spec.rfind(':');
    if (colon == std::string_view::npos) {
      return fail("net address '" + std::string(spec) + "': want HOST:PORT");
    }
    host = std::string(spec.substr(0, colon));
    port = std::string(spec.substr(colon + 1));
  }
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    return fail("net address '" + std::string(spec) + "': port must be 0..65535");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    return fail("net address '" + std::string(spec) + "': " + gai_strerror(rc));
  }
  std::pair<sockaddr_storage, socklen_t> out{};
  std::memcpy(&out.first, res->ai_addr, res->ai_addrlen);
  out.second = res->ai_addrlen;
  freeaddrinfo(res);
  return out;
}

std::string address_to_string(const sockaddr_storage& a, socklen_t len) {
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (len == 0 || getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, host, sizeof host, serv,
                              sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  if (a.ss_family == AF_INET6) {
    return std::string("[") + host + "]:" + serv;
  }
  return std::string(host) + ":" + serv;
}

// ---------------------------------------------------------------- session

bool NetSession::connected(int64_t now_us) const {
  return last_rx_us_ >= 0 && now_us - last_rx_us_ < peer_timeout_us_;
}

std::string NetSession::peer_address() const {
  return address_to_string(addr_, addr_len_);
}

SessionCounters NetSession::counters() const {
  SessionCounters c = c_;
  c.jitter_us = static_cast<int64_t>(jitter_us_);
  c.buffer_us = static_cast<int64_t>(buffer_wait_us_);
  c.target_us = target_frames() * frame_us();
  c.boost_us = boost_frames_ * frame_us();
  uint64_t expected = c.played + c.fec + c.plc - c.underruns;
  uint64_t lost = c.red + c.fec + c.plc - c.underruns;
  c.loss_pct = expected ? 100.0 * static_cast<double>(lost) / static_cast<double>(expected) : 0;
  // What waits in the resampler (its input not yet consumed, and its filter
  // delay) is latency too.
  const double hold_frames =
      fifo_hold_ + (rs_ ? static_cast<double>(rs_->latency()) / rx_frame_samples() : 0);
  c.latency_us = frame_us() + codec_delay_us_ + (c.rtt_us > 0 ? c.rtt_us / 2 : 0) + c.buffer_us +
                 static_cast<int64_t>(hold_frames * static_cast<double>(frame_us()));
  c.depth_us = static_cast<int64_t>(drift_.smoothed() * 1e6 / 48000.0);
  c.drift_ppm = static_cast<int32_t>(std::lround(drift_avg_ppm_));
  return c;
}

void NetSession::reset_rx() {
  for (auto& s : slots_) {
    s.full = false;
  }
  rx_active_ = false;
  rx_started_ = false;
  have_transit_ = false;
  window_min_held_ = 1e18;
  window_pulls_ = 0;
  fifo_pos_ = fifo_len_ = 0;
  rx_playing_ = false;
  drift_.restart();
  jitter_frames_avg_ = -1;
  dry_run_ = 0;  // a stream that ended is not a stall
}

int32_t NetSession::depth() const {
  return rx_active_ ? seq_diff(newest_seq_, next_seq_) + 1 : 0;
}

int32_t NetSession::target_frames() const {
  // Cover three times the measured interarrival jitter, plus the frame in play.
  double fu = static_cast<double>(frame_us());
  // At least two frames: one playing, one in hand, so a packet arriving a
  // hair after its pull time (timer phase, scheduling) is not an underrun.
  return std::clamp(static_cast<int32_t>(std::ceil(3.0 * jitter_us_ / fu)) + 1 + boost_frames_, 2,
                    static_cast<int32_t>(kSlots / 2));
}

void NetSession::note_pull(bool ran_dry) {
  if (ran_dry) {
    ++dry_run_;
    calm_pulls_ = 0;
    return;
  }
  if (dry_run_ > 0) {
    // Audio resumed after a stall of dry_run_ frames: keep that much in hand
    // from now on, so the same stall again is bridged without a gap.
    int32_t want = std::min(dry_run_, kMaxBoostFrames);
    if (want > boost_frames_) {
      boost_frames_ = want;
      ++c_.deepened;
    }
    dry_run_ = 0;
  }
  if (boost_frames_ > 0 && static_cast<int64_t>(++calm_pulls_) * frame_us() >= kBoostDecayUs) {
    --boost_frames_;  // the trimming below then gives the surplus frame back
    calm_pulls_ = 0;
  }
}

void NetSession::on_audio(const AudioPayload& a, int64_t now_us) {
  if (a.stream != rx_stream_) {
    ++c_.replays;  // a packet for the other direction: reflected or confused; refuse
    return;
  }
  bool format_change =
      rx_active_ && (a.channels != rx_channels_ || a.frame_quarter_ms != rx_quarter_ms_);
  int32_t ahead = rx_active_ ? seq_diff(a.seq, next_seq_) : 0;
  if (rx_active_ && (format_change || ahead >= static_cast<int32_t>(kSlots) ||
                     ahead < -static_cast<int32_t>(kSlots))) {
    reset_rx();  // the sender restarted its stream or was away for long
    ++c_.resets;
  }
  if (!rx_active_) {
    if (a.channels != dec_->channels()) {
      std::swap(dec_, dec_other_);
    }
    if (a.channels != rs_->channels()) {
      std::swap(rs_, rs_other_);
    }
    rs_->reset();  // a new stream starts from silence, not the last one's tail
    newest_arrival_us_ = now_us;
    rx_channels_ = a.channels;
    rx_quarter_ms_ = a.frame_quarter_ms;
    rx_active_ = true;
    rx_started_ = false;
    next_seq_ = newest_seq_ = first_seq_ = a.seq;
    codec_delay_us_ = a.codec == Codec::Pcm16 ? 0 : 6500;  // Opus AUDIO lookahead: 312 samples
    // Until measured, assume a third of a frame of jitter: a 2-frame start,
    // what a clean link settles to, so the drift loop has no start-up
    // surplus to play out (at 1000 ppm a frame takes 10 s, and far longer
    // when the skew runs the same way). A jittery link's estimate grows
    // within a few packets and the loop deepens the buffer to match.
    jitter_us_ = std::max(jitter_us_, static_cast<double>(frame_us()) / 3);
  }
  ++c_.rx_frames;
  if (seq_diff(a.seq, next_seq_) < 0) {
    ++c_.late;
    return;
  }
  // Interarrival jitter from transit-time differences (RFC 3550, 6.4.1).
  int64_t transit = now_us - static_cast<int64_t>(a.seq - first_seq_) * frame_us();
  if (have_transit_) {
    double d = static_cast<double>(std::llabs(transit - prev_transit_));
    jitter_us_ += (d - jitter_us_) / 16.0;
  }
  have_transit_ = true;
  prev_transit_ = transit;
  Slot& s = slots_[a.seq % kSlots];
  if (s.full && s.seq == a.seq && !s.redundant) {
    return;  // duplicate
  }
  s.full = true;
  s.seq = a.seq;
  s.codec = a.codec;
  s.len = static_cast<uint16_t>(a.data.size());
  s.arrival_us = now_us;
  s.send_us = a.send_us;
  s.redundant = false;
  std::copy(a.data.begin(), a.data.end(), s.data.begin());
  if (seq_diff(a.seq, newest_seq_) > 0) {
    newest_seq_ = a.seq;
    newest_arrival_us_ = now_us;
  }
  // The redundant copy of frame seq-1 fills its slot if that packet was lost
  // (or is late) and the frame has not been played yet.
  const uint32_t prev = a.seq - 1;
  if (!a.red.empty() && seq_diff(prev, next_seq_) >= 0) {
    Slot& r = slots_[prev % kSlots];
    if (!(r.full && r.seq == prev)) {
      r.full = true;
      r.seq = prev;
      r.codec = a.red_codec;
      r.len = static_cast<uint16_t>(a.red.size());
      r.arrival_us = now_us;
      r.send_us = a.send_us - static_cast<uint64_t>(frame_us());
      r.redundant = true;
      std::copy(a.red.begin(), a.red.end(), r.data.begin());
    }
  }
}

void NetSession::play_slot(Slot& s, std::span<int16_t> out, int64_t now_us) {
  dec_->decode(s.codec, std::span(s.data.data(), s.len), out, rx_frame_samples(), false);
  buffer_wait_us_ += (static_cast<double>(now_us - s.arrival_us) - buffer_wait_us_) / 16.0;
  last_played_seq_ = s.seq;
  last_played_send_us_ = s.send_us;
  s.full = false;
}

void NetSession::next_frame(std::span<int16_t> out, int64_t now_us) {
  Slot& cur = slots_[next_seq_ % kSlots];
  if (cur.full && cur.seq == next_seq_) {
    if (cur.redundant) {
      ++c_.red;
    } else {
      ++c_.played;
    }
    play_slot(cur, out, now_us);
    ++next_seq_;
    note_pull(false);
  } else if (seq_diff(newest_seq_, next_seq_) > 0) {
    // Lost (or very late): rebuild from the next packet's FEC, else conceal.
    Slot& nx = slots_[(next_seq_ + 1) % kSlots];
    // In-band FEC (LBRR) exists only in SILK and hybrid packets (TOC config < 16);
    // a CELT packet carries none, so that loss is concealed instead.
    bool has_fec = nx.full && nx.seq == next_seq_ + 1 && nx.codec == Codec::Opus && nx.len > 0 &&
                   (static_cast<uint8_t>(nx.data[0]) >> 3) < 16;
    if (has_fec) {
      dec_->decode(Codec::Opus, std::span(nx.data.data(), nx.len), out, rx_frame_samples(), true);
      ++c_.fec;
    } else {
      dec_->conceal(out, rx_frame_samples());
      ++c_.plc;
    }
    last_played_seq_ = next_seq_;
    ++next_seq_;
    note_pull(false);
  } else {
    // Ran dry: conceal without advancing, which also deepens the buffer.
    dec_->conceal(out, rx_frame_samples());
    ++c_.plc;
    ++c_.underruns;
    note_pull(true);
  }
}

double NetSession::held_samples(int64_t now_us) const {
  const double n = rx_frame_samples();
  // Frames arrive one at a time while the resampler drains continuously: the
  // time since the newest arrival counts as held, so the measure stays level
  // between arrivals instead of stepping by a frame (a sawtooth as slow as
  // the drift beat, which no smoothing removes). Clamped: a stall is not drift.
  const double since = std::clamp(
      static_cast<double>(now_us - newest_arrival_us_) / static_cast<double>(frame_us()), 0.0, 2.0);
  return (static_cast<double>(std::max(depth(), 0)) + since) * n + (fifo_len_ - fifo_pos_);
}

void NetSession::steer(int64_t now_us) {
  const double n = rx_frame_samples();
  const double held = held_samples(now_us);
  // The set point: the target depth, with its jitter part smoothed over
  // seconds and not rounded up to whole frames (the jitter estimate wanders,
  // and the set point must not step by a frame each time it does); a stall
  // allowance (boost) applies at once. Why the whole target and not half a
  // frame less, as the frame-granular playout held on average: what waits
  // in fifo_ (half a frame on average) does not guard against a late
  // packet, since each pull needs the next frame whatever fifo_ holds. On a
  // clean link: 2 frames, a late-packet margin of 10 to 20 ms as before.
  const double fu = static_cast<double>(frame_us());
  const double dt = fu / 1e6;
  const double jitter_frames = 3.0 * jitter_us_ / fu;
  jitter_frames_avg_ = jitter_frames_avg_ < 0
                           ? jitter_frames
                           : jitter_frames_avg_ + (jitter_frames - jitter_frames_avg_) *
                                                      std::min(1.0, dt / kTargetTau);
  const double want =
      std::clamp(jitter_frames_avg_ + 1.5 + boost_frames_, 2.0, double{kSlots / 2}) * n;
  rs_->set_ppm(drift_.update(held, want, dt, 1.0 + jitter_frames));
  // The correction shown: what the resampler applied, averaged over ~2 s
  // (it moves on a grid of 16.7 ppm steps, dithering around the loop's ask).
  drift_avg_ppm_ += (rs_->ppm() - drift_avg_ppm_) * std::min(1.0, dt / 2.0);
  fifo_hold_ += ((fifo_len_ - fifo_pos_) / n - fifo_hold_) / 16.0;
  // Stall recovery: a backlog of two frames or more above the set point for
  // a whole second (the buffer deepened by a stall, its allowance since
  // given back; a burst) would take the resampler seconds: one frame is
  // skipped (decoded, so the decoder stays continuous) and counted
  // `dropped`. Smaller ones are played out by the loop (up to 1000 ppm
  // fast); drift never gets here (the loop holds it within ~40 samples of
  // the set point), unless beyond the resampler's range.
  window_min_held_ = std::min(window_min_held_, held);
  const uint32_t per_second = static_cast<uint32_t>(1'000'000 / frame_us());
  if (++window_pulls_ >= per_second) {
    if (window_min_held_ >= want + 2 * n) {
      Slot& sk = slots_[next_seq_ % kSlots];
      if (sk.full && sk.seq == next_seq_) {
        dec_->decode(sk.codec, std::span(sk.data.data(), sk.len), std::span(scratch_),
                     rx_frame_samples(), false);
        sk.full = false;
        ++next_seq_;
        ++c_.dropped;
        drift_.shift(-n);
      }
    }
    window_min_held_ = 1e18;
    window_pulls_ = 0;
  }
}

bool NetSession::pull(std::span<int16_t> out, int64_t now_us) {
  const uint32_t frames = rx_frame_samples();
  const uint32_t ch = rx_channels_;
  const size_t n = size_t{frames} * ch;
  if (out.size() < n) {
    std::fill(out.begin(), out.end(), int16_t{0});
    return false;
  }
  auto silence = [&] {
    std::fill(out.begin(), out.end(), int16_t{0});
    return false;
  };
  if (!rx_active_) {
    return silence();
  }
  if (last_rx_us_ >= 0 && now_us - last_rx_us_ > std::max<int64_t>(300'000, 8 * frame_us())) {
    reset_rx();  // the peer went quiet: stop concealing, play silence until it returns
    ++c_.resets;
    return silence();
  }
  if (!rx_started_) {
    if (depth() < target_frames()) {
      return silence();  // prefill
    }
    rx_started_ = true;
  }
  // Exactly one frame out; the resampler takes what it needs from fifo_,
  // which is refilled with the next frame from the jitter buffer when empty
  // (one or two refills per pull: the ratio is within 0.1 % of 1).
  uint32_t produced = 0;
  if (!rx_playing_) {
    // The stream's first pull: half a frame of silence first, so fifo_ starts
    // half full. What it holds after a pull moves by the drift (0.14 samples
    // per pull at 300 ppm) and jumps by a frame when it runs out or over;
    // starting in the middle keeps that away from the stream's first seconds,
    // while the jitter estimate is still settling.
    rx_playing_ = true;
    produced = frames / 2;
    std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(size_t{produced} * ch),
              int16_t{0});
  }
  for (int guard = 0; produced < frames && guard < 4; ++guard) {
    if (fifo_pos_ == fifo_len_) {
      next_frame(std::span(fifo_.data(), n), now_us);
      fifo_pos_ = 0;
      fifo_len_ = frames;
    }
    uint32_t in = fifo_len_ - fifo_pos_, got = frames - produced;
    rs_->process(fifo_.data() + size_t{fifo_pos_} * ch, &in, out.data() + size_t{produced} * ch,
                 &got);
    fifo_pos_ += in;
    produced += got;
  }
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(size_t{produced} * ch), out.end(),
            int16_t{0});
  steer(now_us);
  return true;
}

// ---------------------------------------------------------------- endpoint

Result<std::unique_ptr<NetEndpoint>> NetEndpoint::create(const Options& o) {
  if (sodium_init() < 0) {
    return fail("net: libsodium could not initialise");
  }
  if (o.keys.empty()) {
    return fail("net: no key configured");
  }
  if (!o.server && (o.keys.size() != 1 || o.peer.empty())) {
    return fail("net client: needs exactly one key and the server's HOST:PORT");
  }
  if (auto v = validate(o.tx); !v) {
    return fail(v.error());
  }
  std::unique_ptr<NetEndpoint> ep(new NetEndpoint());
  ep->server_ = o.server;
  ep->keepalive_us_ = o.keepalive_us;
  ep->my_session_ = random_session();
  for (const auto& p : o.keys) {
    auto s = std::unique_ptr<NetSession>(new NetSession());
    s->name_ = p.name;
    s->key_ = p.key;
    s->key_id_ = key_id(p.key);
    for (const auto& other : ep->sessions_) {
      if (other->key_id_ == s->key_id_) {
        return fail("net: peers '" + other->name_ + "' and '" + p.name +
                    "' have the same key; give each qube its own key");
      }
    }
    s->peer_timeout_us_ = o.peer_timeout_us;
    s->rx_stream_ = o.server ? StreamId::Playback : StreamId::Microphone;
    auto enc = AudioEncoder::create(o.tx);
    if (!enc) {
      return fail(enc.error());
    }
    s->enc_ = std::move(*enc);
    auto d2 = AudioDecoder::create(2);
    auto d1 = AudioDecoder::create(1);
    if (!d2 || !d1) {
      return fail(!d2 ? d2.error() : d1.error());
    }
    s->dec_ = std::move(*d2);
    s->dec_other_ = std::move(*d1);
    s->slots_.resize(NetSession::kSlots);
    s->scratch_.resize(size_t{frame_samples(8)} * 2);
    s->fifo_.resize(size_t{frame_samples(8)} * 2);
    auto r2 = DriftResampler::create(2, NetSession::kResamplerQuality);
    auto r1 = DriftResampler::create(1, NetSession::kResamplerQuality);
    if (!r2 || !r1) {
      return fail(!r2 ? r2.error() : r1.error());
    }
    s->rs_ = std::move(*r2);
    s->rs_other_ = std::move(*r1);
    if (!o.server) {
      auto a = resolve_address(o.peer);
      if (!a) {
        return fail(a.error());
      }
      s->addr_ = a->first;
      s->addr_len_ = a->second;
    }
    ep->sessions_.push_back(std::move(s));
  }
  auto b = resolve_address(o.bind);
  if (!b) {
    return fail(b.error());
  }
  int family = b->first.ss_family;
  if (!o.server && ep->sessions_[0]->addr_.ss_family != family) {
    return fail("net client: bind address " + o.bind + " and server " + o.peer +
                " are of different address families");
  }
  ep->fd_ = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (ep->fd_ < 0) {
    return fail_errno("net: socket");
  }
  if (bind(ep->fd_, reinterpret_cast<const sockaddr*>(&b->first), b->second) != 0) {
    return fail_errno("net: bind " + o.bind + " (port in use? pick another with --channel)");
  }
  return ep;
}

NetEndpoint::~NetEndpoint() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

uint16_t NetEndpoint::local_port() const {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return 0;
  }
  if (a.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

std::string NetEndpoint::describe() const {
  return std::string("udp ") + (server_ ? "server" : "client") + " port " +
         std::to_string(local_port());
}

NetSession* NetEndpoint::session(std::string_view name) {
  for (auto& s : sessions_) {
    if (s->name_ == name) {
      return s.get();
    }
  }
  return nullptr;
}

std::vector<NetSession*> NetEndpoint::sessions() {
  std::vector<NetSession*> v;
  for (auto& s : sessions_) {
    v.push_back(s.get());
  }
  return v;
}

void NetEndpoint::handle_events(int64_t now_us) {
  for (int i = 0; i < 256; ++i) {  // bounded so one flood cannot starve the loop
    sockaddr_storage from{};
    socklen_t from_len = sizeof from;
    ssize_t r = recvfrom(fd_, rx_buf_.data(), rx_buf_.size(), 0, reinterpret_cast<sockaddr*>(&from),
                         &from_len);
    if (r < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        // ICMP errors (peer port closed) surface here on connected paths; ignore.
        log_debug("net: recvfrom: %s", std::strerror(errno));
      }
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    on_datagram(std::span(rx_buf_.data(), static_cast<size_t>(r)), from, from_len, now_us);
  }
}

void NetEndpoint::log_refusal(const char* what,
                              const sockaddr_storage& from,
                              socklen_t from_len,
                              int64_t now_us) {
  ++refusals_since_log_;
  if (now_us - last_refusal_log_us_ >= 5'000'000) {
    log_warn("net %s: refused %llu datagram(s); latest from %s: %s", describe().c_str(),
             static_cast<unsigned long long>(refusals_since_log_),
             address_to_string(from, from_len).c_str(), what);
    last_refusal_log_us_ = now_us;
    refusals_since_log_ = 0;
  }
}

void NetEndpoint::on_datagram(std::span<const std::byte> d,
                              const sockaddr_storage& from,
                              socklen_t from_len,
                              int64_t now_us) {
  auto h = parse_header(d);
  if (!h) {
    ++rejected_malformed_;
    log_debug("net: dropped datagram from %s: %s", address_to_string(from, from_len).c_str(),
              h.error().message.c_str());
    return;
  }
  NetSession* s = nullptr;
  for (auto& cand : sessions_) {
    if (cand->key_id_ == h->key_id) {
      s = cand.get();
      break;
    }
  }
  if (!s) {
    ++rejected_unknown_key_;
    log_refusal("its key is not configured here (wrong key, or a qube this daemon does not know)",
                from, from_len, now_us);
    return;
  }
  auto plen = open(s->key_, d, plain_buf_);
  if (!plen) {
    ++rejected_auth_;
    log_refusal("authentication failed (wrong key or altered in transit)", from, from_len, now_us);
    return;
  }
  std::span<const std::byte> plain(plain_buf_.data(), *plen);
  // Freshness: only a packet naming THIS run's session proves it is not a
  // replay from an earlier run. Anything else is answered with a Hello
  // (rate-limited) so a restarted peer learns our session, and changes nothing.
  if (h->receiver_session != my_session_) {
    ++rejected_stale_;
    if (now_us - s->last_hello_sent_us_ >= 100'000) {
      send_hello(*s, h->sender_session, from, from_len, now_us);
    }
    return;
  }
  if (h->sender_session != s->peer_session_) {
    if (std::find(s->retired_.begin(), s->retired_.end(), h->sender_session) != s->retired_.end()) {
      ++s->c_.replays;
      return;
    }
    if (s->peer_session_ != 0) {
      s->retired_[s->retired_next_++ % s->retired_.size()] = s->peer_session_;
    }
    log_info("net %s: peer '%s' session %016llx from %s", describe().c_str(), s->name_.c_str(),
             static_cast<unsigned long long>(h->sender_session),
             address_to_string(from, from_len).c_str());
    s->peer_session_ = h->sender_session;
    s->window_.reset();
    s->reset_rx();
    s->c_.rtt_us = -1;
    s->peer_state_ = {};
  }
  if (!s->window_.accept(h->counter)) {
    ++s->c_.replays;
    return;
  }
  // Authenticated and fresh: the peer may have moved (NAT rebinding, roaming).
  if (!same_address(s->addr_, s->addr_len_, from, from_len)) {
    if (s->addr_len_ != 0) {
      ++s->c_.address_changes;
      log_info("net %s: peer '%s' moved from %s to %s", describe().c_str(), s->name_.c_str(),
               s->peer_address().c_str(), address_to_string(from, from_len).c_str());
    }
    s->addr_ = from;
    s->addr_len_ = from_len;
  }
  s->last_rx_us_ = now_us;
  ++s->c_.rx_packets;
  s->c_.rx_bytes += d.size();
  switch (h->type) {
    case PacketType::Hello:
      break;
    case PacketType::KeepAlive: {
      auto k = parse_keepalive(plain);
      if (!k) {
        return;
      }
      s->peer_ka_send_us_ = k->send_us;
      s->peer_ka_rx_us_ = now_us;
      if (k->echo_us != 0) {
        int64_t rtt = now_us - static_cast<int64_t>(k->echo_us) - static_cast<int64_t>(k->held_us);
        if (rtt >= 0 && rtt < 10'000'000) {
          s->c_.rtt_us = s->c_.rtt_us < 0 ? rtt : (s->c_.rtt_us * 7 + rtt) / 8;
        }
      }
      break;
    }
    case PacketType::Audio: {
      auto a = parse_audio(plain);
      if (!a) {
        log_debug("net: peer '%s' sent a bad audio payload: %s", s->name_.c_str(),
                  a.error().message.c_str());
        return;
      }
      s->on_audio(*a, now_us);
      break;
    }
    case PacketType::State: {
      auto st = parse_state(plain);
      if (!st) {
        log_debug("net: peer '%s' sent a bad state payload: %s", s->name_.c_str(),
                  st.error().message.c_str());
        return;
      }
      s->peer_state_ = *st;
      break;
    }
    case PacketType::Bye:
      log_info("net %s: peer '%s' said goodbye", describe().c_str(), s->name_.c_str());
      s->peer_state_ = {};
      s->reset_rx();
      s->last_rx_us_ = -1;
      break;
  }
}

void NetEndpoint::send_packet(NetSession& s,
                              PacketType type,
                              uint64_t receiver_session,
                              std::span<const std::byte> plain,
                              const sockaddr_storage& to,
                              socklen_t to_len) {
  Header h;
  h.type = type;
  h.key_id = s.key_id_;
  h.sender_session = my_session_;
  h.receiver_session = receiver_session;
  h.counter = ++s.tx_counter_;
  size_t n = seal(s.key_, h, plain, tx_buf_);
  if (n == 0 || to_len == 0) {
    return;
  }
  ssize_t r =
      sendto(fd_, tx_buf_.data(), n, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to), to_len);
  if (r == static_cast<ssize_t>(n)) {
    ++s.c_.tx_packets;
    s.c_.tx_bytes += n;
  }
}

void NetEndpoint::send_hello(NetSession& s,
                             uint64_t receiver,
                             const sockaddr_storage& to,
                             socklen_t len,
                             int64_t now_us) {
  s.last_hello_sent_us_ = now_us;
  send_packet(s, PacketType::Hello, receiver, {}, to, len);
}

void NetEndpoint::tick(int64_t now_us) {
  for (auto& sp : sessions_) {
    NetSession& s = *sp;
    if (s.addr_len_ == 0) {
      continue;  // server: this qube never showed up
    }
    bool fresh_peer = s.peer_session_ != 0 && s.connected(now_us);
    if (!fresh_peer) {
      // Client looking for its server (or a server whose peer went away):
      // hellos every 200 ms; a server only answers, it never seeks.
      if (!server_ && now_us - s.last_hello_sent_us_ >= 200'000) {
        send_hello(s, s.peer_session_, s.addr_, s.addr_len_, now_us);
      }
      if (server_ || s.peer_session_ == 0) {
        continue;
      }
    }
    if (now_us - s.last_keepalive_us_ >= keepalive_us_) {
      s.last_keepalive_us_ = now_us;
      KeepAlivePayload k;
      k.send_us = static_cast<uint64_t>(now_us);
      k.echo_us = s.peer_ka_send_us_;
      k.held_us = s.peer_ka_send_us_ ? static_cast<uint64_t>(now_us - s.peer_ka_rx_us_) : 0;
      std::array<std::byte, kKeepAliveSize> buf{};
      write_keepalive(k, buf);
      send_packet(s, PacketType::KeepAlive, s.peer_session_, buf, s.addr_, s.addr_len_);
      std::array<std::byte, kStateSize> st{};
      write_state(s.local_state_, st);
      send_packet(s, PacketType::State, s.peer_session_, st, s.addr_, s.addr_len_);
    }
  }
}

Result<void> NetEndpoint::send_audio(NetSession& s,
                                     std::span<const int16_t> frame,
                                     int64_t now_us) {
  if (s.peer_session_ == 0 || s.addr_len_ == 0) {
    return fail("net: peer '" + s.name_ + "' not connected yet");
  }
  size_t n = s.enc_->encode(frame, coded_buf_);
  if (n == 0) {
    return fail("net: encoding a frame for '" + s.name_ + "' failed (wrong frame size?)");
  }
  AudioPayload a;
  a.stream = server_ ? StreamId::Microphone : StreamId::Playback;
  a.codec = s.enc_->last_codec();
  a.channels = s.enc_->params().channels;
  a.frame_quarter_ms = s.enc_->params().frame_quarter_ms;
  a.seq = s.tx_seq_++;
  a.send_us = static_cast<uint64_t>(now_us);
  a.data = std::span<const std::byte>(coded_buf_.data(), n);
  if (s.enc_->params().redundancy && s.prev_len_ > 0) {
    a.red_codec = s.prev_codec_;
    a.red = std::span<const std::byte>(s.prev_coded_.data(), s.prev_len_);
  }
  size_t plen = write_audio(a, payload_buf_);
  if (plen == 0 && !a.red.empty()) {
    a.red = {};  // both do not fit one datagram (PCM passthrough): send the frame alone
    plen = write_audio(a, payload_buf_);
  }
  if (plen == 0) {
    return fail("net: coded frame too large for a datagram");
  }
  std::copy(coded_buf_.begin(), coded_buf_.begin() + static_cast<std::ptrdiff_t>(n),
            s.prev_coded_.begin());
  s.prev_len_ = n;
  s.prev_codec_ = a.codec;
  send_packet(s, PacketType::Audio, s.peer_session_, std::span(payload_buf_.data(), plen), s.addr_,
              s.addr_len_);
  ++s.c_.tx_frames;
  return {};
}

void NetEndpoint::set_state(NetSession& s, const StatePayload& state) {
  const bool now = state.flags != s.local_state_.flags ||
                   state.volume_permille != s.local_state_.volume_permille;
  s.local_state_ = state;
  if (now && s.peer_session_ != 0 && s.addr_len_ != 0) {
    std::array<std::byte, kStateSize> st{};
    write_state(state, st);
    send_packet(s, PacketType::State, s.peer_session_, st, s.addr_, s.addr_len_);
  }
}

void NetEndpoint::send_bye(int64_t /*now_us*/) {
  for (auto& s : sessions_) {
    if (s->peer_session_ != 0 && s->addr_len_ != 0) {
      send_packet(*s, PacketType::Bye, s->peer_session_, {}, s->addr_, s->addr_len_);
    }
  }
}

}  // namespace qaudio::net
