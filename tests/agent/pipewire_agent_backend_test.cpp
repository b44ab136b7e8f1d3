// PipeWireAgentBackend against a private PipeWire + WirePlumber: the nodes
// exist, a tone played into "Qubes audio" reaches the playback ring and marks
// the output active, and an app recording "Qubes microphone" marks the mic in
// use and gets valid silence.
#include "pipewire_agent_backend.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <thread>

#include "agent_tone.hpp"
#include "sound_servers.hpp"

namespace qaudio::agent {
namespace {

using namespace std::chrono_literals;
using qaudio::test::wait_until;

struct Recorder : AgentBackend::Listener {
  std::atomic<int> active{-1};
  std::atomic<int> mic{-1};
  void on_output_active(bool a) override { active = a; }
  void on_mic_in_use(bool m) override { mic = m; }
  void on_backend_error(const std::string&) override {}
};

TEST(PipeWireAgentBackend, nodes_exist_tone_reaches_ring_and_mic_is_silent_but_valid) {
  if (!qaudio::test::PipeWireStack::available() || !qaudio::test::have_program("pw-play") ||
      !qaudio::test::have_program("sox")) {
    GTEST_SKIP() << "pipewire stack or sox missing";
  }
  qaudio::test::TempDir dir("agent-pw");
  qaudio::test::PipeWireStack pw(dir.path());
  ASSERT_TRUE(pw.start()) << pw.last_error();
  qaudio::test::use_private_env_in_process(pw.client_env());
  EventLoop loop;
  Recorder rec;
  auto be = make_pipewire_agent_backend({});
  std::thread th([&] { loop.run(); });
  std::atomic<int> started{0};
  loop.post([&] {
    auto r = be->start(loop, rec);
    EXPECT_TRUE(r) << r.error().message;
    started = r ? 1 : -1;
  });
  ASSERT_TRUE(wait_until([&] { return started.load() != 0; }, 10s));
  ASSERT_EQ(started.load(), 1);

  ASSERT_TRUE(wait_until(
      [&] {
        auto d = pw.pw_dump().out;
        return d.find("\"Qubes audio\"") != std::string::npos &&
               d.find("\"qubes_microphone\"") != std::string::npos;
      },
      10s, 200ms));

  std::string wav = dir.path() + "/tone.wav";
  ASSERT_EQ(qaudio::test::run_command({"sox", "-n", "-r", "48000", "-c", "2", "-b", "16", wav,
                                       "synth", "4", "sine", "1000", "vol", "0.5"},
                                      {}, 20s)
                .status,
            0);
  auto player = qaudio::test::Child::spawn({"pw-play", "--target", "qubes_audio", wav},
                                           pw.client_env(), dir.path() + "/pw-play.log");
  ASSERT_TRUE(player);
  std::vector<std::byte> got;
  std::array<std::byte, 4096> buf;
  auto& ring = be->rings().playback();
  ASSERT_TRUE(wait_until(
      [&] {
        size_t n = ring.read(buf);
        auto f = test::to_float(std::vector<std::byte>(buf.begin(), buf.begin() + n),
                                be->playback_format());
        bool loud = false;
        for (float v : f) {
          loud = loud || std::fabs(v) > 0.1f;
        }
        if (loud || !got.empty()) {
          got.insert(got.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
        }
        return got.size() >= 48000u * 8;
      },
      15s, 2ms));
  auto f = test::to_float(got, be->playback_format());
  EXPECT_NEAR(test::best_tone_level(f, 2, 0, 48000, 1000.0, 4800, 4800), 0.5, 0.01);
  // Frequency in the cleanest 100 ms window (a loaded machine may drop a cycle).
  size_t best = 4800;
  double best_level = 0;
  for (size_t w = 4800; w + 4800 <= f.size() / 2; w += 4800) {
    double l = test::tone_peak(f, 2, 1, 48000, 1000.0, w, 4800);
    if (l > best_level) {
      best_level = l;
      best = w;
    }
  }
  std::vector<float> win(f.begin() + static_cast<ptrdiff_t>(best * 2),
                         f.begin() + static_cast<ptrdiff_t>((best + 4800) * 2));
  EXPECT_NEAR(test::zero_cross_freq(win, 2, 1, 48000), 1000.0, 3.0);
  EXPECT_GT(test::tone_level(f, 2, 0, 48000, 1000.0, 4800, 4800), 0.15);  // mostly present
  EXPECT_EQ(rec.active.load(), 1);
  player->stop(SIGTERM);

  auto pcm = qaudio::test::record_floats({"pw-record", "--target", "qubes_microphone", "--format",
                                          "f32", "--rate", "48000", "--channels", "1", "-"},
                                         pw.client_env(), 9600, 15s, dir.path() + "/pw-record.log");
  ASSERT_EQ(pcm.size(), 9600u);
  EXPECT_LT(test::rms_of(pcm, 1, 0), 1e-4);

  loop.post([&] {
    be->stop();
    loop.quit();
  });
  th.join();
}

// The latency beyond the graph (set_remote_latency: the agent's queue plus the
// audio domain's Latency report) is the sink node's port Latency, visible in
// pw-dump, and follows a changed report.
TEST(PipeWireAgentBackend, remote_latency_is_the_sink_process_latency_and_follows_changes) {
  if (!qaudio::test::PipeWireStack::available()) {
    GTEST_SKIP() << "pipewire stack missing";
  }
  qaudio::test::TempDir dir("agent-pw-lat");
  qaudio::test::PipeWireStack pw(dir.path());
  ASSERT_TRUE(pw.start()) << pw.last_error();
  qaudio::test::use_private_env_in_process(pw.client_env());
  EventLoop loop;
  Recorder rec;
  auto be = make_pipewire_agent_backend({});
  std::thread th([&] { loop.run(); });
  std::atomic<int> started{0};
  loop.post([&] {
    auto r = be->start(loop, rec);
    EXPECT_TRUE(r) << r.error().message;
    started = r ? 1 : -1;
  });
  ASSERT_TRUE(wait_until([&] { return started.load() != 0; }, 10s));
  ASSERT_EQ(started.load(), 1);
  // The port Latency "ns" values pw-dump shows (only our sink sets one).
  auto reported = [&] {
    std::string d = pw.pw_dump().out;
    std::vector<int64_t> v;
    std::regex re("\"direction\": \"Input\"[^}]*\"minNs\":\\s*([0-9]+)");
    for (std::sregex_iterator it(d.begin(), d.end(), re), end; it != end; ++it) {
      v.push_back(std::stoll((*it)[1].str()));
    }
    return v;
  };
  for (int64_t ms : {25, 80, 12}) {
    loop.post([&, ms] { be->set_remote_latency(std::chrono::milliseconds(ms)); });
    std::vector<int64_t> last;
    EXPECT_TRUE(wait_until(
        [&] {
          last = reported();
          return std::find(last.begin(), last.end(), ms * 1'000'000) != last.end();
        },
        10s, 200ms))
        << "no port Latency of " << ms << " ms in pw-dump (seen " << last.size() << " values)"
        << (getenv("QAUDIO_DEBUG_DUMP") ? pw.pw_dump().out : std::string());
  }
  loop.post([&] {
    be->stop();
    loop.quit();
  });
  th.join();
}

}  // namespace
}  // namespace qaudio::agent
