// The mixer's view of the daemon: one row per configured qube, filled from
// the control API's `list` reply and kept current by its events
// (volume_changed, mute_changed, mic_*, qube_*). Plain data plus a Qt list
// model over it, for the tray menu and the mixer window.
//
//   QubeModel m;
//   m.setFromList(reply.result.value("qubes").toArray());
//   m.applyEvent("volume_changed", {{"qube", "work"}, {"volume", 80}});
//   m.find("work")->volume;   // 80
#pragma once

#include <QAbstractListModel>
#include <QColor>
#include <QJsonArray>
#include <QJsonObject>
#include <QString>

#include <vector>

namespace qaudio::mixer {

struct QubeRow {
  QString name;
  QString label;     // Qubes label name ("blue") or "#rrggbb"
  QString state;     // waiting | connecting | running | stopped
  QString protocol;  // none | stock | negotiating | native
  int volume = 100;  // percent 0..150
  bool muted = false;
  bool mic_requested = false;  // the qube asked to record, request pending
  bool mic_attached = false;
  bool mic_persistent = false;
  QString mic_policy;  // allow | ask | deny | "" (unknown)
  quint32 latency_us = 0;
  quint64 underruns = 0;
  QString last_error;
  QString output_device;  // the qube's own output choice ("": the default)
  double level = -1;      // peak 0..1 of the last interval; -1: the daemon reports none

  bool running() const { return state == QLatin1String("running"); }
  bool micDenied() const { return mic_policy == QLatin1String("deny"); }
  // A request the user can answer: asked, not attached, not denied.
  bool micPending() const { return mic_requested && !mic_attached && !micDenied(); }
};

// The colour of a Qubes label (red, orange, yellow, green, gray, blue,
// purple, black; "#rrggbb" accepted); grey for anything else.
QColor labelColor(const QString& label);

class QubeModel : public QAbstractListModel {
  Q_OBJECT
 public:
  enum Role {
    NameRole = Qt::UserRole + 1,
    LabelRole,
    VolumeRole,
    MutedRole,
    MicAttachedRole,
    MicPendingRole,
    MicDeniedRole,
    RunningRole,
  };

  explicit QubeModel(QObject* parent = nullptr) : QAbstractListModel(parent) {}

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QHash<int, QByteArray> roleNames() const override;

  // Replaces the rows with a `list` reply's "qubes" array (sorted by name).
  // Entries without a string "name" are skipped.
  void setFromList(const QJsonArray& qubes);
  // Updates rows from one event; returns false for events it does not know
  // or that name no known qube (the caller may re-list).
  bool applyEvent(const QString& type, const QJsonObject& data);
  // Sets one qube's level (peak 0..1); unknown names are ignored.
  void setLevel(const QString& qube, double level);
  void clear();

  const std::vector<QubeRow>& rows() const { return rows_; }
  const QubeRow* find(const QString& name) const;
  int indexOf(const QString& name) const;
  bool anyMicAttached() const;
  int pendingMicRequests() const;

 private:
  QubeRow* findMut(const QString& name);
  void changed(const QString& name);

  std::vector<QubeRow> rows_;
};

}  // namespace qaudio::mixer
