// Icons drawn at run time (no image files to install): the tray's speaker,
// with a red dot while any qube's microphone is attached and greyed out
// while the daemon is unreachable, and the label-colour swatches.
//
//   tray.setIcon(trayIcon(TrayState::Recording));
#pragma once

#include <QColor>
#include <QIcon>

namespace qaudio::mixer {

enum class TrayState { Disconnected, Idle, Recording };

QIcon trayIcon(TrayState s);
QIcon swatchIcon(const QColor& c);

}  // namespace qaudio::mixer
