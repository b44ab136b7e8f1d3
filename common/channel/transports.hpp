// Internal: the transport factories behind make_transport() (channel.cpp),
// exposed for tests and benchmarks that want one transport directly.
//
//   auto t = qaudio::detail::make_unix_transport("/tmp/q");
#pragma once

#include <memory>
#include <string>

#include "qaudio/channel.hpp"
#include "qaudio/config.h"

namespace qaudio::detail {

std::unique_ptr<Transport> make_unix_transport(std::string dir);
std::unique_ptr<Transport> make_shm_transport(std::string dir);
#if QAUDIO_HAVE_XEN
std::unique_ptr<Transport> make_xen_transport();
#endif

}  // namespace qaudio::detail
