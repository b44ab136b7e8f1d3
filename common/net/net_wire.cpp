// Network channel wire format: parsing and writing (see net_wire.hpp).
#include "net_wire.hpp"

#include <string>

namespace qaudio::net {
namespace {

uint64_t get_le(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) {
    v = (v << 8) | static_cast<uint8_t>(p[i]);
  }
  return v;
}
void put_le(std::byte* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) {
    p[i] = static_cast<std::byte>(v & 0xff);
    v >>= 8;
  }
}

}  // namespace

Result<Header> parse_header(std::span<const std::byte> d) {
  if (d.size() < kHeaderSize + kTagSize) {
    return fail("net: datagram of " + std::to_string(d.size()) +
                " bytes is shorter than a header and tag");
  }
  if (d.size() > kMaxDatagram) {
    return fail("net: datagram of " + std::to_string(d.size()) + " bytes exceeds " +
                std::to_string(kMaxDatagram));
  }
  const std::byte* p = d.data();
  if (get_le(p, 4) != kMagic) {
    return fail("net: datagram without the QAN1 magic (not a qaudio peer)");
  }
  if (static_cast<uint8_t>(p[4]) != kVersion) {
    return fail("net: protocol version " + std::to_string(static_cast<int>(p[4])) +
                " not supported (this side speaks " + std::to_string(kVersion) + ")");
  }
  uint8_t type = static_cast<uint8_t>(p[5]);
  if (type < 1 || type > 5) {
    return fail("net: unknown packet type " + std::to_string(type));
  }
  if (get_le(p + 6, 2) != 0) {
    return fail("net: reserved header bytes are not zero");
  }
  Header h;
  h.type = static_cast<PacketType>(type);
  h.key_id = get_le(p + 8, 8);
  h.sender_session = get_le(p + 16, 8);
  h.receiver_session = get_le(p + 24, 8);
  h.counter = get_le(p + 32, 8);
  if (h.sender_session == 0) {
    return fail("net: sender session 0 is invalid");
  }
  return h;
}

void write_header(const Header& h, std::span<std::byte, kHeaderSize> out) {
  std::byte* p = out.data();
  put_le(p, kMagic, 4);
  p[4] = static_cast<std::byte>(kVersion);
  p[5] = static_cast<std::byte>(h.type);
  put_le(p + 6, 0, 2);
  put_le(p + 8, h.key_id, 8);
  put_le(p + 16, h.sender_session, 8);
  put_le(p + 24, h.receiver_session, 8);
  put_le(p + 32, h.counter, 8);
}

namespace {

// Codec-specific length rules shared by the primary and the redundant frame.
Result<void> check_frame(Codec codec,
                         size_t len,
                         uint8_t channels,
                         uint8_t quarter_ms,
                         const std::byte* data) {
  if (len == 0) {
    return fail("net: empty audio frame");
  }
  if (codec == Codec::Pcm16 && len != size_t{frame_samples(quarter_ms)} * channels * 2) {
    return fail("net: PCM frame of " + std::to_string(len) + " bytes does not match its duration");
  }
  if (codec == Codec::Silence && (len != 1 || data[0] != std::byte{0})) {
    return fail("net: a silence frame is exactly one zero byte");
  }
  return {};
}

}  // namespace

Result<AudioPayload> parse_audio(std::span<const std::byte> plain) {
  if (plain.size() < kAudioHeaderSize) {
    return fail("net: audio payload shorter than its header");
  }
  const std::byte* p = plain.data();
  AudioPayload a;
  uint8_t stream = static_cast<uint8_t>(p[0]);
  uint8_t codec = static_cast<uint8_t>(p[1]);
  if (stream > 1) {
    return fail("net: unknown audio stream " + std::to_string(stream));
  }
  if (codec > 2) {
    return fail("net: unknown codec " + std::to_string(codec));
  }
  a.stream = static_cast<StreamId>(stream);
  a.codec = static_cast<Codec>(codec);
  a.channels = static_cast<uint8_t>(p[2]);
  a.frame_quarter_ms = static_cast<uint8_t>(p[3]);
  if (a.channels != 1 && a.channels != 2) {
    return fail("net: audio with " + std::to_string(a.channels) + " channels (1 or 2 allowed)");
  }
  if (a.frame_quarter_ms != 2 && a.frame_quarter_ms != 4 && a.frame_quarter_ms != 8) {
    return fail("net: frame duration must be 5, 10 or 20 ms");
  }
  a.seq = static_cast<uint32_t>(get_le(p + 4, 4));
  a.send_us = get_le(p + 8, 8);
  size_t len = get_le(p + 16, 2);
  uint8_t flags = static_cast<uint8_t>(p[18]);
  if ((flags & ~kAudioFlagRedundant) != 0 || p[19] != std::byte{0}) {
    return fail("net: unknown audio flags or non-zero reserved byte");
  }
  const size_t body = plain.size() - kAudioHeaderSize;
  if ((flags & kAudioFlagRedundant) == 0 ? len != body : len + kRedundantHeaderSize > body) {
    return fail("net: audio length field " + std::to_string(len) + " does not match payload " +
                std::to_string(body));
  }
  if (auto c = check_frame(a.codec, len, a.channels, a.frame_quarter_ms, p + kAudioHeaderSize);
      !c) {
    return fail(c.error());
  }
  a.data = plain.subspan(kAudioHeaderSize, len);
  if ((flags & kAudioFlagRedundant) != 0) {
    const std::byte* r = p + kAudioHeaderSize + len;
    uint8_t rcodec = static_cast<uint8_t>(r[0]);
    size_t rlen = get_le(r + 2, 2);
    if (rcodec > 2 || r[1] != std::byte{0}) {
      return fail("net: redundant frame with unknown codec or non-zero reserved byte");
    }
    if (len + kRedundantHeaderSize + rlen != body) {
      return fail("net: redundant frame length " + std::to_string(rlen) +
                  " does not match payload");
    }
    a.red_codec = static_cast<Codec>(rcodec);
    if (auto c = check_frame(a.red_codec, rlen, a.channels, a.frame_quarter_ms,
                             r + kRedundantHeaderSize);
        !c) {
      return fail(c.error());
    }
    a.red = plain.subspan(kAudioHeaderSize + len + kRedundantHeaderSize, rlen);
  }
  return a;
}

size_t write_audio(const AudioPayload& a, std::span<std::byte> out) {
  size_t n =
      kAudioHeaderSize + a.data.size() + (a.red.empty() ? 0 : kRedundantHeaderSize + a.red.size());
  if (out.size() < n || a.data.size() > kMaxAudioData || a.red.size() > kMaxAudioData) {
    return 0;
  }
  std::byte* p = out.data();
  p[0] = static_cast<std::byte>(a.stream);
  p[1] = static_cast<std::byte>(a.codec);
  p[2] = static_cast<std::byte>(a.channels);
  p[3] = static_cast<std::byte>(a.frame_quarter_ms);
  put_le(p + 4, a.seq, 4);
  put_le(p + 8, a.send_us, 8);
  put_le(p + 16, a.data.size(), 2);
  p[18] = static_cast<std::byte>(a.red.empty() ? 0 : kAudioFlagRedundant);
  p[19] = std::byte{0};
  std::byte* q = p + kAudioHeaderSize;
  for (size_t i = 0; i < a.data.size(); ++i) {
    *q++ = a.data[i];
  }
  if (!a.red.empty()) {
    q[0] = static_cast<std::byte>(a.red_codec);
    q[1] = std::byte{0};
    put_le(q + 2, a.red.size(), 2);
    q += kRedundantHeaderSize;
    for (size_t i = 0; i < a.red.size(); ++i) {
      *q++ = a.red[i];
    }
  }
  return n;
}

Result<KeepAlivePayload> parse_keepalive(std::span<const std::byte> plain) {
  if (plain.size() != kKeepAliveSize) {
    return fail("net: keep-alive payload of " + std::to_string(plain.size()) + " bytes (want " +
                std::to_string(kKeepAliveSize) + ")");
  }
  KeepAlivePayload k;
  k.send_us = get_le(plain.data(), 8);
  k.echo_us = get_le(plain.data() + 8, 8);
  k.held_us = get_le(plain.data() + 16, 8);
  return k;
}

void write_keepalive(const KeepAlivePayload& k, std::span<std::byte, kKeepAliveSize> out) {
  put_le(out.data(), k.send_us, 8);
  put_le(out.data() + 8, k.echo_us, 8);
  put_le(out.data() + 16, k.held_us, 8);
}

Result<StatePayload> parse_state(std::span<const std::byte> plain) {
  if (plain.size() != kStateSize) {
    return fail("net: state payload of " + std::to_string(plain.size()) + " bytes (want " +
                std::to_string(kStateSize) + ")");
  }
  StatePayload st;
  st.flags = static_cast<uint32_t>(get_le(plain.data(), 4));
  st.latency_us = static_cast<uint32_t>(get_le(plain.data() + 4, 4));
  st.volume_permille = static_cast<uint16_t>(get_le(plain.data() + 8, 2));
  if ((st.flags & ~kStateKnownFlags) != 0 || get_le(plain.data() + 10, 6) != 0) {
    return fail("net: state payload with unknown flags or non-zero reserved bytes");
  }
  if (st.latency_us > kStateMaxLatencyUs || st.volume_permille > kStateMaxVolumePermille) {
    return fail("net: state payload with a latency above 10 s or a volume above 150 %");
  }
  return st;
}

void write_state(const StatePayload& st, std::span<std::byte, kStateSize> out) {
  put_le(out.data(), st.flags, 4);
  put_le(out.data() + 4, st.latency_us, 4);
  put_le(out.data() + 8, st.volume_permille, 2);
  put_le(out.data() + 10, 0, 6);
}

}  // namespace qaudio::net
