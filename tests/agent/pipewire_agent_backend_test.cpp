// PipeWireAgentBackend against a private PipeWire + WirePlumber: the nodes
// exist, a tone played into "Qubes audio" reaches the playback ring and marks
// the output active, and an app recording "Qubes microphone" marks the mic in
// use and gets valid silence.
#include "pipewire_agent_backend.hpp"

#include <gtest/gtest.h>
#include <pipewire/pipewire.h>
#include <spa/param/audio/format-utils.h>

#include <cstdio>
#include <regex>
#include <thread>

#include "qaudio/config.h"
#if QAUDIO_HAVE_PULSE
#include <pulse/pulseaudio.h>
#endif

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

// A private PipeWire + WirePlumber (+ pipewire-pulse if asked) and the
// backend started on an event-loop thread; stopped in that order's reverse
// when the test ends.
struct Rig {
  explicit Rig(const char* name) : dir(name), pw(dir.path()) {}
  ~Rig() {
    if (th.joinable()) {
      loop.post([&] {
        be->stop();
        loop.quit();
      });
      th.join();
    }
  }
  ::testing::AssertionResult start(bool pipewire_pulse) {
    if (!pw.start() || (pipewire_pulse && !pw.start_pipewire_pulse())) {
      return ::testing::AssertionFailure() << pw.last_error();
    }
    qaudio::test::use_private_env_in_process(pw.client_env());
    th = std::thread([&] { loop.run(); });
    std::atomic<int> started{0};
    std::string error;
    loop.post([&] {
      auto r = be->start(loop, rec);
      error = r ? "" : r.error().message;
      started = r ? 1 : -1;
    });
    if (!wait_until([&] { return started.load() != 0; }, 10s) || started.load() != 1) {
      return ::testing::AssertionFailure() << "the backend did not start: " << error;
    }
    return ::testing::AssertionSuccess();
  }
  auto parts() { return std::tie(dir, pw, loop, rec, be); }

  qaudio::test::TempDir dir;
  qaudio::test::PipeWireStack pw;
  EventLoop loop;
  Recorder rec;
  std::unique_ptr<AgentBackend> be = make_pipewire_agent_backend({});
  std::thread th;
};

TEST(PipeWireAgentBackend, nodes_exist_tone_reaches_ring_and_mic_is_silent_but_valid) {
  if (!qaudio::test::PipeWireStack::available() || !qaudio::test::have_program("pw-play") ||
      !qaudio::test::have_program("sox")) {
    GTEST_SKIP() << "pipewire stack or sox missing";
  }
  Rig rig("agent-pw");
  ASSERT_TRUE(rig.start(/*pipewire_pulse=*/false));
  auto [dir, pw, loop, rec, be] = rig.parts();

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
}

// The latency beyond the graph (set_remote_latency: the agent's queue plus the
// audio domain's Latency report) is the sink node's port Latency, visible in
// pw-dump, and follows a changed report.
TEST(PipeWireAgentBackend, remote_latency_is_the_sink_process_latency_and_follows_changes) {
  if (!qaudio::test::PipeWireStack::available()) {
    GTEST_SKIP() << "pipewire stack missing";
  }
  Rig rig("agent-pw-lat");
  ASSERT_TRUE(rig.start(/*pipewire_pulse=*/false));
  auto [dir, pw, loop, rec, be] = rig.parts();
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
}

// What an app playing into "Qubes audio" is told, read the way apps read it
// (pw_stream_get_time, which pipewire-pulse also forwards to PulseAudio
// clients): the graph clock our driver keeps moves with real time (before,
// its time and position stayed at 0), and the delay to the device includes
// the latency beyond the graph (the audio domain's buffer and device).
TEST(PipeWireAgentBackend, an_app_sees_a_running_clock_and_the_remote_latency) {
  if (!qaudio::test::PipeWireStack::available()) {
    GTEST_SKIP() << "pipewire stack missing";
  }
  Rig rig("agent-pw-clock");
  ASSERT_TRUE(rig.start(/*pipewire_pulse=*/false));
  auto [dir, pw, loop, rec, be] = rig.parts();
  loop.post([&] { be->set_remote_latency(std::chrono::milliseconds(40)); });

  // The app: a playback stream of silence into qubes_audio.
  struct App {
    pw_thread_loop* tl = nullptr;
    pw_stream* s = nullptr;
    spa_hook hook{};
  } app;
  app.tl = pw_thread_loop_new("test-app", nullptr);
  ASSERT_NE(app.tl, nullptr);
  static const pw_stream_events events = [] {
    pw_stream_events e{};
    e.version = PW_VERSION_STREAM_EVENTS;
    e.process = [](void* data) {
      auto* a = static_cast<App*>(data);
      pw_buffer* b = pw_stream_dequeue_buffer(a->s);
      if (b == nullptr) {
        return;
      }
      spa_data& d = b->buffer->datas[0];
      uint32_t frames = b->requested != 0 ? static_cast<uint32_t>(b->requested) : 256;
      frames = std::min<uint32_t>(frames, d.maxsize / 8);
      if (d.data != nullptr) {
        std::memset(d.data, 0, frames * 8);
      }
      d.chunk->offset = 0;
      d.chunk->stride = 8;
      d.chunk->size = frames * 8;
      pw_stream_queue_buffer(a->s, b);
    };
    return e;
  }();
  pw_thread_loop_lock(app.tl);
  app.s = pw_stream_new_simple(pw_thread_loop_get_loop(app.tl), "test-app",
                               pw_properties_new(PW_KEY_MEDIA_TYPE, "Audio", PW_KEY_MEDIA_CATEGORY,
                                                 "Playback", PW_KEY_TARGET_OBJECT, "qubes_audio",
                                                 PW_KEY_NODE_LATENCY, "256/48000", nullptr),
                               &events, &app);
  ASSERT_NE(app.s, nullptr);
  uint8_t buf[1024];
  spa_pod_builder b = SPA_POD_BUILDER_INIT(buf, sizeof(buf));
  spa_audio_info_raw info{};
  info.format = SPA_AUDIO_FORMAT_F32_LE;
  info.rate = 48000;
  info.channels = 2;
  info.position[0] = SPA_AUDIO_CHANNEL_FL;
  info.position[1] = SPA_AUDIO_CHANNEL_FR;
  const spa_pod* params[1] = {spa_format_audio_raw_build(&b, SPA_PARAM_EnumFormat, &info)};
  ASSERT_EQ(pw_stream_connect(app.s, PW_DIRECTION_OUTPUT, PW_ID_ANY,
                              static_cast<pw_stream_flags>(PW_STREAM_FLAG_AUTOCONNECT |
                                                           PW_STREAM_FLAG_MAP_BUFFERS |
                                                           PW_STREAM_FLAG_RT_PROCESS),
                              params, 1),
            0);
  pw_thread_loop_unlock(app.tl);
  ASSERT_EQ(pw_thread_loop_start(app.tl), 0);
  auto get_time = [&] {
    pw_time t{};
    pw_thread_loop_lock(app.tl);
    pw_stream_get_time_n(app.s, &t, sizeof(t));
    pw_thread_loop_unlock(app.tl);
    return t;
  };
  // Streaming into our sink, and the sink drives (the output is active).
  ASSERT_TRUE(wait_until([&] { return rec.active.load() == 1 && get_time().ticks > 0; }, 15s, 50ms))
      << "the app's stream never ran on Qubes audio's clock (ticks " << get_time().ticks << ")";
  // The delay the app sees covers the 40 ms beyond the graph (plus at most
  // a few quanta of the graph itself).
  pw_time t0{};
  EXPECT_TRUE(wait_until(
      [&] {
        t0 = get_time();
        return t0.rate.denom > 0 && t0.delay * 1000 / static_cast<int64_t>(t0.rate.denom) >= 40;
      },
      10s, 50ms))
      << "delay " << t0.delay << " at rate 1/" << t0.rate.denom;
  std::printf("the app's delay to the device: %.1f ms (40 ms beyond the graph)\n",
              static_cast<double>(t0.delay) * 1000.0 / t0.rate.denom);
  EXPECT_LE(t0.delay * 1000 / static_cast<int64_t>(t0.rate.denom), 40 + 30);
  const auto wall0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return std::chrono::steady_clock::now() - wall0 >= 1s; }, 5s));
  pw_time t1 = get_time();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  const double clock_s = static_cast<double>(t1.now - t0.now) * 1e-9;
  const double ticks_s =
      static_cast<double>(t1.ticks - t0.ticks) / static_cast<double>(t1.rate.denom);
  EXPECT_GT(t0.now, 0) << "the graph clock's time stays at 0";
  EXPECT_NEAR(clock_s, wall, 0.25) << "the graph clock's time does not follow real time";
  EXPECT_NEAR(ticks_s, clock_s, 0.05 * clock_s + 0.011)
      << "the graph position does not advance at the sample rate";

  pw_thread_loop_stop(app.tl);
  pw_stream_destroy(app.s);
  pw_thread_loop_destroy(app.tl);
}

#if QAUDIO_HAVE_PULSE
// The same for a PulseAudio app in a PipeWire qube (most desktop apps):
// pipewire-pulse hands the stream's delay on as the sink latency of the
// stream's timing info (pa_stream_get_latency adds it), so the app is told
// the latency beyond the graph too. (`pactl list sinks` prints 0 for every
// sink on pipewire-pulse 0.3.65; the per-stream timing is what apps use.)
TEST(PipeWireAgentBackend, a_pulseaudio_app_through_pipewire_pulse_is_told_the_remote_latency) {
  if (!qaudio::test::PipeWireStack::available() || !qaudio::test::have_program("pipewire-pulse")) {
    GTEST_SKIP() << "pipewire stack or pipewire-pulse missing";
  }
  Rig rig("agent-pw-pulse");
  ASSERT_TRUE(rig.start(/*pipewire_pulse=*/true));
  auto [dir, pw, loop, rec, be] = rig.parts();
  loop.post([&] { be->set_remote_latency(std::chrono::milliseconds(40)); });

  // The app: a libpulse playback stream of silence on qubes_audio.
  pa_threaded_mainloop* ml = pa_threaded_mainloop_new();
  ASSERT_NE(ml, nullptr);
  pa_context* ctx = pa_context_new(pa_threaded_mainloop_get_api(ml), "test-app");
  ASSERT_EQ(pa_context_connect(ctx, pw.pulse_server().c_str(), PA_CONTEXT_NOFLAGS, nullptr), 0);
  ASSERT_EQ(pa_threaded_mainloop_start(ml), 0);
  auto locked = [&](auto&& f) {
    pa_threaded_mainloop_lock(ml);
    auto v = f();
    pa_threaded_mainloop_unlock(ml);
    return v;
  };
  ASSERT_TRUE(wait_until(
      [&] { return locked([&] { return pa_context_get_state(ctx) == PA_CONTEXT_READY; }); }, 10s));
  pa_sample_spec ss{PA_SAMPLE_FLOAT32LE, 48000, 2};
  pa_stream* st = locked([&] {
    pa_stream* p = pa_stream_new(ctx, "test-app", &ss, nullptr);
    pa_stream_set_write_callback(
        p,
        [](pa_stream* s, size_t n, void*) {
          void* data = nullptr;
          if (pa_stream_begin_write(s, &data, &n) == 0 && data != nullptr) {
            std::memset(data, 0, n);
            pa_stream_write(s, data, n, nullptr, 0, PA_SEEK_RELATIVE);
          }
        },
        nullptr);
    pa_stream_connect_playback(p, "qubes_audio", nullptr,
                               static_cast<pa_stream_flags_t>(PA_STREAM_AUTO_TIMING_UPDATE),
                               nullptr, nullptr);
    return p;
  });
  ASSERT_TRUE(wait_until(
      [&] { return locked([&] { return pa_stream_get_state(st) == PA_STREAM_READY; }); }, 10s));
  // Fresh timing info until the stream plays on our clock: its sink latency
  // then includes the 40 ms (and at most a few quanta more).
  pa_usec_t sink_usec = 0;
  EXPECT_TRUE(wait_until(
      [&] {
        pa_operation* op =
            locked([&] { return pa_stream_update_timing_info(st, nullptr, nullptr); });
        if (op == nullptr) {
          return false;
        }
        wait_until(
            [&] {
              return locked([&] { return pa_operation_get_state(op) != PA_OPERATION_RUNNING; });
            },
            2s, 5ms);
        sink_usec = locked([&] {
          pa_operation_unref(op);
          const pa_timing_info* ti = pa_stream_get_timing_info(st);
          return ti != nullptr ? ti->sink_usec : pa_usec_t{0};
        });
        return sink_usec >= 40'000;
      },
      15s, 100ms))
      << "sink latency " << sink_usec << " us";
  std::printf("the app's sink latency: %.1f ms (40 ms beyond the graph)\n", sink_usec / 1000.0);
  EXPECT_LE(sink_usec, 70'000u);
  locked([&] {
    pa_stream_disconnect(st);
    pa_stream_unref(st);
    pa_context_disconnect(ctx);
    pa_context_unref(ctx);
    return 0;
  });
  pa_threaded_mainloop_stop(ml);
  pa_threaded_mainloop_free(ml);
}
#endif

}  // namespace
}  // namespace qaudio::agent
