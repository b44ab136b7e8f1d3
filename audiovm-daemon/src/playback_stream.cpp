// A qube's playback stream (see playback_stream.hpp): ring of raw PCM from
// the main thread, conversion/resampling/gain on the RT thread, adaptive
// rate for qubes whose clock is not the device's.
//
// Adaptive rate: once per pull the ring fill (in ms of qube audio, smoothed
// with a ~1 s moving average) is compared with the target fill; a PI loop
// turns the error into a ratio correction (ppm, > 0 = consume faster) that
// Resampler::set_adjust_ppm applies without allocating. The plant is an
// integrator: d(fill_ms)/dt = -ppm / 1000, so with Kp = 80 ppm/ms and
// Ki = 2.5 ppm/(ms*s) the loop has a natural period of about two minutes
// and is close to critically damped; a 0.1 % clock offset settles with a
// fill error of a few ms and no build-up.
#include "playback_stream.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "rt_check.hpp"

namespace qaudio::daemon {
namespace {
constexpr size_t kChunkFrames = 1024;  // input frames converted per step
constexpr double kKp = 80.0;           // ppm per ms of fill error
constexpr double kKi = 2.5;            // ppm per (ms * s)
constexpr double kFillTau = 1.0;       // s, fill smoothing
}  // namespace

Result<std::unique_ptr<PlaybackStream>> PlaybackStream::create(const PlaybackConfig& config) {
  if (!config.format.valid()) {
    return fail("playback stream: unsupported format " + to_string(config.format));
  }
  if (config.device.channels < 1 || config.device.channels > kMaxChannels ||
      config.device.rate < 8000 || config.device.rate > 384000) {
    return fail("playback stream: unsupported device format");
  }
  if (config.target_fill.count() < 1 || config.target_fill.count() > 2000 ||
      config.ring.count() > 10000) {
    return fail("playback stream: target fill must be 1..2000 ms and the ring at most 10 s");
  }
  std::unique_ptr<Resampler> rs;
  if (config.format.rate != config.device.rate || config.adaptive_rate) {
    auto r = Resampler::create(config.device.channels, config.format.rate, config.device.rate,
                               config.quality, config.adaptive_rate);
    if (!r) {
      return fail(r.error());
    }
    rs = std::move(*r);
  }
  return std::unique_ptr<PlaybackStream>(new PlaybackStream(config, std::move(rs)));
}

PlaybackStream::PlaybackStream(const PlaybackConfig& config, std::unique_ptr<Resampler> resampler)
    : config_(config),
      frame_bytes_(config.format.frame_bytes()),
      target_fill_bytes_(
          config.format.bytes_for_ms(static_cast<uint32_t>(config.target_fill.count()))),
      ring_(std::max(config.format.bytes_for_ms(static_cast<uint32_t>(config.ring.count())),
                     2 * target_fill_bytes_ + kChunkFrames * frame_bytes_)),
      resampler_(std::move(resampler)),
      map_(config.format.channels, config.device.channels),
      raw_(kChunkFrames * frame_bytes_),
      qube_float_(kChunkFrames * config.format.channels),
      dev_in_(kChunkFrames * config.device.channels),
      gain_(static_cast<uint32_t>(config.device.rate * config.gain_ramp.count() / 1000),
            gain_for(config.volume_percent, config.muted)),
      volume_percent_(std::min(config.volume_percent, kMaxVolumePercent)),
      muted_(config.muted) {}

PlaybackStream::~PlaybackStream() = default;

// ---------------------------------------------------------------- main thread

size_t PlaybackStream::write(std::span<const std::byte> bytes) {
  QAUDIO_ASSERT_NOT_RT();
  const size_t total = bytes.size();
  bytes_.fetch_add(total, std::memory_order_relaxed);
  size_t dropped = 0;
  if (partial_len_ > 0) {
    size_t take = std::min(frame_bytes_ - partial_len_, bytes.size());
    std::memcpy(partial_.data() + partial_len_, bytes.data(), take);
    partial_len_ += take;
    bytes = bytes.subspan(take);
    if (partial_len_ < frame_bytes_) {
      return total;  // still an incomplete frame, kept
    }
    if (ring_.writable() >= frame_bytes_) {
      ring_.write(std::span<const std::byte>(partial_.data(), frame_bytes_));
    } else {
      dropped += frame_bytes_;
    }
    partial_len_ = 0;
  }
  size_t whole = bytes.size() / frame_bytes_ * frame_bytes_;
  size_t space = ring_.writable() / frame_bytes_ * frame_bytes_;
  size_t n = std::min(whole, space);
  ring_.write(bytes.first(n));
  dropped += whole - n;
  partial_len_ = bytes.size() - whole;
  std::memcpy(partial_.data(), bytes.data() + whole, partial_len_);
  if (dropped > 0) {
    dropped_bytes_.fetch_add(dropped, std::memory_order_relaxed);
    overruns_.fetch_add(1, std::memory_order_relaxed);
  }
  return total > dropped ? total - dropped : 0;
}

size_t PlaybackStream::writable() const {
  size_t w = ring_.writable() / frame_bytes_ * frame_bytes_;
  return w > partial_len_ ? w - partial_len_ : 0;
}

void PlaybackStream::set_volume_percent(uint32_t percent) {
  volume_percent_.store(std::min(percent, kMaxVolumePercent), std::memory_order_relaxed);
}
uint32_t PlaybackStream::volume_percent() const {
  return volume_percent_.load(std::memory_order_relaxed);
}
void PlaybackStream::set_muted(bool muted) {
  muted_.store(muted, std::memory_order_relaxed);
}
bool PlaybackStream::muted() const {
  return muted_.load(std::memory_order_relaxed);
}
void PlaybackStream::set_corked(bool corked) {
  corked_.store(corked, std::memory_order_relaxed);
}
bool PlaybackStream::corked() const {
  return corked_.load(std::memory_order_relaxed);
}
void PlaybackStream::flush() {
  partial_len_ = 0;
  flush_seq_.fetch_add(1, std::memory_order_release);
}

PlaybackCounters PlaybackStream::counters() const {
  PlaybackCounters c;
  c.bytes = bytes_.load(std::memory_order_relaxed);
  c.dropped_bytes = dropped_bytes_.load(std::memory_order_relaxed);
  c.overruns = overruns_.load(std::memory_order_relaxed);
  c.underruns = underruns_.load(std::memory_order_relaxed);
  c.frames_consumed = frames_consumed_.load(std::memory_order_relaxed);
  c.device_frames = device_frames_.load(std::memory_order_relaxed);
  c.fill_bytes = static_cast<uint32_t>(ring_.readable());
  double qube_frames = static_cast<double>(c.fill_bytes / frame_bytes_) +
                       pending_frames_.load(std::memory_order_relaxed) +
                       filter_frames_.load(std::memory_order_relaxed);
  c.latency_us = static_cast<uint32_t>(qube_frames * 1e6 / config_.format.rate) +
                 device_latency_us_.load(std::memory_order_relaxed);
  c.rate_adjust_ppm = rate_adjust_ppm_.load(std::memory_order_relaxed);
  c.running = running_pub_.load(std::memory_order_relaxed);
  c.corked = corked();
  c.level = level_pub_.load(std::memory_order_relaxed);
  return c;
}

// ----------------------------------------------------------------- RT thread

size_t PlaybackStream::fill_input(size_t want_frames) {
  size_t frames = std::min({want_frames, kChunkFrames, ring_.readable() / frame_bytes_});
  if (frames == 0) {
    return 0;
  }
  size_t got = ring_.read(std::span<std::byte>(raw_.data(), frames * frame_bytes_));
  frames = got / frame_bytes_;
  to_float(config_.format.sample, raw_.data(), qube_float_.data(),
           frames * config_.format.channels);
  map_.apply(qube_float_.data(), dev_in_.data(), frames);
  dev_in_pos_ = 0;
  dev_in_len_ = frames;
  frames_consumed_.fetch_add(frames, std::memory_order_relaxed);
  return frames;
}

size_t PlaybackStream::produce(float* out, size_t frames) {
  const uint32_t ch = config_.device.channels;
  size_t done = 0;
  if (!resampler_ && map_.identity()) {
    // Fast path (device format already): ring -> float straight into `out`.
    while (done < frames) {
      size_t n = std::min({frames - done, kChunkFrames, ring_.readable() / frame_bytes_});
      if (n == 0) {
        break;
      }
      n = ring_.read(std::span<std::byte>(raw_.data(), n * frame_bytes_)) / frame_bytes_;
      to_float(config_.format.sample, raw_.data(), out + done * ch, n * ch);
      frames_consumed_.fetch_add(n, std::memory_order_relaxed);
      done += n;
    }
    return done;
  }
  while (done < frames) {
    if (dev_in_pos_ == dev_in_len_) {
      size_t want = resampler_ ? resampler_->input_for_output(frames - done) : frames - done;
      if (fill_input(want) == 0) {
        break;
      }
    }
    size_t avail = dev_in_len_ - dev_in_pos_;
    const float* in = dev_in_.data() + dev_in_pos_ * ch;
    if (!resampler_) {
      size_t n = std::min(avail, frames - done);
      std::memcpy(out + done * ch, in, n * ch * sizeof(float));
      dev_in_pos_ += n;
      done += n;
    } else {
      size_t in_n = avail;
      size_t out_n = frames - done;
      resampler_->process(in, &in_n, out + done * ch, &out_n);
      dev_in_pos_ += in_n;
      done += out_n;
      if (in_n == 0 && out_n == 0) {
        break;
      }
    }
  }
  pending_frames_.store(static_cast<uint32_t>(dev_in_len_ - dev_in_pos_),
                        std::memory_order_relaxed);
  if (resampler_) {
    filter_frames_.store(resampler_->input_latency(), std::memory_order_relaxed);
  }
  return done;
}

void PlaybackStream::steer_rate(size_t fill_frames, size_t frames) {
  const double rate = config_.format.rate;
  const double dt = static_cast<double>(frames) / config_.device.rate;
  const double fill_ms = static_cast<double>(fill_frames) * 1000.0 / rate;
  if (fill_avg_ < 0) {
    fill_avg_ = fill_ms;
  }
  fill_avg_ += (fill_ms - fill_avg_) * std::min(1.0, dt / kFillTau);
  const double err = fill_avg_ - static_cast<double>(config_.target_fill.count());
  integral_ += kKi * err * dt;
  integral_ =
      std::clamp(integral_, -double(Resampler::kMaxAdjustPpm), double(Resampler::kMaxAdjustPpm));
  double ppm = kKp * err + integral_;
  ppm = std::clamp(ppm, -double(Resampler::kMaxAdjustPpm), double(Resampler::kMaxAdjustPpm));
  resampler_->set_adjust_ppm(static_cast<int32_t>(std::lround(ppm)));
  rate_adjust_ppm_.store(resampler_->adjust_ppm(), std::memory_order_relaxed);
}

size_t PlaybackStream::pull(std::span<float> out, size_t frames, const PeriodTiming& timing) {
  const uint32_t ch = config_.device.channels;
  frames = std::min(frames, out.size() / ch);
  float* dst = out.data();
  device_latency_us_.store(timing.device_latency_us, std::memory_order_relaxed);
  device_frames_.fetch_add(frames, std::memory_order_relaxed);

  uint32_t fs = flush_seq_.load(std::memory_order_acquire);
  if (fs != flush_seen_) {
    flush_seen_ = fs;
    ring_.skip(ring_.readable());
    dev_in_pos_ = dev_in_len_ = 0;
    if (resampler_) {
      resampler_->reset();
    }
    running_ = false;
  }
  gain_.set_target(gain_for(volume_percent_.load(std::memory_order_relaxed),
                            muted_.load(std::memory_order_relaxed)));

  size_t produced = 0, lead = 0;
  if (corked_.load(std::memory_order_relaxed)) {
    running_ = false;
  } else {
    bool starting = false;
    if (!running_ && ring_.readable() >= target_fill_bytes_) {
      running_ = true;
      starting = true;
    }
    if (running_) {
      size_t fill_frames = ring_.readable() / frame_bytes_ + (dev_in_len_ - dev_in_pos_);
      // The first request of a (re)started stream may be larger than the
      // prebuffer (a sound server asks for its whole buffer at once): the
      // silence goes first, so the audio starts a little later but runs
      // without the gap (and the restart) an underrun would cost.
      if (starting && !resampler_ && fill_frames < frames) {
        lead = frames - fill_frames;
        std::memset(dst, 0, lead * ch * sizeof(float));
      }
      produced = produce(dst + lead * ch, frames - lead);
      if (produced < frames - lead) {
        underruns_.fetch_add(1, std::memory_order_relaxed);
        running_ = false;
      } else if (config_.adaptive_rate && resampler_) {
        steer_rate(fill_frames, frames);
      }
    }
  }
  running_pub_.store(running_, std::memory_order_relaxed);
  std::memset(dst + (lead + produced) * ch, 0, (frames - lead - produced) * ch * sizeof(float));
  gain_.apply(dst, frames, ch);
  // Level meter: the block's peak, or the held peak decaying (time constant
  // 300 ms); one exp and one relaxed store per period.
  float peak = 0;
  for (size_t i = 0; i < frames * ch; ++i) {
    peak = std::max(peak, std::fabs(dst[i]));
  }
  float decay = std::exp(-static_cast<float>(frames) / (0.3f * config_.device.rate));
  level_hold_ = std::min(1.0f, std::max(peak, level_hold_ * decay));
  level_pub_.store(level_hold_, std::memory_order_relaxed);
  return produced;
}

}  // namespace qaudio::daemon
