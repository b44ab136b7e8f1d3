// PipeWire backend: one pw_stream per qube (see pipewire_backend.hpp).
#include "pipewire_backend.hpp"

#include <pipewire/extensions/metadata.h>
#include <pipewire/pipewire.h>
#include <spa/param/audio/format-utils.h>
#include <spa/utils/result.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "qaudio/log.hpp"
#include "rt_check.hpp"

namespace qaudio::daemon {
namespace {

class PipeWireBackend;

struct PwStream {
  PipeWireBackend* owner = nullptr;
  StreamHandle handle = 0;
  StreamInfo info;
  bool capture = false;
  PlaybackSource* source = nullptr;
  CaptureSink* sink = nullptr;
  pw_stream* stream = nullptr;
  spa_hook listener{};
  std::atomic<bool> live{false};  // the process callback may touch source/sink
  bool failed = false;            // went to the error state; recreated from the timer
  bool use_default = false;       // the chosen device failed: fall back until set_device
  uint32_t channels = 2;
  uint64_t frames = 0;  // data-loop only
};

struct Node {
  std::string name;
  std::string description;
  bool is_output = true;
};

const char* dict_get(const spa_dict* props, const char* key) {
  return props != nullptr ? spa_dict_lookup(props, key) : nullptr;
}

// `{"name":"alsa_output..."}` -> the name (the metadata's default.* values).
std::string json_name(const char* value) {
  if (value == nullptr) {
    return {};
  }
  std::string v = value;
  auto k = v.find("\"name\"");
  if (k == std::string::npos) {
    return {};
  }
  auto open = v.find('"', v.find(':', k));
  if (open == std::string::npos) {
    return {};
  }
  auto close = v.find('"', open + 1);
  return close == std::string::npos ? std::string{} : v.substr(open + 1, close - open - 1);
}

void fill_positions(spa_audio_info_raw& info) {
  static constexpr uint32_t kLayouts[8][8] = {
      {SPA_AUDIO_CHANNEL_MONO},
      {SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR},
      {SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC},
      {SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_RL, SPA_AUDIO_CHANNEL_RR},
      {SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC, SPA_AUDIO_CHANNEL_RL,
       SPA_AUDIO_CHANNEL_RR},
      {SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC, SPA_AUDIO_CHANNEL_LFE,
       SPA_AUDIO_CHANNEL_RL, SPA_AUDIO_CHANNEL_RR},
      {SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC, SPA_AUDIO_CHANNEL_LFE,
       SPA_AUDIO_CHANNEL_RC, SPA_AUDIO_CHANNEL_SL, SPA_AUDIO_CHANNEL_SR},
      {SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC, SPA_AUDIO_CHANNEL_LFE,
       SPA_AUDIO_CHANNEL_RL, SPA_AUDIO_CHANNEL_RR, SPA_AUDIO_CHANNEL_SL, SPA_AUDIO_CHANNEL_SR},
  };
  for (uint32_t i = 0; i < info.channels; ++i) {
    info.position[i] = kLayouts[info.channels - 1][i];
  }
}

class PipeWireBackend final : public Backend {
 public:
  PipeWireBackend(std::string remote, const BackendOptions& options, BackendEventFn events)
      : remote_(std::move(remote)), options_(options), events_(std::move(events)) {}
  ~PipeWireBackend() override { stop(); }

  std::string name() const override { return "pipewire"; }
  DeviceFormat format() const override { return options_.format; }
  bool connected() const override { return connected_.load(std::memory_order_acquire); }

  Result<void> start() override;
  void stop() override;
  Result<StreamHandle> add_playback(const StreamInfo& info, PlaybackSource* source) override {
    if (source == nullptr) {
      return fail("pipewire: add_playback for qube '" + info.qube + "' without a source");
    }
    return add_stream(info, source, nullptr);
  }
  Result<StreamHandle> add_capture(const StreamInfo& info, CaptureSink* sink) override {
    if (sink == nullptr) {
      return fail("pipewire: add_capture for qube '" + info.qube + "' without a sink");
    }
    return add_stream(info, nullptr, sink);
  }
  void remove_playback(StreamHandle h) override { remove_stream(h); }
  void remove_capture(StreamHandle h) override { remove_stream(h); }
  std::vector<DeviceInfo> devices() override;
  Result<void> set_device(StreamHandle h, const std::string& device) override;

 private:
  class Lock {
   public:
    explicit Lock(pw_thread_loop* tl) : tl_(tl) {
      if (tl_ != nullptr) {
        pw_thread_loop_lock(tl_);  // recursive
      }
    }
    ~Lock() {
      if (tl_ != nullptr) {
        pw_thread_loop_unlock(tl_);
      }
    }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

   private:
    pw_thread_loop* tl_;
  };

  void emit(BackendEvent::Kind kind, std::string detail) {
    if (events_) {
      events_(BackendEvent{kind, std::move(detail)});
    }
  }
  std::string remote_label() const { return remote_.empty() ? "default PipeWire" : remote_; }
  pw_loop* loop() { return pw_thread_loop_get_loop(tl_); }

  Result<StreamHandle> add_stream(const StreamInfo& info,
                                  PlaybackSource* source,
                                  CaptureSink* sink);
  void remove_stream(StreamHandle h);
  void connect_locked();
  void disconnect_locked();
  void lost_locked(const std::string& why);
  void arm_timer_locked(std::chrono::nanoseconds delay);
  bool create_stream_locked(PwStream& s);
  void destroy_stream_locked(PwStream& s);
  void on_timer();

  static void on_core_done(void* data, uint32_t id, int seq);
  static void on_core_error(void* data, uint32_t id, int seq, int res, const char* message);
  static void on_global(void* data,
                        uint32_t id,
                        uint32_t permissions,
                        const char* type,
                        uint32_t version,
                        const spa_dict* props);
  static void on_global_remove(void* data, uint32_t id);
  static int on_metadata_property(void* data,
                                  uint32_t subject,
                                  const char* key,
                                  const char* type,
                                  const char* value);
  static void on_stream_state(void* data,
                              pw_stream_state old,
                              pw_stream_state state,
                              const char* error);
  static void on_process(void* data);

  static const pw_core_events kCoreEvents;
  static const pw_registry_events kRegistryEvents;
  static const pw_metadata_events kMetadataEvents;
  static const pw_stream_events kStreamEvents;

  const std::string remote_;
  const BackendOptions options_;
  const BackendEventFn events_;

  pw_thread_loop* tl_ = nullptr;
  pw_context* context_ = nullptr;
  spa_source* timer_ = nullptr;
  pw_core* core_ = nullptr;
  spa_hook core_listener_{};
  pw_registry* registry_ = nullptr;
  spa_hook registry_listener_{};
  pw_metadata* metadata_ = nullptr;
  uint32_t metadata_id_ = SPA_ID_INVALID;
  spa_hook metadata_listener_{};
  int sync_seq_ = -1;
  bool stopping_ = false;
  bool lost_ = false;  // ServerLost reported, ServerBack not yet
  std::atomic<bool> connected_{false};
  StreamHandle next_handle_ = 1;
  std::map<StreamHandle, std::unique_ptr<PwStream>> streams_;
  std::map<uint32_t, Node> nodes_;
  std::string default_sink_, default_source_;
};

const pw_core_events PipeWireBackend::kCoreEvents = [] {
  pw_core_events e{};
  e.version = PW_VERSION_CORE_EVENTS;
  e.done = &PipeWireBackend::on_core_done;
  e.error = &PipeWireBackend::on_core_error;
  return e;
}();
const pw_registry_events PipeWireBackend::kRegistryEvents = [] {
  pw_registry_events e{};
  e.version = PW_VERSION_REGISTRY_EVENTS;
  e.global = &PipeWireBackend::on_global;
  e.global_remove = &PipeWireBackend::on_global_remove;
  return e;
}();
const pw_metadata_events PipeWireBackend::kMetadataEvents = [] {
  pw_metadata_events e{};
  e.version = PW_VERSION_METADATA_EVENTS;
  e.property = &PipeWireBackend::on_metadata_property;
  return e;
}();
const pw_stream_events PipeWireBackend::kStreamEvents = [] {
  pw_stream_events e{};
  e.version = PW_VERSION_STREAM_EVENTS;
  e.state_changed = &PipeWireBackend::on_stream_state;
  e.process = &PipeWireBackend::on_process;
  return e;
}();

Result<void> PipeWireBackend::start() {
  if (tl_ != nullptr) {
    return {};
  }
  const DeviceFormat f = options_.format;
  if (f.channels < 1 || f.channels > 8 || f.rate < 8000 || f.rate > 384000) {
    return fail("pipewire: unsupported device format " + std::to_string(f.rate) + " Hz " +
                std::to_string(f.channels) + " ch");
  }
  static std::once_flag init_once;
  std::call_once(init_once, [] { pw_init(nullptr, nullptr); });
  tl_ = pw_thread_loop_new("qaudio-pw", nullptr);
  if (tl_ == nullptr) {
    return fail_errno("pipewire: cannot create the thread loop");
  }
  context_ = pw_context_new(loop(),
                            pw_properties_new(PW_KEY_CONFIG_NAME, "client-rt.conf", PW_KEY_APP_NAME,
                                              "qaudio audiovm-daemon", nullptr),
                            0);
  if (context_ == nullptr) {
    int err = errno;
    pw_thread_loop_destroy(tl_);
    tl_ = nullptr;
    return fail_errno("pipewire: cannot create a context", err);
  }
  timer_ = pw_loop_add_timer(
      loop(), [](void* data, uint64_t) { static_cast<PipeWireBackend*>(data)->on_timer(); }, this);
  stopping_ = false;
  {
    Lock lock(tl_);
    connect_locked();
  }
  if (pw_thread_loop_start(tl_) < 0) {
    stop();
    return fail("pipewire: cannot start the thread loop");
  }
  return {};
}

void PipeWireBackend::stop() {
  if (tl_ == nullptr) {
    return;
  }
  {
    Lock lock(tl_);
    stopping_ = true;
    disconnect_locked();
  }
  pw_thread_loop_stop(tl_);
  if (timer_ != nullptr) {
    pw_loop_destroy_source(loop(), timer_);
    timer_ = nullptr;
  }
  pw_context_destroy(context_);
  context_ = nullptr;
  pw_thread_loop_destroy(tl_);
  tl_ = nullptr;
}

void PipeWireBackend::connect_locked() {
  pw_properties* props = nullptr;
  if (!remote_.empty()) {
    props = pw_properties_new(PW_KEY_REMOTE_NAME, remote_.c_str(), nullptr);
  }
  core_ = pw_context_connect(context_, props, 0);
  if (core_ == nullptr) {
    lost_locked(std::string("cannot connect: ") + std::strerror(errno));
    return;
  }
  pw_core_add_listener(core_, &core_listener_, &kCoreEvents, this);
  registry_ = pw_core_get_registry(core_, PW_VERSION_REGISTRY, 0);
  pw_registry_add_listener(registry_, &registry_listener_, &kRegistryEvents, this);
  for (auto& [h, s] : streams_) {
    create_stream_locked(*s);
  }
  // ServerBack / connected once the server has answered everything above.
  sync_seq_ = pw_core_sync(core_, PW_ID_CORE, 0);
}

void PipeWireBackend::disconnect_locked() {
  connected_ = false;
  for (auto& [h, s] : streams_) {
    destroy_stream_locked(*s);
  }
  if (metadata_ != nullptr) {
    spa_hook_remove(&metadata_listener_);
    pw_proxy_destroy(reinterpret_cast<pw_proxy*>(metadata_));
    metadata_ = nullptr;
    metadata_id_ = SPA_ID_INVALID;
  }
  if (registry_ != nullptr) {
    spa_hook_remove(&registry_listener_);
    pw_proxy_destroy(reinterpret_cast<pw_proxy*>(registry_));
    registry_ = nullptr;
  }
  if (core_ != nullptr) {
    spa_hook_remove(&core_listener_);
    pw_core_disconnect(core_);
    core_ = nullptr;
  }
  nodes_.clear();
  default_sink_.clear();
  default_source_.clear();
}

// PipeWire went away (or never answered): keep the registered sources,
// tear down from the timer (not inside the core's own callback), retry.
void PipeWireBackend::lost_locked(const std::string& why) {
  connected_ = false;
  if (!lost_) {
    lost_ = true;
    log_warn("pipewire: lost %s: %s; retrying every %lld ms", remote_label().c_str(), why.c_str(),
             static_cast<long long>(options_.reconnect_interval.count()));
    emit(BackendEvent::Kind::ServerLost, remote_label() + ": " + why);
  }
  arm_timer_locked(core_ != nullptr ? std::chrono::nanoseconds(1)
                                    : std::chrono::nanoseconds(options_.reconnect_interval));
}

void PipeWireBackend::arm_timer_locked(std::chrono::nanoseconds delay) {
  if (timer_ == nullptr || stopping_) {
    return;
  }
  timespec value{};
  value.tv_sec = static_cast<time_t>(delay.count() / 1000000000);
  value.tv_nsec = static_cast<long>(std::max<int64_t>(delay.count() % 1000000000, 1));
  pw_loop_update_timer(loop(), timer_, &value, nullptr, false);
}

void PipeWireBackend::on_timer() {
  if (stopping_) {
    return;
  }
  if (lost_) {
    if (core_ != nullptr) {
      disconnect_locked();  // the dead connection; retry after the interval
      arm_timer_locked(options_.reconnect_interval);
      return;
    }
    connect_locked();
    return;
  }
  // Connected: recreate streams that failed while the server stayed up.
  for (auto& [h, s] : streams_) {
    if (s->failed) {
      emit(BackendEvent::Kind::Error, "stream for qube " + s->info.qube + " failed; recreated");
      if (!s->info.device.empty()) {
        s->use_default = true;
      }
      destroy_stream_locked(*s);
      create_stream_locked(*s);
    }
  }
}

bool PipeWireBackend::create_stream_locked(PwStream& s) {
  if (core_ == nullptr) {
    return false;
  }
  const DeviceFormat f = options_.format;
  // The quantum asked for: the period, or half a stream's own buffer when it
  // asked for a smaller one (native sessions).
  auto period_ms = options_.period;
  if (s.info.buffer.count() > 0) {
    period_ms = std::min(period_ms, std::max(s.info.buffer / 2, std::chrono::milliseconds(1)));
  }
  const uint32_t period_frames = std::max<uint32_t>(
      1, static_cast<uint32_t>(static_cast<uint64_t>(f.rate) * period_ms.count() / 1000));
  const std::string latency = std::to_string(period_frames) + "/" + std::to_string(f.rate);
  const std::string node_name = "qaudio." + s.info.qube;
  const std::string media =
      s.capture ? "Microphone for " + s.info.qube : "Playback from " + s.info.qube;
  pw_properties* props = pw_properties_new(
      PW_KEY_MEDIA_TYPE, "Audio", PW_KEY_MEDIA_CATEGORY, s.capture ? "Capture" : "Playback",
      PW_KEY_MEDIA_ROLE, s.capture ? "Communication" : "Music", PW_KEY_MEDIA_NAME, media.c_str(),
      PW_KEY_APP_NAME, s.info.qube.c_str(), PW_KEY_APP_ID, node_name.c_str(), PW_KEY_APP_ICON_NAME,
      s.info.label_color.empty() || s.info.label_color[0] == '#'
          ? "audio-card"
          : ("appvm-" + s.info.label_color).c_str(),
      PW_KEY_NODE_NAME, node_name.c_str(), PW_KEY_NODE_DESCRIPTION, s.info.qube.c_str(),
      PW_KEY_NODE_LATENCY, latency.c_str(), "qaudio.qube", s.info.qube.c_str(),
      "qaudio.label.color", s.info.label_color.c_str(), nullptr);
  if (!s.info.device.empty() && !s.use_default) {
    pw_properties_set(props, PW_KEY_TARGET_OBJECT, s.info.device.c_str());
    if (s.capture) {
      // Recording from an output device means its monitor.
      for (const auto& [id, node] : nodes_) {
        if (node.name == s.info.device && node.is_output) {
          pw_properties_set(props, PW_KEY_STREAM_CAPTURE_SINK, "true");
        }
      }
    }
  }
  s.stream = pw_stream_new(core_, media.c_str(), props);  // takes props
  if (s.stream == nullptr) {
    log_warn("pipewire: cannot create a stream for qube %s: %s", s.info.qube.c_str(),
             std::strerror(errno));
    return false;
  }
  s.failed = false;
  s.frames = 0;
  s.live.store(true, std::memory_order_release);
  pw_stream_add_listener(s.stream, &s.listener, &kStreamEvents, &s);

  uint8_t pod_buf[1024];
  spa_pod_builder b{};
  spa_pod_builder_init(&b, pod_buf, sizeof(pod_buf));
  spa_audio_info_raw info{};
  info.format = SPA_AUDIO_FORMAT_F32;
  info.rate = f.rate;
  info.channels = f.channels;
  fill_positions(info);
  const spa_pod* params[1] = {spa_format_audio_raw_build(&b, SPA_PARAM_EnumFormat, &info)};
  const auto flags = static_cast<pw_stream_flags>(
      PW_STREAM_FLAG_AUTOCONNECT | PW_STREAM_FLAG_MAP_BUFFERS | PW_STREAM_FLAG_RT_PROCESS);
  int rc = pw_stream_connect(s.stream, s.capture ? PW_DIRECTION_INPUT : PW_DIRECTION_OUTPUT,
                             PW_ID_ANY, flags, params, 1);
  if (rc < 0) {
    log_warn("pipewire: cannot connect the stream for qube %s: %s", s.info.qube.c_str(),
             spa_strerror(rc));
    destroy_stream_locked(s);
    return false;
  }
  return true;
}

void PipeWireBackend::destroy_stream_locked(PwStream& s) {
  if (s.stream == nullptr) {
    return;
  }
  // The process callback runs on the data loop, outside our lock: mark the
  // stream dead, then let one (blocking) invoke on the data loop finish any
  // cycle in flight; after that the callback returns before touching the
  // source, and pw_stream_destroy() detaches the node and our listener.
  s.live.store(false, std::memory_order_release);
  pw_data_loop_invoke(
      pw_context_get_data_loop(context_),
      [](spa_loop*, bool, uint32_t, const void*, size_t, void*) { return 0; }, 0, nullptr, 0, true,
      nullptr);
  pw_stream_destroy(s.stream);
  s.stream = nullptr;
}

void PipeWireBackend::on_core_done(void* data, uint32_t id, int seq) {
  auto* self = static_cast<PipeWireBackend*>(data);
  if (id != PW_ID_CORE || seq != self->sync_seq_ || self->stopping_) {
    return;
  }
  self->connected_ = true;
  if (self->lost_) {
    self->lost_ = false;
    log_info("pipewire: connected to %s", self->remote_label().c_str());
    self->emit(BackendEvent::Kind::ServerBack, self->remote_label());
  }
}

void PipeWireBackend::on_core_error(void* data, uint32_t id, int, int res, const char* message) {
  auto* self = static_cast<PipeWireBackend*>(data);
  if (self->stopping_) {
    return;
  }
  if (id == PW_ID_CORE && res == -EPIPE) {
    self->lost_locked(message != nullptr ? message : "connection closed");
  } else {
    log_warn("pipewire: error on object %u: %s (%s)", id, message ? message : "?",
             spa_strerror(res));
  }
}

void PipeWireBackend::on_global(void* data,
                                uint32_t id,
                                uint32_t,
                                const char* type,
                                uint32_t,
                                const spa_dict* props) {
  auto* self = static_cast<PipeWireBackend*>(data);
  if (std::strcmp(type, PW_TYPE_INTERFACE_Node) == 0) {
    const char* cls = dict_get(props, PW_KEY_MEDIA_CLASS);
    const char* name = dict_get(props, PW_KEY_NODE_NAME);
    if (cls == nullptr || name == nullptr) {
      return;
    }
    const bool sink = std::strncmp(cls, "Audio/Sink", 10) == 0;
    const bool source = std::strncmp(cls, "Audio/Source", 12) == 0;
    if (!sink && !source) {
      return;
    }
    const char* desc = dict_get(props, PW_KEY_NODE_DESCRIPTION);
    self->nodes_[id] = Node{name, desc ? desc : name, sink};
    if (self->connected_) {
      self->emit(BackendEvent::Kind::DeviceAdded, name);
    }
  } else if (std::strcmp(type, PW_TYPE_INTERFACE_Metadata) == 0 && self->metadata_ == nullptr) {
    const char* mname = dict_get(props, PW_KEY_METADATA_NAME);
    if (mname == nullptr || std::strcmp(mname, "default") != 0) {
      return;
    }
    self->metadata_ = static_cast<pw_metadata*>(
        pw_registry_bind(self->registry_, id, PW_TYPE_INTERFACE_Metadata, PW_VERSION_METADATA, 0));
    if (self->metadata_ != nullptr) {
      self->metadata_id_ = id;
      pw_metadata_add_listener(self->metadata_, &self->metadata_listener_, &kMetadataEvents, self);
    }
  }
}

void PipeWireBackend::on_global_remove(void* data, uint32_t id) {
  auto* self = static_cast<PipeWireBackend*>(data);
  auto it = self->nodes_.find(id);
  if (it != self->nodes_.end()) {
    self->emit(BackendEvent::Kind::DeviceRemoved, it->second.name);
    self->nodes_.erase(it);
  }
  if (id == self->metadata_id_ && self->metadata_ != nullptr) {
    spa_hook_remove(&self->metadata_listener_);
    pw_proxy_destroy(reinterpret_cast<pw_proxy*>(self->metadata_));
    self->metadata_ = nullptr;
    self->metadata_id_ = SPA_ID_INVALID;
  }
}

int PipeWireBackend::on_metadata_property(void* data,
                                          uint32_t subject,
                                          const char* key,
                                          const char*,
                                          const char* value) {
  auto* self = static_cast<PipeWireBackend*>(data);
  if (subject != PW_ID_CORE) {
    return 0;
  }
  if (key == nullptr) {  // all properties cleared
    self->default_sink_.clear();
    self->default_source_.clear();
  } else if (std::strcmp(key, "default.audio.sink") == 0) {
    self->default_sink_ = json_name(value);
  } else if (std::strcmp(key, "default.audio.source") == 0) {
    self->default_source_ = json_name(value);
  }
  return 0;
}

void PipeWireBackend::on_stream_state(void* data,
                                      pw_stream_state,
                                      pw_stream_state state,
                                      const char* error) {
  auto& s = *static_cast<PwStream*>(data);
  if (state != PW_STREAM_STATE_ERROR || s.owner->stopping_) {
    return;
  }
  log_warn("pipewire: stream for qube %s: %s", s.info.qube.c_str(), error ? error : "error");
  s.failed = true;
  // Decide on the timer: if the whole server is gone, the core error comes
  // first and the stream is recreated on reconnection instead.
  s.owner->arm_timer_locked(s.owner->options_.reconnect_interval);
}

// Real-time side (PipeWire's data loop): no allocation, locks or logging.
void PipeWireBackend::on_process(void* data) {
  auto& s = *static_cast<PwStream*>(data);
  if (!s.live.load(std::memory_order_acquire)) {
    return;
  }
  RtScope rt;  // debug builds abort if a source or sink allocates
  pw_buffer* b = pw_stream_dequeue_buffer(s.stream);
  if (b == nullptr) {
    return;
  }
  spa_data& d = b->buffer->datas[0];
  const uint32_t stride = s.channels * sizeof(float);
  PeriodTiming t;
  t.device_frames = s.frames;
  pw_time pt{};
  if (pw_stream_get_time_n(s.stream, &pt, sizeof(pt)) == 0 && pt.rate.denom != 0 && pt.delay > 0) {
    t.device_latency_us = static_cast<uint32_t>(
        std::min<int64_t>(pt.delay * 1000000 * pt.rate.num / pt.rate.denom, UINT32_MAX));
  }
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  t.device_time_ns = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec +
                     static_cast<int64_t>(t.device_latency_us) * 1000;
  if (d.data != nullptr && d.chunk != nullptr) {
    if (!s.capture) {
      uint32_t frames = d.maxsize / stride;
      if (b->requested != 0) {
        frames = static_cast<uint32_t>(std::min<uint64_t>(b->requested, frames));
      }
      s.source->pull(std::span<float>(static_cast<float*>(d.data), size_t{frames} * s.channels),
                     frames, t);
      d.chunk->offset = 0;
      d.chunk->stride = static_cast<int32_t>(stride);
      d.chunk->size = frames * stride;
      s.frames += frames;
    } else {
      const uint32_t offset = std::min(d.chunk->offset, d.maxsize);
      const uint32_t size = std::min(d.chunk->size, d.maxsize - offset);
      const uint32_t frames = size / stride;
      if (frames > 0 && offset % sizeof(float) == 0) {
        const auto* in =
            reinterpret_cast<const float*>(static_cast<const uint8_t*>(d.data) + offset);
        s.sink->push(std::span<const float>(in, size_t{frames} * s.channels), frames, t);
      }
      s.frames += frames;
    }
  }
  pw_stream_queue_buffer(s.stream, b);
}

Result<StreamHandle> PipeWireBackend::add_stream(const StreamInfo& info,
                                                 PlaybackSource* source,
                                                 CaptureSink* sink) {
  auto s = std::make_unique<PwStream>();
  s->owner = this;
  s->info = info;
  s->capture = sink != nullptr;
  s->source = source;
  s->sink = sink;
  s->channels = options_.format.channels;
  Lock lock(tl_);
  const StreamHandle h = next_handle_++;
  s->handle = h;
  PwStream& ref = *s;
  streams_.emplace(h, std::move(s));
  if (core_ != nullptr && !lost_ && !create_stream_locked(ref)) {
    streams_.erase(h);
    return fail("pipewire: cannot create a stream for qube '" + info.qube + "'");
  }
  return h;
}

void PipeWireBackend::remove_stream(StreamHandle h) {
  Lock lock(tl_);
  auto it = streams_.find(h);
  if (it == streams_.end()) {
    return;
  }
  destroy_stream_locked(*it->second);
  streams_.erase(it);
}

std::vector<DeviceInfo> PipeWireBackend::devices() {
  Lock lock(tl_);
  std::vector<DeviceInfo> out;
  for (const auto& [id, n] : nodes_) {
    const bool def = n.name == (n.is_output ? default_sink_ : default_source_);
    out.push_back({n.name, n.description, n.is_output, def});
  }
  return out;
}

Result<void> PipeWireBackend::set_device(StreamHandle h, const std::string& device) {
  Lock lock(tl_);
  auto it = streams_.find(h);
  if (it == streams_.end()) {
    return fail("pipewire: set_device: no stream with handle " + std::to_string(h));
  }
  PwStream& s = *it->second;
  if (!device.empty() && connected_) {
    bool known = std::any_of(nodes_.begin(), nodes_.end(),
                             [&](const auto& n) { return n.second.name == device; });
    if (!known) {
      return fail("pipewire: no device named '" + device + "' (see devices())");
    }
  }
  s.info.device = device;
  s.use_default = false;
  if (core_ != nullptr && !lost_) {
    // Reconnect with the new target.object: WirePlumber links it there.
    destroy_stream_locked(s);
    if (!create_stream_locked(s)) {
      return fail("pipewire: cannot recreate the stream for qube '" + s.info.qube + "'");
    }
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Backend>> make_pipewire_backend(std::string_view arg,
                                                       const BackendOptions& options,
                                                       BackendEventFn events) {
  return std::unique_ptr<Backend>(
      std::make_unique<PipeWireBackend>(std::string(arg), options, std::move(events)));
}

}  // namespace qaudio::daemon
