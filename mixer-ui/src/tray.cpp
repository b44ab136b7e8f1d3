// The tray icon and menu (see tray.hpp).
#include "tray.hpp"

namespace qaudio::mixer {

TrayController::TrayController(MixerController& mixer, QObject* parent)
    : QObject(parent), mixer_(mixer), menu_(new QMenu) {
  menu_->setObjectName("trayMenu");
  icon_.setContextMenu(menu_);
  QubeModel& m = mixer_.model();
  connect(&m, &QAbstractItemModel::modelReset, this, &TrayController::rebuild);
  connect(&m, &QAbstractItemModel::dataChanged, this, &TrayController::rebuild);
  connect(&mixer_, &MixerController::connectionChanged, this, &TrayController::rebuild);
  request_conn_ =
      connect(&mixer_, &MixerController::micRequested, this, &TrayController::notifyMic);
  connect(&icon_, &QSystemTrayIcon::messageClicked, this, &TrayController::attachNotified);
  connect(&icon_, &QSystemTrayIcon::activated, this, [this](QSystemTrayIcon::ActivationReason r) {
    if (r == QSystemTrayIcon::Trigger || r == QSystemTrayIcon::DoubleClick) {
      emit openMixer();
    }
  });
  rebuild();
  for (const auto& q : mixer_.model().rows()) {
    if (q.micPending()) {
      notifyMic(q.name);  // requests already waiting when the tray appears
    }
  }
}

TrayController::~TrayController() {
  icon_.setContextMenu(nullptr);
  delete menu_;
}

void TrayController::show() {
  icon_.show();
}

void TrayController::useNotifier(MicNotifier& n) {
  disconnect(request_conn_);
  notified_.clear();
  n.setFallback([this](const QString& qube) { notifyMic(qube); });
}

void TrayController::updateIcon() {
  TrayState s = !mixer_.isConnected()             ? TrayState::Disconnected
                : mixer_.model().anyMicAttached() ? TrayState::Recording
                                                  : TrayState::Idle;
  QStringList rec;
  for (const auto& q : mixer_.model().rows()) {
    if (q.mic_attached) {
      rec << q.name;
    }
  }
  QString tip = !mixer_.isConnected()
                    ? QStringLiteral("Qubes audio: disconnected (%1); reconnecting")
                          .arg(mixer_.client().lastError())
                : rec.isEmpty()
                    ? QStringLiteral("Qubes audio: no microphone attached")
                    : QStringLiteral("Qubes audio: microphone attached to %1").arg(rec.join(", "));
  icon_.setToolTip(tip);
  if (s != state_ || icon_.icon().isNull()) {
    state_ = s;
    icon_.setIcon(trayIcon(s));
  }
}

void TrayController::rebuild() {
  updateIcon();
  // Rebuild only when something the menu shows changed (levels and counters
  // also arrive as model changes).
  QString sig = mixer_.isConnected() ? QStringLiteral("c") : QStringLiteral("d");
  for (const auto& q : mixer_.model().rows()) {
    sig += QStringLiteral("|%1,%2,%3,%4,%5,%6,%7,%8")
               .arg(q.name, q.label, q.state, q.mic_policy)
               .arg(q.volume)
               .arg(q.muted)
               .arg(q.mic_attached)
               .arg(q.micPending());
  }
  if (sig == signature_) {
    return;
  }
  signature_ = sig;
  if (mic_menu_ != nullptr) {
    // Out of menu_'s children at once (findChild, and deleteLater waits for
    // the event loop); deleted later because it may be open right now.
    mic_menu_->setParent(nullptr);
    mic_menu_->deleteLater();
    mic_menu_ = nullptr;
  }
  menu_->clear();
  if (!mixer_.isConnected()) {
    QAction* a = menu_->addAction(QStringLiteral("Disconnected: reconnecting…"));
    a->setObjectName("status");
    a->setEnabled(false);
  } else if (mixer_.model().rows().empty()) {
    QAction* a = menu_->addAction(QStringLiteral("No qubes configured"));
    a->setObjectName("status");
    a->setEnabled(false);
  }
  for (const auto& q : mixer_.model().rows()) {
    QString text = q.muted ? QStringLiteral("%1 — muted").arg(q.name)
                           : QStringLiteral("%1 — %2 %").arg(q.name).arg(q.volume);
    if (!q.running()) {
      text += QStringLiteral(" (%1)").arg(q.state);
    }
    QAction* a = menu_->addAction(swatchIcon(labelColor(q.label)), text);
    a->setObjectName("qube:" + q.name);
    a->setData(labelColor(q.label));
    a->setCheckable(true);
    a->setChecked(q.muted);
    a->setToolTip(QStringLiteral("Checked: %1 is muted; click to toggle").arg(q.name));
    QString name = q.name;
    bool muted = q.muted;
    connect(a, &QAction::triggered, this, [this, name, muted] { mixer_.setMute(name, !muted); });
  }
  menu_->addSeparator();
  QMenu* mic = menu_->addMenu(QStringLiteral("&Microphone"));
  mic_menu_ = mic;
  mic->setObjectName("micMenu");
  for (const auto& q : mixer_.model().rows()) {
    QString text = q.name;
    if (q.micDenied()) {
      text = QStringLiteral("%1 — denied by policy (qaudio.Mic)").arg(q.name);
    } else if (q.micPending()) {
      text = QStringLiteral("%1 wants the microphone — click to attach").arg(q.name);
    }
    QAction* a = mic->addAction(swatchIcon(labelColor(q.label)), text);
    a->setObjectName("mic:" + q.name);
    a->setCheckable(true);
    a->setChecked(q.mic_attached);
    a->setEnabled(!q.micDenied() || q.mic_attached);
    if (q.micPending()) {
      QFont f = a->font();
      f.setBold(true);
      a->setFont(f);
    }
    QString name = q.name;
    bool attached = q.mic_attached;
    connect(a, &QAction::triggered, this, [this, name, attached] {
      if (attached) {
        mixer_.detachMic(name);
      } else {
        mixer_.attachMic(name, /*confirmed=*/true);  // the click is the user's confirmation
      }
    });
  }
  if (mixer_.model().rows().empty()) {
    mic->setEnabled(false);
  }
  QAction* all = menu_->addAction(QStringLiteral("&Detach microphone from all"));
  all->setObjectName("detachAll");
  all->setEnabled(mixer_.model().anyMicAttached());
  connect(all, &QAction::triggered, &mixer_, &MixerController::detachAllMics);
  menu_->addSeparator();
  QAction* open = menu_->addAction(QStringLiteral("&Open mixer…"));
  open->setObjectName("openMixer");
  connect(open, &QAction::triggered, this, &TrayController::openMixer);
  QAction* quit = menu_->addAction(QStringLiteral("&Quit"));
  quit->setObjectName("quit");
  connect(quit, &QAction::triggered, this, &TrayController::quit);
}

void TrayController::notifyMic(const QString& qube) {
  notified_ = qube;
  if (icon_.isVisible() && QSystemTrayIcon::supportsMessages()) {
    icon_.showMessage(QStringLiteral("Microphone request"),
                      QStringLiteral("%1 wants the microphone. Click here to attach it.").arg(qube),
                      trayIcon(TrayState::Recording), 15000);
  }
}

void TrayController::attachNotified() {
  if (notified_.isEmpty()) {
    return;
  }
  const QubeRow* q = mixer_.model().find(notified_);
  if (q != nullptr && !q->mic_attached && !q->micDenied()) {
    mixer_.attachMic(notified_, /*confirmed=*/true);
  }
  notified_.clear();
}

}  // namespace qaudio::mixer
