// The tray icon and its menu. The icon shows whether any qube's microphone
// is attached (red dot) or the daemon is unreachable (greyed, crossed). The
// menu: one line per qube (label-colour swatch, name, volume; checked =
// muted, a click toggles mute), a "Microphone" submenu (attached qubes
// checked, policy-denied ones greyed with the reason, pending requests
// marked "… wants the microphone"; a click attaches or detaches),
// "Detach microphone from all", "Open mixer…" and "Quit". A mic request
// shows a tray notification; clicking it attaches (QSystemTrayIcon::
// showMessage has no action buttons: the message itself is the Attach
// action, the mixer window has an Attach button too).
//
//   TrayController tray(mixer);
//   QObject::connect(&tray, &TrayController::openMixer, &window, &MixerWindow::showNormal);
//   tray.show();
#pragma once

#include <QMenu>
#include <QObject>
#include <QSystemTrayIcon>

#include "icons.hpp"
#include "mixer_controller.hpp"

namespace qaudio::mixer {

class TrayController : public QObject {
  Q_OBJECT
 public:
  explicit TrayController(MixerController& mixer, QObject* parent = nullptr);
  ~TrayController() override;

  void show();
  QSystemTrayIcon& icon() { return icon_; }
  QMenu* menu() { return menu_; }
  QMenu* micMenu() { return mic_menu_; }
  TrayState state() const { return state_; }
  // The qube the last notification was about ("" if none).
  const QString& notifiedQube() const { return notified_; }

 public slots:
  void rebuild();
  // The notification's Attach action.
  void attachNotified();

 signals:
  void openMixer();
  void quit();

 private:
  void updateIcon();
  void notifyMic(const QString& qube);

  MixerController& mixer_;
  QSystemTrayIcon icon_;
  QMenu* menu_;
  TrayState state_ = TrayState::Disconnected;
  QString notified_;
  QString signature_;
  QMenu* mic_menu_ = nullptr;
};

}  // namespace qaudio::mixer
