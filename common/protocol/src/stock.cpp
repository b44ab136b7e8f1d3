// Stock Qubes control words on port 4714 and the native hello words that
// stock daemons ignore (see qaudio/protocol.hpp, docs/protocol.md).
#include <algorithm>
#include <cstring>

#include "qaudio/protocol.hpp"

namespace qaudio::protocol {

ControlKind classify(uint32_t word) {
  switch (word) {
    case static_cast<uint32_t>(StockWord::MicStart):
      return ControlKind::MicStart;
    case static_cast<uint32_t>(StockWord::MicStop):
      return ControlKind::MicStop;
    case static_cast<uint32_t>(StockWord::Cork):
      return ControlKind::Cork;
    case static_cast<uint32_t>(StockWord::Uncork):
      return ControlKind::Uncork;
    case static_cast<uint32_t>(StockWord::Unknown4):
      return ControlKind::Ignored;
    case kHelloMagic:
      return ControlKind::NativeHello;
    default:
      return ControlKind::Unknown;
  }
}

std::string_view to_string(ControlKind k) {
  switch (k) {
    case ControlKind::MicStart:
      return "mic-start";
    case ControlKind::MicStop:
      return "mic-stop";
    case ControlKind::Cork:
      return "cork";
    case ControlKind::Uncork:
      return "uncork";
    case ControlKind::Ignored:
      return "ignored";
    case ControlKind::Unknown:
      return "unknown";
    case ControlKind::NativeHello:
      return "native-hello";
  }
  return "invalid";
}

std::array<std::byte, 4> word_bytes(uint32_t word) {
  return {std::byte(word & 0xff), std::byte((word >> 8) & 0xff), std::byte((word >> 16) & 0xff),
          std::byte((word >> 24) & 0xff)};
}

std::optional<uint32_t> StockControlDecoder::next(std::span<const std::byte>& in) {
  size_t take = std::min(in.size(), buf_.size() - pending_);
  if (take > 0) {
    std::memcpy(buf_.data() + pending_, in.data(), take);
  }
  pending_ += take;
  in = in.subspan(take);
  if (pending_ < buf_.size()) {
    return std::nullopt;
  }
  pending_ = 0;
  return static_cast<uint32_t>(buf_[0]) | static_cast<uint32_t>(buf_[1]) << 8 |
         static_cast<uint32_t>(buf_[2]) << 16 | static_cast<uint32_t>(buf_[3]) << 24;
}

std::array<std::byte, kHelloSize> encode_hello(HelloWords h) {
  std::array<std::byte, kHelloSize> out{};
  auto magic = word_bytes(kHelloMagic);
  auto version = word_bytes(static_cast<uint32_t>(h.min_version) << 8 | h.max_version);
  std::memcpy(out.data(), magic.data(), 4);
  std::memcpy(out.data() + 4, version.data(), 4);
  return out;
}

std::optional<HelloWords> parse_version_word(uint32_t word) {
  if ((word >> 16) != 0) {
    return std::nullopt;
  }
  HelloWords h{static_cast<uint8_t>(word >> 8), static_cast<uint8_t>(word & 0xff)};
  if (h.min_version == 0 || h.min_version > h.max_version) {
    return std::nullopt;
  }
  return h;
}

}  // namespace qaudio::protocol
