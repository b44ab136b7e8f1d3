#include "relay_backend.hpp"

#include "mixing_backend.hpp"  // mix_sources

namespace qaudio::bridge {

RelayBackend::RelayBackend(daemon::DeviceFormat format, size_t period_frames)
    : format_(format), period_frames_(period_frames), scratch_(period_frames * format.channels) {}

namespace {
template <typename Slots, typename T>
Result<daemon::StreamHandle> add_to(Slots& slots, T* ptr, daemon::StreamHandle& next) {
  for (auto& s : slots) {
    if (s.ptr == nullptr) {
      s.handle = next++;
      s.ptr = ptr;
      return s.handle;
    }
  }
  return fail("net relay: no free stream slot");
}
template <typename Slots>
void remove_from(Slots& slots, daemon::StreamHandle h) {
  for (auto& s : slots) {
    if (s.handle == h) {
      s = {};
    }
  }
}
}  // namespace

Result<daemon::StreamHandle> RelayBackend::add_playback(const daemon::StreamInfo&,
                                                        daemon::PlaybackSource* source) {
  return add_to(play_, source, next_);
}

void RelayBackend::remove_playback(daemon::StreamHandle h) {
  remove_from(play_, h);
}

Result<daemon::StreamHandle> RelayBackend::add_capture(const daemon::StreamInfo&,
                                                       daemon::CaptureSink* sink) {
  return add_to(cap_, sink, next_);
}

void RelayBackend::remove_capture(daemon::StreamHandle h) {
  remove_from(cap_, h);
}

size_t RelayBackend::pull(std::span<float> mix, const daemon::PeriodTiming& timing) {
  size_t n = 0;
  for (const auto& s : play_) {
    if (s.ptr != nullptr) {
      active_[n++] = s.ptr;
    }
  }
  return daemon::mix_sources(std::span<daemon::PlaybackSource* const>(active_.data(), n),
                             mix.data(), scratch_.data(), period_frames_, format_.channels, timing);
}

void RelayBackend::push_mic(std::span<const float> in, const daemon::PeriodTiming& timing) {
  for (const auto& s : cap_) {
    if (s.ptr != nullptr) {
      s.ptr->push(in, period_frames_, timing);
    }
  }
}

}  // namespace qaudio::bridge
