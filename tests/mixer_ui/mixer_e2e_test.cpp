// End to end under Xvfb with a real tray host (trayer): the mixer's tray
// icon is embedded, its menu lists work and personal with their label
// colours, clicking the "work" item of the Microphone submenu attaches
// work's microphone (checked through the control API), and lowering work's
// volume in the mixer window lowers work's 440 Hz tone in the daemon's wav
// backend output (660 Hz from personal unchanged). Screenshots of the tray
// menu and the mixer window are saved to $QAUDIO_SCREENSHOT_DIR (docs/images
// via `make mixer-screenshots`), else into the test's temporary directory.
#include <gtest/gtest.h>

#include <QScreen>
#include <QTest>

#include <fcntl.h>
#include <sys/stat.h>

#include "control_client.hpp"
#include "mixer_controller.hpp"
#include "mixer_window.hpp"
#include "tone.hpp"
#include "tray.hpp"
#include "ui_support.hpp"
#include "x_session.hpp"

namespace qaudio::mixer {
namespace {

using namespace test;

// Samples of the wav backend's output file so far (s16 stereo after the
// 44-byte header; the file grows while the daemon runs).
std::vector<float> wav_samples(const std::string& path, size_t from_frame = 0) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out;
  if (b.size() <= 44) {
    return out;
  }
  size_t frames = (b.size() - 44) / 4;
  for (size_t f = from_frame; f < frames; ++f) {
    for (int c = 0; c < 2; ++c) {
      int16_t v;
      std::memcpy(&v, b.data() + 44 + f * 4 + c * 2, 2);
      out.push_back(v / 32768.0f);
    }
  }
  return out;
}
size_t wav_frames(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || st.st_size <= 44) {
    return 0;
  }
  return static_cast<size_t>(st.st_size - 44) / 4;
}

// Amplitude of `freq` in the best (highest) of the 100 ms windows of the
// last `ms` milliseconds: robust against a late block on a loaded machine.
double recent_amplitude(const std::string& path, size_t from_frame, double freq) {
  auto s = wav_samples(path, from_frame);
  double best = 0;
  for (size_t off = 0; off + 2 * 4800 <= s.size(); off += 2 * 4800) {
    best = std::max(best, qaudio::test::tone_amplitude(std::span<const float>(s).subspan(off, 9600),
                                                       2, 0, 48000, freq));
  }
  return best;
}

std::string shot_dir(const std::string& fallback) {
  QByteArray d = qgetenv("QAUDIO_SCREENSHOT_DIR");
  return d.isEmpty() ? fallback : d.toStdString();
}

TEST(MixerE2E, tray_menu_lists_qubes_attaches_mic_and_window_volume_changes_the_sink) {
  for (const char* p : {"Xvfb", "trayer", "import"}) {
    if (!qaudio::test::have_program(p)) {
      GTEST_SKIP() << p << " is not installed";
    }
  }
  UiRig rig("wav");
  XSession x;
  ASSERT_TRUE(x.start(rig.dir()));
  // Qt on the Xvfb display, xembed tray (no session bus: no StatusNotifierItem).
  qputenv("QT_QPA_PLATFORM", "xcb");
  qputenv("DISPLAY", QByteArray::fromStdString(x.display()));
  qputenv("DBUS_SESSION_BUS_ADDRESS",
          QByteArray::fromStdString("unix:path=" + rig.dir() + "/nobus"));
  qt_app();
  ASSERT_TRUE(qt_wait([] { return QSystemTrayIcon::isSystemTrayAvailable(); }, 20s))
      << "trayer did not take the system tray selection";

  ASSERT_TRUE(rig.start()) << rig.daemon_log();
  ControlClient client(QString::fromStdString(rig.control()));
  MixerController mixer(client);
  TrayController tray(mixer);
  tray.show();
  client.start();
  ASSERT_TRUE(qt_wait(
      [&] {
        const QubeRow* w = mixer.model().find("work");
        const QubeRow* p = mixer.model().find("personal");
        return w && p && w->running() && p->running() && w->micPending();
      },
      30s))
      << rig.daemon_log();

  // The icon is embedded in the tray: it has a place on the screen.
  ASSERT_TRUE(qt_wait([&] { return tray.icon().geometry().width() > 0; }, 20s));
  QRect icon = tray.icon().geometry();
  EXPECT_GE(icon.top(), 0);
  EXPECT_LT(icon.top(), 64);  // trayer sits at the top edge

  // The menu: both qubes, in their label colours.
  QMenu* menu = tray.menu();
  QAction* work = menu->findChild<QAction*>("qube:work");
  QAction* personal = menu->findChild<QAction*>("qube:personal");
  ASSERT_TRUE(work && personal);
  EXPECT_EQ(work->icon().pixmap(16).toImage().pixelColor(8, 8), labelColor("blue"));
  EXPECT_EQ(personal->icon().pixmap(16).toImage().pixelColor(8, 8), labelColor("yellow"));
  // Where a tray host puts it: under the icon, at the right edge, with room
  // for the submenu.
  QRect avail = QGuiApplication::primaryScreen()->geometry();
  menu->popup(QPoint(avail.right() - menu->sizeHint().width() - 380, 36));
  ASSERT_TRUE(qt_wait([&] { return menu->isVisible(); }, 10s));
  QMenu* mic = tray.micMenu();
  ASSERT_NE(mic, nullptr);
  QRect mic_item = menu->actionGeometry(mic->menuAction());
  // Open the submenu as a keyboard user does (hover timing is not reliable
  // under a loaded Xvfb): select "Microphone", press Right.
  QTest::mouseMove(menu, mic_item.center());
  menu->setActiveAction(mic->menuAction());
  QTest::keyClick(menu, Qt::Key_Right);
  if (!qt_wait([&] { return mic->isVisible(); }, 3s)) {
    QTest::mouseClick(menu, Qt::LeftButton, {}, mic_item.center());
  }
  ASSERT_TRUE(qt_wait([&] { return mic->isVisible(); }, 10s))
      << "the Microphone submenu did not open; menu visible " << menu->isVisible() << " active "
      << (menu->activeAction() ? menu->activeAction()->text().toStdString() : "none") << " item "
      << mic_item.x() << "," << mic_item.y() << " menu at " << menu->x() << "," << menu->y()
      << " popup " << (QApplication::activePopupWidget() ? "yes" : "no");
  // The menus as drawn on the X server: the work lines' swatches are blue
  // (polled: the submenu is painted some time after it is shown).
  auto blue_on_line = [&](QMenu* m, QAction* a) {
    QImage screen = QGuiApplication::primaryScreen()->grabWindow(0).toImage();
    QRect r = m->actionGeometry(a).translated(m->geometry().topLeft());
    for (int xx = r.left(); xx < r.left() + 40; ++xx) {
      if (screen.pixelColor(xx, r.center().y()) == labelColor("blue")) {
        return true;
      }
    }
    return false;
  };
  QAction* mic_work = mic->findChild<QAction*>("mic:work");
  ASSERT_NE(mic_work, nullptr);
  EXPECT_TRUE(qt_wait([&] { return blue_on_line(menu, work); }, 10s))
      << "no blue swatch on the work line of the menu";
  EXPECT_TRUE(qt_wait([&] { return blue_on_line(mic, mic_work); }, 10s))
      << "no blue swatch on the work line of the Microphone submenu";
  std::string shots = shot_dir(rig.dir());
  auto shot = qaudio::test::run_command(
      {"import", "-display", x.display(), "-window", "root", shots + "/mixer-tray-menu.png"}, {},
      30s);
  EXPECT_EQ(shot.status, 0) << shot.out;

  // Click the "work wants the microphone" item: the daemon attaches it.
  EXPECT_TRUE(mic_work->text().contains("wants the microphone"));
  QTest::mouseClick(mic, Qt::LeftButton, {}, mic->actionGeometry(mic_work).center());
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["mic"]["attached"] == true; }, 10s))
      << "clicking the menu item did not attach work's microphone";
  ASSERT_TRUE(qt_wait([&] { return tray.state() == TrayState::Recording; }, 10s));

  // The mixer window: lower work from 100 % to 50 % with the keyboard.
  MixerWindow win(mixer);
  win.resize(420, 360);
  win.move(100, 120);
  win.show();
  QubeStrip* s = win.strip("work");
  ASSERT_NE(s, nullptr);
  std::string wav = rig.wav_path();
  ASSERT_TRUE(qt_wait([&] { return wav_frames(wav) > 48000; }, 20s));
  size_t before_from = wav_frames(wav) - 24000;
  ASSERT_TRUE(qt_wait([&] { return wav_frames(wav) > before_from + 24000; }, 20s));
  double a440_before = recent_amplitude(wav, before_from, 440);
  double a660_before = recent_amplitude(wav, before_from, 660);
  EXPECT_NEAR(a440_before, 0.3, 0.05);
  s->slider()->setFocus();
  for (int i = 0; i < 5; ++i) {
    QTest::keyClick(s->slider(), Qt::Key_PageDown);
  }
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["volume"] == 50; }, 10s));
  size_t after_from = wav_frames(wav) + 4800;  // past the gain ramp and the device queue
  ASSERT_TRUE(qt_wait([&] { return wav_frames(wav) > after_from + 24000; }, 20s));
  double a440_after = recent_amplitude(wav, after_from, 440);
  double a660_after = recent_amplitude(wav, after_from, 660);
  EXPECT_NEAR(a440_after, 0.15, 0.03) << "before " << a440_before;
  EXPECT_NEAR(qaudio::test::amplitude_to_db(a440_after / a440_before), -6.02, 1.0);
  EXPECT_NEAR(a660_after, a660_before, 0.03);  // personal untouched
  std::printf(
      "work 440 Hz at the sink: %.4f at 100 %%, %.4f at 50 %% (%.2f dB); personal 660 Hz %.4f -> "
      "%.4f\n",
      a440_before, a440_after, qaudio::test::amplitude_to_db(a440_after / a440_before), a660_before,
      a660_after);
  RecordProperty("a440_before", std::to_string(a440_before));
  RecordProperty("a440_after", std::to_string(a440_after));

  ASSERT_TRUE(qt_wait([&] { return s->mic()->text().contains("on"); }, 10s));
  // The meters show the daemon's levels: work ~0.15 after the change, personal ~0.3.
  ASSERT_TRUE(qt_wait([&] { return std::abs(s->meter()->value() - 15) <= 4; }, 10s))
      << "work meter " << s->meter()->value();
  ASSERT_TRUE(
      qt_wait([&] { return std::abs(win.strip("personal")->meter()->value() - 30) <= 5; }, 10s))
      << "personal meter " << win.strip("personal")->meter()->value();
  EXPECT_TRUE(win.grab().save(QString::fromStdString(shots + "/mixer-window.png")));
}

}  // namespace
}  // namespace qaudio::mixer
