// Real-time rule checks (see rt_check.hpp): the thread-local "in RT" mark
// and, in debug builds without sanitizers, a global operator new that aborts
// when called inside an RtScope.
#include "rt_check.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>

#if !defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define QAUDIO_RT_NEW_HOOK 0
#endif
#endif
#ifndef QAUDIO_RT_NEW_HOOK
#define QAUDIO_RT_NEW_HOOK 1
#endif
#else
#define QAUDIO_RT_NEW_HOOK 0
#endif

namespace qaudio::daemon {
namespace {
thread_local bool t_in_rt = false;
}

bool in_rt_thread() {
  return t_in_rt;
}

RtScope::RtScope() : prev_(t_in_rt) {
  t_in_rt = true;
}

RtScope::~RtScope() {
  t_in_rt = prev_;
}

bool rt_alloc_check_enabled() {
  return QAUDIO_RT_NEW_HOOK != 0;
}

void rt_violation(const char* what) {
  // async-signal-safe output only: we may be anywhere.
  static const char kPrefix[] = "qaudio: real-time rule violated: ";
  ssize_t r = ::write(2, kPrefix, sizeof(kPrefix) - 1);
  r = ::write(2, what, std::strlen(what));
  r = ::write(2, "\n", 1);
  (void)r;
  std::abort();
}

}  // namespace qaudio::daemon

#if QAUDIO_RT_NEW_HOOK
// Debug hook: allocation on a thread inside an RtScope aborts. Everything
// else behaves as the default operator new (malloc, new_handler, bad_alloc);
// the default operator delete (free) matches.
namespace {
void* checked_alloc(std::size_t size) {
  if (qaudio::daemon::in_rt_thread()) {
    qaudio::daemon::rt_violation("operator new called on the real-time thread");
  }
  if (size == 0) {
    size = 1;
  }
  for (;;) {
    if (void* p = std::malloc(size)) {
      return p;
    }
    std::new_handler h = std::get_new_handler();
    if (!h) {
      throw std::bad_alloc();
    }
    h();
  }
}
}  // namespace

void* operator new(std::size_t size) {
  return checked_alloc(size);
}
void* operator new[](std::size_t size) {
  return checked_alloc(size);
}
#endif
