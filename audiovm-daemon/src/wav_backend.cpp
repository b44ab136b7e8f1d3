// The WAV file backend (see wav_backend.hpp).
#include "wav_backend.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "backends.hpp"
#include "qaudio/log.hpp"
#include "resampler.hpp"
#include "sample_convert.hpp"

namespace qaudio::daemon {
namespace {

constexpr size_t kHeaderBytes = 44;
constexpr uint64_t kMaxDataBytes = 0xFFFFFFFFull - kHeaderBytes;
constexpr size_t kMaxInputBytes = 256u << 20;  // microphone file limit

void put16(std::byte* p, uint16_t v) {
  std::memcpy(p, &v, 2);
}
void put32(std::byte* p, uint32_t v) {
  std::memcpy(p, &v, 4);
}
uint16_t get16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t get32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

Result<void> write_all(int fd, const std::byte* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail_errno("writing " + path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

std::array<std::byte, kHeaderBytes> make_header(const DeviceFormat& f,
                                                bool is_float,
                                                uint64_t data_bytes) {
  std::array<std::byte, kHeaderBytes> h{};
  const uint16_t bits = is_float ? 32 : 16;
  const uint16_t block = static_cast<uint16_t>(f.channels * bits / 8);
  const uint32_t data = static_cast<uint32_t>(std::min(data_bytes, kMaxDataBytes));
  std::memcpy(h.data(), "RIFF", 4);
  put32(h.data() + 4, 36 + data);
  std::memcpy(h.data() + 8, "WAVEfmt ", 8);
  put32(h.data() + 16, 16);
  put16(h.data() + 20, is_float ? 3 : 1);
  put16(h.data() + 22, static_cast<uint16_t>(f.channels));
  put32(h.data() + 24, f.rate);
  put32(h.data() + 28, f.rate * block);
  put16(h.data() + 32, block);
  put16(h.data() + 34, bits);
  std::memcpy(h.data() + 36, "data", 4);
  put32(h.data() + 40, data);
  return h;
}

// Reads a WAV file (PCM 16/32 bit, float 32 bit, or EXTENSIBLE of those)
// and converts it to the device format.
Result<std::vector<float>> load_wav_as(const std::string& path, const DeviceFormat& dev) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail_errno("opening microphone file " + path);
  }
  std::vector<std::byte> buf;
  std::byte tmp[65536];
  for (;;) {
    ssize_t r = ::read(fd, tmp, sizeof(tmp));
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      break;
    }
    buf.insert(buf.end(), tmp, tmp + r);
    if (buf.size() > kMaxInputBytes) {
      ::close(fd);
      return fail("microphone file " + path + " is larger than 256 MiB");
    }
  }
  ::close(fd);
  auto bad = [&](const char* why) { return fail("microphone file " + path + ": " + why); };
  if (buf.size() < 12 || std::memcmp(buf.data(), "RIFF", 4) != 0 ||
      std::memcmp(buf.data() + 8, "WAVE", 4) != 0) {
    return bad("not a RIFF/WAVE file");
  }
  uint16_t fmt_tag = 0;
  uint16_t channels = 0;
  uint32_t rate = 0;
  uint16_t bits = 0;
  const std::byte* data = nullptr;
  size_t data_len = 0;
  size_t pos = 12;
  while (pos + 8 <= buf.size()) {
    const std::byte* ck = buf.data() + pos;
    size_t len = get32(ck + 4);
    size_t body = pos + 8;
    size_t avail = buf.size() - body;
    if (std::memcmp(ck, "fmt ", 4) == 0 && len >= 16 && avail >= 16) {
      fmt_tag = get16(ck + 8);
      channels = get16(ck + 10);
      rate = get32(ck + 12);
      bits = get16(ck + 22);
      if (fmt_tag == 0xFFFE && len >= 40 && avail >= 40) {
        fmt_tag = get16(ck + 8 + 24);  // sub-format GUID starts with the tag
      }
    } else if (std::memcmp(ck, "data", 4) == 0) {
      data = buf.data() + body;
      data_len = std::min(len, avail);  // a file still being written: take what is there
      break;
    }
    if (len > avail) {
      break;
    }
    pos = body + len + (len & 1);
  }
  SampleFormat sf;
  if (fmt_tag == 1 && bits == 16) {
    sf = SampleFormat::S16LE;
  } else if (fmt_tag == 1 && bits == 32) {
    sf = SampleFormat::S32LE;
  } else if (fmt_tag == 3 && bits == 32) {
    sf = SampleFormat::F32LE;
  } else {
    return bad("only 16/32-bit PCM and 32-bit float WAV are supported");
  }
  if (channels < 1 || channels > 8 || rate < 8000 || rate > 384000) {
    return bad("unsupported channel count or rate");
  }
  if (!data) {
    return bad("no data chunk");
  }
  const size_t fb = sample_bytes(sf) * channels;
  const size_t frames = data_len / fb;
  if (frames == 0) {
    return bad("no audio frames");
  }
  std::vector<float> native(frames * channels);
  to_float(sf, data, native.data(), native.size());
  std::vector<float> mapped(frames * dev.channels);
  ChannelMap(channels, dev.channels).apply(native.data(), mapped.data(), frames);
  if (rate == dev.rate) {
    return mapped;
  }
  auto rs = Resampler::create(dev.channels, rate, dev.rate, 5, false);
  if (!rs) {
    return fail(rs.error());
  }
  std::vector<float> out((frames * dev.rate / rate + 64) * dev.channels);
  size_t in_n = frames;
  size_t out_n = out.size() / dev.channels;
  (*rs)->process(mapped.data(), &in_n, out.data(), &out_n);
  out.resize(out_n * dev.channels);
  if (out.empty()) {
    return bad("too short to resample");
  }
  return out;
}

}  // namespace

Result<WavSpec> parse_wav_spec(std::string_view arg) {
  WavSpec spec;
  size_t comma = arg.find(',');
  spec.path = std::string(arg.substr(0, comma));
  while (comma != std::string_view::npos) {
    arg = arg.substr(comma + 1);
    comma = arg.find(',');
    std::string_view opt = arg.substr(0, comma);
    if (opt.rfind("in=", 0) == 0) {
      spec.input = std::string(opt.substr(3));
    } else if (opt == "format=s16") {
      spec.float_samples = false;
    } else if (opt == "format=f32") {
      spec.float_samples = true;
    } else {
      return fail("wav backend: unknown option '" + std::string(opt) +
                  "' (expected in=FILE or format=s16|f32)");
    }
  }
  if (spec.path.empty()) {
    return fail("wav backend needs an output file: --backend wav:PATH");
  }
  return spec;
}

WavBackend::WavBackend(WavSpec spec, const BackendOptions& options, BackendEventFn events)
    : MixingBackend(options, std::move(events)), spec_(std::move(spec)) {}

WavBackend::~WavBackend() {
  stop();
}

Result<void> WavBackend::open_device(DeviceFormat& format) {
  fmt_ = format;
  input_.clear();
  input_pos_ = 0;
  if (!spec_.input.empty()) {
    auto in = load_wav_as(spec_.input, fmt_);
    if (!in) {
      return fail(in.error());
    }
    input_ = std::move(*in);
  }
  fd_ = ::open(spec_.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    return fail_errno("opening the WAV output " + spec_.path +
                      " (check the directory exists and is writable)");
  }
  data_bytes_ = 0;
  frames_written_.store(0);
  auto h = make_header(fmt_, spec_.float_samples, 0);
  if (auto r = write_all(fd_, h.data(), h.size(), spec_.path); !r) {
    ::close(fd_);
    fd_ = -1;
    return r;
  }
  const size_t sample = spec_.float_samples ? 4 : 2;
  const size_t frame = sample * fmt_.channels;
  // Two seconds of audio between the RT thread and the file writer.
  ring_ = std::make_unique<SpscByteRing>(fmt_.rate * frame * 2);
  size_t period =
      static_cast<size_t>(fmt_.rate) * std::max<int64_t>(options().period.count(), 1) / 1000 + 16;
  conv_.resize(std::max<size_t>(period, 16) * frame * 2);
  chunk_.resize(64 * 1024);
  last_patch_ns_ = mono_ns();
  return {};
}

bool WavBackend::write_period(std::span<const float> mix, size_t frames) {
  const size_t samples = std::min(mix.size(), frames * fmt_.channels);
  const size_t bytes = samples * (spec_.float_samples ? 4 : 2);
  if (bytes > conv_.size()) {
    post_rt_error("wav: period larger than the conversion buffer");
    return true;
  }
  if (spec_.float_samples) {
    from_float(SampleFormat::F32LE, mix.data(), conv_.data(), samples);
  } else {
    float_to_s16(mix.data(), reinterpret_cast<int16_t*>(conv_.data()), samples);
  }
  if (ring_->writable() < bytes) {
    post_rt_error("wav: the file writer is behind; audio dropped");
    return true;
  }
  ring_->write(std::span<const std::byte>(conv_.data(), bytes));
  return true;
}

bool WavBackend::read_period(std::span<float> in, size_t frames) {
  const size_t n = std::min(in.size(), frames * fmt_.channels);
  if (input_.empty()) {
    std::fill(in.begin(), in.begin() + static_cast<ptrdiff_t>(n), 0.0f);
    return true;
  }
  size_t done = 0;
  while (done < n) {
    size_t k = std::min(n - done, input_.size() - input_pos_);
    std::memcpy(in.data() + done, input_.data() + input_pos_, k * sizeof(float));
    done += k;
    input_pos_ += k;
    if (input_pos_ == input_.size()) {
      input_pos_ = 0;
    }
  }
  return true;
}

void WavBackend::drain(bool final) {
  if (fd_ < 0 || !ring_) {
    return;
  }
  const size_t frame = (spec_.float_samples ? 4 : 2) * fmt_.channels;
  for (;;) {
    size_t n = ring_->read(std::span<std::byte>(chunk_.data(), chunk_.size()));
    if (n == 0) {
      break;
    }
    if (data_bytes_ + n > kMaxDataBytes) {
      n = static_cast<size_t>(kMaxDataBytes - data_bytes_) / frame * frame;
    }
    if (n == 0) {
      continue;  // file full (4 GiB WAV limit): discard
    }
    if (auto r = write_all(fd_, chunk_.data(), n, spec_.path); !r) {
      emit_event(BackendEvent{BackendEvent::Kind::Error, r.error().message});
      break;
    }
    data_bytes_ += n;
    frames_written_.store(data_bytes_ / frame, std::memory_order_relaxed);
  }
  int64_t now = mono_ns();
  if (final || now - last_patch_ns_ > 1000000000) {
    last_patch_ns_ = now;
    patch_header();
  }
}

void WavBackend::patch_header() {
  auto h = make_header(fmt_, spec_.float_samples, data_bytes_);
  // Only the two size fields change.
  ssize_t a = ::pwrite(fd_, h.data() + 4, 4, 4);
  ssize_t b = ::pwrite(fd_, h.data() + 40, 4, 40);
  (void)a;
  (void)b;
}

void WavBackend::service() {
  drain(false);
}

void WavBackend::close_device() {
  drain(true);
  if (fd_ >= 0) {
    ::fsync(fd_);
    ::close(fd_);
    fd_ = -1;
  }
}

Result<std::unique_ptr<Backend>> make_wav_backend(std::string_view arg,
                                                  const BackendOptions& options,
                                                  BackendEventFn events) {
  auto spec = parse_wav_spec(arg);
  if (!spec) {
    return fail(spec.error());
  }
  return std::unique_ptr<Backend>(new WavBackend(std::move(*spec), options, std::move(events)));
}

}  // namespace qaudio::daemon
