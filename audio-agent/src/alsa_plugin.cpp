// libasound_module_pcm_qubes.so: an ALSA ioplug PCM "qubes" for apps and
// minimal qubes without a sound server. The plugin runs the agent core
// (AgentSession) in-process on its own thread while the PCM is open, and
// paces the app by the monotonic clock (period-sized timerfd wake-ups), so
// it plays in real time whether or not the audio domain is connected.
//
// Options (all optional but audiovm_domid, which otherwise comes from QubesDB):
//   channel "xen" | "unix:DIR" | "shm:DIR"   (default "xen")
//   domid N            this qube's id (default 0)
//   audiovm_domid M    the audio domain's id
//   protocol "auto" | "stock" | "native"     (default "auto")
//   latency_ms N       agent latency target (default 10)
//
//   pcm.qubes { type qubes channel "unix:/run/qaudio" domid 5 audiovm_domid 1 }
//   aplay -D qubes tone.wav ; arecord -D qubes -f S16_LE -r 44100 -c 2 mic.wav
//
// Formats: S16_LE, S32_LE, FLOAT_LE; 44100/48000/96000 Hz; 1-8 channels (the
// native wire formats; wrap in `plug` for others). One PCM per process and
// per qube at a time: the plugin serves the qube's vchan ports itself.
#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>
#include <poll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "agent_session.hpp"
#include "domain_watcher.hpp"
#include "qaudio/log.hpp"

namespace qaudio::agent {
namespace {

using Clock = std::chrono::steady_clock;

// The backend the session sees: rings filled/drained by the ioplug callbacks.
class PluginBackend final : public AgentBackend {
 public:
  explicit PluginBackend(StreamFormat f) : fmt_(f), rings_(1 << 19, 1 << 19) {}
  Result<void> start(EventLoop& loop, Listener& l) override {
    loop_ = &loop;
    listener_ = &l;
    return {};
  }
  void stop() override {}
  StreamFormat playback_format() const override { return fmt_; }
  StreamFormat capture_format() const override { return fmt_; }
  BackendRings& rings() override { return rings_; }
  std::string describe() const override { return "alsa plugin"; }

  // From the app's thread: the PCM started/stopped.
  void set_running(bool playback, bool running) {
    loop_->post([this, playback, running] {
      if (playback) {
        listener_->on_output_active(running);
      } else {
        listener_->on_mic_in_use(running);
      }
    });
  }

 private:
  StreamFormat fmt_;
  BackendRings rings_;
  EventLoop* loop_ = nullptr;
  Listener* listener_ = nullptr;
};

struct QubesPcm {
  snd_pcm_ioplug_t io{};
  std::string channel = "xen";
  uint32_t domid = 0;
  std::optional<uint32_t> audiovm;
  ProtocolMode protocol = ProtocolMode::Auto;
  uint32_t latency_ms = 10;

  int timer_fd = -1;
  StreamFormat fmt{};
  size_t frame_bytes = 0;
  // Clock pacing: hw position = base + frames elapsed since t0.
  Clock::time_point t0{};
  uint64_t base = 0;
  uint64_t hw = 0;
  uint64_t written = 0;  // playback frames handed to the ring
  bool running = false;

  std::unique_ptr<PluginBackend> backend;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<AgentSession> session;
  std::thread thread;

  bool playback() const { return io.stream == SND_PCM_STREAM_PLAYBACK; }
};

void stop_session(QubesPcm* q) {
  if (!q->session) {
    return;
  }
  q->loop->post([q] {
    q->session->stop();
    q->loop->quit();
  });
  q->thread.join();
  q->session.reset();
  q->loop.reset();
  q->backend.reset();
}

int start_session(QubesPcm* q) {
  if (q->session && q->backend->playback_format() == q->fmt) {
    return 0;
  }
  stop_session(q);
  auto t = make_transport(q->channel);
  if (!t) {
    SNDERR("qubes: %s", t.error().message.c_str());
    return -EINVAL;
  }
  AgentOptions o;
  o.domid = q->domid;
  o.audiovm_domid = *q->audiovm;
  o.protocol = q->protocol;
  o.latency_ms = q->latency_ms;
  // The app may write a whole ALSA buffer ahead of the clock.
  o.max_queue_ms = 400;
  q->backend = std::make_unique<PluginBackend>(q->fmt);
  q->loop = std::make_unique<EventLoop>();
  q->session = std::make_unique<AgentSession>(*q->loop, *q->backend, std::move(*t), o);
  std::atomic<int> result{1};
  q->loop->post([q, &result] {
    auto r = q->session->start();
    if (!r) {
      SNDERR("qubes: %s", r.error().message.c_str());
    }
    result = r ? 0 : -EIO;
  });
  q->thread = std::thread([q] { q->loop->run(); });
  while (result.load() == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // start() is quick
  }
  if (result.load() != 0) {
    stop_session(q);
    return -EIO;
  }
  return 0;
}

uint64_t clock_frames(QubesPcm* q) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - q->t0).count();
  return q->base + static_cast<uint64_t>(static_cast<__int128>(ns) * q->fmt.rate / 1000000000);
}

void arm_timer(QubesPcm* q, bool on) {
  itimerspec its{};
  if (on) {
    uint64_t ns = static_cast<uint64_t>(q->io.period_size) * 1000000000ull / q->fmt.rate;
    its.it_interval.tv_sec = static_cast<time_t>(ns / 1000000000ull);
    its.it_interval.tv_nsec = static_cast<long>(ns % 1000000000ull);
    its.it_value = its.it_interval;
  }
  timerfd_settime(q->timer_fd, 0, &its, nullptr);
}

int cb_start(snd_pcm_ioplug_t* io) {
  auto* q = static_cast<QubesPcm*>(io->private_data);
  q->t0 = Clock::now();
  q->base = q->hw;
  q->running = true;
  arm_timer(q, true);
  q->backend->set_running(q->playback(), true);
  return 0;
}

int cb_stop(snd_pcm_ioplug_t* io) {
  auto* q = static_cast<QubesPcm*>(io->private_data);
  q->running = false;
  arm_timer(q, false);
  if (q->backend) {
    q->backend->set_running(q->playback(), false);
  }
  return 0;
}

snd_pcm_sframes_t cb_pointer(snd_pcm_ioplug_t* io) {
  auto* q = static_cast<QubesPcm*>(io->private_data);
  if (q->running) {
    uint64_t c = clock_frames(q);
    if (q->playback() && c > q->written) {
      // Underrun: the app fell behind; restart the clock where it is.
      q->t0 = Clock::now();
      q->base = q->written;
      c = q->written;
    }
    q->hw = c;
  }
  return static_cast<snd_pcm_sframes_t>(q->hw % io->buffer_size);
}

snd_pcm_sframes_t cb_transfer(snd_pcm_ioplug_t* io,
                              const snd_pcm_channel_area_t* areas,
                              snd_pcm_uframes_t offset,
                              snd_pcm_uframes_t size) {
  auto* q = static_cast<QubesPcm*>(io->private_data);
  auto* buf = static_cast<std::byte*>(areas->addr) + (areas->first + areas->step * offset) / 8;
  size_t bytes = size * q->frame_bytes;
  if (q->playback()) {
    q->backend->rings().playback().write({buf, bytes});  // full ring: the newest is dropped
    q->backend->rings().notify_playback();
    q->written += size;
  } else {
    auto& ring = q->backend->rings().capture();
    // Keep the mic close to real time: beyond 100 ms queued, drop the oldest.
    size_t cap = q->fmt.bytes_for_ms(100);
    if (ring.readable() > cap) {
      ring.skip((ring.readable() - cap) / q->frame_bytes * q->frame_bytes);
    }
    size_t got = ring.read({buf, bytes}) / q->frame_bytes * q->frame_bytes;
    std::memset(buf + got, 0, bytes - got);  // not attached / not yet: silence
  }
  return static_cast<snd_pcm_sframes_t>(size);
}

int cb_hw_params(snd_pcm_ioplug_t* io, snd_pcm_hw_params_t*) {
  auto* q = static_cast<QubesPcm*>(io->private_data);
  switch (io->format) {
    case SND_PCM_FORMAT_S16_LE:
      q->fmt.sample = SampleFormat::S16LE;
      break;
    case SND_PCM_FORMAT_S32_LE:
      q->fmt.sample = SampleFormat::S32LE;
      break;
    case SND_PCM_FORMAT_FLOAT_LE:
      q->fmt.sample = SampleFormat::F32LE;
      break;
    default:
      return -EINVAL;
  }
  q->fmt.rate = io->rate;
  q->fmt.channels = io->channels;
  if (!q->fmt.valid()) {
    return -EINVAL;
  }
  q->frame_bytes = q->fmt.frame_bytes();
  return 0;
}

int cb_prepare(snd_pcm_ioplug_t* io) {
  auto* q = static_cast<QubesPcm*>(io->private_data);
  q->hw = 0;
  q->written = 0;
  q->running = false;
  arm_timer(q, false);
  return start_session(q);
}

int cb_poll_revents(snd_pcm_ioplug_t* io,
                    struct pollfd* pfd,
                    unsigned int nfds,
                    unsigned short* revents) {
  auto* q = static_cast<QubesPcm*>(io->private_data);
  *revents = 0;
  if (nfds >= 1 && (pfd[0].revents & POLLIN) != 0) {
    uint64_t ticks;
    [[maybe_unused]] ssize_t n = ::read(q->timer_fd, &ticks, sizeof ticks);
    *revents = q->playback() ? POLLOUT : POLLIN;
  }
  return 0;
}

int cb_close(snd_pcm_ioplug_t* io) {
  auto* q = static_cast<QubesPcm*>(io->private_data);
  stop_session(q);
  if (q->timer_fd >= 0) {
    ::close(q->timer_fd);
  }
  delete q;
  return 0;
}

snd_pcm_ioplug_callback_t make_callbacks() {
  snd_pcm_ioplug_callback_t cb{};
  cb.start = cb_start;
  cb.stop = cb_stop;
  cb.pointer = cb_pointer;
  cb.transfer = cb_transfer;
  cb.close = cb_close;
  cb.hw_params = cb_hw_params;
  cb.prepare = cb_prepare;
  cb.poll_revents = cb_poll_revents;
  return cb;
}
const snd_pcm_ioplug_callback_t kCallbacks = make_callbacks();

int set_constraints(snd_pcm_ioplug_t* io) {
  static const unsigned int access[] = {SND_PCM_ACCESS_RW_INTERLEAVED,
                                        SND_PCM_ACCESS_MMAP_INTERLEAVED};
  static const unsigned int formats[] = {SND_PCM_FORMAT_S16_LE, SND_PCM_FORMAT_S32_LE,
                                         SND_PCM_FORMAT_FLOAT_LE};
  static const unsigned int rates[] = {44100, 48000, 96000};
  int err;
  if ((err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_ACCESS, 2, access)) < 0 ||
      (err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_FORMAT, 3, formats)) < 0 ||
      (err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_RATE, 3, rates)) < 0 ||
      (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_CHANNELS, 1, kMaxChannels)) <
          0 ||
      (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, 256, 16384)) < 0 ||
      (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIODS, 2, 4)) < 0) {
    return err;
  }
  return 0;
}

int parse_config(QubesPcm* q, snd_config_t* conf) {
  snd_config_iterator_t i, next;
  snd_config_for_each(i, next, conf) {
    snd_config_t* n = snd_config_iterator_entry(i);
    const char* id;
    if (snd_config_get_id(n, &id) < 0) {
      continue;
    }
    std::string key = id;
    if (key == "comment" || key == "type" || key == "hint") {
      continue;
    }
    const char* s = nullptr;
    long v = 0;
    if (key == "channel" || key == "protocol") {
      if (snd_config_get_string(n, &s) < 0) {
        SNDERR("qubes: %s must be a string", id);
        return -EINVAL;
      }
      if (key == "channel") {
        q->channel = s;
      } else {
        auto m = protocol_mode_from_string(s);
        if (!m) {
          SNDERR("qubes: protocol must be auto, stock or native, not %s", s);
          return -EINVAL;
        }
        q->protocol = *m;
      }
      continue;
    }
    if (key == "domid" || key == "audiovm_domid" || key == "latency_ms") {
      if (snd_config_get_integer(n, &v) < 0) {
        // Accept strings too ("5"), as asoundrc authors write both.
        if (snd_config_get_string(n, &s) < 0 || (v = std::strtol(s, nullptr, 10)) < 0) {
          SNDERR("qubes: %s must be a number", id);
          return -EINVAL;
        }
      }
      if (v < 0 || v > 0x7FEF) {
        SNDERR("qubes: %s out of range", id);
        return -EINVAL;
      }
      if (key == "domid") {
        q->domid = static_cast<uint32_t>(v);
      } else if (key == "audiovm_domid") {
        q->audiovm = static_cast<uint32_t>(v);
      } else {
        q->latency_ms = static_cast<uint32_t>(std::clamp<long>(v, 2, 200));
      }
      continue;
    }
    SNDERR("qubes: unknown option %s", id);
    return -EINVAL;
  }
  if (!q->audiovm) {
    auto w = make_qubesdb_watcher();
    if (w) {
      q->audiovm = (*w)->current();
    }
    if (!q->audiovm) {
      SNDERR("qubes: set audiovm_domid (QubesDB /qubes-audio-domain-xid is not available)");
      return -EINVAL;
    }
  }
  return 0;
}

}  // namespace
}  // namespace qaudio::agent

extern "C" SND_PCM_PLUGIN_DEFINE_FUNC(qubes) {
  using namespace qaudio::agent;
  (void)root;
  qaudio::set_log_tag("qubes-alsa");
  if (std::getenv("QAUDIO_LOG") == nullptr) {
    qaudio::set_log_level(qaudio::LogLevel::Warn);  // apps' stderr is not our log
  }
  auto* q = new QubesPcm();
  int err = parse_config(q, conf);
  if (err < 0) {
    delete q;
    return err;
  }
  q->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (q->timer_fd < 0) {
    delete q;
    return -errno;
  }
  q->io.version = SND_PCM_IOPLUG_VERSION;
  q->io.name = "Qubes audio";
  q->io.callback = &kCallbacks;
  q->io.private_data = q;
  q->io.poll_fd = q->timer_fd;
  q->io.poll_events = POLLIN;
  q->io.mmap_rw = 0;
  err = snd_pcm_ioplug_create(&q->io, name, stream, mode);
  if (err < 0) {
    ::close(q->timer_fd);
    delete q;
    return err;
  }
  err = set_constraints(&q->io);
  if (err < 0) {
    snd_pcm_ioplug_delete(&q->io);  // calls cb_close
    return err;
  }
  *pcmp = q->io.pcm;
  return 0;
}
SND_PCM_PLUGIN_SYMBOL(qubes);
