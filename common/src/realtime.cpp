#include "qaudio/realtime.hpp"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace qaudio {

bool realtime_disabled() {
  const char* v = std::getenv("QAUDIO_NO_RT");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

bool make_thread_realtime(int priority) {
  if (realtime_disabled()) {
    return false;
  }
  const int lo = sched_get_priority_min(SCHED_FIFO);
  const int hi = sched_get_priority_max(SCHED_FIFO);
  sched_param sp{};
  sp.sched_priority = std::clamp(priority, lo, hi);
  // SCHED_RESET_ON_FORK: children (helpers the daemon spawns) start as
  // ordinary processes.
  // pid 0: the calling thread only (Linux schedules threads, not processes).
  return sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0;
}

}  // namespace qaudio
