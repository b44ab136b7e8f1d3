// A qube's microphone stream (see capture_stream.hpp): device float ->
// qube channels -> qube rate -> qube sample format -> byte ring, with the
// mic gate applied at every push.
#include "capture_stream.hpp"

#include <algorithm>
#include <cstring>

#include "rt_check.hpp"

namespace qaudio::daemon {
namespace {
constexpr size_t kChunkFrames = 512;  // device frames converted per step
}

Result<std::unique_ptr<CaptureStream>> CaptureStream::create(const CaptureConfig& config) {
  if (!config.format.valid()) {
    return fail("capture stream: unsupported format " + to_string(config.format));
  }
  if (config.device.channels < 1 || config.device.channels > kMaxChannels ||
      config.device.rate < 8000 || config.device.rate > 384000) {
    return fail("capture stream: unsupported device format");
  }
  if (config.ring.count() < 10 || config.ring.count() > 10000) {
    return fail("capture stream: ring must be 10..10000 ms");
  }
  std::unique_ptr<Resampler> rs;
  if (config.format.rate != config.device.rate) {
    auto r = Resampler::create(config.format.channels, config.device.rate, config.format.rate,
                               config.quality, false);
    if (!r) {
      return fail(r.error());
    }
    rs = std::move(*r);
  }
  return std::unique_ptr<CaptureStream>(new CaptureStream(config, std::move(rs)));
}

CaptureStream::CaptureStream(const CaptureConfig& config, std::unique_ptr<Resampler> resampler)
    : config_(config),
      frame_bytes_(config.format.frame_bytes()),
      ring_(config.format.bytes_for_ms(static_cast<uint32_t>(config.ring.count()))),
      resampler_(std::move(resampler)),
      map_(config.device.channels, config.format.channels),
      mapped_(kChunkFrames * config.format.channels) {
  // Output per chunk: at most chunk * out/in + a few frames of filter slack.
  size_t max_out = kChunkFrames * config.format.rate / config.device.rate + 64;
  resampled_.resize(max_out * config.format.channels);
  bytes_out_.resize(std::max(max_out, kChunkFrames) * frame_bytes_);
}

CaptureStream::~CaptureStream() = default;

// ---------------------------------------------------------------- main thread

void CaptureStream::set_open(bool open) {
  open_.store(open, std::memory_order_release);
}

bool CaptureStream::is_open() const {
  return open_.load(std::memory_order_acquire);
}

size_t CaptureStream::read(std::span<std::byte> out) {
  QAUDIO_ASSERT_NOT_RT();
  size_t n = std::min(out.size(), ring_.readable()) / frame_bytes_ * frame_bytes_;
  return ring_.read(out.first(n));
}

size_t CaptureStream::readable() const {
  return ring_.readable() / frame_bytes_ * frame_bytes_;
}

CaptureCounters CaptureStream::counters() const {
  CaptureCounters c;
  c.bytes = bytes_.load(std::memory_order_relaxed);
  c.dropped_bytes = dropped_bytes_.load(std::memory_order_relaxed);
  c.overruns = overruns_.load(std::memory_order_relaxed);
  c.fill_bytes = static_cast<uint32_t>(ring_.readable());
  c.open = is_open();
  return c;
}

// ----------------------------------------------------------------- RT thread

void CaptureStream::emit(const float* qube_frames, size_t frames) {
  // qube_frames == nullptr: exact zeros.
  size_t bytes = frames * frame_bytes_;
  if (qube_frames) {
    from_float(config_.format.sample, qube_frames, bytes_out_.data(),
               frames * config_.format.channels);
  } else {
    std::memset(bytes_out_.data(), 0, bytes);
  }
  size_t space = ring_.writable() / frame_bytes_ * frame_bytes_;
  size_t n = std::min(space, bytes);
  ring_.write(std::span<const std::byte>(bytes_out_.data(), n));
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  if (n < bytes) {
    dropped_bytes_.fetch_add(bytes - n, std::memory_order_relaxed);
    overruns_.fetch_add(1, std::memory_order_relaxed);
  }
}

void CaptureStream::push(std::span<const float> in, size_t frames, const PeriodTiming& timing) {
  (void)timing;
  const uint32_t dev_ch = config_.device.channels;
  frames = std::min(frames, in.size() / dev_ch);
  const bool open = open_.load(std::memory_order_acquire);
  if (!open) {
    if (was_open_) {
      was_open_ = false;
      if (resampler_) {
        resampler_->reset();
      }
    }
    // Keep the qube's stream flowing at its rate: the same number of frames
    // the resampler would have produced, all exact zeros.
    size_t out_frames = frames;
    if (resampler_) {
      zero_acc_ += static_cast<uint64_t>(frames) * config_.format.rate;
      out_frames = static_cast<size_t>(zero_acc_ / config_.device.rate);
      zero_acc_ %= config_.device.rate;
    }
    const size_t max_chunk = bytes_out_.size() / frame_bytes_;
    while (out_frames > 0) {
      size_t n = std::min(out_frames, max_chunk);
      emit(nullptr, n);
      out_frames -= n;
    }
    return;
  }
  was_open_ = true;
  size_t pos = 0;
  while (pos < frames) {
    size_t n = std::min(kChunkFrames, frames - pos);
    map_.apply(in.data() + pos * dev_ch, mapped_.data(), n);
    if (!resampler_) {
      emit(mapped_.data(), n);
      pos += n;
      continue;
    }
    size_t done = 0;
    while (done < n) {
      size_t in_n = n - done;
      size_t out_n = resampled_.size() / config_.format.channels;
      resampler_->process(mapped_.data() + done * config_.format.channels, &in_n, resampled_.data(),
                          &out_n);
      if (out_n > 0) {
        emit(resampled_.data(), out_n);
      }
      done += in_n;
      if (in_n == 0 && out_n == 0) {
        break;
      }
    }
    pos += n;
  }
}

}  // namespace qaudio::daemon
