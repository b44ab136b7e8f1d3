// BacklogTrimmer: brings a native stream's queue back to its level after a
// scheduling stall. In native mode the daemon does not rate-match (it expects
// the qube to follow its clock), so audio that arrives in a burst after a
// stall stays queued in the daemon and the latency grows for good. The agent
// measures the queue between the app and the device (its ring + the daemon
// buffer from Latency reports; what the 4713 channel holds reaches the
// daemon buffer a moment later) and, when the
// queue's MINIMUM over a whole window (1 s) stayed more than `tolerance`
// above its level, drops the excess once, as one splice (splice_drop()).
//
// The level is the queue the stream runs at when nothing stalled: the lowest
// window minimum seen since reset() (each uncork / connection: the daemon
// prebuffers again; the first two windows, which hold that prebuffering
// and the settling after it, are not counted), but at least `target`
// (--latency-ms). So a daemon that
// keeps a larger prebuffer is never trimmed below it (that would underrun),
// and a stream that never stalled is never touched. The level is at most
// `max_level` (60 ms, above the daemon's stock prebuffer of 40 ms): a queue
// that was already backed up when the level was measured (e.g. the device
// started late) is still trimmed down to it. After a trim the next
// window starts, so the reports reflect the trim before the next decision.
// A trim is at most `max_step` (larger backlogs go in several steps).
//
// Pure arithmetic on times passed in (testable with simulated time).
//
//   BacklogTrimmer t({.target_ns = 10'000'000});
//   t.observe(queue_ns, now_ns);                        // every tick / report
//   if (int64_t d = t.due(now_ns)) drop_ns(d);          // then splice_drop()
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "qaudio/format.hpp"

namespace qaudio::agent {

class BacklogTrimmer {
 public:
  struct Config {
    int64_t target_ns = 10'000'000;     // the least level trimmed to
    int64_t tolerance_ns = 5'000'000;   // excess left alone
    int64_t window_ns = 1'000'000'000;  // the minimum is taken over this long
    int64_t max_step_ns = 100'000'000;  // the most one trim drops
    int64_t max_level_ns = 60'000'000;  // a level above this is a backlog, not a prebuffer
  };

  BacklogTrimmer() = default;
  explicit BacklogTrimmer(Config c) : cfg_(c) {}

  // Forget the level and the window (a new connection, an uncork).
  void reset();
  // A measurement of the whole queue at local time `now_ns`.
  void observe(int64_t queue_ns, int64_t now_ns);
  // Nanoseconds of audio to drop now (0: nothing to do). Starts a new window
  // when a window ended.
  int64_t due(int64_t now_ns);

  // The level trimmed to (-1 until the first window ended).
  int64_t level_ns() const;
  uint64_t trims() const { return trims_; }
  int64_t trimmed_ns() const { return trimmed_ns_; }

 private:
  Config cfg_{};
  bool window_open_ = false;
  // Windows after reset() that set no level: the queue is still settling
  // (the daemon prebuffers, the device's first requests, a network bridge's
  // lead). One was too few: a queue still ramping up in the second window
  // set a level below the one it settled at, which then looked like a
  // backlog; the trim ran the stream dry (NetBridgeE2E, ~1 run in 10).
  static constexpr int kSettlingWindows = 2;
  int settling_windows_ = kSettlingWindows;
  int64_t window_start_ = 0;
  int64_t window_min_ = 0;
  int64_t lowest_ = -1;  // the lowest whole-window minimum since reset()
  uint64_t trims_ = 0;
  int64_t trimmed_ns_ = 0;
};

// Drops `drop` frames from `pcm` (interleaved, `f`), which holds at least
// `drop + fade` frames: the first `fade` frames become a linear crossfade
// from pcm[0..fade) to pcm[drop..drop+fade) (equal total gain, so no click),
// and the rest from drop + fade on is what follows. Returns the bytes of the
// spliced frames, written at the start of `pcm` (fade frames). F32LE, S16LE
// and S32LE; any other format gets the plain cut (pcm[drop..drop+fade)).
size_t splice_drop(std::span<std::byte> pcm, const StreamFormat& f, size_t drop, size_t fade);

}  // namespace qaudio::agent
