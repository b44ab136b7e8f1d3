// Logging for the control side (never from the real-time thread: it posts
// messages to the main loop instead). Writes "qaudio[<tag>] <level>: msg" to
// stderr; the level is set once at start-up (--verbose, QAUDIO_LOG=debug).
//
//   log_info("session %s: connected (%s)", name.c_str(), proto);
#pragma once

#include <cstdarg>

namespace qaudio {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
void set_log_tag(const char* tag);  // program name shown in every line

void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define QAUDIO_LOG_AT(level, ...)                  \
  do {                                             \
    if ((level) >= ::qaudio::log_level()) {        \
      ::qaudio::log_message((level), __VA_ARGS__); \
    }                                              \
  } while (0)

#define log_debug(...) QAUDIO_LOG_AT(::qaudio::LogLevel::Debug, __VA_ARGS__)
#define log_info(...) QAUDIO_LOG_AT(::qaudio::LogLevel::Info, __VA_ARGS__)
#define log_warn(...) QAUDIO_LOG_AT(::qaudio::LogLevel::Warn, __VA_ARGS__)
#define log_error(...) QAUDIO_LOG_AT(::qaudio::LogLevel::Error, __VA_ARGS__)

}  // namespace qaudio
