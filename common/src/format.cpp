// Names of the formats of qaudio/format.hpp.
#include "qaudio/format.hpp"

namespace qaudio {

std::string_view to_string(SampleFormat f) {
  switch (f) {
    case SampleFormat::S16LE:
      return "s16le";
    case SampleFormat::S32LE:
      return "s32le";
    case SampleFormat::F32LE:
      return "f32le";
  }
  return "invalid";
}

std::optional<SampleFormat> sample_format_from_string(std::string_view s) {
  if (s == "s16le" || s == "S16LE") {
    return SampleFormat::S16LE;
  }
  if (s == "s32le" || s == "S32LE") {
    return SampleFormat::S32LE;
  }
  if (s == "f32le" || s == "F32LE") {
    return SampleFormat::F32LE;
  }
  return std::nullopt;
}

std::string to_string(const StreamFormat& f) {
  return std::string(to_string(f.sample)) + " " + std::to_string(f.rate) + " Hz " +
         std::to_string(f.channels) + " ch";
}

}  // namespace qaudio
