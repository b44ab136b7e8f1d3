// Audio formats on the wire and on devices: a closed list, validated on entry.
//
//   StreamFormat f{SampleFormat::S16LE, 44100, 2};   // the stock Qubes format
//   if (!f.valid()) reject();  f.frame_bytes() == 4
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qaudio {

enum class SampleFormat : uint8_t { S16LE = 1, S32LE = 2, F32LE = 3 };

constexpr size_t sample_bytes(SampleFormat f) {
  return f == SampleFormat::S16LE ? 2 : 4;
}

constexpr bool is_supported_rate(uint32_t rate) {
  return rate == 44100 || rate == 48000 || rate == 96000;
}

constexpr uint32_t kMaxChannels = 8;

struct StreamFormat {
  SampleFormat sample = SampleFormat::S16LE;
  uint32_t rate = 44100;
  uint32_t channels = 2;

  constexpr size_t frame_bytes() const { return sample_bytes(sample) * channels; }
  constexpr bool valid() const {
    return (sample == SampleFormat::S16LE || sample == SampleFormat::S32LE ||
            sample == SampleFormat::F32LE) &&
           is_supported_rate(rate) && channels >= 1 && channels <= kMaxChannels;
  }
  // Bytes for `ms` milliseconds, rounded down to whole frames.
  constexpr size_t bytes_for_ms(uint32_t ms) const {
    return static_cast<size_t>(rate) * ms / 1000 * frame_bytes();
  }
  friend constexpr bool operator==(const StreamFormat&, const StreamFormat&) = default;
};

// The stock Qubes stream format: raw interleaved S16LE, 44.1 kHz, stereo.
inline constexpr StreamFormat kStockFormat{SampleFormat::S16LE, 44100, 2};

std::string_view to_string(SampleFormat f);
std::optional<SampleFormat> sample_format_from_string(std::string_view s);
std::string to_string(const StreamFormat& f);  // "s16le 44100 Hz 2 ch"

}  // namespace qaudio
