// Implementation of qaudio/log.hpp: one formatted write(2) per line, so lines
// from several threads of the control side do not interleave.
#include "qaudio/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qaudio {
namespace {

LogLevel initial_level() {
  const char* env = std::getenv("QAUDIO_LOG");
  if (env == nullptr) {
    return LogLevel::Info;
  }
  if (std::strcmp(env, "debug") == 0) {
    return LogLevel::Debug;
  }
  if (std::strcmp(env, "warn") == 0) {
    return LogLevel::Warn;
  }
  if (std::strcmp(env, "error") == 0) {
    return LogLevel::Error;
  }
  if (std::strcmp(env, "off") == 0) {
    return LogLevel::Off;
  }
  return LogLevel::Info;
}

std::atomic<LogLevel> g_level{initial_level()};
std::atomic<const char*> g_tag{"qaudio"};

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug:
      return "debug";
    case LogLevel::Info:
      return "info";
    case LogLevel::Warn:
      return "warning";
    case LogLevel::Error:
      return "error";
    case LogLevel::Off:
      break;
  }
  return "";
}

}  // namespace

void set_log_level(LogLevel level) {
  g_level.store(level);
}
LogLevel log_level() {
  return g_level.load(std::memory_order_relaxed);
}
void set_log_tag(const char* tag) {
  g_tag.store(tag);
}

void log_message(LogLevel level, const char* fmt, ...) {
  char line[1024];
  int n = std::snprintf(line, sizeof line, "%s %s: ", g_tag.load(), level_name(level));
  if (n < 0) {
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) {
    len = sizeof line - 2;
  }
  line[len++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, len);
  (void)ignored;
}

}  // namespace qaudio
