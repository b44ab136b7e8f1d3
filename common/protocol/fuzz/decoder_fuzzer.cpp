// libFuzzer target: FrameDecoder fed the input in chunks (sizes drawn from the
// first byte), every decoded message re-encoded and compared with the exact
// bytes of the frame it came from (the codec is canonical), and the encoding
// decoded again. Corpus: decoder_corpus/ (written by protocol_test's
// corpus generator, see tests/protocol/).
//
//   build-fuzz/common/protocol/protocol_decoder_fuzzer -max_total_time=60 decoder_corpus
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "qaudio/protocol.hpp"

using namespace qaudio::protocol;

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

uint32_t le32(const uint8_t* p) {
  return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  uint32_t rng = data[0] * 2654435761u + 1;
  const uint8_t* in = data + 1;
  size_t n = size - 1;

  FrameDecoder dec;
  size_t fed = 0;
  size_t pos = 0;  // start of the next frame not yet returned, in `in`
  bool done = false;
  while (!done) {
    // Drain every complete message.
    for (;;) {
      auto r = dec.next();
      if (std::holds_alternative<NeedMore>(r)) {
        break;
      }
      if (auto* e = std::get_if<DecodeError>(&r)) {
        check(!e->reason.empty());
        check(dec.failed());
        check(std::holds_alternative<DecodeError>(dec.next()));  // terminal
        check(dec.feed(std::as_bytes(std::span(in, n))) == 0);
        return 0;
      }
      const Message& m = std::get<Message>(r);
      // Skip the unknown-type frames the decoder skipped before this one.
      for (;;) {
        check(pos + kFrameHeaderSize <= n);
        uint16_t type = static_cast<uint16_t>(in[pos + 2] | in[pos + 3] << 8);
        uint32_t len = le32(in + pos + 4);
        check(len <= kMaxPayload && pos + kFrameHeaderSize + len <= n);
        if (payload_bounds(type)) {
          break;
        }
        pos += kFrameHeaderSize + len;
      }
      uint32_t len = le32(in + pos + 4);
      size_t frame = kFrameHeaderSize + len;
      FrameBuffer out;
      auto enc = encode(m, out);
      check(enc.has_value());
      check(*enc == frame);
      check(std::memcmp(out.data(), in + pos, frame) == 0);
      // And back again.
      auto again = decode_payload(static_cast<uint16_t>(type_of(m)),
                                  std::span(out).subspan(kFrameHeaderSize, len));
      check(again.has_value() && *again == m);
      pos += frame;
    }
    if (fed == n) {
      done = true;
      break;
    }
    rng = rng * 1103515245u + 12345u;
    size_t chunk = (rng >> 16) % 8 == 0 ? 4200 : 1 + (rng >> 16) % 40;
    chunk = std::min(chunk, n - fed);
    size_t took = dec.feed(std::as_bytes(std::span(in + fed, chunk)));
    check(took > 0);  // after NeedMore there is always room
    fed += took;
  }
  return 0;
}
