#include "qaudio/realtime.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "qaudio/config.h"

#if QAUDIO_HAVE_SYSTEMD
#include <systemd/sd-bus.h>
#endif

namespace qaudio {

bool realtime_disabled() {
  const char* v = std::getenv("QAUDIO_NO_RT");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

std::string RealtimeResult::describe() const {
  if (granted) {
    return "real-time scheduling (SCHED_FIFO " + std::to_string(priority) + " via " + via + ")";
  }
  return "no real-time scheduling (" + reason + ")";
}

#if QAUDIO_HAVE_SYSTEMD
namespace {

constexpr const char* kRtkitName = "org.freedesktop.RealtimeKit1";
constexpr const char* kRtkitPath = "/org/freedesktop/RealtimeKit1";

struct BusUnref {
  void operator()(sd_bus* b) const { sd_bus_flush_close_unref(b); }
};

// The error of a failed sd-bus call (freed here) as a Result error.
Unexpected bus_fail(const char* what, sd_bus_error& e, int r) {
  std::string s =
      std::string("RTKit: ") + what + ": " + (e.message != nullptr ? e.message : std::strerror(-r));
  sd_bus_error_free(&e);
  return fail(std::move(s));
}

}  // namespace

Result<int> rtkit_make_thread_realtime(pid_t tid, int priority) {
  sd_bus* raw = nullptr;
  int r = sd_bus_open_system(&raw);
  if (r < 0) {
    return fail_errno("RTKit: cannot reach the system bus", -r);
  }
  std::unique_ptr<sd_bus, BusUnref> bus(raw);
  sd_bus_set_method_call_timeout(bus.get(), 2'000'000);
  sd_bus_error err = SD_BUS_ERROR_NULL;
  int32_t max_prio = 0;
  r = sd_bus_get_property_trivial(bus.get(), kRtkitName, kRtkitPath, kRtkitName,
                                  "MaxRealtimePriority", &err, 'i', &max_prio);
  if (r < 0) {
    return bus_fail("MaxRealtimePriority", err, r);
  }
  int64_t max_rttime = 0;
  r = sd_bus_get_property_trivial(bus.get(), kRtkitName, kRtkitPath, kRtkitName, "RTTimeUSecMax",
                                  &err, 'x', &max_rttime);
  if (r < 0) {
    return bus_fail("RTTimeUSecMax", err, r);
  }
  if (max_prio < 1 || max_rttime < 1) {
    return fail("RTKit: it grants no real-time priority (MaxRealtimePriority " +
                std::to_string(max_prio) + ", RTTimeUSecMax " + std::to_string(max_rttime) + ")");
  }
  // RTKit refuses a process whose RLIMIT_RTTIME is unset or above its limit.
  rlimit rl{};
  if (getrlimit(RLIMIT_RTTIME, &rl) == 0 &&
      (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > static_cast<rlim_t>(max_rttime))) {
    rl.rlim_cur = rl.rlim_max = static_cast<rlim_t>(max_rttime);
    if (setrlimit(RLIMIT_RTTIME, &rl) != 0) {
      return fail_errno("RTKit: cannot set RLIMIT_RTTIME");
    }
  }
  const int prio = std::clamp(priority, 1, static_cast<int>(max_prio));
  r = sd_bus_call_method(bus.get(), kRtkitName, kRtkitPath, kRtkitName, "MakeThreadRealtime", &err,
                         nullptr, "tu", static_cast<uint64_t>(tid), static_cast<uint32_t>(prio));
  if (r < 0) {
    return bus_fail("MakeThreadRealtime", err, r);
  }
  return prio;
}
#else
Result<int> rtkit_make_thread_realtime(pid_t, int) {
  return fail("RTKit: built without libsystemd");
}
#endif

RealtimeResult make_thread_realtime(int priority) {
  RealtimeResult res;
  if (realtime_disabled()) {
    res.reason = "QAUDIO_NO_RT=1";
    return res;
  }
  const char* via = std::getenv("QAUDIO_RT_VIA");
  const bool direct = via == nullptr || std::strcmp(via, "rtkit") != 0;
  const bool rtkit = via == nullptr || std::strcmp(via, "direct") != 0;
  const int lo = sched_get_priority_min(SCHED_FIFO);
  const int hi = sched_get_priority_max(SCHED_FIFO);
  if (direct) {
    sched_param sp{};
    sp.sched_priority = std::clamp(priority, lo, hi);
    // SCHED_RESET_ON_FORK: children (helpers the daemon spawns) start as
    // ordinary processes. pid 0: the calling thread only (Linux schedules
    // threads, not processes).
    if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0) {
      res.granted = true;
      res.via = "sched_setscheduler";
      res.priority = sp.sched_priority;
      return res;
    }
    res.reason = std::string("sched_setscheduler: ") + std::strerror(errno);
  }
  if (rtkit) {
    auto r = rtkit_make_thread_realtime(gettid(), std::clamp(priority, lo, hi));
    if (r) {
      res.granted = true;
      res.via = "RTKit";
      res.priority = *r;
      res.reason.clear();
      return res;
    }
    res.reason += (res.reason.empty() ? "" : "; ") + r.error().message;
  }
  return res;
}

}  // namespace qaudio
