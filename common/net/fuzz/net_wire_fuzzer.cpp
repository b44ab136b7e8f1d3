// libFuzzer target for what the network channel reads before (and right
// after) authentication: the clear datagram header, and the audio,
// keep-alive and state payload parsers fed with the bytes after it as if they had
// decrypted. Checks the parsed fields against the documented bounds and that
// writing a parsed payload back gives the same bytes.
//
//   build-fuzz/common/net/net_wire_fuzzer common/net/fuzz/net_wire_corpus
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "net_wire.hpp"

using namespace qaudio::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  auto h = parse_header(in);
  if (h) {
    if (size < kHeaderSize + kTagSize || size > kMaxDatagram || h->sender_session == 0) {
      std::abort();
    }
    std::array<std::byte, kHeaderSize> back{};
    write_header(*h, back);
    if (std::memcmp(back.data(), data, kHeaderSize) != 0) {
      std::abort();
    }
  }
  // Payload parsers on everything after the header (what AEAD open would yield).
  auto plain = size > kHeaderSize ? in.subspan(kHeaderSize) : in;
  if (auto a = parse_audio(plain)) {
    if (a->data.empty() || a->data.size() > plain.size() ||
        a->data.data() + a->data.size() > plain.data() + plain.size() ||
        (a->channels != 1 && a->channels != 2) ||
        a->red.data() + a->red.size() > plain.data() + plain.size()) {
      std::abort();
    }
    std::vector<std::byte> out(plain.size());
    if (a->data.size() <= kMaxAudioData && a->red.size() <= kMaxAudioData) {
      size_t n = write_audio(*a, out);
      if (n != plain.size() || std::memcmp(out.data(), plain.data(), n) != 0) {
        std::abort();
      }
    }
  }
  if (auto k = parse_keepalive(plain)) {
    std::array<std::byte, kKeepAliveSize> out{};
    write_keepalive(*k, out);
    if (std::memcmp(out.data(), plain.data(), kKeepAliveSize) != 0) {
      std::abort();
    }
  }
  if (auto st = parse_state(plain)) {
    std::array<std::byte, kStateSize> out{};
    write_state(*st, out);
    if ((st->flags & ~kStateKnownFlags) != 0 || st->latency_us > kStateMaxLatencyUs ||
        st->volume_permille > kStateMaxVolumePermille ||
        std::memcmp(out.data(), plain.data(), kStateSize) != 0) {
      std::abort();
    }
  }
  return 0;
}
