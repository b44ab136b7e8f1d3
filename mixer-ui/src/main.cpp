// qubes-audio-mixer: the desktop's tray menu and mixer window for the audio
// qube's daemon, through its control API (docs/mixer-ui.md).
//
//   qubes-audio-mixer [--control PATH] [--window] [--no-tray]
//   --control PATH  the control socket (default $XDG_RUNTIME_DIR/qaudio/control,
//                   /run/qaudio/control without a runtime dir)
//   --window        open the mixer window at start
//   --no-tray       no tray icon (the window alone; also used when the
//                   desktop has no system tray)
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>

#include "control_client.hpp"
#include "mic_notifier.hpp"
#include "mixer_controller.hpp"
#include "mixer_window.hpp"
#include "tray.hpp"

using namespace qaudio::mixer;

namespace {

QString defaultControlPath() {
  QByteArray rt = qgetenv("XDG_RUNTIME_DIR");
  if (!rt.isEmpty()) {
    return QDir(QString::fromLocal8Bit(rt)).filePath("qaudio/control");
  }
  return QStringLiteral("/run/qaudio/control");
}

}  // namespace

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName("qubes-audio-mixer");
  QApplication::setApplicationVersion(QAUDIO_MIXER_VERSION);
  QApplication::setQuitOnLastWindowClosed(false);

  QCommandLineParser cli;
  cli.setApplicationDescription("Tray menu and mixer window for the Qubes audio daemon");
  cli.addHelpOption();
  cli.addVersionOption();
  QCommandLineOption control("control", "The daemon's control socket.", "PATH",
                             defaultControlPath());
  QCommandLineOption window("window", "Open the mixer window at start.");
  QCommandLineOption no_tray("no-tray", "Do not show a tray icon (the window alone).");
  cli.addOptions({control, window, no_tray});
  cli.process(app);

  ControlClient client(cli.value(control));
  MixerController mixer(client);
  MixerWindow win(mixer);
  // Desktop notifications for mic requests (org.freedesktop.Notifications);
  // without a session bus only the tray message / the window's button.
  QDBusConnection bus = qEnvironmentVariableIsSet("DBUS_SESSION_BUS_ADDRESS")
                            ? QDBusConnection::sessionBus()
                            : QDBusConnection(QStringLiteral("qaudio-no-session-bus"));
  MicNotifier notifier(mixer, bus);
  bool tray_ok = !cli.isSet(no_tray) && QSystemTrayIcon::isSystemTrayAvailable();
  std::unique_ptr<TrayController> tray;
  if (tray_ok) {
    tray = std::make_unique<TrayController>(mixer);
    QObject::connect(tray.get(), &TrayController::openMixer, &win, [&win] {
      win.showNormal();
      win.raise();
      win.activateWindow();
    });
    QObject::connect(tray.get(), &TrayController::quit, &app, &QApplication::quit);
    tray->useNotifier(notifier);
    tray->show();
  } else {
    if (!cli.isSet(no_tray)) {
      qInfo("qubes-audio-mixer: no system tray on this desktop: showing the window alone");
    }
    QApplication::setQuitOnLastWindowClosed(true);
  }
  if (!tray_ok || cli.isSet(window)) {
    win.show();
  }
  client.start();
  return app.exec();
}
