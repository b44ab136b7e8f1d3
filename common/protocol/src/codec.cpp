// Encoding and decoding of native message payloads (little-endian, fixed
// layouts of docs/protocol.md). Every field is validated both ways, so
// encode(decode(frame)) reproduces the frame byte for byte.
#include <algorithm>
#include <cstring>

#include "qaudio/protocol.hpp"

namespace qaudio::protocol {
namespace {

// ------------------------------------------------------------ byte access ----

class Writer {
 public:
  explicit Writer(std::span<std::byte> out) : out_(out) {}
  void u8(uint8_t v) { out_[pos_++] = std::byte(v); }
  void u16(uint16_t v) {
    u8(v & 0xff);
    u8(v >> 8);
  }
  void u32(uint32_t v) {
    u16(v & 0xffff);
    u16(v >> 16);
  }
  void u64(uint64_t v) {
    u32(v & 0xffffffffu);
    u32(v >> 32);
  }
  void bytes(const void* p, size_t n) {
    if (n > 0) {
      std::memcpy(out_.data() + pos_, p, n);
    }
    pos_ += n;
  }
  size_t pos() const { return pos_; }

 private:
  std::span<std::byte> out_;
  size_t pos_ = 0;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  uint8_t u8() { return static_cast<uint8_t>(in_[pos_++]); }
  uint16_t u16() {
    uint16_t lo = u8();
    return static_cast<uint16_t>(lo | u8() << 8);
  }
  uint32_t u32() {
    uint32_t lo = u16();
    return lo | static_cast<uint32_t>(u16()) << 16;
  }
  uint64_t u64() {
    uint64_t lo = u32();
    return lo | static_cast<uint64_t>(u32()) << 32;
  }
  std::span<const std::byte> rest() const { return in_.subspan(pos_); }

 private:
  std::span<const std::byte> in_;
  size_t pos_ = 0;
};

std::string num(uint64_t v) {
  return std::to_string(v);
}

// ------------------------------------------------------------- validation ----

Result<void> check_format(const StreamFormat& f, std::string_view what) {
  auto s = static_cast<uint8_t>(f.sample);
  if (s < 1 || s > 3) {
    return fail(std::string(what) + ": sample format " + num(s) +
                " is not one of 1 (s16le), 2 (s32le), 3 (f32le)");
  }
  if (!is_supported_rate(f.rate)) {
    return fail(std::string(what) + ": rate " + num(f.rate) +
                " Hz is not one of 44100, 48000, 96000");
  }
  if (f.channels < 1 || f.channels > kMaxChannels) {
    return fail(std::string(what) + ": " + num(f.channels) + " channels is not in 1.." +
                num(kMaxChannels));
  }
  return {};
}

Result<void> check_direction(StreamDirection d, std::string_view what) {
  if (d != StreamDirection::Playback && d != StreamDirection::Capture) {
    return fail(std::string(what) + ": direction " + num(static_cast<uint8_t>(d)) +
                " is not 0 (playback) or 1 (capture)");
  }
  return {};
}

Result<void> check_rate(uint32_t rate, std::string_view what) {
  if (rate < kMinDeviceRate || rate > kMaxDeviceRate) {
    return fail(std::string(what) + ": device rate " + num(rate) + " Hz is not in " +
                num(kMinDeviceRate) + ".." + num(kMaxDeviceRate));
  }
  return {};
}

Result<void> check_text(std::span<const char> text) {
  if (text.size() > kMaxErrorText) {
    return fail("error: text of " + num(text.size()) + " bytes exceeds " + num(kMaxErrorText));
  }
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c > 0x7e) {
      return fail("error: text byte " + num(i) + " (" + num(c) + ") is not printable ASCII");
    }
  }
  return {};
}

struct Validator {
  Result<void> operator()(const Hello&) const { return {}; }
  Result<void> operator()(const Welcome& w) const {
    if (w.daemon_min_version == 0 || w.daemon_min_version > w.daemon_max_version) {
      return fail("welcome: daemon versions " + num(w.daemon_min_version) + ".." +
                  num(w.daemon_max_version) + " are not a valid range");
    }
    if (w.version < w.daemon_min_version || w.version > w.daemon_max_version) {
      return fail("welcome: chosen version " + num(w.version) + " is outside the daemon's " +
                  num(w.daemon_min_version) + ".." + num(w.daemon_max_version));
    }
    if (auto r = check_rate(w.device_rate, "welcome"); !r) {
      return r;
    }
    if (w.period_frames < 1 || w.period_frames > kMaxPeriodFrames) {
      return fail("welcome: period of " + num(w.period_frames) + " frames is not in 1.." +
                  num(kMaxPeriodFrames));
    }
    return {};
  }
  Result<void> operator()(const PlaybackFormat& m) const {
    return check_format(m.format, "playback-format");
  }
  Result<void> operator()(const CaptureFormat& m) const {
    return check_format(m.format, "capture-format");
  }
  Result<void> operator()(const FormatAccepted& m) const {
    if (auto r = check_direction(m.direction, "format-accepted"); !r) {
      return r;
    }
    return check_format(m.format, "format-accepted");
  }
  Result<void> operator()(const FormatRejected& m) const {
    if (auto r = check_direction(m.direction, "format-rejected"); !r) {
      return r;
    }
    auto reason = static_cast<uint16_t>(m.reason);
    if (reason < 1 || reason > 3) {
      return fail("format-rejected: reason " + num(reason) + " is not in 1..3");
    }
    return check_format(m.format, "format-rejected");
  }
  Result<void> operator()(const Cork&) const { return {}; }
  Result<void> operator()(const Uncork&) const { return {}; }
  Result<void> operator()(const MicStart&) const { return {}; }
  Result<void> operator()(const MicStop&) const { return {}; }
  Result<void> operator()(const Latency& m) const {
    if (m.device_latency_ns > kMaxLatencyNs || m.daemon_buffer_ns > kMaxLatencyNs) {
      return fail("latency: " + num(std::max(m.device_latency_ns, m.daemon_buffer_ns)) +
                  " ns exceeds the maximum of " + num(kMaxLatencyNs) + " ns");
    }
    return {};
  }
  Result<void> operator()(const ClockTick& m) const {
    return check_rate(m.device_rate, "clock-tick");
  }
  Result<void> operator()(const VolumeState& m) const {
    if (m.volume_permille > kMaxVolumePermille) {
      return fail("volume-state: volume " + num(m.volume_permille) + " per mille exceeds " +
                  num(kMaxVolumePermille));
    }
    return {};
  }
  Result<void> operator()(const MicState&) const { return {}; }
  Result<void> operator()(const MicData& m) const {
    if (m.pcm.empty() || m.pcm.size() > kMaxMicData) {
      return fail("mic-data: " + num(m.pcm.size()) + " bytes is not in 1.." + num(kMaxMicData));
    }
    return {};
  }
  Result<void> operator()(const Heartbeat&) const { return {}; }
  Result<void> operator()(const PeerError& m) const {
    if (static_cast<uint16_t>(m.code) == 0) {
      return fail("error: code 0 is reserved");
    }
    if (m.text_len > kMaxErrorText) {
      return fail("error: text of " + num(m.text_len) + " bytes exceeds " + num(kMaxErrorText));
    }
    return check_text({m.text.data(), m.text_len});
  }
};

// --------------------------------------------------------------- payloads ----

void put_format(Writer& w, const StreamFormat& f) {
  w.u8(static_cast<uint8_t>(f.sample));
  w.u8(static_cast<uint8_t>(f.channels));
  w.u16(0);
  w.u32(f.rate);
}

struct PayloadWriter {
  Writer& w;
  void operator()(const Hello& m) { w.u32(m.capabilities); }
  void operator()(const Welcome& m) {
    w.u8(m.version);
    w.u8(m.daemon_min_version);
    w.u8(m.daemon_max_version);
    w.u8(0);
    w.u32(m.capabilities);
    w.u32(m.device_rate);
    w.u32(m.period_frames);
  }
  void operator()(const PlaybackFormat& m) { put_format(w, m.format); }
  void operator()(const CaptureFormat& m) { put_format(w, m.format); }
  void operator()(const FormatAccepted& m) {
    w.u8(static_cast<uint8_t>(m.direction));
    w.u8(0);
    w.u16(0);
    put_format(w, m.format);
  }
  void operator()(const FormatRejected& m) {
    w.u8(static_cast<uint8_t>(m.direction));
    w.u8(0);
    w.u16(static_cast<uint16_t>(m.reason));
    put_format(w, m.format);
  }
  void operator()(const Cork&) {}
  void operator()(const Uncork&) {}
  void operator()(const MicStart&) {}
  void operator()(const MicStop&) {}
  void operator()(const Latency& m) {
    w.u64(m.device_latency_ns);
    w.u64(m.daemon_buffer_ns);
  }
  void operator()(const ClockTick& m) {
    w.u64(m.frames_played);
    w.u64(m.device_time_ns);
    w.u32(m.device_rate);
    w.u32(0);
  }
  void operator()(const VolumeState& m) {
    w.u16(m.volume_permille);
    w.u8(m.muted ? 1 : 0);
    w.u8(0);
  }
  void operator()(const MicState& m) {
    w.u8(m.attached ? 1 : 0);
    w.u8(m.allowed ? 1 : 0);
    w.u16(0);
  }
  void operator()(const MicData& m) { w.bytes(m.pcm.data(), m.pcm.size()); }
  void operator()(const Heartbeat& m) { w.u32(m.seq); }
  void operator()(const PeerError& m) {
    w.u16(static_cast<uint16_t>(m.code));
    w.u16(0);
    w.bytes(m.text.data(), m.text_len);
  }
};

size_t payload_size(const Message& m) {
  if (auto* d = std::get_if<MicData>(&m)) {
    return d->pcm.size();
  }
  if (auto* e = std::get_if<PeerError>(&m)) {
    return 4 + e->text_len;
  }
  return payload_bounds(static_cast<uint16_t>(type_of(m)))->min;
}

Result<void> reserved_zero(uint64_t v, std::string_view what) {
  if (v != 0) {
    return fail(std::string(what) + ": reserved field is " + num(v) + ", must be 0");
  }
  return {};
}

Result<bool> flag(uint8_t v, std::string_view what) {
  if (v > 1) {
    return fail(std::string(what) + " is " + num(v) + ", must be 0 or 1");
  }
  return v == 1;
}

Result<StreamFormat> get_format(Reader& r, std::string_view what) {
  StreamFormat f;
  f.sample = static_cast<SampleFormat>(r.u8());
  f.channels = r.u8();
  uint16_t reserved = r.u16();
  f.rate = r.u32();
  if (auto ok = check_format(f, what); !ok) {
    return fail(ok.error());
  }
  if (auto ok = reserved_zero(reserved, what); !ok) {
    return fail(ok.error());
  }
  return f;
}

Result<Message> parse(MessageType type, Reader& r) {
  switch (type) {
    case MessageType::Hello:
      return Message{Hello{r.u32()}};
    case MessageType::Welcome: {
      Welcome m;
      m.version = r.u8();
      m.daemon_min_version = r.u8();
      m.daemon_max_version = r.u8();
      if (auto ok = reserved_zero(r.u8(), "welcome"); !ok) {
        return fail(ok.error());
      }
      m.capabilities = r.u32();
      m.device_rate = r.u32();
      m.period_frames = r.u32();
      return Message{m};
    }
    case MessageType::PlaybackFormat:
    case MessageType::CaptureFormat: {
      bool playback = type == MessageType::PlaybackFormat;
      auto f = get_format(r, playback ? "playback-format" : "capture-format");
      if (!f) {
        return fail(f.error());
      }
      return playback ? Message{PlaybackFormat{*f}} : Message{CaptureFormat{*f}};
    }
    case MessageType::FormatAccepted: {
      FormatAccepted m;
      m.direction = static_cast<StreamDirection>(r.u8());
      uint32_t reserved = r.u8();
      reserved |= static_cast<uint32_t>(r.u16()) << 8;
      if (auto ok = reserved_zero(reserved, "format-accepted"); !ok) {
        return fail(ok.error());
      }
      auto f = get_format(r, "format-accepted");
      if (!f) {
        return fail(f.error());
      }
      m.format = *f;
      return Message{m};
    }
    case MessageType::FormatRejected: {
      FormatRejected m;
      m.direction = static_cast<StreamDirection>(r.u8());
      if (auto ok = reserved_zero(r.u8(), "format-rejected"); !ok) {
        return fail(ok.error());
      }
      m.reason = static_cast<RejectReason>(r.u16());
      auto f = get_format(r, "format-rejected");
      if (!f) {
        return fail(f.error());
      }
      m.format = *f;
      return Message{m};
    }
    case MessageType::Cork:
      return Message{Cork{}};
    case MessageType::Uncork:
      return Message{Uncork{}};
    case MessageType::MicStart:
      return Message{MicStart{}};
    case MessageType::MicStop:
      return Message{MicStop{}};
    case MessageType::Latency: {
      Latency m;
      m.device_latency_ns = r.u64();
      m.daemon_buffer_ns = r.u64();
      return Message{m};
    }
    case MessageType::ClockTick: {
      ClockTick m;
      m.frames_played = r.u64();
      m.device_time_ns = r.u64();
      m.device_rate = r.u32();
      if (auto ok = reserved_zero(r.u32(), "clock-tick"); !ok) {
        return fail(ok.error());
      }
      return Message{m};
    }
    case MessageType::VolumeState: {
      VolumeState m;
      m.volume_permille = r.u16();
      auto muted = flag(r.u8(), "volume-state: muted");
      if (!muted) {
        return fail(muted.error());
      }
      m.muted = *muted;
      if (auto ok = reserved_zero(r.u8(), "volume-state"); !ok) {
        return fail(ok.error());
      }
      return Message{m};
    }
    case MessageType::MicState: {
      auto attached = flag(r.u8(), "mic-state: attached");
      if (!attached) {
        return fail(attached.error());
      }
      auto allowed = flag(r.u8(), "mic-state: allowed");
      if (!allowed) {
        return fail(allowed.error());
      }
      if (auto ok = reserved_zero(r.u16(), "mic-state"); !ok) {
        return fail(ok.error());
      }
      return Message{MicState{*attached, *allowed}};
    }
    case MessageType::MicData:
      return Message{MicData{r.rest()}};
    case MessageType::Heartbeat:
      return Message{Heartbeat{r.u32()}};
    case MessageType::PeerError: {
      PeerError m;
      m.code = static_cast<ErrorCode>(r.u16());
      if (auto ok = reserved_zero(r.u16(), "error"); !ok) {
        return fail(ok.error());
      }
      auto text = r.rest();
      m.text_len = static_cast<uint8_t>(text.size());  // bounds checked before
      std::memcpy(m.text.data(), text.data(), text.size());
      return Message{m};
    }
  }
  return fail("unknown message type " + num(static_cast<uint16_t>(type)));
}

}  // namespace

// --------------------------------------------------------------- public ----

std::string_view to_string(MessageType t) {
  switch (t) {
    case MessageType::Hello:
      return "hello";
    case MessageType::Welcome:
      return "welcome";
    case MessageType::PlaybackFormat:
      return "playback-format";
    case MessageType::CaptureFormat:
      return "capture-format";
    case MessageType::FormatAccepted:
      return "format-accepted";
    case MessageType::FormatRejected:
      return "format-rejected";
    case MessageType::Cork:
      return "cork";
    case MessageType::Uncork:
      return "uncork";
    case MessageType::MicStart:
      return "mic-start";
    case MessageType::MicStop:
      return "mic-stop";
    case MessageType::Latency:
      return "latency";
    case MessageType::ClockTick:
      return "clock-tick";
    case MessageType::VolumeState:
      return "volume-state";
    case MessageType::MicState:
      return "mic-state";
    case MessageType::MicData:
      return "mic-data";
    case MessageType::Heartbeat:
      return "heartbeat";
    case MessageType::PeerError:
      return "error";
  }
  return "unknown";
}

std::optional<PayloadBounds> payload_bounds(uint16_t type) {
  switch (static_cast<MessageType>(type)) {
    case MessageType::Hello:
    case MessageType::Heartbeat:
    case MessageType::VolumeState:
    case MessageType::MicState:
      return PayloadBounds{4, 4};
    case MessageType::Welcome:
    case MessageType::Latency:
      return PayloadBounds{16, 16};
    case MessageType::PlaybackFormat:
    case MessageType::CaptureFormat:
      return PayloadBounds{8, 8};
    case MessageType::FormatAccepted:
    case MessageType::FormatRejected:
      return PayloadBounds{12, 12};
    case MessageType::Cork:
    case MessageType::Uncork:
    case MessageType::MicStart:
    case MessageType::MicStop:
      return PayloadBounds{0, 0};
    case MessageType::ClockTick:
      return PayloadBounds{24, 24};
    case MessageType::MicData:
      return PayloadBounds{1, kMaxMicData};
    case MessageType::PeerError:
      return PayloadBounds{4, 4 + kMaxErrorText};
  }
  return std::nullopt;
}

MessageType type_of(const Message& m) {
  static constexpr MessageType kTypes[] = {
      MessageType::Hello,         MessageType::Welcome,        MessageType::PlaybackFormat,
      MessageType::CaptureFormat, MessageType::FormatAccepted, MessageType::FormatRejected,
      MessageType::Cork,          MessageType::Uncork,         MessageType::MicStart,
      MessageType::MicStop,       MessageType::Latency,        MessageType::ClockTick,
      MessageType::VolumeState,   MessageType::MicState,       MessageType::MicData,
      MessageType::Heartbeat,     MessageType::PeerError};
  static_assert(std::size(kTypes) == std::variant_size_v<Message>);
  return kTypes[m.index()];
}

bool operator==(const MicData& a, const MicData& b) {
  return a.pcm.size() == b.pcm.size() &&
         (a.pcm.empty() || std::memcmp(a.pcm.data(), b.pcm.data(), a.pcm.size()) == 0);
}

bool operator==(const PeerError& a, const PeerError& b) {
  return a.code == b.code && a.message() == b.message();
}

PeerError PeerError::make(ErrorCode code, std::string_view text) {
  PeerError e;
  e.code = code;
  e.text_len = static_cast<uint8_t>(std::min(text.size(), kMaxErrorText));
  for (size_t i = 0; i < e.text_len; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    e.text[i] = (c >= 0x20 && c <= 0x7e) ? static_cast<char>(c) : '?';
  }
  return e;
}

Result<void> validate(const Message& m) {
  return std::visit(Validator{}, m);
}

Result<size_t> encode(const Message& m, std::span<std::byte> out, uint8_t version) {
  if (auto ok = validate(m); !ok) {
    return fail(ok.error());
  }
  if (version == 0) {
    return fail("encode: protocol version 0 is reserved");
  }
  size_t payload = payload_size(m);
  size_t total = kFrameHeaderSize + payload;
  if (out.size() < total) {
    return fail("encode: " + num(total) + "-byte frame does not fit in " + num(out.size()) +
                " bytes");
  }
  Writer w(out);
  w.u8(version);
  w.u8(0);
  w.u16(static_cast<uint16_t>(type_of(m)));
  w.u32(static_cast<uint32_t>(payload));
  std::visit(PayloadWriter{w}, m);
  return total;
}

Result<void> encode(const Message& m, std::vector<std::byte>& out, uint8_t version) {
  FrameBuffer buf;
  auto n = encode(m, buf, version);
  if (!n) {
    return fail(n.error());
  }
  out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  return {};
}

Result<Message> decode_payload(uint16_t type, std::span<const std::byte> payload) {
  auto bounds = payload_bounds(type);
  if (!bounds) {
    return fail("unknown message type " + num(type));
  }
  auto name = to_string(static_cast<MessageType>(type));
  if (payload.size() < bounds->min || payload.size() > bounds->max) {
    return fail(std::string(name) + ": payload of " + num(payload.size()) + " bytes, expected " +
                (bounds->min == bounds->max ? num(bounds->min)
                                            : num(bounds->min) + ".." + num(bounds->max)));
  }
  Reader r(payload);
  auto m = parse(static_cast<MessageType>(type), r);
  if (!m) {
    return m;
  }
  if (auto ok = validate(*m); !ok) {
    return fail(ok.error());
  }
  return m;
}

}  // namespace qaudio::protocol
