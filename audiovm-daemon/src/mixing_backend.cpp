// Shared base of the mixing backends (see mixing_backend.hpp): the RT
// thread, the lock-free stream table, the control thread.
#include "mixing_backend.hpp"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "gain.hpp"
#include "qaudio/log.hpp"
#include "qaudio/realtime.hpp"
#include "rt_check.hpp"

namespace qaudio::daemon {
namespace {

int64_t to_ns(const timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
timespec from_ns(int64_t ns) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / 1000000000);
  ts.tv_nsec = static_cast<long>(ns % 1000000000);
  return ts;
}
int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return to_ns(ts);
}
void sleep_until_ns(int64_t deadline) {
  timespec ts = from_ns(deadline);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

}  // namespace

size_t mix_sources(std::span<PlaybackSource* const> sources,
                   float* mix,
                   float* scratch,
                   size_t frames,
                   uint32_t channels,
                   const PeriodTiming& timing) {
  const size_t n = frames * channels;
  if (sources.empty()) {
    std::memset(mix, 0, n * sizeof(float));
    return 0;
  }
  size_t audible = 0;
  // The first source writes the mix directly (it fills silence itself);
  // the others are summed in.
  audible += sources[0]->pull(std::span<float>(mix, n), frames, timing) > 0;
  for (size_t i = 1; i < sources.size(); ++i) {
    audible += sources[i]->pull(std::span<float>(scratch, n), frames, timing) > 0;
    mix_add(mix, scratch, n);
  }
  return audible;
}

MixingBackend::MixingBackend(const BackendOptions& options, BackendEventFn events)
    : options_(options), events_(std::move(events)), format_(options.format) {}

MixingBackend::~MixingBackend() {
  // Subclasses stop in their destructor; this is a last resort that cannot
  // call their hooks any more.
  if (rt_thread_.joinable() || control_thread_.joinable()) {
    quit_.store(true);
    if (rt_thread_.joinable()) {
      rt_thread_.join();
    }
    rt_alive_.store(false);
    if (control_thread_.joinable()) {
      control_thread_.join();
    }
  }
  if (wake_fd_ >= 0) {
    ::close(wake_fd_);
  }
}

bool MixingBackend::read_period(std::span<float> in, size_t frames) {
  (void)frames;
  std::fill(in.begin(), in.end(), 0.0f);
  return true;
}

uint32_t MixingBackend::device_latency_us() const {
  return static_cast<uint32_t>(period_frames_ * 1000000 / std::max<uint32_t>(format_.rate, 1));
}

Result<void> MixingBackend::start() {
  QAUDIO_ASSERT_NOT_RT();
  if (running_.load()) {
    return {};
  }
  DeviceFormat fmt = options_.format;
  if (fmt.channels < 1 || fmt.channels > 8 || fmt.rate < 8000 || fmt.rate > 384000) {
    return fail("device format not supported: " + std::to_string(fmt.rate) + " Hz, " +
                std::to_string(fmt.channels) + " channels");
  }
  if (auto r = open_device(fmt); !r) {
    return r;
  }
  format_ = fmt;
  auto period_ms = std::clamp<int64_t>(options_.period.count(), 1, 200);
  period_frames_ = std::max<size_t>(16, format_.rate * period_ms / 1000);
  const size_t n = period_frames_ * format_.channels;
  mix_.assign(n, 0.0f);
  scratch_.assign(n, 0.0f);
  capture_.assign(n, 0.0f);
  if (wake_fd_ < 0) {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      close_device();
      return fail_errno("eventfd for the audio thread");
    }
  }
  quit_.store(false);
  rt_alive_.store(true);
  running_.store(true, std::memory_order_release);
  rt_thread_ = std::thread([this] { rt_main(); });
  control_thread_ = std::thread([this] { control_main(); });
  return {};
}

void MixingBackend::stop() {
  QAUDIO_ASSERT_NOT_RT();
  if (!running_.load()) {
    return;
  }
  quit_.store(true, std::memory_order_release);
  rt_thread_.join();
  // Commands queued after the RT thread's last look are applied here.
  apply_commands();
  rt_alive_.store(false, std::memory_order_release);
  uint64_t one = 1;
  ssize_t w = ::write(wake_fd_, &one, sizeof(one));
  (void)w;
  control_thread_.join();
  close_device();
  running_.store(false, std::memory_order_release);
}

uint64_t MixingBackend::send(CmdKind kind, StreamHandle h, void* ptr) {
  Command c{kind, h, ptr, ++next_seq_};
  if (!rt_alive_.load(std::memory_order_acquire)) {
    apply(c);
    acked_seq_.store(c.seq, std::memory_order_release);
    return c.seq;
  }
  while (!commands_.push(c)) {
    timespec ts = from_ns(100000);
    nanosleep(&ts, nullptr);
  }
  return c.seq;
}

void MixingBackend::wait_ack(uint64_t seq) {
  // The RT thread takes commands at the start of every period; this waits
  // at most about one period (plus a device write for ALSA).
  while (acked_seq_.load(std::memory_order_acquire) < seq) {
    timespec ts = from_ns(100000);
    nanosleep(&ts, nullptr);
  }
}

Result<StreamHandle> MixingBackend::add_playback(const StreamInfo& info, PlaybackSource* source) {
  QAUDIO_ASSERT_NOT_RT();
  if (!source) {
    return fail("add_playback: no source");
  }
  if (n_playback_main_ >= kMaxPlayback) {
    return fail("cannot add playback for " + info.qube + ": the " + name() +
                " backend already mixes " + std::to_string(kMaxPlayback) + " streams");
  }
  StreamHandle h = next_handle_++;
  ++n_playback_main_;
  send(CmdKind::AddPlayback, h, source);
  return h;
}

void MixingBackend::remove_playback(StreamHandle h) {
  QAUDIO_ASSERT_NOT_RT();
  if (h == 0 || n_playback_main_ == 0) {
    return;
  }
  wait_ack(send(CmdKind::RemovePlayback, h, nullptr));
}

Result<StreamHandle> MixingBackend::add_capture(const StreamInfo& info, CaptureSink* sink) {
  QAUDIO_ASSERT_NOT_RT();
  if (!sink) {
    return fail("add_capture: no sink");
  }
  if (n_capture_main_ >= kMaxCapture) {
    return fail("cannot add capture for " + info.qube + ": the " + name() +
                " backend already has " + std::to_string(kMaxCapture) + " capture streams");
  }
  StreamHandle h = next_handle_++;
  ++n_capture_main_;
  send(CmdKind::AddCapture, h, sink);
  return h;
}

void MixingBackend::remove_capture(StreamHandle h) {
  QAUDIO_ASSERT_NOT_RT();
  if (h == 0 || n_capture_main_ == 0) {
    return;
  }
  wait_ack(send(CmdKind::RemoveCapture, h, nullptr));
}

// Runs on the RT thread (or on the main thread while the RT thread is not
// running). Fixed tables, no allocation.
void MixingBackend::apply(const Command& c) {
  switch (c.kind) {
    case CmdKind::AddPlayback:
      if (n_active_play_ < kMaxPlayback) {
        play_[n_active_play_] = {c.handle, static_cast<PlaybackSource*>(c.ptr)};
        active_play_[n_active_play_] = static_cast<PlaybackSource*>(c.ptr);
        ++n_active_play_;
      }
      break;
    case CmdKind::RemovePlayback:
      for (size_t i = 0; i < n_active_play_; ++i) {
        if (play_[i].handle == c.handle) {
          --n_active_play_;
          play_[i] = play_[n_active_play_];
          active_play_[i] = active_play_[n_active_play_];
          play_[n_active_play_] = {};
          active_play_[n_active_play_] = nullptr;
          --n_playback_main_;  // main thread waits for the ack before reading it
          break;
        }
      }
      break;
    case CmdKind::AddCapture:
      for (auto& slot : cap_) {
        if (!slot.sink) {
          slot = {c.handle, static_cast<CaptureSink*>(c.ptr)};
          break;
        }
      }
      break;
    case CmdKind::RemoveCapture:
      for (auto& slot : cap_) {
        if (slot.handle == c.handle && slot.sink) {
          slot = {};
          --n_capture_main_;
          break;
        }
      }
      break;
  }
}

void MixingBackend::apply_commands() {
  while (auto c = commands_.pop()) {
    apply(*c);
    acked_seq_.store(c->seq, std::memory_order_release);
  }
}

void MixingBackend::post_rt_error(const char* static_message) {
  if (!rt_errors_.push(static_message)) {
    return;
  }
  uint64_t one = 1;
  ssize_t w = ::write(wake_fd_, &one, sizeof(one));
  (void)w;
}

void MixingBackend::run_period(const PeriodTiming& timing) {
  const size_t frames = period_frames_;
  const size_t n = frames * format_.channels;
  bool any_capture = false;
  for (const auto& slot : cap_) {
    any_capture |= slot.sink != nullptr;
  }
  if (any_capture) {
    if (!read_period(std::span<float>(capture_.data(), n), frames)) {
      std::fill(capture_.begin(), capture_.end(), 0.0f);
    }
    for (const auto& slot : cap_) {
      if (slot.sink) {
        slot.sink->push(std::span<const float>(capture_.data(), n), frames, timing);
      }
    }
  }
  mix_sources(std::span<PlaybackSource* const>(active_play_.data(), n_active_play_), mix_.data(),
              scratch_.data(), frames, format_.channels, timing);
  if (!write_period(std::span<const float>(mix_.data(), n), frames)) {
    // Do not spin on a failing device: wait one period before trying again.
    sleep_until_ns(now_ns() + static_cast<int64_t>(frames) * 1000000000 / format_.rate);
  }
}

void MixingBackend::rt_main() {
  // It drives the device itself, as a sound server's I/O thread would.
  const RealtimeResult sched = make_thread_realtime(10);
  rt_sched_.store(sched.granted);
  log_debug("mixer: device thread runs with %s", sched.describe().c_str());
  RtScope rt;
  const int64_t period_ns = static_cast<int64_t>(period_frames_) * 1000000000 / format_.rate;
  const bool timer = paced_by_timer();
  int64_t deadline = now_ns();
  uint64_t frames_total = 0;
  while (!quit_.load(std::memory_order_acquire)) {
    apply_commands();
    PeriodTiming timing;
    timing.device_frames = frames_total;
    timing.device_latency_us = device_latency_us();
    timing.device_time_ns = now_ns() + static_cast<int64_t>(timing.device_latency_us) * 1000;
    run_period(timing);
    frames_total += period_frames_;
    periods_.fetch_add(1, std::memory_order_relaxed);
    if (timer) {
      deadline += period_ns;
      int64_t now = now_ns();
      if (now > deadline + 4 * period_ns) {
        // Far behind (suspend, overload): resynchronise instead of bursting.
        late_periods_.fetch_add(1, std::memory_order_relaxed);
        deadline = now;
      }
      sleep_until_ns(deadline);
    }
  }
  apply_commands();
}

void MixingBackend::control_main() {
  const int timeout_ms =
      static_cast<int>(std::max<size_t>(1, period_frames_ * 1000 / format_.rate));
  for (;;) {
    pollfd p{wake_fd_, POLLIN, 0};
    ::poll(&p, 1, timeout_ms);
    uint64_t v;
    ssize_t r = ::read(wake_fd_, &v, sizeof(v));
    (void)r;
    while (auto e = rt_errors_.pop()) {
      log_warn("%s backend: %s", name().c_str(), *e);
      emit_event(BackendEvent{BackendEvent::Kind::Error, *e});
    }
    if (!rt_alive_.load(std::memory_order_acquire)) {
      break;
    }
    service();
  }
}

}  // namespace qaudio::daemon
