// FrameDecoder: incremental, bounded decoding of native frames
// ([u8 version][u8 flags][u16 type][u32 length] + payload, little-endian).
// The buffer holds one maximal frame; the header is checked as soon as its
// 8 bytes are in, so an oversized length fails before any payload arrives.
#include <algorithm>
#include <cstring>

#include "qaudio/protocol.hpp"

namespace qaudio::protocol {

void FrameDecoder::compact() {
  if (begin_ == 0) {
    return;
  }
  size_t n = end_ - begin_;
  if (n > 0) {
    std::memmove(buf_.data(), buf_.data() + begin_, n);
  }
  begin_ = 0;
  end_ = n;
}

size_t FrameDecoder::feed(std::span<const std::byte> in) {
  auto space = write_space();
  size_t n = std::min(in.size(), space.size());
  if (n > 0) {
    std::memcpy(space.data(), in.data(), n);
  }
  end_ += n;
  return n;
}

std::span<std::byte> FrameDecoder::write_space() {
  if (failed_) {
    return {};
  }
  compact();
  return {buf_.data() + end_, buf_.size() - end_};
}

void FrameDecoder::commit(size_t n) {
  if (failed_) {
    return;
  }
  end_ += std::min(n, buf_.size() - end_);
}

DecodeResult FrameDecoder::fail(std::string reason) {
  failed_ = true;
  error_ = std::move(reason);
  begin_ = end_ = 0;
  return DecodeError{error_};
}

DecodeResult FrameDecoder::next() {
  if (failed_) {
    return DecodeError{error_};
  }
  for (;;) {
    size_t avail = end_ - begin_;
    if (avail < kFrameHeaderSize) {
      return NeedMore{};
    }
    const std::byte* h = buf_.data() + begin_;
    auto version = static_cast<uint8_t>(h[0]);
    auto flags = static_cast<uint8_t>(h[1]);
    auto type =
        static_cast<uint16_t>(static_cast<uint16_t>(h[2]) | static_cast<uint16_t>(h[3]) << 8);
    uint32_t length = static_cast<uint32_t>(h[4]) | static_cast<uint32_t>(h[5]) << 8 |
                      static_cast<uint32_t>(h[6]) << 16 | static_cast<uint32_t>(h[7]) << 24;
    if (version < min_version_ || version > max_version_) {
      std::string expected = min_version_ == max_version_ ? std::to_string(min_version_)
                                                          : std::to_string(min_version_) + ".." +
                                                                std::to_string(max_version_);
      return fail("frame header: version " + std::to_string(version) + ", expected " + expected);
    }
    if (flags != 0) {
      return fail("frame header: flags " + std::to_string(flags) + ", must be 0");
    }
    if (length > kMaxPayload) {
      return fail("frame header: payload length " + std::to_string(length) +
                  " exceeds the maximum of " + std::to_string(kMaxPayload));
    }
    if (type < 0x0010) {
      return fail("frame header: type " + std::to_string(type) +
                  " is reserved (a stock control word on a native connection?)");
    }
    if (avail < kFrameHeaderSize + length) {
      return NeedMore{};
    }
    std::span<const std::byte> payload(h + kFrameHeaderSize, length);
    begin_ += kFrameHeaderSize + length;
    if (!payload_bounds(type)) {
      ++skipped_;  // unknown type, bounded: skip it
      continue;
    }
    auto m = decode_payload(type, payload);
    if (!m) {
      return fail(m.error().message);
    }
    last_version_ = version;
    return std::move(*m);
  }
}

}  // namespace qaudio::protocol
