// Real-time scheduling for the threads that move audio.
//
// Sound servers run their I/O threads under SCHED_FIFO/RR (PulseAudio and
// PipeWire through RTKit or RLIMIT_RTPRIO); a qaudio thread that feeds them
// at a few milliseconds' buffering must not be preempted by ordinary work,
// or its small buffers underrun. make_thread_realtime() asks for SCHED_FIFO
// at `priority` for the calling thread:
//
//  1. directly (sched_setscheduler), where the process may: root,
//     CAP_SYS_NICE, or an RLIMIT_RTPRIO of at least `priority` (the packaged
//     system units grant it with LimitRTPRIO=);
//  2. else through RTKit (org.freedesktop.RealtimeKit1 on the system bus), as
//     PulseAudio and PipeWire do for a desktop user: this is how the agent,
//     a user service in an app qube, gets it. RTKit caps the priority
//     (MaxRealtimePriority) and requires an RLIMIT_RTTIME of at most its
//     RTTimeUSecMax, which is set for the process first (a thread that
//     spins without blocking for that long gets SIGXCPU, then SIGKILL:
//     ours block every period).
//
// Otherwise nothing changes and the result says why. QAUDIO_NO_RT=1
// disables the attempt (tests that must behave like an unprivileged user,
// debugging under gdb); QAUDIO_RT_VIA=direct or =rtkit tries only that way.
// Called once when a thread starts, never on the audio path (the RTKit
// call is a D-Bus round trip, bounded by a 2 s timeout).
//
//   auto rt = qaudio::make_thread_realtime(qaudio::kRealtimePriority);
//   log_info("stream thread: %s", rt.describe().c_str());
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "qaudio/result.hpp"

namespace qaudio {

// Below PipeWire's data loop (88) and PulseAudio's default (5 + 1 for its
// I/O threads is the lowest they take): the sound server's own thread wins
// when both are runnable, as it has the hardware deadline.
inline constexpr int kRealtimePriority = 4;

struct RealtimeResult {
  bool granted = false;
  std::string via;     // "sched_setscheduler" or "RTKit" when granted
  int priority = 0;    // the SCHED_FIFO priority granted
  std::string reason;  // why not, when not granted
  explicit operator bool() const { return granted; }
  std::string describe() const;  // "real-time scheduling (SCHED_FIFO 4 via RTKit)"
};

// For the calling thread (see above).
RealtimeResult make_thread_realtime(int priority);

// Through RTKit only, for thread `tid` of this process (gettid()). Returns
// the priority granted (at most RTKit's MaxRealtimePriority).
Result<int> rtkit_make_thread_realtime(pid_t tid, int priority);

// True when QAUDIO_NO_RT=1 is set.
bool realtime_disabled();

}  // namespace qaudio
