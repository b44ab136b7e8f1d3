// The `wav` backend, the embedded default: the daemon mixes all qubes and
// writes a valid WAV file at the device rate, paced in real time by a timer
// (absolute CLOCK_MONOTONIC deadlines) so it behaves like a sound card.
//
// Spec: wav:PATH[,in=INPUT.wav][,format=s16|f32]
//   PATH       the output file (RIFF/WAVE; sizes patched about once a second
//              and at stop, so a crash leaves a readable file)
//   in=FILE    a WAV file used as the microphone, looped (any PCM16/PCM32/
//              float32 rate/channels; converted at start); else silence
//   format=    16-bit PCM (default) or 32-bit float samples
// The RT thread only converts and queues bytes; a control thread writes the
// file, so disk stalls never block the audio thread (a full queue drops and
// reports an error).
//
//   --backend wav:/tmp/out.wav,in=/tmp/mic.wav
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mixing_backend.hpp"
#include "qaudio/result.hpp"
#include "qaudio/spsc.hpp"

namespace qaudio::daemon {

struct WavSpec {
  std::string path;
  std::string input;  // empty: silent microphone
  bool float_samples = false;
};
Result<WavSpec> parse_wav_spec(std::string_view arg);

class WavBackend final : public MixingBackend {
 public:
  WavBackend(WavSpec spec, const BackendOptions& options, BackendEventFn events);
  ~WavBackend() override;
  std::string name() const override { return "wav"; }
  // Frames written to the file so far (control thread progress).
  uint64_t frames_written() const { return frames_written_.load(std::memory_order_relaxed); }

 protected:
  Result<void> open_device(DeviceFormat& format) override;
  void close_device() override;
  bool write_period(std::span<const float> mix, size_t frames) override;
  bool read_period(std::span<float> in, size_t frames) override;
  void service() override;

 private:
  void drain(bool final);
  void patch_header();

  WavSpec spec_;
  int fd_ = -1;
  DeviceFormat fmt_;
  std::unique_ptr<SpscByteRing> ring_;
  std::vector<std::byte> conv_;   // RT scratch
  std::vector<std::byte> chunk_;  // control scratch
  std::vector<float> input_;      // microphone, device format, looped
  size_t input_pos_ = 0;
  uint64_t data_bytes_ = 0;
  int64_t last_patch_ns_ = 0;
  std::atomic<uint64_t> frames_written_{0};
};

}  // namespace qaudio::daemon
