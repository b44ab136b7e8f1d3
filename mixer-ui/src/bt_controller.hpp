// The Bluetooth state the mixer shows, through the daemon's `bt_*` control
// API (docs/bluetooth.md, docs/control-api.md): adapters, devices and the
// agent's pairing prompts, re-read (coalesced) on every bt_* event; actions
// are asynchronous calls whose failures come back as error(). available()
// is false when the daemon answers `unsupported` (no --bluetooth, or built
// without sdbus-c++), with the daemon's reason.
//
//   BluetoothController bt(client);   // MixerController owns one
//   bt.connectDevice("AA:BB:CC:DD:EE:01");
#pragma once

#include <QJsonObject>
#include <QObject>

#include <map>
#include <vector>

#include "control_client.hpp"

namespace qaudio::mixer {

struct BtAdapterRow {
  QString name;  // hci0
  QString address;
  QString alias;
  bool powered = false;
  bool discovering = false;
};

struct BtDeviceRow {
  QString address;
  QString name;
  QString icon;
  bool paired = false;
  bool trusted = false;
  bool connected = false;
  int battery = -1;  // percent, -1: not reported
};

class BluetoothController : public QObject {
  Q_OBJECT
 public:
  explicit BluetoothController(ControlClient& client, QObject* parent = nullptr);

  // The daemon answers bt_* (built with sdbus-c++, started with --bluetooth).
  bool available() const { return available_; }
  // Why not (the daemon's message, or "disconnected"); "" while available.
  const QString& unavailableReason() const { return reason_; }
  const std::vector<BtAdapterRow>& adapters() const { return adapters_; }
  const std::vector<BtDeviceRow>& devices() const { return devices_; }
  const BtDeviceRow* device(const QString& address) const;
  // Agent prompts waiting for an answer, by request id.
  const std::map<qint64, QJsonObject>& requests() const { return requests_; }

 public slots:
  void refresh();
  void setPowered(const QString& adapter, bool on);
  void setScanning(const QString& adapter, bool on);
  void pair(const QString& address);
  void connectDevice(const QString& address);
  void disconnectDevice(const QString& address);
  void remove(const QString& address);
  void confirm(const QString& address, bool accept);
  void enterCode(const QString& address, const QString& code);

 signals:
  void changed();
  // A prompt that needs the user (kind confirmation/authorization/service/
  // passkey/pin) or shows a code (display_*): the event's "request".
  void agentRequest(const QJsonObject& request);
  void agentRequestDone(qint64 id, const QString& outcome);
  // An action or call failed: text for the user.
  void error(const QString& message);

 private:
  void onEvent(const QString& type, const QJsonObject& data);
  void refreshAdapters();
  void refreshDevices();
  void refreshRequests();
  void action(const QString& method, const QJsonObject& params, const QString& what);

  ControlClient& client_;
  bool available_ = false;
  QString reason_ = QStringLiteral("not connected to the daemon");
  std::vector<BtAdapterRow> adapters_;
  std::vector<BtDeviceRow> devices_;
  std::map<qint64, QJsonObject> requests_;
  bool adapters_in_flight_ = false, adapters_again_ = false;
  bool devices_in_flight_ = false, devices_again_ = false;
};

}  // namespace qaudio::mixer
