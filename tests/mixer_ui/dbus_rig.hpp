// The mixer UI tests' name for the shared private-bus helper
// (tests/support/private_bus.hpp).
#pragma once

#include "private_bus.hpp"

namespace qaudio::mixer::test {
using qaudio::test::PrivateBus;
}  // namespace qaudio::mixer::test
