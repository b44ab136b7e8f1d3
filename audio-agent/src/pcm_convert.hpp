// PcmConverter: sample format, channel count and rate conversion between
// interleaved PCM formats of the closed list in qaudio/format.hpp, with the
// speexdsp resampler (quality 5). Used by the agent core for the stock
// protocol (app format -> S16LE 44.1 kHz stereo, and back for the mic) and
// when the daemon rejects the app's own format.
//
// Channels: equal counts copy; mono -> N duplicates; N -> mono averages;
// otherwise output channel c takes input channel c (or c mod the input count).
// All buffers are allocated in create(); process() never allocates.
//
//   auto c = PcmConverter::create({F32LE, 48000, 2}, kStockFormat, 1024);
//   auto done = (*c)->process(in_bytes, out_bytes);   // whole frames only
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "qaudio/format.hpp"
#include "qaudio/result.hpp"

struct SpeexResamplerState_;

namespace qaudio::agent {

class PcmConverter {
 public:
  struct Done {
    size_t in_bytes = 0;   // consumed from the input
    size_t out_bytes = 0;  // written to the output
  };

  // max_in_frames bounds one process() call (more input is left unconsumed).
  static Result<std::unique_ptr<PcmConverter>> create(StreamFormat in,
                                                      StreamFormat out,
                                                      size_t max_in_frames = 4096);
  ~PcmConverter();
  PcmConverter(const PcmConverter&) = delete;
  PcmConverter& operator=(const PcmConverter&) = delete;

  // Converts whole input frames while the output has room. Trailing partial
  // input frames are left for the caller to carry over.
  Done process(std::span<const std::byte> in, std::span<std::byte> out);
  // Output bytes that converting `in_bytes` of input can produce at most.
  size_t max_out_bytes(size_t in_bytes) const;
  // Forgets the resampler's history (after a gap in the stream).
  void reset();

  const StreamFormat& in_format() const { return in_; }
  const StreamFormat& out_format() const { return out_; }
  bool resamples() const { return resampler_ != nullptr; }

 private:
  PcmConverter(StreamFormat in, StreamFormat out, size_t max_in_frames);

  StreamFormat in_;
  StreamFormat out_;
  size_t max_in_frames_;
  SpeexResamplerState_* resampler_ = nullptr;
  std::vector<float> a_;  // input frames as float, output channel layout
  std::vector<float> b_;  // resampled
};

// Sample helpers shared with backends and tests.
void decode_to_float(SampleFormat f, const std::byte* in, float* out, size_t samples);
void encode_from_float(SampleFormat f, const float* in, std::byte* out, size_t samples);

}  // namespace qaudio::agent
