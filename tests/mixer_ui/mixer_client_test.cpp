// The mixer's client, controller, tray menu and window against a real
// qubes-audiovm-daemon (null backend) with two fake qubes, offscreen:
// the model follows the daemon, user actions reach it (checked through an
// independent control connection), policy ask/deny is honoured, and a
// daemon that goes away shows as disconnected and is reconnected.
#include <gtest/gtest.h>

#include <QSignalSpy>
#include <QTest>

#include "control_client.hpp"
#include "mixer_controller.hpp"
#include "mixer_window.hpp"
#include "tray.hpp"
#include "ui_support.hpp"

namespace qaudio::mixer {
namespace {

using namespace test;

struct MixerWithDaemon : ::testing::Test {
  void SetUp() override {
    qt_app();
    ASSERT_TRUE(rig.start()) << rig.daemon_log();
    client.setRetryInterval(50, 200);
    client.start();
    ASSERT_TRUE(qt_wait(
        [&] {
          const QubeRow* w = mixer.model().find("work");
          const QubeRow* p = mixer.model().find("personal");
          return w && p && w->running() && p->running();
        },
        30s))
        << rig.daemon_log();
  }
  UiRig rig{"null"};
  ControlClient client{QString::fromStdString(rig.control())};
  MixerController mixer{client};
};

TEST_F(MixerWithDaemon, model_shows_both_qubes_with_labels_and_policy) {
  const auto& rows = mixer.model().rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(mixer.model().find("work")->label, "blue");
  EXPECT_EQ(mixer.model().find("personal")->label, "yellow");
  EXPECT_EQ(mixer.model().find("work")->mic_policy, "ask");
  EXPECT_EQ(mixer.model().find("personal")->mic_policy, "deny");
  EXPECT_EQ(mixer.backend(), "null");
}

TEST_F(MixerWithDaemon, volume_and_mute_reach_the_daemon_and_come_back_as_events) {
  mixer.setVolume("work", 37);
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["volume"] == 37; }, 10s));
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("work")->volume == 37; }, 10s));
  // A change made by another client arrives as an event.
  rig.query("set_volume", {{"qube", "personal"}, {"percent", 140}});
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("personal")->volume == 140; }, 10s));
  mixer.setMute("personal", true);
  ASSERT_TRUE(qt_wait([&] { return rig.qube("personal")["muted"] == true; }, 10s));
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("personal")->muted; }, 10s));
}

TEST_F(MixerWithDaemon, level_meter_follows_the_daemons_level_events) {
  // work plays a 0.3 sine at 100 %: its peak after volume is ~0.3.
  ASSERT_TRUE(qt_wait(
      [&] {
        double l = mixer.model().find("work")->level;
        return l > 0.25 && l < 0.35;
      },
      20s))
      << "level " << mixer.model().find("work")->level;
  double listed = rig.qube("work")["level"].get<double>();
  EXPECT_NEAR(listed, 0.3, 0.05);
  mixer.setVolume("work", 50);
  ASSERT_TRUE(qt_wait(
      [&] {
        double l = mixer.model().find("work")->level;
        return l > 0.12 && l < 0.18;
      },
      20s))
      << "level " << mixer.model().find("work")->level;
  mixer.setMute("work", true);
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("work")->level < 0.01; }, 20s))
      << "level " << mixer.model().find("work")->level;
  MixerWindow win(mixer);
  EXPECT_TRUE(win.strip("work")->meter()->isEnabled());
  EXPECT_LT(win.strip("work")->meter()->value(), 2);
  EXPECT_GT(win.strip("personal")->meter()->value(), 20);
}

TEST_F(MixerWithDaemon, rapid_volume_changes_coalesce_and_the_last_one_wins) {
  for (int v = 0; v <= 150; ++v) {
    mixer.setVolume("work", v);
  }
  mixer.setVolume("work", 64);
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("work")->volume == 64; }, 10s));
  EXPECT_EQ(rig.qube("work")["volume"], 64);
}

TEST_F(MixerWithDaemon, mic_request_ask_policy_needs_a_confirmed_attach_and_deny_is_refused) {
  // work's agent records (--mic): the request is pending (policy ask).
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("work")->micPending(); }, 20s));
  QSignalSpy errors(&mixer, &MixerController::error);
  mixer.attachMic("work", /*confirmed=*/false);
  ASSERT_TRUE(qt_wait([&] { return errors.count() == 1; }, 10s));
  EXPECT_TRUE(errors.at(0).at(0).toString().contains("needs_confirmation"));
  EXPECT_EQ(rig.qube("work")["mic"]["attached"], false);

  mixer.attachMic("work", /*confirmed=*/true);
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("work")->mic_attached; }, 10s));
  EXPECT_EQ(rig.qube("work")["mic"]["attached"], true);

  mixer.attachMic("personal", /*confirmed=*/true);
  ASSERT_TRUE(qt_wait([&] { return errors.count() == 2; }, 10s));
  EXPECT_TRUE(errors.at(1).at(0).toString().contains("refused"));
  EXPECT_EQ(rig.qube("personal")["mic"]["attached"], false);

  mixer.detachAllMics();
  ASSERT_TRUE(qt_wait([&] { return !mixer.model().anyMicAttached(); }, 10s));
  EXPECT_EQ(rig.qube("work")["mic"]["attached"], false);
}

TEST_F(MixerWithDaemon, tray_menu_lists_qubes_and_its_mic_item_attaches) {
  TrayController tray(mixer);
  QMenu* menu = tray.menu();
  QAction* work = menu->findChild<QAction*>("qube:work");
  QAction* personal = menu->findChild<QAction*>("qube:personal");
  ASSERT_NE(work, nullptr);
  ASSERT_NE(personal, nullptr);
  EXPECT_EQ(work->data().value<QColor>(), labelColor("blue"));
  EXPECT_EQ(personal->data().value<QColor>(), labelColor("yellow"));
  EXPECT_EQ(work->icon().pixmap(16).toImage().pixelColor(8, 8), labelColor("blue"));
  EXPECT_TRUE(work->text().startsWith("work"));
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("work")->micPending(); }, 20s));
  QAction* mic_work = tray.menu()->findChild<QAction*>("mic:work");
  QAction* mic_personal = tray.menu()->findChild<QAction*>("mic:personal");
  ASSERT_NE(mic_work, nullptr);
  ASSERT_NE(mic_personal, nullptr);
  EXPECT_TRUE(mic_work->text().contains("wants the microphone"));
  EXPECT_TRUE(mic_work->isEnabled());
  EXPECT_FALSE(mic_work->isChecked());
  EXPECT_FALSE(mic_personal->isEnabled());
  EXPECT_TRUE(mic_personal->text().contains("denied by policy"));
  EXPECT_EQ(tray.state(), TrayState::Idle);

  mic_work->trigger();
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["mic"]["attached"] == true; }, 10s));
  ASSERT_TRUE(qt_wait([&] { return tray.state() == TrayState::Recording; }, 10s));
  EXPECT_TRUE(tray.menu()->findChild<QAction*>("mic:work")->isChecked());

  tray.menu()->findChild<QAction*>("qube:personal")->trigger();  // toggles mute
  ASSERT_TRUE(qt_wait([&] { return rig.qube("personal")["muted"] == true; }, 10s));
  tray.menu()->findChild<QAction*>("detachAll")->trigger();
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["mic"]["attached"] == false; }, 10s));
}

TEST_F(MixerWithDaemon, mic_request_notification_click_attaches) {
  TrayController tray(mixer);
  // work's request was pending before the mixer connected: announced anyway.
  ASSERT_TRUE(qt_wait([&] { return tray.notifiedQube() == "work"; }, 20s));
  emit tray.icon().messageClicked();  // the notification's Attach action
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["mic"]["attached"] == true; }, 10s));
  EXPECT_TRUE(tray.notifiedQube().isEmpty());
}

TEST_F(MixerWithDaemon, window_slider_mute_and_mic_button_drive_the_daemon) {
  MixerWindow win(mixer);
  win.show();
  QubeStrip* s = win.strip("work");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->colourBar()->palette().color(QPalette::Window), labelColor("blue"));
  s->slider()->setFocus();
  s->slider()->setValue(100);
  QTest::keyClick(s->slider(), Qt::Key_PageDown);  // keyboard: one page step (10 %)
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["volume"] == 90; }, 10s));
  QTest::mouseClick(s->mute(), Qt::LeftButton);
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["muted"] == true; }, 10s));
  ASSERT_TRUE(qt_wait([&] { return mixer.model().find("work")->micPending(); }, 20s));
  ASSERT_TRUE(qt_wait([&] { return s->mic()->text().contains("Attach"); }, 10s));
  QTest::mouseClick(s->mic(), Qt::LeftButton);
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["mic"]["attached"] == true; }, 10s));
  EXPECT_FALSE(win.strip("personal")->mic()->isEnabled());  // denied
  EXPECT_TRUE(s->toolTip().contains("latency"));
  EXPECT_TRUE(win.status()->text().startsWith("Connected"));
}

TEST_F(MixerWithDaemon, a_daemon_that_goes_away_shows_disconnected_and_is_reconnected) {
  MixerWindow win(mixer);
  TrayController tray(mixer);
  QSignalSpy conn(&mixer, &MixerController::connectionChanged);
  rig.stop_daemon();
  ASSERT_TRUE(qt_wait([&] { return !client.isConnected(); }, 10s));
  EXPECT_TRUE(win.status()->text().startsWith("Disconnected"));
  EXPECT_EQ(tray.state(), TrayState::Disconnected);
  EXPECT_NE(tray.menu()->findChild<QAction*>("status"), nullptr);
  EXPECT_EQ(mixer.model().rowCount(), 0);
  // Calls while disconnected fail asynchronously, never block.
  bool failed = false;
  client.call("list", {}, [&](const ControlResult& r) { failed = !r.ok; });
  EXPECT_FALSE(failed);
  ASSERT_TRUE(qt_wait([&] { return failed; }, 5s));

  ASSERT_TRUE(rig.start_daemon()) << rig.daemon_log();
  ASSERT_TRUE(qt_wait([&] { return mixer.isReady() && mixer.model().rowCount() == 2; }, 30s));
  EXPECT_TRUE(win.status()->text().startsWith("Connected"));
  EXPECT_NE(tray.menu()->findChild<QAction*>("qube:work"), nullptr);
  EXPECT_GE(conn.count(), 2);
}

TEST(ControlClient, connects_later_when_the_daemon_starts_after_the_ui) {
  qt_app();
  UiRig rig("null");
  ControlClient client(QString::fromStdString(rig.control()));
  client.setRetryInterval(50, 200);
  client.start();
  ASSERT_TRUE(qt_wait([&] { return !client.lastError().isEmpty(); }, 5s));
  EXPECT_FALSE(client.isConnected());
  ASSERT_TRUE(rig.start()) << rig.daemon_log();
  ASSERT_TRUE(qt_wait([&] { return client.isConnected(); }, 20s));
  ControlResult got;
  bool done = false;
  client.call("nonsense", {}, [&](const ControlResult& r) {
    got = r;
    done = true;
  });
  ASSERT_TRUE(qt_wait([&] { return done; }, 10s));
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.code, "unknown_method");
}

}  // namespace
}  // namespace qaudio::mixer
