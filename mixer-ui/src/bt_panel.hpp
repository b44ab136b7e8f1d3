// The mixer window's Bluetooth section, through the daemon's `bt_*` control
// API (docs/bluetooth.md): adapter power and scan toggles, the device list
// (name, address, paired/connected, battery), Pair/Connect/Disconnect/Remove
// for the selected device, and the pairing prompts of the daemon's BlueZ
// agent (`bt_agent_request` events) answered from a dialog (`bt_confirm`,
// `bt_pin`). When the daemon has no Bluetooth the section is greyed out
// with the daemon's reason. Every call is asynchronous; the lists follow
// the bt_* events (re-read on each change, coalesced).
//
//   BluetoothPanel panel(mixer.bluetooth());   // in the mixer window
#pragma once

#include <QCheckBox>
#include <QDialog>
#include <QGroupBox>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QTreeWidget>

#include "bt_controller.hpp"

namespace qaudio::mixer {

// One agent prompt: the question, a code field for passkey/PIN prompts, and
// Accept/Reject (or Close for display-only prompts). Not modal: the rest of
// the window keeps working.
class BtPromptDialog : public QDialog {
  Q_OBJECT
 public:
  BtPromptDialog(BluetoothController& bt, const QJsonObject& request, QWidget* parent = nullptr);
  qint64 requestId() const { return id_; }
  QLabel* text() { return text_; }
  QLineEdit* code() { return code_; }
  QPushButton* acceptButton() { return accept_; }
  QPushButton* rejectButton() { return reject_; }

 private:
  BluetoothController& bt_;
  qint64 id_;
  QString address_;
  QString kind_;
  QLabel* text_;
  QLineEdit* code_ = nullptr;
  QPushButton* accept_;
  QPushButton* reject_ = nullptr;
};

class BluetoothPanel : public QGroupBox {
  Q_OBJECT
 public:
  explicit BluetoothPanel(BluetoothController& bt, QWidget* parent = nullptr);

  QLabel* status() { return status_; }
  QCheckBox* power() { return power_; }
  QCheckBox* scan() { return scan_; }
  QTreeWidget* list() { return list_; }
  QPushButton* pairButton() { return pair_; }
  QPushButton* connectButton() { return connect_; }
  QPushButton* disconnectButton() { return disconnect_; }
  QPushButton* removeButton() { return remove_; }
  // The open prompt dialog (nullptr if none).
  BtPromptDialog* prompt() { return prompt_; }
  // Selects the device row with `address` (false if it is not listed).
  bool select(const QString& address);

 private:
  void update();
  void updateButtons();
  QString selected() const;
  void showPrompt(const QJsonObject& request);

  BluetoothController& bt_;
  QLabel* status_;
  QCheckBox* power_;
  QCheckBox* scan_;
  QTreeWidget* list_;
  QPushButton* pair_;
  QPushButton* connect_;
  QPushButton* disconnect_;
  QPushButton* remove_;
  QLabel* error_;
  BtPromptDialog* prompt_ = nullptr;
  bool updating_ = false;
};

}  // namespace qaudio::mixer
