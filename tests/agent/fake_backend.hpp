// FakeAgentBackend: an AgentBackend for tests of the agent core. The test
// plays PCM "as an app" with play(), reads what the mic delivered with
// take_mic(), and flips output/mic activity with set_output_active() /
// set_mic_in_use() (posted to the session's loop, as real backends do).
//
//   FakeAgentBackend be({SampleFormat::F32LE, 48000, 2});
//   AgentSession s(loop, be, std::move(transport), opts);
//   be.play(bytes); be.set_output_active(true);
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

#include "agent_backend.hpp"

namespace qaudio::agent::test {

class FakeAgentBackend : public AgentBackend {
 public:
  explicit FakeAgentBackend(StreamFormat playback = {SampleFormat::F32LE, 48000, 2},
                            StreamFormat capture = {SampleFormat::F32LE, 48000, 2})
      : playback_(playback), capture_(capture), rings_(1 << 20, 1 << 20) {}

  Result<void> start(EventLoop& loop, Listener& l) override {
    loop_ = &loop;
    listener_ = &l;
    started_ = true;
    return {};
  }
  void stop() override { started_ = false; }
  StreamFormat playback_format() const override { return playback_; }
  StreamFormat capture_format() const override { return capture_; }
  BackendRings& rings() override { return rings_; }
  void set_remote_latency(std::chrono::nanoseconds l) override { remote_latency_ns_ = l.count(); }
  void on_clock_tick(uint64_t frames, uint64_t, uint32_t) override { last_tick_frames_ = frames; }
  std::string describe() const override { return "fake"; }

  // Test side ("the app"): any thread.
  size_t play(std::span<const std::byte> pcm) {
    size_t n = rings_.playback().write(pcm);
    rings_.notify_playback();
    return n;
  }
  std::vector<std::byte> take_mic() {
    std::vector<std::byte> out(rings_.capture().readable());
    out.resize(rings_.capture().read(out));
    return out;
  }
  void set_output_active(bool a) {
    loop_->post([this, a] { listener_->on_output_active(a); });
  }
  void set_mic_in_use(bool m) {
    loop_->post([this, m] { listener_->on_mic_in_use(m); });
  }

  std::atomic<int64_t> remote_latency_ns_{-1};
  std::atomic<uint64_t> last_tick_frames_{0};
  std::atomic<bool> started_{false};

 private:
  StreamFormat playback_;
  StreamFormat capture_;
  BackendRings rings_;
  EventLoop* loop_ = nullptr;
  Listener* listener_ = nullptr;
};

}  // namespace qaudio::agent::test
