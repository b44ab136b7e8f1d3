// Microphone request notifications over org.freedesktop.Notifications (see
// mic_notifier.hpp).
#include "mic_notifier.hpp"

#include <QDBusMessage>
#include <QDBusPendingCallWatcher>
#include <QDBusPendingReply>
#include <QVariantMap>

namespace qaudio::mixer {

MicNotifier::MicNotifier(MixerController& mixer, QDBusConnection bus, QObject* parent)
    : QObject(parent), mixer_(mixer), bus_(std::move(bus)) {
  connect(&mixer_, &MixerController::micRequested, this, &MicNotifier::notify);
  QubeModel& m = mixer_.model();
  connect(&m, &QAbstractItemModel::modelReset, this, &MicNotifier::sync);
  connect(&m, &QAbstractItemModel::dataChanged, this, &MicNotifier::sync);
  connect(&mixer_, &MixerController::connectionChanged, this, &MicNotifier::sync);
  if (bus_.isConnected()) {
    // Any sender: the server's unique name changes when it restarts.
    bus_.connect(QString(), kPath, kInterface, "ActionInvoked", this,
                 SLOT(onActionInvoked(uint, QString)));
    bus_.connect(QString(), kPath, kInterface, "NotificationClosed", this,
                 SLOT(onClosed(uint, uint)));
  }
}

uint MicNotifier::notificationId(const QString& qube) const {
  auto it = ids_.find(qube);
  return it == ids_.end() ? 0 : it->second;
}

void MicNotifier::notify(const QString& qube) {
  if (sending_[qube]) {
    return;  // the first Notify of this request is still on its way
  }
  send(qube, notificationId(qube), QStringLiteral("Microphone request"),
       QStringLiteral("%1 wants the microphone.").arg(qube), /*with_action=*/true);
}

void MicNotifier::send(const QString& qube,
                       uint replaces,
                       const QString& summary,
                       const QString& body,
                       bool with_action) {
  QDBusMessage msg = QDBusMessage::createMethodCall(kService, kPath, kInterface, "Notify");
  QStringList actions;
  if (with_action) {
    actions << QStringLiteral("attach") << QStringLiteral("Attach");
  }
  QVariantMap hints;
  hints.insert("category", QStringLiteral("device"));
  hints.insert("urgency", QVariant::fromValue<uchar>(with_action ? 1 : 2));
  hints.insert("desktop-entry", QStringLiteral("qubes-audio-mixer"));
  msg << QStringLiteral("Qubes audio") << replaces
      << QString::fromLatin1(with_action ? "audio-input-microphone" : "dialog-warning") << summary
      << body << actions << hints << int(with_action ? 0 : -1);  // 0: until answered
  if (with_action) {
    sending_[qube] = true;
  }
  auto* w = new QDBusPendingCallWatcher(bus_.asyncCall(msg), this);
  connect(w, &QDBusPendingCallWatcher::finished, this,
          [this, w, qube, with_action](QDBusPendingCallWatcher*) {
            w->deleteLater();
            QDBusPendingReply<uint> r = *w;
            if (with_action) {
              sending_[qube] = false;
            }
            if (r.isError()) {
              if (with_action) {
                // No notification server: the tray's message instead.
                ++fallbacks_;
                if (fallback_) {
                  fallback_(qube);
                }
              }
              return;
            }
            uint id = r.value();
            if (qube_of_id_.size() > 256) {
              qube_of_id_.clear();  // old ones: their buttons are long gone
            }
            qube_of_id_[id] = qube;
            if (with_action) {
              ids_[qube] = id;
              emit shown(qube, id);
              sync();  // attached or ended meanwhile: close it at once
            }
          });
}

void MicNotifier::sync() {
  std::vector<QString> done;
  for (const auto& [qube, id] : ids_) {
    const QubeRow* q = mixer_.model().find(qube);
    if (!mixer_.isConnected() || q == nullptr || !q->micPending()) {
      done.push_back(qube);
    }
  }
  for (const auto& qube : done) {
    close(qube);
  }
}

void MicNotifier::close(const QString& qube) {
  auto it = ids_.find(qube);
  if (it == ids_.end()) {
    return;
  }
  QDBusMessage msg =
      QDBusMessage::createMethodCall(kService, kPath, kInterface, "CloseNotification");
  msg << it->second;
  ids_.erase(it);
  bus_.asyncCall(msg);  // nothing to do with the answer
}

void MicNotifier::onActionInvoked(uint id, const QString& key) {
  auto it = qube_of_id_.find(id);
  if (it == qube_of_id_.end() || key != QLatin1String("attach")) {
    return;
  }
  QString qube = it->second;
  const QubeRow* q = mixer_.model().find(qube);
  if (q != nullptr && q->mic_attached) {
    return;
  }
  // The click is the user's answer to a policy `ask`; the daemon still
  // refuses what policy denies, and that reason is shown.
  mixer_.client().call(
      "mic_attach", {{"qube", qube}, {"confirm", true}}, [this, qube, id](const ControlResult& r) {
        if (r.ok) {
          mixer_.refresh();
          return;
        }
        QString reason =
            r.message.isEmpty() ? r.code : QStringLiteral("%1 (%2)").arg(r.message, r.code);
        ids_.erase(qube);
        send(qube, id, QStringLiteral("Microphone not attached"),
             QStringLiteral("%1: %2").arg(qube, reason), /*with_action=*/false);
        emit refused(qube, reason);
      });
}

void MicNotifier::onClosed(uint id, uint) {
  auto it = qube_of_id_.find(id);
  if (it == qube_of_id_.end()) {
    return;
  }
  auto open = ids_.find(it->second);
  if (open != ids_.end() && open->second == id) {
    ids_.erase(open);  // dismissed: a later request notifies again
  }
}

}  // namespace qaudio::mixer
