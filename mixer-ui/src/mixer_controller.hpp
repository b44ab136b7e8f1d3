// What the tray and the window drive: owns the qube model and the device
// list, keeps them current from the control API (subscribe + list on every
// (re)connect, events afterwards, a slow `list` refresh for latency and
// underrun counters while someone shows them) and turns user actions into
// asynchronous calls. Volume changes are coalesced: at most one set_volume
// per qube is in flight, the latest value wins.
//
//   ControlClient client(path);
//   MixerController mixer(client);
//   mixer.setVolume("work", 80);
//   mixer.attachMic("work", /*confirmed=*/true);
//   client.start();
#pragma once

#include <QObject>
#include <QStringList>
#include <QTimer>

#include <map>
#include <set>

#include "bt_controller.hpp"
#include "control_client.hpp"
#include "qube_model.hpp"

namespace qaudio::mixer {

struct OutputDevice {
  QString name;
  QString description;
  bool is_default = false;
};

class MixerController : public QObject {
  Q_OBJECT
 public:
  explicit MixerController(ControlClient& client, QObject* parent = nullptr);

  ControlClient& client() { return client_; }
  QubeModel& model() { return model_; }
  const QubeModel& model() const { return model_; }
  BluetoothController& bluetooth() { return bt_; }
  bool isConnected() const { return client_.isConnected(); }
  // True once the first list after a (re)connect arrived.
  bool isReady() const { return ready_; }
  const std::vector<OutputDevice>& outputs() const { return outputs_; }
  // The daemon's default output choice ("": the sound server's default).
  const QString& defaultOutput() const { return default_output_; }
  const QString& backend() const { return backend_; }
  // A set_volume for `qube` is in flight or waiting: the model's volume is
  // about to change, a slider should keep what the user set.
  bool volumePending(const QString& qube) const;

  // Refresh `list` every `ms` (0: only on connect and on events). The
  // window turns it on while it is visible.
  void setRefreshInterval(int ms);

 public slots:
  void setVolume(const QString& qube, int percent);
  void setMute(const QString& qube, bool muted);
  // `confirmed`: the user explicitly asked for it (a click), which answers
  // a policy `ask`.
  void attachMic(const QString& qube, bool confirmed);
  void detachMic(const QString& qube);
  void detachAllMics();
  // `device` "" or "@default": back to the default; `qube` "": the default
  // of every qube without a choice of its own.
  void setOutput(const QString& device, const QString& qube = {});
  void refresh();

 signals:
  void connectionChanged(bool connected);
  void ready();
  // A qube asked for the microphone and it is not attached (policy not
  // deny); once per request, also for requests found by the first list.
  void micRequested(const QString& qube);
  void devicesChanged();
  // A call failed; `message` is the daemon's text, for the user.
  void error(const QString& message);

 private:
  void onConnected();
  void onDisconnected(const QString& reason);
  void onEvent(const QString& type, const QJsonObject& data);
  void refreshDevices();
  void sendVolume(const QString& qube);
  void report(const QString& what, const ControlResult& r);
  void checkPending();

  ControlClient& client_;
  QubeModel model_;
  BluetoothController bt_{client_};
  std::vector<OutputDevice> outputs_;
  QString default_output_;
  QString backend_;
  QTimer refresh_;
  bool ready_ = false;
  bool list_in_flight_ = false;
  std::map<QString, int> wanted_volume_;  // qube -> latest value not yet sent
  std::map<QString, bool> volume_in_flight_;
  std::set<QString> announced_;  // pending mic requests already announced
};

}  // namespace qaudio::mixer
