// Real-time scheduling for the threads that move audio.
//
// Sound servers run their I/O threads under SCHED_FIFO/RR (PulseAudio and
// PipeWire through RTKit or RLIMIT_RTPRIO); a qaudio thread that feeds them
// at a few milliseconds' buffering must not be preempted by ordinary work,
// or its small buffers underrun. make_thread_realtime() asks for SCHED_FIFO
// at `priority` for the calling thread; it succeeds where the process may
// (root, CAP_SYS_NICE, or an RLIMIT_RTPRIO of at least `priority`, which the
// packaged systemd units grant with LimitRTPRIO=) and otherwise changes
// nothing. QAUDIO_NO_RT=1 disables the attempt (tests that must behave like
// an unprivileged user, debugging under gdb).
//
//   if (!qaudio::make_thread_realtime(qaudio::kRealtimePriority))
//     log_info("running without real-time scheduling");
#pragma once

namespace qaudio {

// Below PipeWire's data loop (88) and PulseAudio's default (5 + 1 for its
// I/O threads is the lowest they take): the sound server's own thread wins
// when both are runnable, as it has the hardware deadline.
inline constexpr int kRealtimePriority = 4;

// Returns true when the calling thread now runs under SCHED_FIFO.
bool make_thread_realtime(int priority);

// True when QAUDIO_NO_RT=1 is set.
bool realtime_disabled();

}  // namespace qaudio
