// PulseAgentBackend: null sink + monitor record stream, null sink + remap
// source for the mic (see header). libpulse runs on its threaded main loop;
// its callbacks touch only the rings and post state changes to the agent loop.
#include "pulse_agent_backend.hpp"

#include <pulse/pulseaudio.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <vector>

#include "qaudio/log.hpp"
#include "qaudio/realtime.hpp"

namespace qaudio::agent {
namespace {

constexpr char kSink[] = "qubes_audio";
constexpr char kFeed[] = "qubes_mic_feed";
constexpr char kSource[] = "qubes_microphone";

class PulseAgentBackend final : public AgentBackend {
 public:
  explicit PulseAgentBackend(PulseAgentOptions o) : opts_(std::move(o)), rings_(1 << 18, 1 << 18) {}
  ~PulseAgentBackend() override { stop(); }

  Result<void> start(EventLoop& loop, Listener& listener) override;
  void stop() override;
  StreamFormat playback_format() const override { return {SampleFormat::F32LE, rate_, 2}; }
  StreamFormat capture_format() const override { return {SampleFormat::F32LE, rate_, 1}; }
  BackendRings& rings() override { return rings_; }
  std::chrono::nanoseconds own_latency() const override {
    return std::chrono::milliseconds(opts_.fragment_ms);
  }
  void set_remote_latency(std::chrono::nanoseconds l) override {
    log_debug("remote latency %.1f ms (PulseAudio null sinks cannot report it to apps)",
              static_cast<double>(l.count()) / 1e6);
  }
  std::string describe() const override {
    return "pulse (" + (opts_.server.empty() ? std::string("default server") : opts_.server) + ")";
  }

 private:
  // The mic feed's fragment: the monitor's, but at least 5 ms (the mic
  // reaches the apps through a second null sink; smaller starves it).
  uint32_t mic_ms() const { return std::max<uint32_t>(opts_.fragment_ms, 5); }
  // All below run with the main loop lock held (or on its thread).
  Result<void> connect();
  bool wait_op(pa_operation* op);
  uint32_t find_or_load(const std::string& module,
                        const std::string& args,
                        bool is_source,
                        const char* name);
  Result<void> open_streams();
  void refresh_activity();
  void fail_async(const std::string& what);

  static void on_context_state(pa_context* c, void* self);
  static void on_read(pa_stream* s, size_t n, void* self);
  static void on_write(pa_stream* s, size_t n, void* self);
  static void on_subscribe(pa_context*, pa_subscription_event_type_t, uint32_t, void* self);

  PulseAgentOptions opts_;
  BackendRings rings_;
  uint32_t rate_ = 48000;
  EventLoop* loop_ = nullptr;
  Listener* listener_ = nullptr;
  pa_threaded_mainloop* ml_ = nullptr;
  pa_context* ctx_ = nullptr;
  pa_stream* rec_ = nullptr;
  pa_stream* feed_ = nullptr;
  std::vector<uint32_t> modules_;  // ours, in load order
  uint32_t sink_idx_ = PA_INVALID_INDEX;
  uint32_t source_idx_ = PA_INVALID_INDEX;
  std::atomic<bool> stopping_{false};
  std::optional<bool> active_;  // last reported (agent loop thread)
  std::optional<bool> mic_;
  std::vector<float> silence_;
};

void PulseAgentBackend::on_context_state(pa_context* c, void* p) {
  auto* self = static_cast<PulseAgentBackend*>(p);
  auto st = pa_context_get_state(c);
  if (st == PA_CONTEXT_FAILED || st == PA_CONTEXT_TERMINATED) {
    if (!self->stopping_ && self->loop_ != nullptr && self->listener_ != nullptr) {
      self->fail_async(std::string("lost the PulseAudio server: ") +
                       pa_strerror(pa_context_errno(c)));
    }
  }
  pa_threaded_mainloop_signal(self->ml_, 0);
}

void PulseAgentBackend::fail_async(const std::string& what) {
  loop_->post([l = listener_, what] { l->on_backend_error(what); });
}

bool PulseAgentBackend::wait_op(pa_operation* op) {
  if (op == nullptr) {
    return false;
  }
  while (pa_operation_get_state(op) == PA_OPERATION_RUNNING) {
    pa_threaded_mainloop_wait(ml_);
  }
  pa_operation_unref(op);
  return true;
}

Result<void> PulseAgentBackend::connect() {
  ml_ = pa_threaded_mainloop_new();
  ctx_ = pa_context_new(pa_threaded_mainloop_get_api(ml_), "qubes-audio-agent");
  if (ml_ == nullptr || ctx_ == nullptr) {
    return fail("pulse: out of memory creating the context");
  }
  pa_context_set_state_callback(ctx_, on_context_state, this);
  // The loop thread reads the monitor in fragments of a few ms.
  pa_mainloop_api_once(
      pa_threaded_mainloop_get_api(ml_),
      [](pa_mainloop_api*, void*) {
        log_info("pulse: stream thread runs with %s",
                 make_thread_realtime(kRealtimePriority).describe().c_str());
      },
      nullptr);
  if (pa_context_connect(ctx_, opts_.server.empty() ? nullptr : opts_.server.c_str(),
                         PA_CONTEXT_NOFLAGS, nullptr) < 0 ||
      pa_threaded_mainloop_start(ml_) < 0) {
    return fail(std::string("pulse: cannot connect to ") +
                (opts_.server.empty() ? "the default server" : opts_.server) + ": " +
                pa_strerror(pa_context_errno(ctx_)) +
                " (is PulseAudio running? try --backend pulse:SERVER)");
  }
  pa_threaded_mainloop_lock(ml_);
  for (;;) {
    auto st = pa_context_get_state(ctx_);
    if (st == PA_CONTEXT_READY) {
      break;
    }
    if (!PA_CONTEXT_IS_GOOD(st)) {
      std::string err = pa_strerror(pa_context_errno(ctx_));
      pa_threaded_mainloop_unlock(ml_);
      return fail("pulse: cannot connect to " +
                  (opts_.server.empty() ? std::string("the default server") : opts_.server) + ": " +
                  err + " (is PulseAudio running? try --backend pulse:SERVER)");
    }
    pa_threaded_mainloop_wait(ml_);
  }
  pa_threaded_mainloop_unlock(ml_);
  return {};
}

// Returns the index of sink/source `name`, loading `module` when it is absent.
uint32_t PulseAgentBackend::find_or_load(const std::string& module,
                                         const std::string& args,
                                         bool is_source,
                                         const char* name) {
  struct Ctx {
    PulseAgentBackend* self;
    uint32_t index = PA_INVALID_INDEX;
    uint32_t owner = PA_INVALID_INDEX;
    uint32_t rate = 0;
  } c{this};
  auto sink_cb = [](pa_context*, const pa_sink_info* i, int eol, void* p) {
    auto* c = static_cast<Ctx*>(p);
    if (eol == 0 && i != nullptr) {
      c->index = i->index;
      c->owner = i->owner_module;
      c->rate = i->sample_spec.rate;
    }
    pa_threaded_mainloop_signal(c->self->ml_, 0);
  };
  auto source_cb = [](pa_context*, const pa_source_info* i, int eol, void* p) {
    auto* c = static_cast<Ctx*>(p);
    if (eol == 0 && i != nullptr) {
      c->index = i->index;
      c->owner = i->owner_module;
      c->rate = i->sample_spec.rate;
    }
    pa_threaded_mainloop_signal(c->self->ml_, 0);
  };
  auto lookup = [&] {
    c.index = PA_INVALID_INDEX;
    wait_op(is_source ? pa_context_get_source_info_by_name(ctx_, name, source_cb, &c)
                      : pa_context_get_sink_info_by_name(ctx_, name, sink_cb, &c));
  };
  lookup();
  if (c.index != PA_INVALID_INDEX) {
    log_info("pulse: adopting the existing %s %s (module %u)", is_source ? "source" : "sink", name,
             c.owner);
  } else {
    struct Load {
      PulseAgentBackend* self;
      uint32_t idx = PA_INVALID_INDEX;
    } l{this};
    wait_op(pa_context_load_module(
        ctx_, module.c_str(), args.c_str(),
        [](pa_context*, uint32_t idx, void* p) {
          auto* l = static_cast<Load*>(p);
          l->idx = idx;
          pa_threaded_mainloop_signal(l->self->ml_, 0);
        },
        &l));
    if (l.idx == PA_INVALID_INDEX) {
      log_error("pulse: cannot load %s %s: %s", module.c_str(), args.c_str(),
                pa_strerror(pa_context_errno(ctx_)));
      return PA_INVALID_INDEX;
    }
    lookup();
    c.owner = l.idx;
  }
  if (c.owner != PA_INVALID_INDEX) {
    modules_.push_back(c.owner);
  }
  if (!is_source && c.rate != 0 && std::strcmp(name, kSink) == 0) {
    rate_ = c.rate;
  }
  return c.index;
}

void PulseAgentBackend::on_read(pa_stream* s, size_t, void* p) {
  auto* self = static_cast<PulseAgentBackend*>(p);
  const void* data = nullptr;
  size_t n = 0;
  while (pa_stream_readable_size(s) > 0) {
    if (pa_stream_peek(s, &data, &n) < 0 || n == 0) {
      return;
    }
    if (data != nullptr) {  // a hole (data == nullptr) is skipped
      self->rings_.playback().write({static_cast<const std::byte*>(data), n});
    }
    pa_stream_drop(s);
  }
  self->rings_.notify_playback();
}

void PulseAgentBackend::on_write(pa_stream* s, size_t n, void* p) {
  auto* self = static_cast<PulseAgentBackend*>(p);
  auto& ring = self->rings_.capture();
  const size_t fb = self->capture_format().frame_bytes();
  // Never let the mic lag behind: beyond 4 fragments, drop the oldest.
  size_t cap = self->capture_format().bytes_for_ms(self->mic_ms() * 4 + 20);
  if (ring.readable() > cap) {
    ring.skip((ring.readable() - cap) / fb * fb);
  }
  void* buf = nullptr;
  size_t len = n;
  if (pa_stream_begin_write(s, &buf, &len) < 0 || buf == nullptr) {
    return;
  }
  len = len / fb * fb;
  size_t got = ring.read({static_cast<std::byte*>(buf), len / fb * fb});
  got = got / fb * fb;  // the ring holds whole frames (the core writes whole frames)
  std::memset(static_cast<std::byte*>(buf) + got, 0, len - got);
  pa_stream_write(s, buf, len, nullptr, 0, PA_SEEK_RELATIVE);
}

Result<void> PulseAgentBackend::open_streams() {
  pa_sample_spec play{PA_SAMPLE_FLOAT32LE, rate_, 2};
  rec_ = pa_stream_new(ctx_, "Qubes audio to the audio domain", &play, nullptr);
  pa_buffer_attr rattr{};
  rattr.maxlength = static_cast<uint32_t>(-1);
  rattr.fragsize = static_cast<uint32_t>(playback_format().bytes_for_ms(opts_.fragment_ms));
  pa_stream_set_read_callback(rec_, on_read, this);
  std::string monitor = std::string(kSink) + ".monitor";
  if (pa_stream_connect_record(
          rec_, monitor.c_str(), &rattr,
          static_cast<pa_stream_flags_t>(PA_STREAM_ADJUST_LATENCY | PA_STREAM_DONT_MOVE |
                                         PA_STREAM_DONT_INHIBIT_AUTO_SUSPEND)) < 0) {
    return fail(std::string("pulse: cannot record ") + monitor + ": " +
                pa_strerror(pa_context_errno(ctx_)));
  }
  pa_sample_spec mic{PA_SAMPLE_FLOAT32LE, rate_, 1};
  feed_ = pa_stream_new(ctx_, "Qubes microphone from the audio domain", &mic, nullptr);
  pa_buffer_attr wattr{};
  wattr.maxlength = static_cast<uint32_t>(-1);
  wattr.tlength = static_cast<uint32_t>(capture_format().bytes_for_ms(mic_ms() * 2 + 10));
  wattr.prebuf = 0;
  wattr.minreq = static_cast<uint32_t>(capture_format().bytes_for_ms(mic_ms()));
  wattr.fragsize = static_cast<uint32_t>(-1);
  pa_stream_set_write_callback(feed_, on_write, this);
  if (pa_stream_connect_playback(
          feed_, kFeed, &wattr,
          static_cast<pa_stream_flags_t>(PA_STREAM_ADJUST_LATENCY | PA_STREAM_DONT_MOVE), nullptr,
          nullptr) < 0) {
    return fail(std::string("pulse: cannot play into ") + kFeed + ": " +
                pa_strerror(pa_context_errno(ctx_)));
  }
  return {};
}

// Recounts uncorked sink inputs on qubes_audio and source outputs on
// qubes_microphone; posts changes to the agent loop.
void PulseAgentBackend::refresh_activity() {
  // One counter per query: queries started by successive events never mix.
  struct Count {
    PulseAgentBackend* self;
    int n = 0;
  };
  pa_operation* op = pa_context_get_sink_input_info_list(
      ctx_,
      [](pa_context*, const pa_sink_input_info* i, int eol, void* p) {
        auto* c = static_cast<Count*>(p);
        if (eol == 0 && i != nullptr) {
          c->n += (i->sink == c->self->sink_idx_ && !i->corked) ? 1 : 0;
          return;
        }
        auto* self = c->self;
        bool a = c->n > 0;
        delete c;
        self->loop_->post([self, a] {
          if (!self->active_ || a != *self->active_) {
            self->active_ = a;
            self->listener_->on_output_active(a);
          }
        });
      },
      new Count{this});
  if (op != nullptr) {
    pa_operation_unref(op);
  }
  op = pa_context_get_source_output_info_list(
      ctx_,
      [](pa_context*, const pa_source_output_info* i, int eol, void* p) {
        auto* c = static_cast<Count*>(p);
        if (eol == 0 && i != nullptr) {
          c->n += (i->source == c->self->source_idx_ && !i->corked) ? 1 : 0;
          return;
        }
        auto* self = c->self;
        bool m = c->n > 0;
        delete c;
        self->loop_->post([self, m] {
          if (!self->mic_ || m != *self->mic_) {
            self->mic_ = m;
            self->listener_->on_mic_in_use(m);
          }
        });
      },
      new Count{this});
  if (op != nullptr) {
    pa_operation_unref(op);
  }
}

void PulseAgentBackend::on_subscribe(pa_context*, pa_subscription_event_type_t, uint32_t, void* p) {
  auto* self = static_cast<PulseAgentBackend*>(p);
  if (!self->stopping_) {
    self->refresh_activity();
  }
}

Result<void> PulseAgentBackend::start(EventLoop& loop, Listener& listener) {
  loop_ = &loop;
  listener_ = &listener;
  if (auto r = connect(); !r) {
    return r;
  }
  pa_threaded_mainloop_lock(ml_);
  // The output sink first: its rate (an adopted sink keeps its own) sets ours.
  struct Info {
    PulseAgentBackend* self;
    uint32_t rate = 0;
  } info{this};
  wait_op(pa_context_get_server_info(
      ctx_,
      [](pa_context*, const pa_server_info* i, void* p) {
        auto* in = static_cast<Info*>(p);
        if (i != nullptr) {
          in->rate = i->sample_spec.rate;
        }
        pa_threaded_mainloop_signal(in->self->ml_, 0);
      },
      &info));
  // 48 kHz unless the server runs at another rate of the closed list.
  rate_ = info.rate == 96000 ? 96000 : 48000;
  const std::string r = std::to_string(rate_);
  sink_idx_ = find_or_load("module-null-sink",
                           std::string("sink_name=") + kSink + " rate=" + r +
                               " channels=2 format=float32le"
                               " sink_properties='device.description=\"Qubes audio\"'",
                           false, kSink);
  if (!is_supported_rate(rate_)) {
    rate_ = 48000;  // an adopted sink at an odd rate: PulseAudio converts for us
  }
  uint32_t feed = find_or_load("module-null-sink",
                               std::string("sink_name=") + kFeed + " rate=" + r +
                                   " channels=1 format=float32le"
                                   " sink_properties='device.description=\"Qubes microphone "
                                   "feed (internal)\"'",
                               false, kFeed);
  source_idx_ = find_or_load("module-remap-source",
                             std::string("master=") + kFeed + ".monitor source_name=" + kSource +
                                 " source_properties='device.description=\"Qubes microphone\"'",
                             true, kSource);
  if (sink_idx_ == PA_INVALID_INDEX || feed == PA_INVALID_INDEX ||
      source_idx_ == PA_INVALID_INDEX) {
    pa_threaded_mainloop_unlock(ml_);
    stop();
    return fail(
        "pulse: cannot create the Qubes audio devices (module-null-sink / "
        "module-remap-source missing?)");
  }
  if (opts_.set_default) {
    wait_op(pa_context_set_default_sink(
        ctx_, kSink,
        [](pa_context*, int, void* p) {
          pa_threaded_mainloop_signal(static_cast<PulseAgentBackend*>(p)->ml_, 0);
        },
        this));
    wait_op(pa_context_set_default_source(
        ctx_, kSource,
        [](pa_context*, int, void* p) {
          pa_threaded_mainloop_signal(static_cast<PulseAgentBackend*>(p)->ml_, 0);
        },
        this));
  }
  auto streams = open_streams();
  if (streams) {
    pa_context_set_subscribe_callback(ctx_, on_subscribe, this);
    pa_operation* op = pa_context_subscribe(
        ctx_,
        static_cast<pa_subscription_mask_t>(PA_SUBSCRIPTION_MASK_SINK_INPUT |
                                            PA_SUBSCRIPTION_MASK_SOURCE_OUTPUT),
        nullptr, nullptr);
    if (op != nullptr) {
      pa_operation_unref(op);
    }
    refresh_activity();
  }
  pa_threaded_mainloop_unlock(ml_);
  if (!streams) {
    stop();
    return streams;
  }
  log_info("pulse: \"Qubes audio\" (%s) and \"Qubes microphone\" (%s) ready at %u Hz", kSink,
           kSource, rate_);
  return {};
}

void PulseAgentBackend::stop() {
  if (ml_ == nullptr) {
    return;
  }
  stopping_ = true;
  pa_threaded_mainloop_lock(ml_);
  if (ctx_ != nullptr && pa_context_get_state(ctx_) == PA_CONTEXT_READY) {
    pa_context_set_subscribe_callback(ctx_, nullptr, nullptr);
  }
  for (pa_stream** s : {&rec_, &feed_}) {
    if (*s != nullptr) {
      pa_stream_set_read_callback(*s, nullptr, nullptr);
      pa_stream_set_write_callback(*s, nullptr, nullptr);
      pa_stream_disconnect(*s);
      pa_stream_unref(*s);
      *s = nullptr;
    }
  }
  if (ctx_ != nullptr && pa_context_get_state(ctx_) == PA_CONTEXT_READY && !opts_.keep_devices) {
    for (auto it = modules_.rbegin(); it != modules_.rend(); ++it) {
      wait_op(pa_context_unload_module(
          ctx_, *it,
          [](pa_context*, int, void* p) {
            pa_threaded_mainloop_signal(static_cast<PulseAgentBackend*>(p)->ml_, 0);
          },
          this));
    }
  }
  modules_.clear();
  if (ctx_ != nullptr) {
    pa_context_disconnect(ctx_);
    pa_context_unref(ctx_);
    ctx_ = nullptr;
  }
  pa_threaded_mainloop_unlock(ml_);
  pa_threaded_mainloop_stop(ml_);
  pa_threaded_mainloop_free(ml_);
  ml_ = nullptr;
}

}  // namespace

std::unique_ptr<AgentBackend> make_pulse_agent_backend(const PulseAgentOptions& opts) {
  return std::make_unique<PulseAgentBackend>(opts);
}

}  // namespace qaudio::agent
