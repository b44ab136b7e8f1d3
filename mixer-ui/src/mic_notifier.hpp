// Desktop notifications for microphone requests, through the freedesktop
// notification service (org.freedesktop.Notifications on the session bus):
// "work wants the microphone" with an "Attach" action. The action attaches
// with confirm=true (the click answers a policy `ask`); a refusal (policy
// `deny`) is shown as a second notification with the daemon's reason. One
// notification per qube: a repeated request replaces it (replaces_id), and
// it is closed when the mic gets attached, the request ends or the daemon
// goes away. Every D-Bus call is asynchronous. When no notification server
// answers, `fallback` is called instead (the tray's showMessage).
//
//   MicNotifier n(mixer, QDBusConnection::sessionBus());
//   n.setFallback([&](const QString& qube) { tray.notifyMic(qube); });
#pragma once

#include <QDBusConnection>
#include <QObject>
#include <QString>

#include <functional>
#include <map>

#include "mixer_controller.hpp"

namespace qaudio::mixer {

class MicNotifier : public QObject {
  Q_OBJECT
 public:
  static constexpr const char* kService = "org.freedesktop.Notifications";
  static constexpr const char* kPath = "/org/freedesktop/Notifications";
  static constexpr const char* kInterface = "org.freedesktop.Notifications";

  MicNotifier(MixerController& mixer, QDBusConnection bus, QObject* parent = nullptr);

  void setFallback(std::function<void(const QString& qube)> f) { fallback_ = std::move(f); }
  // The server's id of the notification shown for `qube` (0: none).
  uint notificationId(const QString& qube) const;
  // Notifications shown through the fallback so far.
  int fallbackCount() const { return fallbacks_; }

 public slots:
  // Shows (or keeps) the request notification for `qube`.
  void notify(const QString& qube);

 signals:
  // The server accepted a notification (id) for `qube`.
  void shown(const QString& qube, uint id);
  // A notification about a refused attach was shown (the daemon's reason).
  void refused(const QString& qube, const QString& reason);

 private slots:
  void onActionInvoked(uint id, const QString& key);
  void onClosed(uint id, uint reason);

 private:
  void sync();
  void close(const QString& qube);
  void send(const QString& qube,
            uint replaces,
            const QString& summary,
            const QString& body,
            bool with_action);

  MixerController& mixer_;
  QDBusConnection bus_;
  std::function<void(const QString&)> fallback_;
  std::map<QString, uint> ids_;         // qube -> open request notification
  std::map<QString, bool> sending_;     // qube -> Notify in flight
  std::map<uint, QString> qube_of_id_;  // every id issued (a late Attach still works)
  int fallbacks_ = 0;
};

}  // namespace qaudio::mixer
