// ALSA backend: mixes on the daemon's RT thread, writes with snd_pcm_writei
// (see alsa_backend.hpp).
#include "alsa_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "qaudio/log.hpp"

namespace qaudio::daemon {
namespace {

constexpr int kMaxRetries = 4;  // write/read attempts per period after an xrun

std::string alsa_error(const std::string& what, const std::string& device, int err) {
  return "alsa: " + what + " '" + device + "': " + snd_strerror(err) +
         " (list devices with `aplay -L`)";
}

size_t format_bytes(snd_pcm_format_t f) {
  return f == SND_PCM_FORMAT_S16_LE ? 2 : 4;
}

void to_device(const float* in, uint8_t* out, size_t samples, snd_pcm_format_t f) {
  if (f == SND_PCM_FORMAT_FLOAT_LE) {
    auto* o = reinterpret_cast<float*>(out);
    for (size_t i = 0; i < samples; ++i) {
      o[i] = std::clamp(in[i], -1.0f, 1.0f);
    }
  } else if (f == SND_PCM_FORMAT_S32_LE) {
    auto* o = reinterpret_cast<int32_t*>(out);
    for (size_t i = 0; i < samples; ++i) {
      o[i] = static_cast<int32_t>(std::lrint(std::clamp(in[i], -1.0f, 1.0f) * 2147483520.0f));
    }
  } else {
    auto* o = reinterpret_cast<int16_t*>(out);
    for (size_t i = 0; i < samples; ++i) {
      o[i] = static_cast<int16_t>(std::lrint(std::clamp(in[i], -1.0f, 1.0f) * 32767.0f));
    }
  }
}

void from_device(const uint8_t* in, float* out, size_t samples, snd_pcm_format_t f) {
  if (f == SND_PCM_FORMAT_FLOAT_LE) {
    std::memcpy(out, in, samples * sizeof(float));
  } else if (f == SND_PCM_FORMAT_S32_LE) {
    const auto* s = reinterpret_cast<const int32_t*>(in);
    for (size_t i = 0; i < samples; ++i) {
      out[i] = static_cast<float>(s[i]) * (1.0f / 2147483648.0f);
    }
  } else {
    const auto* s = reinterpret_cast<const int16_t*>(in);
    for (size_t i = 0; i < samples; ++i) {
      out[i] = static_cast<float>(s[i]) * (1.0f / 32768.0f);
    }
  }
}

}  // namespace

Result<AlsaSpec> parse_alsa_spec(std::string_view arg) {
  AlsaSpec spec;
  std::string_view dev = arg;
  if (auto pos = arg.rfind(",in="); pos != std::string_view::npos) {
    dev = arg.substr(0, pos);
    spec.capture = std::string(arg.substr(pos + 4));
    if (spec.capture.empty()) {
      return fail("alsa: empty capture device in 'alsa:" + std::string(arg) +
                  "'; use alsa:DEVICE,in=CAPDEV");
    }
  } else if (arg.substr(0, 3) == "in=") {
    dev = {};
    spec.capture = std::string(arg.substr(3));
  }
  if (!dev.empty()) {
    spec.device = std::string(dev);
  }
  return spec;
}

AlsaBackend::AlsaBackend(AlsaSpec spec, const BackendOptions& options, BackendEventFn events)
    : MixingBackend(options, std::move(events)), spec_(std::move(spec)) {}

AlsaBackend::~AlsaBackend() {
  stop();
}

Result<void> AlsaBackend::open_pcm(Pcm& p,
                                   const std::string& device,
                                   snd_pcm_stream_t dir,
                                   DeviceFormat& format) {
  int err = snd_pcm_open(&p.pcm, device.c_str(), dir, 0);
  if (err < 0) {
    p.pcm = nullptr;
    return fail(alsa_error(dir == SND_PCM_STREAM_PLAYBACK ? "cannot open playback device"
                                                          : "cannot open capture device",
                           device, err));
  }
  snd_pcm_hw_params_t* hw;
  snd_pcm_hw_params_alloca(&hw);
  snd_pcm_hw_params_any(p.pcm, hw);
  if ((err = snd_pcm_hw_params_set_access(p.pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED)) < 0) {
    return fail(alsa_error("no interleaved access on", device, err));
  }
  err = -EINVAL;
  for (snd_pcm_format_t f :
       {SND_PCM_FORMAT_FLOAT_LE, SND_PCM_FORMAT_S32_LE, SND_PCM_FORMAT_S16_LE}) {
    if ((err = snd_pcm_hw_params_set_format(p.pcm, hw, f)) == 0) {
      p.format = f;
      break;
    }
  }
  if (err < 0) {
    return fail(alsa_error("no float/S32/S16 sample format on (try plughw: or plug)", device, err));
  }
  unsigned channels = format.channels;
  if ((err = snd_pcm_hw_params_set_channels_near(p.pcm, hw, &channels)) < 0) {
    return fail(alsa_error("cannot set channels on", device, err));
  }
  unsigned rate = format.rate;
  if ((err = snd_pcm_hw_params_set_rate_near(p.pcm, hw, &rate, nullptr)) < 0) {
    return fail(alsa_error("cannot set rate on", device, err));
  }
  const auto& o = options();
  snd_pcm_uframes_t period = std::max<snd_pcm_uframes_t>(
      16, static_cast<snd_pcm_uframes_t>(rate) * o.period.count() / 1000);
  snd_pcm_uframes_t buffer = std::max<snd_pcm_uframes_t>(
      2 * period, static_cast<snd_pcm_uframes_t>(rate) * o.buffer.count() / 1000);
  int dirn = 0;
  snd_pcm_hw_params_set_period_size_near(p.pcm, hw, &period, &dirn);
  snd_pcm_hw_params_set_buffer_size_near(p.pcm, hw, &buffer);
  if ((err = snd_pcm_hw_params(p.pcm, hw)) < 0) {
    return fail(alsa_error("cannot configure", device, err));
  }
  snd_pcm_hw_params_get_period_size(hw, &p.period, &dirn);
  snd_pcm_hw_params_get_buffer_size(hw, &p.buffer);

  snd_pcm_sw_params_t* sw;
  snd_pcm_sw_params_alloca(&sw);
  snd_pcm_sw_params_current(p.pcm, sw);
  snd_pcm_sw_params_set_avail_min(p.pcm, sw, p.period);
  snd_pcm_sw_params_set_start_threshold(p.pcm, sw, dir == SND_PCM_STREAM_PLAYBACK ? p.period : 1);
  if ((err = snd_pcm_sw_params(p.pcm, sw)) < 0) {
    return fail(alsa_error("cannot set software parameters on", device, err));
  }
  format.channels = channels;
  format.rate = rate;
  return {};
}

Result<void> AlsaBackend::open_device(DeviceFormat& format) {
  auto r = open_pcm(out_, spec_.device, SND_PCM_STREAM_PLAYBACK, format);
  if (!r) {
    close_device();
    return r;
  }
  fmt_ = format;
  if (!spec_.capture.empty()) {
    DeviceFormat cf = format;
    r = open_pcm(in_, spec_.capture, SND_PCM_STREAM_CAPTURE, cf);
    if (r && (cf.rate != format.rate || cf.channels != format.channels)) {
      r = fail("alsa: capture device '" + spec_.capture + "' runs at " + std::to_string(cf.rate) +
               " Hz " + std::to_string(cf.channels) + " ch, playback at " +
               std::to_string(format.rate) + " Hz " + std::to_string(format.channels) +
               " ch; use a plug: device so both match");
    }
    if (!r) {
      close_device();
      return r;
    }
  }
  const size_t max_frames = std::max<size_t>({out_.period, in_.period, format.rate / 10});
  conv_.assign(max_frames * format.channels * 4, 0);

  // One silent period: starts a card (start_threshold = one period) and tells
  // a PCM that blocks from one that swallows data at once.
  std::fill(conv_.begin(), conv_.end(), 0);
  snd_pcm_sframes_t w = snd_pcm_writei(out_.pcm, conv_.data(), out_.period);
  snd_pcm_sframes_t avail = snd_pcm_avail(out_.pcm);
  timer_paced_ = w > 0 && avail >= static_cast<snd_pcm_sframes_t>(out_.buffer);
  if (in_.pcm != nullptr) {
    snd_pcm_start(in_.pcm);
  }
  log_info("alsa: %s: %u Hz %u ch %s, period %lu, buffer %lu frames%s%s%s", spec_.device.c_str(),
           format.rate, format.channels, snd_pcm_format_name(out_.format),
           static_cast<unsigned long>(out_.period), static_cast<unsigned long>(out_.buffer),
           timer_paced_ ? " (not paced by the device: timer pacing)" : "",
           in_.pcm ? ", capture " : "", in_.pcm ? spec_.capture.c_str() : "");
  return {};
}

void AlsaBackend::close_device() {
  for (Pcm* p : {&out_, &in_}) {
    if (p->pcm != nullptr) {
      snd_pcm_drop(p->pcm);
      snd_pcm_close(p->pcm);
      p->pcm = nullptr;
    }
  }
}

// RT thread.
bool AlsaBackend::write_period(std::span<const float> mix, size_t frames) {
  const uint32_t ch = fmt_.channels;
  const size_t bytes_per_frame = format_bytes(out_.format) * ch;
  const size_t chunk = conv_.size() / bytes_per_frame;
  size_t done = 0;
  int retries = 0;
  while (done < frames) {
    const size_t n = std::min(chunk, frames - done);
    to_device(mix.data() + done * ch, conv_.data(), n * ch, out_.format);
    size_t written = 0;
    while (written < n) {
      snd_pcm_sframes_t r =
          snd_pcm_writei(out_.pcm, conv_.data() + written * bytes_per_frame, n - written);
      if (r >= 0) {
        written += static_cast<size_t>(r);
        continue;
      }
      if (r == -EPIPE || r == -ESTRPIPE) {
        xruns_.fetch_add(1, std::memory_order_relaxed);
      }
      if (++retries > kMaxRetries || snd_pcm_recover(out_.pcm, static_cast<int>(r), 1) < 0) {
        post_rt_error("alsa: playback write failed and could not recover");
        return false;
      }
    }
    done += n;
  }
  return true;
}

// RT thread.
bool AlsaBackend::read_period(std::span<float> in, size_t frames) {
  if (in_.pcm == nullptr) {
    std::fill(in.begin(), in.end(), 0.f);
    return true;
  }
  const uint32_t ch = fmt_.channels;
  const size_t bytes_per_frame = format_bytes(in_.format) * ch;
  const size_t chunk = conv_.size() / bytes_per_frame;
  size_t done = 0;
  int retries = 0;
  while (done < frames) {
    const size_t n = std::min(chunk, frames - done);
    snd_pcm_sframes_t r = snd_pcm_readi(in_.pcm, conv_.data(), n);
    if (r < 0) {
      if (r == -EPIPE || r == -ESTRPIPE) {
        xruns_.fetch_add(1, std::memory_order_relaxed);
      }
      if (++retries > kMaxRetries || snd_pcm_recover(in_.pcm, static_cast<int>(r), 1) < 0) {
        std::fill(in.begin() + static_cast<ptrdiff_t>(done * ch), in.end(), 0.f);
        post_rt_error("alsa: capture read failed and could not recover");
        return false;
      }
      snd_pcm_start(in_.pcm);
      continue;
    }
    if (r == 0) {  // end of a capture file: silence for the rest
      std::fill(in.begin() + static_cast<ptrdiff_t>(done * ch), in.end(), 0.f);
      return true;
    }
    from_device(conv_.data(), in.data() + done * ch, static_cast<size_t>(r) * ch, in_.format);
    done += static_cast<size_t>(r);
  }
  return true;
}

uint32_t AlsaBackend::device_latency_us() const {
  snd_pcm_sframes_t delay = 0;
  if (out_.pcm == nullptr || fmt_.rate == 0 || snd_pcm_delay(out_.pcm, &delay) < 0 || delay < 0) {
    return 0;
  }
  return static_cast<uint32_t>(static_cast<uint64_t>(delay) * 1000000 / fmt_.rate);
}

std::vector<DeviceInfo> AlsaBackend::devices() {
  std::vector<DeviceInfo> out;
  void** hints = nullptr;
  if (snd_device_name_hint(-1, "pcm", &hints) < 0 || hints == nullptr) {
    return out;
  }
  for (void** h = hints; *h != nullptr; ++h) {
    char* name = snd_device_name_get_hint(*h, "NAME");
    char* desc = snd_device_name_get_hint(*h, "DESC");
    char* ioid = snd_device_name_get_hint(*h, "IOID");  // null = both directions
    if (name != nullptr) {
      std::string d = desc ? desc : name;
      std::replace(d.begin(), d.end(), '\n', ' ');
      const bool in = ioid == nullptr || std::strcmp(ioid, "Input") == 0;
      const bool outp = ioid == nullptr || std::strcmp(ioid, "Output") == 0;
      if (outp) {
        out.push_back({name, d, true, spec_.device == name});
      }
      if (in) {
        out.push_back({name, d, false, spec_.capture == name});
      }
    }
    free(name);
    free(desc);
    free(ioid);
  }
  snd_device_name_free_hint(hints);
  return out;
}

Result<std::unique_ptr<Backend>> make_alsa_backend(std::string_view arg,
                                                   const BackendOptions& options,
                                                   BackendEventFn events) {
  auto spec = parse_alsa_spec(arg);
  if (!spec) {
    return fail(spec.error());
  }
  return std::unique_ptr<Backend>(
      std::make_unique<AlsaBackend>(std::move(*spec), options, std::move(events)));
}

}  // namespace qaudio::daemon
