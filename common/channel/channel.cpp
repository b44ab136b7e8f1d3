// make_transport() (parses "unix:DIR", "shm:DIR", "xen"), to_string(ChannelState)
// and the blocking helpers read_all / write_all / wait_open of qaudio/channel.hpp.
//
//   auto t = make_transport("shm:/run/qaudio");
//   if (!t) { log_error("%s", t.error().message.c_str()); }
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "qaudio/channel.hpp"
#include "qaudio/config.h"
#include "transports.hpp"

namespace qaudio {

std::string_view to_string(ChannelState s) {
  switch (s) {
    case ChannelState::Waiting:
      return "waiting";
    case ChannelState::Open:
      return "open";
    case ChannelState::Closed:
      return "closed";
  }
  return "unknown";
}

Result<std::unique_ptr<Transport>> make_transport(std::string_view spec) {
  const std::string forms = "expected unix:DIR, shm:DIR or xen";
  auto with_dir = [&](std::string_view prefix) -> std::optional<std::string> {
    if (spec.substr(0, prefix.size()) == prefix) {
      return std::string(spec.substr(prefix.size()));
    }
    return std::nullopt;
  };
  std::unique_ptr<Transport> t;
  if (auto dir = with_dir("unix:")) {
    if (dir->empty()) {
      return fail("channel spec '" + std::string(spec) + "' names no directory: " + forms, EINVAL);
    }
    t = detail::make_unix_transport(std::move(*dir));
  } else if (auto dir = with_dir("shm:")) {
    if (dir->empty()) {
      return fail("channel spec '" + std::string(spec) + "' names no directory: " + forms, EINVAL);
    }
    t = detail::make_shm_transport(std::move(*dir));
  } else if (spec == "xen") {
#if QAUDIO_HAVE_XEN
    t = detail::make_xen_transport();
#else
    return fail(
        "channel spec 'xen': qaudio was built without Xen support "
        "(install libxen-dev and reconfigure with -DQAUDIO_WITH_XEN=ON)",
        ENOTSUP);
#endif
  } else {
    return fail("unknown channel spec '" + std::string(spec) + "': " + forms, EINVAL);
  }
  return t;
}

namespace {

using Clock = std::chrono::steady_clock;

// Polls the channel's fd until readable or the deadline; then handle_events().
// False when the deadline passed or the channel is Closed.
bool wait_event(Channel& ch, Clock::time_point deadline) {
  if (ch.state() == ChannelState::Closed) {
    return false;
  }
  auto now = Clock::now();
  if (now >= deadline) {
    return false;
  }
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
  pollfd p{ch.fd(), POLLIN, 0};
  int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 60000)));
  if (r < 0 && errno != EINTR) {
    return false;
  }
  ch.handle_events();
  return ch.state() != ChannelState::Closed;
}

}  // namespace

size_t read_all(Channel& ch, std::span<std::byte> out, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  size_t done = 0;
  bool probed = false;
  while (done < out.size()) {
    size_t n = ch.read(out.subspan(done));
    done += n;
    if (n > 0) {
      probed = false;
      continue;
    }
    // data_ready() also asks the writer for a wake-up before we sleep.
    if (!probed && ch.data_ready() > 0) {
      probed = true;
      continue;
    }
    probed = false;
    if (!wait_event(ch, deadline)) {
      // The peer may have left after writing: take what is still there.
      done += ch.read(out.subspan(done));
      break;
    }
  }
  return done;
}

size_t write_all(Channel& ch, std::span<const std::byte> in, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  size_t done = 0;
  bool probed = false;
  while (done < in.size()) {
    size_t n = ch.write(in.subspan(done));
    done += n;
    if (n > 0) {
      probed = false;
      continue;
    }
    // buffer_space() also asks the reader for a wake-up before we sleep.
    if (!probed && ch.buffer_space() > 0) {
      probed = true;
      continue;
    }
    probed = false;
    if (!wait_event(ch, deadline)) {
      break;
    }
  }
  return done;
}

bool wait_open(Channel& ch, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  ch.handle_events();
  while (ch.state() == ChannelState::Waiting) {
    if (!wait_event(ch, deadline)) {
      break;
    }
  }
  return ch.state() == ChannelState::Open;
}

}  // namespace qaudio
