// ALSA device backend: the daemon mixes every qube on its real-time thread
// (MixingBackend) and writes each mixed period to an ALSA PCM with
// snd_pcm_writei; a second PCM is opened for the microphone when asked.
//
// Spec: alsa:DEVICE[,in=CAPDEV]
//   DEVICE   the playback PCM (`default`, `plughw:0,0`, `hw:1,0`, an .asoundrc
//            PCM ...); empty = `default`
//   in=CAP   the capture PCM; without it the microphone is silent
// Options: format (rate and channels asked for; the PCM may choose others,
// and format() reports what it accepted), period (ALSA period, default
// 10 ms), buffer (ALSA buffer, at least two periods; default 20 ms).
// Sample format: FLOAT_LE, else S32_LE, else S16_LE (converted and clipped on
// the RT thread into a preallocated buffer). Xruns are recovered with
// snd_pcm_recover and counted (xruns()).
//
// Pacing: a card blocks in snd_pcm_writei, which paces the RT loop. A PCM
// that swallows data at once (the `file` and `null` plugins, used in tests)
// is detected at open (one silent period leaves the buffer empty) and paced
// by the base's timer instead, so the loop never spins.
//
//   --backend alsa:plughw:0,0,in=plughw:0,0
#pragma once

#include <alsa/asoundlib.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "backends.hpp"
#include "mixing_backend.hpp"

namespace qaudio::daemon {

struct AlsaSpec {
  std::string device = "default";
  std::string capture;  // empty: no capture PCM
};
// Splits "DEVICE[,in=CAPDEV]" (device names may themselves contain commas).
Result<AlsaSpec> parse_alsa_spec(std::string_view arg);

class AlsaBackend final : public MixingBackend {
 public:
  AlsaBackend(AlsaSpec spec, const BackendOptions& options, BackendEventFn events);
  ~AlsaBackend() override;
  std::string name() const override { return "alsa"; }
  // PCMs alsa-lib knows (snd_device_name_hint), for --list-devices.
  std::vector<DeviceInfo> devices() override;

  uint64_t xruns() const { return xruns_.load(std::memory_order_relaxed); }
  // Whether the PCM is paced by the base's timer (a PCM that does not block).
  bool timer_paced() const { return timer_paced_; }

 protected:
  Result<void> open_device(DeviceFormat& format) override;
  void close_device() override;
  bool write_period(std::span<const float> mix, size_t frames) override;
  bool read_period(std::span<float> in, size_t frames) override;
  bool paced_by_timer() const override { return timer_paced_; }
  uint32_t device_latency_us() const override;

 private:
  struct Pcm {
    snd_pcm_t* pcm = nullptr;
    snd_pcm_format_t format = SND_PCM_FORMAT_FLOAT_LE;
    snd_pcm_uframes_t period = 0;
    snd_pcm_uframes_t buffer = 0;
  };
  Result<void> open_pcm(Pcm& p,
                        const std::string& device,
                        snd_pcm_stream_t dir,
                        DeviceFormat& format);

  AlsaSpec spec_;
  Pcm out_;
  Pcm in_;
  DeviceFormat fmt_;
  bool timer_paced_ = false;
  std::vector<uint8_t> conv_;  // RT scratch: device-format samples
  std::atomic<uint64_t> xruns_{0};
};

}  // namespace qaudio::daemon
