// Run-time drawn icons (see icons.hpp).
#include "icons.hpp"

#include <QPainter>
#include <QPainterPath>
#include <QPixmap>

namespace qaudio::mixer {

namespace {

QPixmap speaker(int size, TrayState s) {
  QPixmap pm(size, size);
  pm.fill(Qt::transparent);
  QPainter p(&pm);
  p.setRenderHint(QPainter::Antialiasing);
  qreal u = size / 16.0;
  QColor body = s == TrayState::Disconnected ? QColor(0x88, 0x8a, 0x85) : QColor(0xee, 0xee, 0xec);
  QColor edge = QColor(0x2e, 0x34, 0x36);
  QPainterPath path;
  path.moveTo(2 * u, 6 * u);
  path.lineTo(5 * u, 6 * u);
  path.lineTo(9 * u, 2.5 * u);
  path.lineTo(9 * u, 13.5 * u);
  path.lineTo(5 * u, 10 * u);
  path.lineTo(2 * u, 10 * u);
  path.closeSubpath();
  p.setPen(QPen(edge, u));
  p.setBrush(body);
  p.drawPath(path);
  p.setBrush(Qt::NoBrush);
  if (s == TrayState::Disconnected) {
    p.setPen(QPen(QColor(0xcc, 0, 0), 1.5 * u));
    p.drawLine(QPointF(10.5 * u, 5 * u), QPointF(15 * u, 11 * u));
    p.drawLine(QPointF(15 * u, 5 * u), QPointF(10.5 * u, 11 * u));
  } else {
    p.setPen(QPen(body, 1.2 * u));
    p.drawArc(QRectF(7 * u, 5 * u, 5 * u, 6 * u), -60 * 16, 120 * 16);
    p.drawArc(QRectF(6 * u, 3 * u, 8 * u, 10 * u), -60 * 16, 120 * 16);
  }
  if (s == TrayState::Recording) {
    p.setPen(QPen(Qt::white, 0.8 * u));
    p.setBrush(QColor(0xef, 0x29, 0x29));
    p.drawEllipse(QRectF(9.5 * u, 9.5 * u, 6 * u, 6 * u));
  }
  return pm;
}

}  // namespace

QIcon trayIcon(TrayState s) {
  QIcon icon;
  for (int size : {16, 22, 24, 32, 48, 64}) {
    icon.addPixmap(speaker(size, s));
  }
  return icon;
}

QIcon swatchIcon(const QColor& c) {
  QPixmap pm(16, 16);
  pm.fill(Qt::transparent);
  QPainter p(&pm);
  p.setPen(QPen(c.darker(150), 1));
  p.setBrush(c);
  p.drawRoundedRect(QRectF(1.5, 1.5, 13, 13), 3, 3);
  return QIcon(pm);
}

}  // namespace qaudio::mixer
