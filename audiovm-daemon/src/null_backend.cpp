// The null backend (see null_backend.hpp): paced by the base's timer,
// discards output, captures silence (the base's default read_period).
#include "null_backend.hpp"

#include "backends.hpp"

namespace qaudio::daemon {

NullBackend::NullBackend(const BackendOptions& options, BackendEventFn events)
    : MixingBackend(options, std::move(events)) {}

NullBackend::~NullBackend() {
  stop();
}

Result<void> NullBackend::open_device(DeviceFormat& format) {
  (void)format;
  return {};
}

bool NullBackend::write_period(std::span<const float> mix, size_t frames) {
  (void)mix;
  frames_.fetch_add(frames, std::memory_order_relaxed);
  return true;
}

Result<std::unique_ptr<Backend>> make_null_backend(std::string_view arg,
                                                   const BackendOptions& options,
                                                   BackendEventFn events) {
  if (!arg.empty()) {
    return fail("the null backend takes no argument (got '" + std::string(arg) + "')");
  }
  return std::unique_ptr<Backend>(new NullBackend(options, std::move(events)));
}

}  // namespace qaudio::daemon
