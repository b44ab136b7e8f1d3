// PipeWireAgentBackend: two pw_streams as virtual sink/source nodes (see header).
#include "pipewire_agent_backend.hpp"

#include <pipewire/pipewire.h>
#include <spa/node/io.h>
#include <spa/param/audio/format-utils.h>
#include <spa/param/latency-utils.h>

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "clock_follower.hpp"
#include "qaudio/log.hpp"

namespace qaudio::agent {
namespace {

class PipeWireAgentBackend final : public AgentBackend {
 public:
  explicit PipeWireAgentBackend(PipeWireAgentOptions o) : opts_(o), rings_(1 << 18, 1 << 18) {}
  ~PipeWireAgentBackend() override { stop(); }

  Result<void> start(EventLoop& loop, Listener& listener) override;
  void stop() override;
  StreamFormat playback_format() const override { return {SampleFormat::F32LE, opts_.rate, 2}; }
  StreamFormat capture_format() const override { return {SampleFormat::F32LE, opts_.rate, 1}; }
  BackendRings& rings() override { return rings_; }
  std::chrono::nanoseconds own_latency() const override {
    return std::chrono::milliseconds(opts_.latency_ms);
  }
  void set_remote_latency(std::chrono::nanoseconds latency) override;
  void on_clock_tick(uint64_t frames_played, uint64_t device_time_ns, uint32_t rate) override;
  void on_queue(std::chrono::nanoseconds queue,
                std::chrono::nanoseconds target,
                bool native) override;
  std::string describe() const override { return "pipewire"; }

 private:
  struct StreamCtx {
    PipeWireAgentBackend* self;
    bool sink;
  };
  pw_stream* make_stream(bool sink);
  static void on_process(void* data);
  static void on_state(void* data, pw_stream_state old, pw_stream_state state, const char* error);
  static void on_io_changed(void* data, uint32_t id, void* area, uint32_t size);
  static void on_drive(void* data, uint64_t expirations);
  void arm_driver(bool on);
  void post_state(bool sink, bool streaming);

  PipeWireAgentOptions opts_;
  BackendRings rings_;
  EventLoop* loop_ = nullptr;
  Listener* listener_ = nullptr;
  pw_thread_loop* tl_ = nullptr;
  pw_context* ctx_ = nullptr;
  pw_core* core_ = nullptr;
  pw_stream* sink_ = nullptr;
  pw_stream* source_ = nullptr;
  spa_hook sink_hook_{};
  spa_hook source_hook_{};
  StreamCtx sink_ctx_{this, true};
  StreamCtx source_ctx_{this, false};
  std::optional<bool> active_;          // last reported (agent loop thread)
  std::optional<int64_t> reported_ns_;  // last ProcessLatency set (agent loop thread)
  std::optional<bool> mic_;

  // Driver (the sink drives the graph of the apps that play into it): a
  // timer on the thread loop starts one graph cycle per quantum, at the
  // speed the ClockFollower asks for (ratio_, written by the agent loop
  // thread, read by the timer).
  spa_source* drive_timer_ = nullptr;
  int64_t next_cycle_ns_ = 0;                        // thread-loop thread
  std::atomic<spa_io_position*> position_{nullptr};  // the graph position (data thread)
  std::atomic<double> ratio_{1.0};
  std::atomic<uint64_t> cycles_{0};
  std::atomic<uint32_t> quantum_{0};  // frames per cycle, last used
  uint64_t clock_position_ = 0;       // samples since the first cycle (data thread)
  ClockFollower follower_;            // agent loop thread
  bool logged_driving_ = false;
  int64_t last_ratio_log_ns_ = 0;
};

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void PipeWireAgentBackend::on_process(void* data) {
  auto* c = static_cast<StreamCtx*>(data);
  PipeWireAgentBackend* self = c->self;
  pw_stream* s = c->sink ? self->sink_ : self->source_;
  pw_buffer* b = pw_stream_dequeue_buffer(s);
  if (b == nullptr) {
    return;
  }
  spa_data& d = b->buffer->datas[0];
  if (d.data == nullptr) {
    pw_stream_queue_buffer(s, b);
    return;
  }
  if (c->sink) {
    // Driving: this node is the graph's clock, so it keeps the clock that
    // followers time their streams by, as a device driver does: the cycle's
    // start, the sample position, when the next cycle starts, and the
    // production ratio (1.0 = nominal; > 1 = faster, following the audio
    // domain's device). Left at 0, nsec and position give clients
    // (pw_stream_get_time) a clock that never moves.
    spa_io_position* pos = self->position_.load(std::memory_order_relaxed);
    if (pos != nullptr && pw_stream_is_driving(s)) {
      spa_io_clock& c = pos->clock;
      const double ratio = self->ratio_.load(std::memory_order_relaxed);
      const int64_t t = now_ns();
      const uint32_t rate = c.rate.denom != 0 ? c.rate.denom : self->opts_.rate;
      c.nsec = static_cast<uint64_t>(t);
      c.position = self->clock_position_;
      self->clock_position_ += c.duration;
      c.rate_diff = ratio;
      c.delay = 0;
      c.next_nsec = static_cast<uint64_t>(
          t + static_cast<int64_t>(static_cast<double>(c.duration) * 1e9 / rate / ratio));
    }
    uint32_t off = std::min(d.chunk->offset, d.maxsize);
    uint32_t size = std::min(d.chunk->size, d.maxsize - off);
    self->rings_.playback().write({static_cast<std::byte*>(d.data) + off, size});
    self->rings_.notify_playback();
  } else {
    const uint32_t fb = static_cast<uint32_t>(self->capture_format().frame_bytes());
    uint32_t frames = d.maxsize / fb;
    if (b->requested != 0) {
      frames = std::min<uint32_t>(frames, static_cast<uint32_t>(b->requested));
    }
    auto& ring = self->rings_.capture();
    size_t cap = self->capture_format().bytes_for_ms(self->opts_.latency_ms * 4 + 20);
    if (ring.readable() > cap) {
      ring.skip((ring.readable() - cap) / fb * fb);
    }
    size_t bytes = static_cast<size_t>(frames) * fb;
    size_t got = ring.read({static_cast<std::byte*>(d.data), bytes}) / fb * fb;
    std::memset(static_cast<std::byte*>(d.data) + got, 0, bytes - got);
    d.chunk->offset = 0;
    d.chunk->stride = static_cast<int32_t>(fb);
    d.chunk->size = static_cast<uint32_t>(bytes);
  }
  pw_stream_queue_buffer(s, b);
}

void PipeWireAgentBackend::post_state(bool sink, bool streaming) {
  loop_->post([this, sink, streaming] {
    auto& last = sink ? active_ : mic_;
    if (last && *last == streaming) {
      return;
    }
    last = streaming;
    if (sink) {
      listener_->on_output_active(streaming);
    } else {
      listener_->on_mic_in_use(streaming);
    }
  });
}

void PipeWireAgentBackend::on_state(void* data,
                                    pw_stream_state,
                                    pw_stream_state state,
                                    const char* error) {
  auto* c = static_cast<StreamCtx*>(data);
  if (state == PW_STREAM_STATE_ERROR) {
    std::string what = std::string("pipewire stream error: ") + (error ? error : "?");
    c->self->loop_->post([l = c->self->listener_, what] { l->on_backend_error(what); });
    return;
  }
  if (c->sink) {
    c->self->arm_driver(state == PW_STREAM_STATE_STREAMING);
  }
  c->self->post_state(c->sink, state == PW_STREAM_STATE_STREAMING);
}

void PipeWireAgentBackend::on_io_changed(void* data, uint32_t id, void* area, uint32_t size) {
  auto* c = static_cast<StreamCtx*>(data);
  if (c->sink && id == SPA_IO_Position) {
    c->self->position_.store(size >= sizeof(spa_io_position) ? static_cast<spa_io_position*>(area)
                                                             : nullptr);
  }
}

// Thread-loop thread (state changes run there): starts or stops the cycles.
void PipeWireAgentBackend::arm_driver(bool on) {
  if (drive_timer_ == nullptr) {
    return;
  }
  pw_loop* loop = pw_thread_loop_get_loop(tl_);
  if (!on) {
    pw_loop_update_timer(loop, drive_timer_, nullptr, nullptr, false);
    return;
  }
  next_cycle_ns_ = now_ns() + 1'000'000;
  timespec ts{static_cast<time_t>(next_cycle_ns_ / 1'000'000'000),
              static_cast<long>(next_cycle_ns_ % 1'000'000'000)};
  pw_loop_update_timer(loop, drive_timer_, &ts, nullptr, true);
}

// One graph cycle when the sink drives, then the next one a quantum later
// at the followed speed (absolute times, so the period does not drift).
void PipeWireAgentBackend::on_drive(void* data, uint64_t) {
  auto* self = static_cast<PipeWireAgentBackend*>(data);
  if (self->sink_ == nullptr) {
    return;
  }
  const bool driving = pw_stream_is_driving(self->sink_);
  if (driving) {
    pw_stream_trigger_process(self->sink_);
    self->cycles_.fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t frames = static_cast<uint64_t>(self->opts_.rate) * self->opts_.latency_ms / 1000;
  if (spa_io_position* pos = self->position_.load(std::memory_order_relaxed);
      pos != nullptr && pos->clock.duration > 0 && pos->clock.duration <= 8192) {
    frames = pos->clock.duration;  // the graph's quantum
  }
  self->quantum_.store(static_cast<uint32_t>(frames), std::memory_order_relaxed);
  const double ratio = std::clamp(self->ratio_.load(std::memory_order_relaxed), 0.98, 1.02);
  const int64_t period =
      static_cast<int64_t>(static_cast<double>(frames) * 1e9 / self->opts_.rate / ratio);
  const int64_t now = now_ns();
  self->next_cycle_ns_ += period;
  if (self->next_cycle_ns_ < now - 4 * period) {
    self->next_cycle_ns_ = now + period;  // after a stall: do not burst to catch up
  }
  timespec ts{static_cast<time_t>(self->next_cycle_ns_ / 1'000'000'000),
              static_cast<long>(self->next_cycle_ns_ % 1'000'000'000)};
  pw_loop_update_timer(pw_thread_loop_get_loop(self->tl_), self->drive_timer_, &ts, nullptr, true);
}

// Agent loop thread.
void PipeWireAgentBackend::on_clock_tick(uint64_t frames_played, uint64_t, uint32_t rate) {
  follower_.on_tick(frames_played, rate, now_ns());
}

// Agent loop thread. Native: feed-forward from the ticks + PI on the queue.
// Stock (no ticks): a proportional loop on a queue above its level only (our
// daemon takes stock audio at once and rate-matches itself; a stock daemon
// that reads slower fills the channel, which slows us down).
void PipeWireAgentBackend::on_queue(std::chrono::nanoseconds queue,
                                    std::chrono::nanoseconds target,
                                    bool native) {
  const double q = static_cast<double>(queue.count()) * 1e-9;
  const double t = static_cast<double>(target.count()) * 1e-9;
  const int64_t now = now_ns();
  // Stock: proportional only (no integral that could keep a bias once the
  // queue is back), slowing down by 0.2 % per 10 ms above the level, <= 1 %.
  const double r =
      native ? follower_.update(q, t, now) : 1.0 - std::clamp(0.2 * (q - t), 0.0, 0.01);
  ratio_.store(r, std::memory_order_relaxed);
  if (!logged_driving_ && cycles_.load(std::memory_order_relaxed) > 0) {
    logged_driving_ = true;
    log_info("pipewire: Qubes audio drives its graph (%s clock)",
             native ? "following the audio domain's" : "rate-matched");
  }
  if (now - last_ratio_log_ns_ >= 5'000'000'000) {
    last_ratio_log_ns_ = now;
    log_debug(
        "pipewire: driver ratio %.6f (device %.6f%s), queue %.1f ms, target %.1f ms, quantum %u, "
        "position io %s",
        r, follower_.device_ratio(), follower_.locked() ? "" : ", not locked yet", q * 1e3, t * 1e3,
        quantum_.load(std::memory_order_relaxed), position_.load() != nullptr ? "yes" : "no");
  }
}

pw_stream* PipeWireAgentBackend::make_stream(bool sink) {
  const uint32_t channels = sink ? 2 : 1;
  std::string latency =
      std::to_string(opts_.rate * opts_.latency_ms / 1000) + "/" + std::to_string(opts_.rate);
  pw_properties* props = pw_properties_new(
      PW_KEY_MEDIA_TYPE, "Audio", PW_KEY_MEDIA_CLASS, sink ? "Audio/Sink" : "Audio/Source",
      PW_KEY_NODE_NAME, sink ? "qubes_audio" : "qubes_microphone", PW_KEY_NODE_DESCRIPTION,
      sink ? "Qubes audio" : "Qubes microphone", PW_KEY_NODE_VIRTUAL, "true", PW_KEY_NODE_LATENCY,
      latency.c_str(), PW_KEY_APP_NAME, "qubes-audio-agent", SPA_KEY_AUDIO_POSITION,
      sink ? "FL,FR" : "MONO", nullptr);
  if (sink) {
    // A driver, preferred over the Dummy-Driver for the graph of its apps.
    pw_properties_set(props, PW_KEY_PRIORITY_DRIVER, "21000");
  }
  static pw_stream_events events = [] {
    pw_stream_events e{};
    e.version = PW_VERSION_STREAM_EVENTS;
    e.state_changed = on_state;
    e.io_changed = on_io_changed;
    e.process = on_process;
    return e;
  }();
  pw_stream* s = pw_stream_new(core_, sink ? "Qubes audio" : "Qubes microphone", props);
  if (s == nullptr) {
    return nullptr;
  }
  pw_stream_add_listener(s, sink ? &sink_hook_ : &source_hook_, &events,
                         sink ? &sink_ctx_ : &source_ctx_);
  uint8_t buf[1024];
  spa_pod_builder b = SPA_POD_BUILDER_INIT(buf, sizeof(buf));
  spa_audio_info_raw info{};
  info.format = SPA_AUDIO_FORMAT_F32_LE;
  info.rate = opts_.rate;
  info.channels = channels;
  if (sink) {
    info.position[0] = SPA_AUDIO_CHANNEL_FL;
    info.position[1] = SPA_AUDIO_CHANNEL_FR;
  } else {
    info.position[0] = SPA_AUDIO_CHANNEL_MONO;
  }
  const spa_pod* params[1] = {spa_format_audio_raw_build(&b, SPA_PARAM_EnumFormat, &info)};
  int r = pw_stream_connect(
      s, sink ? PW_DIRECTION_INPUT : PW_DIRECTION_OUTPUT, PW_ID_ANY,
      static_cast<pw_stream_flags>(PW_STREAM_FLAG_MAP_BUFFERS | PW_STREAM_FLAG_RT_PROCESS |
                                   (sink ? PW_STREAM_FLAG_DRIVER : 0)),
      params, 1);
  if (r < 0) {
    pw_stream_destroy(s);
    return nullptr;
  }
  return s;
}

// The latency beyond the graph (the agent's queue, the audio domain's buffer
// and device) as the Latency of the sink's input port, direction Input, as
// an ALSA sink reports its device delay: PipeWire adds it to what linked
// ports see (pw-dump shows it as minNs/maxNs). Not ProcessLatency: 0.3.65
// streams do not publish it, and newer adapters would count it twice.
// Updated when it moves by more than 1 ms. Agent loop thread.
void PipeWireAgentBackend::set_remote_latency(std::chrono::nanoseconds latency) {
  const int64_t ns = std::clamp<int64_t>(latency.count(), 0, 10'000'000'000);
  if (tl_ == nullptr || sink_ == nullptr ||
      (reported_ns_ && std::llabs(*reported_ns_ - ns) <= 1'000'000)) {
    return;
  }
  reported_ns_ = ns;
  uint8_t buf[1024];
  spa_pod_builder b = SPA_POD_BUILDER_INIT(buf, sizeof(buf));
  spa_latency_info port = SPA_LATENCY_INFO(SPA_DIRECTION_INPUT);
  port.min_ns = port.max_ns = static_cast<uint64_t>(ns);
  const spa_pod* params[1] = {spa_latency_build(&b, SPA_PARAM_Latency, &port)};
  pw_thread_loop_lock(tl_);
  int r = pw_stream_update_params(sink_, params, 1);
  pw_thread_loop_unlock(tl_);
  if (r < 0) {
    log_warn("pipewire: cannot report the latency (%s)", strerror(-r));
  } else {
    log_debug("pipewire: Qubes audio reports %.1f ms beyond the graph",
              static_cast<double>(ns) / 1e6);
  }
}

Result<void> PipeWireAgentBackend::start(EventLoop& loop, Listener& listener) {
  loop_ = &loop;
  listener_ = &listener;
  pw_init(nullptr, nullptr);
  tl_ = pw_thread_loop_new("qaudio-agent-pw", nullptr);
  if (tl_ == nullptr) {
    return fail("pipewire: cannot create a thread loop");
  }
  ctx_ = pw_context_new(pw_thread_loop_get_loop(tl_), nullptr, 0);
  if (ctx_ == nullptr || pw_thread_loop_start(tl_) < 0) {
    stop();
    return fail("pipewire: cannot create a context");
  }
  pw_thread_loop_lock(tl_);
  core_ = pw_context_connect(ctx_, nullptr, 0);
  if (core_ == nullptr) {
    int err = errno;
    pw_thread_loop_unlock(tl_);
    stop();
    return fail_errno("pipewire: cannot connect to the PipeWire daemon (is it running?)", err);
  }
  drive_timer_ = pw_loop_add_timer(pw_thread_loop_get_loop(tl_), on_drive, this);
  sink_ = make_stream(true);
  source_ = make_stream(false);
  pw_thread_loop_unlock(tl_);
  if (sink_ == nullptr || source_ == nullptr) {
    stop();
    return fail("pipewire: cannot create the Qubes audio nodes");
  }
  log_info("pipewire: \"Qubes audio\" (qubes_audio) and \"Qubes microphone\" (qubes_microphone)");
  return {};
}

void PipeWireAgentBackend::stop() {
  if (tl_ == nullptr) {
    return;
  }
  pw_thread_loop_lock(tl_);
  if (drive_timer_ != nullptr) {
    pw_loop_destroy_source(pw_thread_loop_get_loop(tl_), drive_timer_);
    drive_timer_ = nullptr;
  }
  position_.store(nullptr);
  for (pw_stream** s : {&sink_, &source_}) {
    if (*s != nullptr) {
      pw_stream_destroy(*s);
      *s = nullptr;
    }
  }
  if (core_ != nullptr) {
    pw_core_disconnect(core_);
    core_ = nullptr;
  }
  pw_thread_loop_unlock(tl_);
  pw_thread_loop_stop(tl_);
  if (ctx_ != nullptr) {
    pw_context_destroy(ctx_);
    ctx_ = nullptr;
  }
  pw_thread_loop_destroy(tl_);
  tl_ = nullptr;
}

}  // namespace

std::unique_ptr<AgentBackend> make_pipewire_agent_backend(const PipeWireAgentOptions& opts) {
  return std::make_unique<PipeWireAgentBackend>(opts);
}

}  // namespace qaudio::agent
