// Factory functions of the backends that the registry (backend_registry.cpp)
// calls. Each backend file pair implements one of these; the registry lists
// only those compiled into this build (QAUDIO_HAVE_* from qaudio/config.h).
//
//   auto be = make_wav_backend("/tmp/out.wav,in=mic.wav", options, events);
#pragma once

#include <memory>
#include <string_view>

#include "backend.hpp"
#include "qaudio/result.hpp"

namespace qaudio::daemon {

// arg: what follows "name:" in the backend spec (may be empty).
Result<std::unique_ptr<Backend>> make_wav_backend(std::string_view arg,
                                                  const BackendOptions& options,
                                                  BackendEventFn events);
Result<std::unique_ptr<Backend>> make_null_backend(std::string_view arg,
                                                   const BackendOptions& options,
                                                   BackendEventFn events);
// Implemented by pulse_backend.cpp (QAUDIO_HAVE_PULSE); arg = server or "".
Result<std::unique_ptr<Backend>> make_pulse_backend(std::string_view arg,
                                                    const BackendOptions& options,
                                                    BackendEventFn events);
// Implemented by pipewire_backend.cpp (QAUDIO_HAVE_PIPEWIRE); arg = remote or "".
Result<std::unique_ptr<Backend>> make_pipewire_backend(std::string_view arg,
                                                       const BackendOptions& options,
                                                       BackendEventFn events);
// Implemented by alsa_backend.cpp (QAUDIO_HAVE_ALSA); arg = ALSA device name.
Result<std::unique_ptr<Backend>> make_alsa_backend(std::string_view arg,
                                                   const BackendOptions& options,
                                                   BackendEventFn events);

}  // namespace qaudio::daemon
