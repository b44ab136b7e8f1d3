// The qube side of the network bridge plays the audio domain toward the
// qube's agent with the daemon's own Session (stock or native protocol,
// negotiation, Latency/ClockTick/VolumeState/MicState, cork, mic gate). Its
// "device" is the network: RelayBackend is a daemon::Backend whose period is
// one network frame, driven by the bridge's event loop (the network endpoint
// lives on that thread too, so nothing crosses threads and nothing is
// queued): each period the bridge calls pull() for the frame it sends and
// push_mic() with the frame it received.
//
//   RelayBackend be({48000, 2}, 480);
//   daemon::Session s(loop, transport, be, cfg, {});   // adds its streams here
//   every 10 ms: be.pull(mix, timing); send mix; be.push_mic(mic, timing);
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <vector>

#include "backend.hpp"

namespace qaudio::bridge {

class RelayBackend final : public daemon::Backend {
 public:
  static constexpr size_t kMaxStreams = 4;  // one qube: its playback and its mic

  RelayBackend(daemon::DeviceFormat format, size_t period_frames);

  std::string name() const override { return "net"; }
  Result<void> start() override { return {}; }
  void stop() override {}
  daemon::DeviceFormat format() const override { return format_; }
  Result<daemon::StreamHandle> add_playback(const daemon::StreamInfo& info,
                                            daemon::PlaybackSource* source) override;
  void remove_playback(daemon::StreamHandle h) override;
  Result<daemon::StreamHandle> add_capture(const daemon::StreamInfo& info,
                                           daemon::CaptureSink* sink) override;
  void remove_capture(daemon::StreamHandle h) override;
  bool connected() const override { return true; }

  size_t period_frames() const { return period_frames_; }
  // One period of every playback source, summed into `mix` (period_frames *
  // channels floats). Returns how many sources gave real audio.
  size_t pull(std::span<float> mix, const daemon::PeriodTiming& timing);
  // One period of microphone frames (period_frames * channels) to every sink.
  void push_mic(std::span<const float> in, const daemon::PeriodTiming& timing);

 private:
  template <typename T>
  struct Slot {
    daemon::StreamHandle handle = 0;
    T* ptr = nullptr;
  };
  daemon::DeviceFormat format_;
  size_t period_frames_;
  std::array<Slot<daemon::PlaybackSource>, kMaxStreams> play_{};
  std::array<Slot<daemon::CaptureSink>, kMaxStreams> cap_{};
  std::array<daemon::PlaybackSource*, kMaxStreams> active_{};
  std::vector<float> scratch_;
  daemon::StreamHandle next_ = 1;
};

}  // namespace qaudio::bridge
