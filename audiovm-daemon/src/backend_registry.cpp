// The backend registry: one table mapping a spec's name ("wav", "null",
// "pulse", "pipewire", "alsa") to its factory, listing only the backends
// compiled into this build (QAUDIO_HAVE_<X> from qaudio/config.h, and the
// QAUDIO_BUILD_<X>_BACKEND define that audiovm-daemon/CMakeLists.txt sets
// when the backend's file is compiled).
//
//   make_backend("wav:/tmp/out.wav", opts, events);   // name ":" argument
//   make_backend("pulse", opts, events);              // no argument
#include <string>

#include "backend.hpp"
#include "backends.hpp"
#include "qaudio/config.h"

namespace qaudio::daemon {
namespace {

using Factory = Result<std::unique_ptr<Backend>> (*)(std::string_view,
                                                     const BackendOptions&,
                                                     BackendEventFn);
struct Entry {
  const char* name;
  Factory make;
};

constexpr Entry kBackends[] = {
    {"wav", &make_wav_backend},           {"null", &make_null_backend},
#if QAUDIO_HAVE_PULSE && defined(QAUDIO_BUILD_PULSE_BACKEND)
    {"pulse", &make_pulse_backend},
#endif
#if QAUDIO_HAVE_PIPEWIRE && defined(QAUDIO_BUILD_PIPEWIRE_BACKEND)
    {"pipewire", &make_pipewire_backend},
#endif
#if QAUDIO_HAVE_ALSA && defined(QAUDIO_BUILD_ALSA_BACKEND)
    {"alsa", &make_alsa_backend},
#endif
};

std::string names_list() {
  std::string out;
  for (const auto& e : kBackends) {
    if (!out.empty()) {
      out += ", ";
    }
    out += e.name;
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Backend>> make_backend(std::string_view spec,
                                              const BackendOptions& options,
                                              BackendEventFn events) {
  std::string_view name = spec;
  std::string_view arg;
  if (auto colon = spec.find(':'); colon != std::string_view::npos) {
    name = spec.substr(0, colon);
    arg = spec.substr(colon + 1);
  }
  for (const auto& e : kBackends) {
    if (name == e.name) {
      return e.make(arg, options, std::move(events));
    }
  }
  return fail("unknown backend '" + std::string(name) + "' in --backend " + std::string(spec) +
              "; this build has: " + names_list());
}

std::vector<std::string> available_backends() {
  std::vector<std::string> out;
  for (const auto& e : kBackends) {
    out.emplace_back(e.name);
  }
  return out;
}

}  // namespace qaudio::daemon
