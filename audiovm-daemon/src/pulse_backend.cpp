// PulseAudio backend: one stream per qube in the server (see pulse_backend.hpp).
#include "pulse_backend.hpp"

#include <pulse/pulseaudio.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qaudio/log.hpp"
#include "qaudio/realtime.hpp"
#include "rt_check.hpp"

namespace qaudio::daemon {
namespace {

struct PulseStream {
  StreamHandle handle = 0;
  StreamInfo info;
  bool capture = false;
  PlaybackSource* source = nullptr;
  CaptureSink* sink = nullptr;
  pa_stream* stream = nullptr;
  bool use_default = false;  // the chosen device failed: fall back until set_device
  uint32_t channels = 2;
  uint32_t rate = 48000;
  uint64_t frames = 0;        // frames written / read so far
  std::vector<float> buffer;  // playback scratch, allocated once
};

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

PeriodTiming stream_timing(pa_stream* st, uint64_t frames) {
  PeriodTiming t;
  t.device_frames = frames;
  pa_usec_t lat = 0;
  int negative = 0;
  if (pa_stream_get_latency(st, &lat, &negative) == 0 && negative == 0) {
    t.device_latency_us = static_cast<uint32_t>(std::min<pa_usec_t>(lat, UINT32_MAX));
  }
  t.device_time_ns = monotonic_ns() + static_cast<int64_t>(t.device_latency_us) * 1000;
  return t;
}

std::string icon_for(const std::string& color) {
  if (color.empty() || color[0] == '#') {
    return "audio-card";
  }
  return "appvm-" + color;
}

class PulseBackend final : public Backend {
 public:
  PulseBackend(std::string server, const BackendOptions& options, BackendEventFn events)
      : server_(std::move(server)), options_(options), events_(std::move(events)) {}
  ~PulseBackend() override { stop(); }

  std::string name() const override { return "pulse"; }
  DeviceFormat format() const override { return options_.format; }
  bool connected() const override { return connected_.load(std::memory_order_acquire); }

  Result<void> start() override {
    if (ml_ != nullptr) {
      return {};
    }
    if (options_.format.channels < 1 || options_.format.channels > PA_CHANNELS_MAX ||
        options_.format.rate < 8000 || options_.format.rate > 384000) {
      return fail("pulse: unsupported device format " + std::to_string(options_.format.rate) +
                  " Hz " + std::to_string(options_.format.channels) + " ch");
    }
    ml_ = pa_threaded_mainloop_new();
    if (ml_ == nullptr) {
      return fail("pulse: cannot create the PulseAudio main loop");
    }
    pa_threaded_mainloop_set_name(ml_, "qaudio-pulse");
    stopping_ = false;
    {
      Lock lock(ml_);
      // The loop thread feeds every qube's stream at a few ms of buffering.
      pa_mainloop_api_once(
          pa_threaded_mainloop_get_api(ml_),
          [](pa_mainloop_api*, void*) {
            log_info("pulse: stream thread runs with %s",
                     make_thread_realtime(kRealtimePriority).describe().c_str());
          },
          nullptr);
      connect_locked();
    }
    if (pa_threaded_mainloop_start(ml_) < 0) {
      Lock lock(ml_);
      drop_context_locked();
      lock.release();
      pa_threaded_mainloop_free(ml_);
      ml_ = nullptr;
      return fail("pulse: cannot start the PulseAudio main loop thread");
    }
    return {};
  }

  void stop() override {
    if (ml_ == nullptr) {
      return;
    }
    {
      Lock lock(ml_);
      stopping_ = true;
      for (auto& [h, s] : streams_) {
        destroy_stream_locked(*s);
      }
      if (retry_ev_ != nullptr) {
        api()->time_free(retry_ev_);
        retry_ev_ = nullptr;
      }
      drop_context_locked();
      connected_ = false;
    }
    pa_threaded_mainloop_stop(ml_);
    pa_threaded_mainloop_free(ml_);
    ml_ = nullptr;
  }

  Result<StreamHandle> add_playback(const StreamInfo& info, PlaybackSource* source) override {
    if (source == nullptr) {
      return fail("pulse: add_playback for qube '" + info.qube + "' without a source");
    }
    return add_stream(info, source, nullptr);
  }
  Result<StreamHandle> add_capture(const StreamInfo& info, CaptureSink* sink) override {
    if (sink == nullptr) {
      return fail("pulse: add_capture for qube '" + info.qube + "' without a sink");
    }
    return add_stream(info, nullptr, sink);
  }
  void remove_playback(StreamHandle h) override { remove_stream(h); }
  void remove_capture(StreamHandle h) override { remove_stream(h); }

  std::vector<DeviceInfo> devices() override;
  Result<void> set_device(StreamHandle h, const std::string& device) override;

 private:
  // Takes the main loop lock unless already on the main loop thread.
  class Lock {
   public:
    explicit Lock(pa_threaded_mainloop* ml)
        : ml_(ml), held_(ml != nullptr && !pa_threaded_mainloop_in_thread(ml)) {
      if (held_) {
        pa_threaded_mainloop_lock(ml_);
      }
    }
    ~Lock() { release(); }
    void release() {
      if (held_) {
        pa_threaded_mainloop_unlock(ml_);
        held_ = false;
      }
    }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

   private:
    pa_threaded_mainloop* ml_;
    bool held_;
  };

  pa_mainloop_api* api() { return pa_threaded_mainloop_get_api(ml_); }
  bool ready_locked() const {
    return ctx_ != nullptr && pa_context_get_state(ctx_) == PA_CONTEXT_READY;
  }
  void emit(BackendEvent::Kind kind, std::string detail) {
    if (events_) {
      events_(BackendEvent{kind, std::move(detail)});
    }
  }
  std::string server_label() const { return server_.empty() ? "default server" : server_; }

  Result<StreamHandle> add_stream(const StreamInfo& info,
                                  PlaybackSource* source,
                                  CaptureSink* sink);
  void remove_stream(StreamHandle h);
  void connect_locked();
  void drop_context_locked();
  void lost_locked(const std::string& why);
  void schedule_retry_locked();
  bool create_stream_locked(PulseStream& s);
  void destroy_stream_locked(PulseStream& s);
  void wait_op_locked(pa_operation* op);
  void on_context_state();
  void on_retry();

  static void context_state_cb(pa_context*, void* ud) {
    static_cast<PulseBackend*>(ud)->on_context_state();
  }
  static void retry_cb(pa_mainloop_api* a, pa_time_event* e, const timeval*, void* ud) {
    auto* self = static_cast<PulseBackend*>(ud);
    a->time_free(e);
    self->retry_ev_ = nullptr;
    self->on_retry();
  }
  static void subscribe_cb(pa_context* c, pa_subscription_event_type_t t, uint32_t idx, void* ud);
  static void stream_state_cb(pa_stream* st, void* ud);
  static void write_cb(pa_stream* st, size_t nbytes, void* ud);
  static void read_cb(pa_stream* st, size_t nbytes, void* ud);

  const std::string server_;
  const BackendOptions options_;
  const BackendEventFn events_;

  pa_threaded_mainloop* ml_ = nullptr;
  pa_context* ctx_ = nullptr;
  pa_time_event* retry_ev_ = nullptr;
  bool stopping_ = false;
  bool lost_ = false;  // ServerLost reported, ServerBack not yet
  std::atomic<bool> connected_{false};
  StreamHandle next_handle_ = 1;
  std::map<StreamHandle, std::unique_ptr<PulseStream>> streams_;
  std::map<uint32_t, std::string> sink_names_;  // index -> name, for removal events
  std::map<uint32_t, std::string> source_names_;
};

void PulseBackend::connect_locked() {
  pa_proplist* pl = pa_proplist_new();
  pa_proplist_sets(pl, PA_PROP_APPLICATION_NAME, "qaudio audiovm-daemon");
  pa_proplist_sets(pl, PA_PROP_APPLICATION_ID, "org.qubes-os.qaudio");
  pa_proplist_sets(pl, PA_PROP_APPLICATION_ICON_NAME, "audio-card");
  ctx_ = pa_context_new_with_proplist(api(), "qaudio audiovm-daemon", pl);
  pa_proplist_free(pl);
  if (ctx_ == nullptr) {
    lost_locked("cannot create a PulseAudio context");
    return;
  }
  pa_context_set_state_callback(ctx_, &context_state_cb, this);
  pa_context_set_subscribe_callback(ctx_, &subscribe_cb, this);
  if (pa_context_connect(ctx_, server_.empty() ? nullptr : server_.c_str(), PA_CONTEXT_NOAUTOSPAWN,
                         nullptr) < 0) {
    lost_locked(std::string("cannot connect: ") + pa_strerror(pa_context_errno(ctx_)));
  }
}

void PulseBackend::drop_context_locked() {
  if (ctx_ == nullptr) {
    return;
  }
  pa_context_set_state_callback(ctx_, nullptr, nullptr);
  pa_context_set_subscribe_callback(ctx_, nullptr, nullptr);
  pa_context_disconnect(ctx_);
  pa_context_unref(ctx_);
  ctx_ = nullptr;
}

// The server is gone (or never answered): streams die with the context, the
// registered sources stay; retry from a timer.
void PulseBackend::lost_locked(const std::string& why) {
  connected_ = false;
  for (auto& [h, s] : streams_) {
    destroy_stream_locked(*s);
  }
  if (!lost_) {
    lost_ = true;
    log_warn("pulse: lost %s: %s; retrying every %lld ms", server_label().c_str(), why.c_str(),
             static_cast<long long>(options_.reconnect_interval.count()));
    emit(BackendEvent::Kind::ServerLost, server_label() + ": " + why);
  }
  schedule_retry_locked();
  pa_threaded_mainloop_signal(ml_, 0);  // wake devices()/set_device() waiters
}

void PulseBackend::schedule_retry_locked() {
  if (retry_ev_ != nullptr || stopping_) {
    return;
  }
  timeval tv{};
  pa_gettimeofday(&tv);
  pa_timeval_add(&tv, static_cast<pa_usec_t>(options_.reconnect_interval.count()) * 1000);
  retry_ev_ = api()->time_new(api(), &tv, &retry_cb, this);
}

void PulseBackend::on_retry() {
  if (stopping_) {
    return;
  }
  if (ready_locked()) {
    // Recreate streams that failed while the server stayed up.
    for (auto& [h, s] : streams_) {
      if (s->stream != nullptr) {
        pa_stream_state_t st = pa_stream_get_state(s->stream);
        if (st == PA_STREAM_FAILED || st == PA_STREAM_TERMINATED) {
          destroy_stream_locked(*s);
        }
      }
      if (s->stream == nullptr) {
        create_stream_locked(*s);
      }
    }
    return;
  }
  pa_context_state_t st = ctx_ != nullptr ? pa_context_get_state(ctx_) : PA_CONTEXT_FAILED;
  if (st == PA_CONTEXT_CONNECTING || st == PA_CONTEXT_AUTHORIZING ||
      st == PA_CONTEXT_SETTING_NAME) {
    return;  // still trying; the state callback decides
  }
  drop_context_locked();
  connect_locked();
}

void PulseBackend::on_context_state() {
  if (stopping_ || ctx_ == nullptr) {
    return;
  }
  switch (pa_context_get_state(ctx_)) {
    case PA_CONTEXT_READY: {
      connected_ = true;
      log_info("pulse: connected to %s (server %s)", server_label().c_str(),
               pa_context_get_server(ctx_) ? pa_context_get_server(ctx_) : "?");
      auto* op = pa_context_subscribe(ctx_,
                                      static_cast<pa_subscription_mask_t>(
                                          PA_SUBSCRIPTION_MASK_SINK | PA_SUBSCRIPTION_MASK_SOURCE),
                                      nullptr, nullptr);
      if (op != nullptr) {
        pa_operation_unref(op);
      }
      sink_names_.clear();
      source_names_.clear();
      // Remember device names by index (for DeviceRemoved), without events.
      op = pa_context_get_sink_info_list(
          ctx_,
          [](pa_context*, const pa_sink_info* i, int eol, void* ud) {
            if (eol == 0 && i != nullptr) {
              static_cast<PulseBackend*>(ud)->sink_names_[i->index] = i->name;
            }
          },
          this);
      if (op != nullptr) {
        pa_operation_unref(op);
      }
      op = pa_context_get_source_info_list(
          ctx_,
          [](pa_context*, const pa_source_info* i, int eol, void* ud) {
            if (eol == 0 && i != nullptr) {
              static_cast<PulseBackend*>(ud)->source_names_[i->index] = i->name;
            }
          },
          this);
      if (op != nullptr) {
        pa_operation_unref(op);
      }
      for (auto& [h, s] : streams_) {
        create_stream_locked(*s);
      }
      if (lost_) {
        lost_ = false;
        emit(BackendEvent::Kind::ServerBack, server_label());
      }
      pa_threaded_mainloop_signal(ml_, 0);
      break;
    }
    case PA_CONTEXT_FAILED:
    case PA_CONTEXT_TERMINATED:
      lost_locked(pa_strerror(pa_context_errno(ctx_)));
      break;
    default:
      break;
  }
}

bool PulseBackend::create_stream_locked(PulseStream& s) {
  const DeviceFormat f = options_.format;
  s.channels = f.channels;
  s.rate = f.rate;
  pa_sample_spec ss{PA_SAMPLE_FLOAT32NE, f.rate, static_cast<uint8_t>(f.channels)};
  pa_channel_map map;
  pa_channel_map_init_extend(&map, ss.channels, PA_CHANNEL_MAP_DEFAULT);

  pa_proplist* pl = pa_proplist_new();
  const std::string media =
      s.capture ? "Microphone for " + s.info.qube : "Playback from " + s.info.qube;
  pa_proplist_sets(pl, PA_PROP_APPLICATION_NAME, s.info.qube.c_str());
  pa_proplist_sets(pl, PA_PROP_APPLICATION_ID, ("qaudio." + s.info.qube).c_str());
  pa_proplist_sets(pl, PA_PROP_APPLICATION_ICON_NAME, icon_for(s.info.label_color).c_str());
  pa_proplist_sets(pl, PA_PROP_MEDIA_NAME, media.c_str());
  pa_proplist_sets(pl, PA_PROP_MEDIA_ROLE, s.capture ? "phone" : "music");
  pa_proplist_sets(pl, "qaudio.qube", s.info.qube.c_str());
  pa_proplist_sets(pl, "qaudio.label.color", s.info.label_color.c_str());
  s.stream = pa_stream_new_with_proplist(ctx_, media.c_str(), &ss, &map, pl);
  pa_proplist_free(pl);
  if (s.stream == nullptr) {
    log_warn("pulse: cannot create a stream for qube %s: %s", s.info.qube.c_str(),
             pa_strerror(pa_context_errno(ctx_)));
    return false;
  }
  s.frames = 0;
  pa_stream_set_state_callback(s.stream, &stream_state_cb, this);

  const size_t frame_bytes = pa_frame_size(&ss);
  auto bytes_for = [&](std::chrono::milliseconds ms) {
    return static_cast<uint32_t>(pa_usec_to_bytes(static_cast<pa_usec_t>(ms.count()) * 1000, &ss));
  };
  // A stream's own buffer (native sessions: a few ms) or the backend's; the
  // request size is the period, at most half the buffer.
  const auto buffer = s.info.buffer.count() > 0 ? s.info.buffer : options_.buffer;
  const uint32_t tlength = std::max<uint32_t>(bytes_for(buffer), 2 * frame_bytes);
  const uint32_t period = std::clamp<uint32_t>(bytes_for(options_.period), frame_bytes,
                                               std::max<uint32_t>(tlength / 2, frame_bytes));
  pa_buffer_attr attr;
  attr.maxlength = UINT32_MAX;
  attr.prebuf = UINT32_MAX;
  const auto flags = static_cast<pa_stream_flags_t>(
      PA_STREAM_ADJUST_LATENCY | PA_STREAM_AUTO_TIMING_UPDATE | PA_STREAM_INTERPOLATE_TIMING);
  const char* dev = (s.info.device.empty() || s.use_default) ? nullptr : s.info.device.c_str();
  int rc;
  if (s.capture) {
    attr.tlength = UINT32_MAX;
    attr.minreq = UINT32_MAX;
    attr.fragsize = period;
    pa_stream_set_read_callback(s.stream, &read_cb, &s);
    rc = pa_stream_connect_record(s.stream, dev, &attr, flags);
  } else {
    attr.tlength = tlength;
    attr.minreq = period;
    attr.fragsize = UINT32_MAX;
    pa_stream_set_write_callback(s.stream, &write_cb, &s);
    rc = pa_stream_connect_playback(s.stream, dev, &attr, flags, nullptr, nullptr);
  }
  if (rc < 0) {
    log_warn("pulse: cannot connect the stream for qube %s: %s", s.info.qube.c_str(),
             pa_strerror(pa_context_errno(ctx_)));
    destroy_stream_locked(s);
    schedule_retry_locked();
    return false;
  }
  return true;
}

void PulseBackend::destroy_stream_locked(PulseStream& s) {
  if (s.stream == nullptr) {
    return;
  }
  pa_stream_set_state_callback(s.stream, nullptr, nullptr);
  pa_stream_set_write_callback(s.stream, nullptr, nullptr);
  pa_stream_set_read_callback(s.stream, nullptr, nullptr);
  pa_stream_state_t st = pa_stream_get_state(s.stream);
  if (st == PA_STREAM_READY || st == PA_STREAM_CREATING) {
    pa_stream_disconnect(s.stream);
  }
  pa_stream_unref(s.stream);
  s.stream = nullptr;
}

void PulseBackend::stream_state_cb(pa_stream* st, void* ud) {
  auto* self = static_cast<PulseBackend*>(ud);
  pa_stream_state_t state = pa_stream_get_state(st);
  if (state != PA_STREAM_FAILED && state != PA_STREAM_TERMINATED) {
    return;
  }
  if (self->stopping_ || !self->ready_locked()) {
    return;  // the context callback handles a lost server
  }
  for (auto& [h, s] : self->streams_) {
    if (s->stream == st) {
      const std::string why = pa_strerror(pa_context_errno(self->ctx_));
      log_warn("pulse: stream for qube %s failed: %s", s->info.qube.c_str(), why.c_str());
      self->emit(BackendEvent::Kind::Error, "stream for qube " + s->info.qube + ": " + why);
      if (!s->info.device.empty()) {
        s->use_default = true;  // the chosen device may be gone
      }
    }
  }
  self->schedule_retry_locked();  // recreated from the timer, not inside its own callback
}

// Real-time side: pull the qube's source into the preallocated buffer.
void PulseBackend::write_cb(pa_stream* st, size_t nbytes, void* ud) {
  auto& s = *static_cast<PulseStream*>(ud);
  const size_t ch = s.channels;
  const size_t frame_bytes = ch * sizeof(float);
  const size_t chunk = s.buffer.size() / ch;
  size_t left = nbytes / frame_bytes;
  PeriodTiming t = stream_timing(st, s.frames);
  while (left > 0 && chunk > 0) {
    const size_t n = std::min(left, chunk);
    {
      RtScope rt;  // debug builds abort if the source allocates
      s.source->pull(std::span<float>(s.buffer.data(), n * ch), n, t);
    }
    if (pa_stream_write(st, s.buffer.data(), n * frame_bytes, nullptr, 0, PA_SEEK_RELATIVE) < 0) {
      break;
    }
    s.frames += n;
    left -= n;
    t.device_frames += n;
    t.device_time_ns += static_cast<int64_t>(n) * 1000000000 / s.rate;
  }
}

void PulseBackend::read_cb(pa_stream* st, size_t, void* ud) {
  auto& s = *static_cast<PulseStream*>(ud);
  const size_t ch = s.channels;
  const size_t frame_bytes = ch * sizeof(float);
  while (pa_stream_readable_size(st) > 0) {
    const void* data = nullptr;
    size_t n = 0;
    if (pa_stream_peek(st, &data, &n) < 0 || n == 0) {
      break;
    }
    const size_t frames = n / frame_bytes;
    if (data != nullptr && frames > 0) {
      PeriodTiming t = stream_timing(st, s.frames);
      RtScope rt;
      s.sink->push(std::span<const float>(static_cast<const float*>(data), frames * ch), frames, t);
    }
    s.frames += frames;  // a hole (data == nullptr) still advances time
    pa_stream_drop(st);
  }
}

void PulseBackend::subscribe_cb(pa_context* c,
                                pa_subscription_event_type_t t,
                                uint32_t idx,
                                void* ud) {
  auto* self = static_cast<PulseBackend*>(ud);
  const auto facility = t & PA_SUBSCRIPTION_EVENT_FACILITY_MASK;
  const auto type = t & PA_SUBSCRIPTION_EVENT_TYPE_MASK;
  const bool sink = facility == PA_SUBSCRIPTION_EVENT_SINK;
  if (!sink && facility != PA_SUBSCRIPTION_EVENT_SOURCE) {
    return;
  }
  auto& names = sink ? self->sink_names_ : self->source_names_;
  if (type == PA_SUBSCRIPTION_EVENT_REMOVE) {
    auto it = names.find(idx);
    if (it != names.end()) {
      self->emit(BackendEvent::Kind::DeviceRemoved, it->second);
      names.erase(it);
    }
    return;
  }
  if (type != PA_SUBSCRIPTION_EVENT_NEW) {
    return;
  }
  pa_operation* op;
  if (sink) {
    op = pa_context_get_sink_info_by_index(
        c, idx,
        [](pa_context*, const pa_sink_info* i, int eol, void* u) {
          if (eol == 0 && i != nullptr) {
            auto* b = static_cast<PulseBackend*>(u);
            b->sink_names_[i->index] = i->name;
            b->emit(BackendEvent::Kind::DeviceAdded, i->name);
          }
        },
        self);
  } else {
    op = pa_context_get_source_info_by_index(
        c, idx,
        [](pa_context*, const pa_source_info* i, int eol, void* u) {
          if (eol == 0 && i != nullptr) {
            auto* b = static_cast<PulseBackend*>(u);
            b->source_names_[i->index] = i->name;
            b->emit(BackendEvent::Kind::DeviceAdded, i->name);
          }
        },
        self);
  }
  if (op != nullptr) {
    pa_operation_unref(op);
  }
}

Result<StreamHandle> PulseBackend::add_stream(const StreamInfo& info,
                                              PlaybackSource* source,
                                              CaptureSink* sink) {
  auto s = std::make_unique<PulseStream>();
  s->info = info;
  s->capture = sink != nullptr;
  s->source = source;
  s->sink = sink;
  s->channels = options_.format.channels;
  s->rate = options_.format.rate;
  if (!s->capture) {
    // Enough for the largest request PulseAudio makes in one callback
    // (maxlength defaults to 4 s; the write loop handles more in chunks).
    s->buffer.assign(static_cast<size_t>(options_.format.rate) / 4 * options_.format.channels, 0.f);
  }
  Lock lock(ml_);
  const StreamHandle h = next_handle_++;
  s->handle = h;
  PulseStream& ref = *s;
  streams_.emplace(h, std::move(s));
  if (ml_ != nullptr && ready_locked()) {
    if (!create_stream_locked(ref)) {
      const std::string err = pa_strerror(pa_context_errno(ctx_));
      streams_.erase(h);
      return fail("pulse: cannot create a stream for qube '" + info.qube + "': " + err);
    }
  }
  return h;
}

void PulseBackend::remove_stream(StreamHandle h) {
  Lock lock(ml_);
  auto it = streams_.find(h);
  if (it == streams_.end()) {
    return;
  }
  destroy_stream_locked(*it->second);
  streams_.erase(it);
}

void PulseBackend::wait_op_locked(pa_operation* op) {
  if (op == nullptr) {
    return;
  }
  while (pa_operation_get_state(op) == PA_OPERATION_RUNNING && ready_locked()) {
    pa_threaded_mainloop_wait(ml_);
  }
  pa_operation_unref(op);
}

std::vector<DeviceInfo> PulseBackend::devices() {
  struct Query {
    PulseBackend* self;
    std::vector<DeviceInfo> out;
    std::string default_sink, default_source;
  } q{this, {}, {}, {}};
  if (ml_ == nullptr || pa_threaded_mainloop_in_thread(ml_)) {
    return {};
  }
  Lock lock(ml_);
  if (!ready_locked()) {
    return {};
  }
  wait_op_locked(pa_context_get_server_info(
      ctx_,
      [](pa_context*, const pa_server_info* i, void* ud) {
        auto* q = static_cast<Query*>(ud);
        if (i != nullptr) {
          q->default_sink = i->default_sink_name ? i->default_sink_name : "";
          q->default_source = i->default_source_name ? i->default_source_name : "";
        }
        pa_threaded_mainloop_signal(q->self->ml_, 0);
      },
      &q));
  wait_op_locked(pa_context_get_sink_info_list(
      ctx_,
      [](pa_context*, const pa_sink_info* i, int eol, void* ud) {
        auto* q = static_cast<Query*>(ud);
        if (eol == 0 && i != nullptr) {
          q->out.push_back({i->name, i->description ? i->description : i->name, true,
                            q->default_sink == i->name});
        }
        pa_threaded_mainloop_signal(q->self->ml_, 0);
      },
      &q));
  wait_op_locked(pa_context_get_source_info_list(
      ctx_,
      [](pa_context*, const pa_source_info* i, int eol, void* ud) {
        auto* q = static_cast<Query*>(ud);
        // Monitors of sinks are not microphones.
        if (eol == 0 && i != nullptr && i->monitor_of_sink == PA_INVALID_INDEX) {
          q->out.push_back({i->name, i->description ? i->description : i->name, false,
                            q->default_source == i->name});
        }
        pa_threaded_mainloop_signal(q->self->ml_, 0);
      },
      &q));
  return std::move(q.out);
}

Result<void> PulseBackend::set_device(StreamHandle h, const std::string& device) {
  if (ml_ != nullptr && pa_threaded_mainloop_in_thread(ml_)) {
    return fail("pulse: set_device called from the PulseAudio thread");
  }
  Lock lock(ml_);
  auto it = streams_.find(h);
  if (it == streams_.end()) {
    return fail("pulse: set_device: no stream with handle " + std::to_string(h));
  }
  PulseStream& s = *it->second;
  s.info.device = device;
  s.use_default = false;
  if (ml_ == nullptr || !ready_locked()) {
    return {};  // used when the stream is (re)created
  }
  if (s.stream == nullptr || pa_stream_get_state(s.stream) != PA_STREAM_READY) {
    destroy_stream_locked(s);
    create_stream_locked(s);
    return {};
  }
  struct Move {
    PulseBackend* self;
    int success = -1;
  } m{this};
  auto done = [](pa_context*, int success, void* ud) {
    auto* m = static_cast<Move*>(ud);
    m->success = success;
    pa_threaded_mainloop_signal(m->self->ml_, 0);
  };
  const uint32_t index = pa_stream_get_index(s.stream);
  const char* target = device.empty() ? nullptr : device.c_str();
  pa_operation* op;
  if (target == nullptr) {
    // Back to the default device: recreate the stream without a target.
    destroy_stream_locked(s);
    create_stream_locked(s);
    return {};
  }
  if (s.capture) {
    op = pa_context_move_source_output_by_name(ctx_, index, target, done, &m);
  } else {
    op = pa_context_move_sink_input_by_name(ctx_, index, target, done, &m);
  }
  wait_op_locked(op);
  if (m.success != 1) {
    return fail("pulse: cannot move qube '" + s.info.qube + "' to device '" + device + "': " +
                (ctx_ ? pa_strerror(pa_context_errno(ctx_)) : "server lost") + " (see devices())");
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Backend>> make_pulse_backend(std::string_view arg,
                                                    const BackendOptions& options,
                                                    BackendEventFn events) {
  return std::unique_ptr<Backend>(
      std::make_unique<PulseBackend>(std::string(arg), options, std::move(events)));
}

}  // namespace qaudio::daemon
