// PipeWireAgentBackend: two pw_streams as virtual sink/source nodes (see header).
#include "pipewire_agent_backend.hpp"

#include <pipewire/pipewire.h>
#include <spa/param/audio/format-utils.h>
#include <spa/param/latency-utils.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>

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
  std::string describe() const override { return "pipewire"; }

 private:
  struct StreamCtx {
    PipeWireAgentBackend* self;
    bool sink;
  };
  pw_stream* make_stream(bool sink);
  static void on_process(void* data);
  static void on_state(void* data, pw_stream_state old, pw_stream_state state, const char* error);
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
};

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
  c->self->post_state(c->sink, state == PW_STREAM_STATE_STREAMING);
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
  static pw_stream_events events = [] {
    pw_stream_events e{};
    e.version = PW_VERSION_STREAM_EVENTS;
    e.state_changed = on_state;
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
      static_cast<pw_stream_flags>(PW_STREAM_FLAG_MAP_BUFFERS | PW_STREAM_FLAG_RT_PROCESS), params,
      1);
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
