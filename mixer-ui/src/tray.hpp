// The tray icon and its menu. The icon shows whether any qube's microphone
// is attached (red dot) or the daemon is unreachable (greyed, crossed). The
// menu: one line per qube (label-colour swatch, name, volume; checked =
// muted, a click toggles mute), a "Microphone" submenu (attached qubes
// checked, policy-denied ones greyed with the reason, pending requests
// marked "… wants the microphone"; a click attaches or detaches),
// "Detach microphone from all", "Open mixer…" and "Quit". Mic requests go
// to a MicNotifier (desktop notification with an Attach button) when one is
// given; otherwise, and as its fallback, the tray shows a message and
// clicking it attaches (QSystemTrayIcon::showMessage has no action buttons:
// the message itself is the Attach action).
//
//   TrayController tray(mixer);
//   QObject::connect(&tray, &TrayController::openMixer, &window, &MixerWindow::showNormal);
//   tray.show();
#pragma once

#include <QMenu>
#include <QObject>
#include <QSystemTrayIcon>

#include "icons.hpp"
#include "mic_notifier.hpp"
#include "mixer_controller.hpp"

namespace qaudio::mixer {

class TrayController : public QObject {
  Q_OBJECT
 public:
  explicit TrayController(MixerController& mixer, QObject* parent = nullptr);
  ~TrayController() override;

  void show();
  // Mic requests go to `n` (desktop notifications with an Attach button);
  // the tray's own message is only its fallback.
  void useNotifier(MicNotifier& n);
  QSystemTrayIcon& icon() { return icon_; }
  QMenu* menu() { return menu_; }
  QMenu* micMenu() { return mic_menu_; }
  TrayState state() const { return state_; }
  // The qube the last notification was about ("" if none).
  const QString& notifiedQube() const { return notified_; }

 public slots:
  void rebuild();
  // The tray message's Attach action.
  void attachNotified();
  // Shows the tray message for a mic request (QSystemTrayIcon::showMessage).
  void notifyMic(const QString& qube);

 signals:
  void openMixer();
  void quit();

 private:
  void updateIcon();

  MixerController& mixer_;
  QSystemTrayIcon icon_;
  QMenu* menu_;
  TrayState state_ = TrayState::Disconnected;
  QString notified_;
  QString signature_;
  QMenu* mic_menu_ = nullptr;
  QMetaObject::Connection request_conn_;
};

}  // namespace qaudio::mixer
