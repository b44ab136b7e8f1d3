// Real-time thread rules, checked in debug builds: code running on an audio
// thread marks itself with RtScope; while the mark is set, a debug hook in
// the global operator new aborts with a message (allocation on the RT
// thread). Release builds (NDEBUG) and sanitizer builds compile the hook out
// (the sanitizers own operator new there); RtScope then only sets the flag.
//
//   void Backend::rt_loop() { RtScope rt; ... src->pull(...); }
//   QAUDIO_ASSERT_NOT_RT();   // in a function that must not run on the RT thread
#pragma once

namespace qaudio::daemon {

// True while the calling thread is inside an RtScope.
bool in_rt_thread();

class RtScope {
 public:
  RtScope();
  ~RtScope();
  RtScope(const RtScope&) = delete;
  RtScope& operator=(const RtScope&) = delete;

 private:
  bool prev_;
};

// Whether this build aborts on allocation inside an RtScope.
bool rt_alloc_check_enabled();

// Called by QAUDIO_ASSERT_NOT_RT (debug builds): aborts with `what`.
[[noreturn]] void rt_violation(const char* what);

}  // namespace qaudio::daemon

#ifndef NDEBUG
#define QAUDIO_ASSERT_NOT_RT()                  \
  do {                                          \
    if (::qaudio::daemon::in_rt_thread()) {     \
      ::qaudio::daemon::rt_violation(__func__); \
    }                                           \
  } while (0)
#else
#define QAUDIO_ASSERT_NOT_RT() \
  do {                         \
  } while (0)
#endif
