// The mixer window's output device choices against a real daemon on a real
// PulseAudio with two null sinks ("out", the server default, and "other"),
// offscreen: choosing "other" in work's strip (keyboard) moves work's 440 Hz
// tone there (Goertzel levels at both sinks' monitors) while personal's
// 660 Hz stays at "out"; choosing "other" as the default output moves
// personal too; after the daemon restarts (state kept in its state
// directory) the window reconnects and shows both choices again; going back
// to the defaults brings both tones back to "out".
#include <gtest/gtest.h>

#include <QTest>

#include <cmath>

#include "e2e_util.hpp"
#include "mixer_controller.hpp"
#include "mixer_window.hpp"
#include "ui_support.hpp"

namespace qaudio::mixer {
namespace {

using namespace test;
using qaudio::test::PulseServer;

constexpr uint32_t kRate = 48000;

// Moves `combo`'s current item to the one whose data is `value` with the
// arrow keys, as a user would (QComboBox emits activated for each step).
bool choose(QComboBox* combo, const QString& value) {
  int target = combo->findData(value);
  if (target < 0) {
    return false;
  }
  combo->setFocus();
  while (combo->currentIndex() != target) {
    QTest::keyClick(combo, combo->currentIndex() < target ? Qt::Key_Down : Qt::Key_Up);
  }
  return true;
}

struct OutputTest : ::testing::Test {
  void SetUp() override {
    for (const char* p : {"pulseaudio", "pactl", "parec"}) {
      if (!qaudio::test::have_program(p)) {
        GTEST_SKIP() << p << " missing";
      }
    }
    qt_app();
    pa = std::make_unique<PulseServer>(rig.dir() + "/audioqube");
    ASSERT_TRUE(pa->start()) << pa->last_error();
    ASSERT_EQ(
        pa->pactl({"load-module", "module-null-sink", "sink_name=other", "rate=48000"}).status, 0);
    rig.set_backend("pulse:" + pa->server());
    rig.extra_args = {"--state-dir", rig.dir() + "/state"};
    rig.daemon_env = pa->client_env();
    ASSERT_TRUE(rig.start()) << rig.daemon_log();
    client.setRetryInterval(50, 200);
    client.start();
    ASSERT_TRUE(qt_wait(
        [&] {
          const QubeRow* w = mixer.model().find("work");
          const QubeRow* p = mixer.model().find("personal");
          return w && p && w->running() && p->running() && mixer.outputs().size() >= 2;
        },
        30s))
        << rig.daemon_log();
  }
  // 0.8 s at `sink`'s monitor, the first 200 ms (queued before a change) dropped.
  std::vector<float> record(const std::string& sink) {
    auto pcm = pa->record_monitor(kRate * 8 / 10, 30s, sink + ".monitor");
    size_t skip = std::min(pcm.size(), static_cast<size_t>(kRate / 5 * 2));
    return {pcm.begin() + static_cast<ptrdiff_t>(skip), pcm.end()};
  }
  // Records until `freq` is at `expected` (+-tol) at `sink` or 15 s pass
  // (a change reaches the sink after the audio already queued).
  double settled(const std::string& sink, double freq, double expected, double tol) {
    double got = -1;
    qaudio::test::wait_until(
        [&] {
          got = qaudio::test::median_level(record(sink), freq);
          return std::fabs(got - expected) <= tol;
        },
        15s, 1ms);
    return got;
  }

  UiRig rig{"null"};
  std::unique_ptr<PulseServer> pa;
  ControlClient client{QString::fromStdString(rig.control())};
  MixerController mixer{client};
};

TEST_F(OutputTest, choosing_a_sink_moves_the_tone_and_survives_a_reconnect) {
  MixerWindow win(mixer);
  win.show();
  QubeStrip* work = win.strip("work");
  QubeStrip* personal = win.strip("personal");
  ASSERT_NE(work, nullptr);
  ASSERT_NE(personal, nullptr);
  ASSERT_TRUE(qt_wait([&] { return work->output()->findData("other") > 0; }, 10s));
  EXPECT_EQ(work->output()->currentData().toString(), "");  // the default
  EXPECT_EQ(win.outputs()->currentData().toString(), "");
  EXPECT_TRUE(win.outputs()->isEnabled());
  // Both tones start at the server's default sink.
  EXPECT_NEAR(settled("out", 440, 0.3, 0.03), 0.3, 0.03);

  // work alone to "other".
  ASSERT_TRUE(choose(work->output(), "other"));
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["output_device"] == "other"; }, 10s))
      << rig.daemon_log();
  EXPECT_NEAR(settled("other", 440, 0.3, 0.03), 0.3, 0.03);
  EXPECT_LT(settled("out", 440, 0, 0.003), 0.003);
  auto out = record("out");
  EXPECT_NEAR(qaudio::test::median_level(out, 660), 0.3, 0.03);  // personal stays
  EXPECT_LT(qaudio::test::median_level(record("other"), 660), 0.003);
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("work")->output_device == "other"; }, 10s));
  EXPECT_EQ(work->output()->currentData().toString(), "other");
  EXPECT_EQ(personal->output()->currentData().toString(), "");

  // The default for every qube without its own choice: personal follows.
  ASSERT_TRUE(choose(win.outputs(), "other"));
  ASSERT_TRUE(
      qt_wait([&] { return rig.query("devices")["result"]["default_output"] == "other"; }, 10s));
  EXPECT_NEAR(settled("other", 660, 0.3, 0.03), 0.3, 0.03);
  EXPECT_LT(settled("out", 660, 0, 0.003), 0.003);

  // The daemon restarts: the window reconnects and shows both choices again.
  rig.stop_daemon();
  ASSERT_TRUE(qt_wait([&] { return !client.isConnected(); }, 10s));
  ASSERT_TRUE(rig.start_daemon()) << rig.daemon_log();
  ASSERT_TRUE(qt_wait(
      [&] {
        QubeStrip* w = win.strip("work");
        QubeStrip* p = win.strip("personal");
        return mixer.isReady() && w && p && w->output()->currentData().toString() == "other" &&
               p->output()->findData("other") > 0 &&
               win.outputs()->currentData().toString() == "other";
      },
      30s))
      << rig.daemon_log();
  EXPECT_EQ(win.strip("personal")->output()->currentData().toString(), "");

  // Back to the defaults: both tones at "out" again.
  ASSERT_TRUE(qt_wait(
      [&] {
        const QubeRow* w = mixer.model().find("work");
        return w && w->running();
      },
      30s));
  ASSERT_TRUE(choose(win.strip("work")->output(), ""));
  ASSERT_TRUE(choose(win.outputs(), ""));
  ASSERT_TRUE(qt_wait(
      [&] {
        return rig.qube("work")["output_device"] == "" &&
               rig.query("devices")["result"]["default_output"] == "";
      },
      10s));
  EXPECT_NEAR(settled("out", 440, 0.3, 0.03), 0.3, 0.03);
  EXPECT_NEAR(settled("out", 660, 0.3, 0.03), 0.3, 0.03);
}

}  // namespace
}  // namespace qaudio::mixer
