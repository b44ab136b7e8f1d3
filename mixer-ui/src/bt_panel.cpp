// The Bluetooth section of the mixer window and its controller (see
// bt_panel.hpp, bt_controller.hpp).
#include "bt_panel.hpp"

#include <QDialogButtonBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonArray>
#include <QVBoxLayout>

namespace qaudio::mixer {

// ---- BluetoothController ----

BluetoothController::BluetoothController(ControlClient& client, QObject* parent)
    : QObject(parent), client_(client) {
  connect(&client_, &ControlClient::connected, this, &BluetoothController::refresh);
  connect(&client_, &ControlClient::disconnected, this, [this](const QString&) {
    available_ = false;
    reason_ = QStringLiteral("not connected to the daemon");
    adapters_.clear();
    devices_.clear();
    for (const auto& [id, r] : requests_) {
      emit agentRequestDone(id, QStringLiteral("disconnected"));
    }
    requests_.clear();
    adapters_in_flight_ = devices_in_flight_ = false;
    emit changed();
  });
  connect(&client_, &ControlClient::event, this, &BluetoothController::onEvent);
}

const BtDeviceRow* BluetoothController::device(const QString& address) const {
  for (const auto& d : devices_) {
    if (d.address.compare(address, Qt::CaseInsensitive) == 0) {
      return &d;
    }
  }
  return nullptr;
}

void BluetoothController::refresh() {
  refreshAdapters();
  refreshDevices();
  refreshRequests();
}

void BluetoothController::refreshAdapters() {
  if (!client_.isConnected()) {
    return;
  }
  if (adapters_in_flight_) {
    adapters_again_ = true;
    return;
  }
  adapters_in_flight_ = true;
  client_.call("bt_adapters", {}, [this](const ControlResult& r) {
    adapters_in_flight_ = false;
    if (r.code == QLatin1String("disconnected")) {
      return;
    }
    adapters_.clear();
    if (!r.ok) {
      available_ = false;
      reason_ = r.message.isEmpty() ? r.code : r.message;
    } else {
      available_ = true;
      reason_.clear();
      if (!r.result.value("bluez").toBool(true)) {
        reason_ = QStringLiteral("BlueZ (bluetoothd) is not running in the audio qube");
      }
      for (const auto& v : r.result.value("adapters").toArray()) {
        QJsonObject a = v.toObject();
        adapters_.push_back({a.value("name").toString(), a.value("address").toString(),
                             a.value("alias").toString(), a.value("powered").toBool(),
                             a.value("discovering").toBool()});
      }
    }
    emit changed();
    if (adapters_again_) {
      adapters_again_ = false;
      refreshAdapters();
    }
  });
}

void BluetoothController::refreshDevices() {
  if (!client_.isConnected()) {
    return;
  }
  if (devices_in_flight_) {
    devices_again_ = true;
    return;
  }
  devices_in_flight_ = true;
  client_.call("bt_devices", {}, [this](const ControlResult& r) {
    devices_in_flight_ = false;
    if (r.code == QLatin1String("disconnected")) {
      return;
    }
    devices_.clear();
    if (r.ok) {
      for (const auto& v : r.result.value("devices").toArray()) {
        QJsonObject d = v.toObject();
        BtDeviceRow row;
        row.address = d.value("address").toString();
        row.name = d.value("name").toString();
        row.icon = d.value("icon").toString();
        row.paired = d.value("paired").toBool();
        row.trusted = d.value("trusted").toBool();
        row.connected = d.value("connected").toBool();
        row.battery = d.value("battery").isDouble() ? d.value("battery").toInt() : -1;
        if (!row.address.isEmpty()) {
          devices_.push_back(row);
        }
      }
    }
    emit changed();
    if (devices_again_) {
      devices_again_ = false;
      refreshDevices();
    }
  });
}

void BluetoothController::refreshRequests() {
  client_.call("bt_requests", {}, [this](const ControlResult& r) {
    if (!r.ok) {
      return;
    }
    for (const auto& v : r.result.value("requests").toArray()) {
      QJsonObject req = v.toObject();
      qint64 id = req.value("id").toInteger(-1);
      if (id >= 0 && !requests_.count(id)) {
        requests_[id] = req;
        emit agentRequest(req);  // prompts made before we connected
      }
    }
  });
}

void BluetoothController::onEvent(const QString& type, const QJsonObject& data) {
  if (!type.startsWith(QLatin1String("bt_"))) {
    return;
  }
  if (type.startsWith(QLatin1String("bt_adapter_"))) {
    refreshAdapters();
    refreshDevices();  // an adapter's devices come and go with it
  } else if (type.startsWith(QLatin1String("bt_device_")) ||
             type.startsWith(QLatin1String("bt_headset_"))) {
    refreshDevices();
  } else if (type == QLatin1String("bt_agent_request")) {
    QJsonObject req = data.value("request").toObject();
    qint64 id = req.value("id").toInteger(-1);
    if (id >= 0) {
      requests_[id] = req;
      emit agentRequest(req);
    }
  } else if (type == QLatin1String("bt_agent_request_done")) {
    qint64 id = data.value("request").toObject().value("id").toInteger(-1);
    requests_.erase(id);
    emit agentRequestDone(id, data.value("outcome").toString());
  } else if (type == QLatin1String("bt_action")) {
    if (!data.value("ok").toBool()) {
      emit error(QStringLiteral("Bluetooth %1 %2 failed: %3")
                     .arg(data.value("action").toString(), data.value("target").toString(),
                          data.value("message").toString()));
    }
    refreshDevices();
  }
}

void BluetoothController::action(const QString& method,
                                 const QJsonObject& params,
                                 const QString& what) {
  client_.call(method, params, [this, what](const ControlResult& r) {
    if (!r.ok && r.code != QLatin1String("disconnected")) {
      emit error(QStringLiteral("%1: %2 (%3)").arg(what, r.message, r.code));
    }
    refreshAdapters();
  });
}

void BluetoothController::setPowered(const QString& adapter, bool on) {
  action("bt_set_adapter", {{"adapter", adapter}, {"powered", on}},
         QStringLiteral("Bluetooth power"));
}

void BluetoothController::setScanning(const QString& adapter, bool on) {
  action("bt_scan", {{"adapter", adapter}, {"on", on}}, QStringLiteral("Bluetooth scan"));
}

void BluetoothController::pair(const QString& address) {
  action("bt_pair", {{"address", address}}, QStringLiteral("Pair %1").arg(address));
}

void BluetoothController::connectDevice(const QString& address) {
  action("bt_connect", {{"address", address}}, QStringLiteral("Connect %1").arg(address));
}

void BluetoothController::disconnectDevice(const QString& address) {
  action("bt_disconnect", {{"address", address}}, QStringLiteral("Disconnect %1").arg(address));
}

void BluetoothController::remove(const QString& address) {
  action("bt_remove", {{"address", address}}, QStringLiteral("Remove %1").arg(address));
}

void BluetoothController::confirm(const QString& address, bool accept) {
  action("bt_confirm", {{"address", address}, {"accept", accept}},
         QStringLiteral("Answer to %1").arg(address));
}

void BluetoothController::enterCode(const QString& address, const QString& code) {
  action("bt_pin", {{"address", address}, {"code", code}},
         QStringLiteral("Code for %1").arg(address));
}

// ---- BtPromptDialog ----

BtPromptDialog::BtPromptDialog(BluetoothController& bt, const QJsonObject& req, QWidget* parent)
    : QDialog(parent),
      bt_(bt),
      id_(req.value("id").toInteger(-1)),
      address_(req.value("address").toString()),
      kind_(req.value("kind").toString()) {
  setObjectName("btPrompt");
  setWindowTitle(QStringLiteral("Bluetooth pairing"));
  setAttribute(Qt::WA_DeleteOnClose);
  QString who = req.value("name").toString().isEmpty()
                    ? address_
                    : QStringLiteral("%1 (%2)").arg(req.value("name").toString(), address_);
  QString passkey = req.value("passkey").toString();
  QString q;
  bool answer = req.value("needs_answer").toBool();
  if (kind_ == QLatin1String("confirmation")) {
    q = QStringLiteral("Does %1 show the passkey %2?").arg(who, passkey);
  } else if (kind_ == QLatin1String("authorization")) {
    q = QStringLiteral("Allow %1 to pair?").arg(who);
  } else if (kind_ == QLatin1String("service")) {
    q = QStringLiteral("Allow %1 to use service %2?").arg(who, req.value("service").toString());
  } else if (kind_ == QLatin1String("passkey")) {
    q = QStringLiteral("Type the 6-digit passkey shown by %1:").arg(who);
  } else if (kind_ == QLatin1String("pin")) {
    q = QStringLiteral("Enter the PIN code of %1 (often 0000):").arg(who);
  } else if (kind_ == QLatin1String("display_passkey")) {
    q = QStringLiteral("Type %1 on %2.").arg(passkey, who);
  } else if (kind_ == QLatin1String("display_pin")) {
    q = QStringLiteral("Enter PIN %1 on %2.").arg(req.value("pin").toString(), who);
  } else {
    q = QStringLiteral("%1 asks: %2").arg(who, kind_);
  }
  auto* v = new QVBoxLayout(this);
  text_ = new QLabel(q, this);
  text_->setObjectName("question");
  text_->setWordWrap(true);
  v->addWidget(text_);
  bool wants_code = kind_ == QLatin1String("passkey") || kind_ == QLatin1String("pin");
  if (wants_code) {
    code_ = new QLineEdit(this);
    code_->setObjectName("code");
    code_->setAccessibleName(QStringLiteral("Code for %1").arg(who));
    code_->setMaxLength(16);
    text_->setBuddy(code_);
    v->addWidget(code_);
  }
  auto* box = new QDialogButtonBox(this);
  if (answer) {
    accept_ = box->addButton(wants_code ? QStringLiteral("&OK") : QStringLiteral("&Accept"),
                             QDialogButtonBox::AcceptRole);
    reject_ = box->addButton(QStringLiteral("&Reject"), QDialogButtonBox::RejectRole);
  } else {
    accept_ = box->addButton(QStringLiteral("&Close"), QDialogButtonBox::AcceptRole);
  }
  accept_->setObjectName("accept");
  accept_->setDefault(true);  // Return in the code field answers
  if (reject_ != nullptr) {
    reject_->setObjectName("reject");
  }
  v->addWidget(box);
  connect(accept_, &QPushButton::clicked, this, [this, answer, wants_code] {
    if (answer) {
      if (wants_code) {
        bt_.enterCode(address_, code_->text().trimmed());
      } else {
        bt_.confirm(address_, true);
      }
    }
    close();
  });
  if (reject_ != nullptr) {
    connect(reject_, &QPushButton::clicked, this, [this] {
      bt_.confirm(address_, false);
      close();
    });
  }
}

// ---- BluetoothPanel ----

BluetoothPanel::BluetoothPanel(BluetoothController& bt, QWidget* parent)
    : QGroupBox(QStringLiteral("Bluetooth"), parent), bt_(bt) {
  setObjectName("bluetooth");
  auto* v = new QVBoxLayout(this);
  status_ = new QLabel(this);
  status_->setObjectName("btStatus");
  status_->setWordWrap(true);
  v->addWidget(status_);
  auto* toggles = new QHBoxLayout;
  power_ = new QCheckBox(QStringLiteral("Po&wer"), this);
  power_->setObjectName("btPower");
  power_->setAccessibleName(QStringLiteral("Bluetooth adapter power"));
  scan_ = new QCheckBox(QStringLiteral("&Scan for devices"), this);
  scan_->setObjectName("btScan");
  scan_->setAccessibleName(QStringLiteral("Scan for Bluetooth audio devices"));
  toggles->addWidget(power_);
  toggles->addWidget(scan_);
  toggles->addStretch(1);
  v->addLayout(toggles);
  list_ = new QTreeWidget(this);
  list_->setObjectName("btDevices");
  list_->setAccessibleName(QStringLiteral("Bluetooth devices"));
  list_->setRootIsDecorated(false);
  list_->setHeaderLabels({QStringLiteral("Device"), QStringLiteral("Address"),
                          QStringLiteral("State"), QStringLiteral("Battery")});
  list_->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
  list_->setMinimumHeight(90);
  v->addWidget(list_);
  auto* buttons = new QHBoxLayout;
  pair_ = new QPushButton(QStringLiteral("&Pair"), this);
  connect_ = new QPushButton(QStringLiteral("&Connect"), this);
  disconnect_ = new QPushButton(QStringLiteral("D&isconnect"), this);
  remove_ = new QPushButton(QStringLiteral("&Remove"), this);
  pair_->setObjectName("btPair");
  connect_->setObjectName("btConnect");
  disconnect_->setObjectName("btDisconnect");
  remove_->setObjectName("btRemove");
  for (auto* b : {pair_, connect_, disconnect_, remove_}) {
    buttons->addWidget(b);
  }
  buttons->addStretch(1);
  v->addLayout(buttons);
  error_ = new QLabel(this);
  error_->setObjectName("btError");
  error_->setWordWrap(true);
  error_->hide();
  v->addWidget(error_);

  auto adapter = [this] {
    return bt_.adapters().empty() ? QString() : bt_.adapters().front().name;
  };
  connect(power_, &QCheckBox::toggled, this, [this, adapter](bool on) {
    if (!updating_) {
      bt_.setPowered(adapter(), on);
    }
  });
  connect(scan_, &QCheckBox::toggled, this, [this, adapter](bool on) {
    if (!updating_) {
      bt_.setScanning(adapter(), on);
    }
  });
  connect(pair_, &QPushButton::clicked, this, [this] { bt_.pair(selected()); });
  connect(connect_, &QPushButton::clicked, this, [this] { bt_.connectDevice(selected()); });
  connect(disconnect_, &QPushButton::clicked, this, [this] { bt_.disconnectDevice(selected()); });
  connect(remove_, &QPushButton::clicked, this, [this] { bt_.remove(selected()); });
  connect(list_, &QTreeWidget::itemSelectionChanged, this, &BluetoothPanel::updateButtons);
  connect(&bt_, &BluetoothController::changed, this, &BluetoothPanel::update);
  connect(&bt_, &BluetoothController::agentRequest, this, &BluetoothPanel::showPrompt);
  connect(&bt_, &BluetoothController::agentRequestDone, this, [this](qint64 id, const QString&) {
    if (prompt_ != nullptr && prompt_->requestId() == id) {
      prompt_->close();  // answered elsewhere, or timed out
    }
  });
  connect(&bt_, &BluetoothController::error, this, [this](const QString& msg) {
    error_->setText(msg);
    error_->show();
  });
  update();
}

QString BluetoothPanel::selected() const {
  auto items = list_->selectedItems();
  return items.isEmpty() ? QString() : items.front()->data(1, Qt::DisplayRole).toString();
}

bool BluetoothPanel::select(const QString& address) {
  for (int i = 0; i < list_->topLevelItemCount(); ++i) {
    QTreeWidgetItem* it = list_->topLevelItem(i);
    if (it->text(1).compare(address, Qt::CaseInsensitive) == 0) {
      list_->setCurrentItem(it);
      it->setSelected(true);
      return true;
    }
  }
  return false;
}

void BluetoothPanel::update() {
  updating_ = true;
  bool on = bt_.available() && !bt_.adapters().empty();
  for (QWidget* w : std::initializer_list<QWidget*>{power_, scan_, list_}) {
    w->setEnabled(on);
  }
  if (!bt_.available()) {
    status_->setText(QStringLiteral("Bluetooth is not available: %1").arg(bt_.unavailableReason()));
  } else if (bt_.adapters().empty()) {
    status_->setText(bt_.unavailableReason().isEmpty()
                         ? QStringLiteral("No Bluetooth adapter in the audio qube")
                         : bt_.unavailableReason());
  } else {
    const BtAdapterRow& a = bt_.adapters().front();
    status_->setText(QStringLiteral("Adapter %1 (%2)%3")
                         .arg(a.name, a.address,
                              a.powered ? (a.discovering ? QStringLiteral(": scanning…")
                                                         : QStringLiteral(": on"))
                                        : QStringLiteral(": off")));
    power_->setChecked(a.powered);
    scan_->setChecked(a.discovering);
    scan_->setEnabled(a.powered);
  }
  QString keep = selected();
  list_->clear();
  for (const auto& d : bt_.devices()) {
    QStringList state;
    state << (d.connected ? QStringLiteral("connected") : QStringLiteral("not connected"));
    if (d.paired) {
      state << QStringLiteral("paired");
    }
    if (d.trusted) {
      state << QStringLiteral("trusted");
    }
    auto* it = new QTreeWidgetItem(
        list_, {d.name.isEmpty() ? d.address : d.name, d.address, state.join(", "),
                d.battery >= 0 ? QStringLiteral("%1 %").arg(d.battery) : QStringLiteral("–")});
    if (d.address == keep) {
      it->setSelected(true);
      list_->setCurrentItem(it);
    }
  }
  updating_ = false;
  updateButtons();
}

void BluetoothPanel::updateButtons() {
  const BtDeviceRow* d = bt_.available() ? bt_.device(selected()) : nullptr;
  pair_->setEnabled(d != nullptr && !d->paired);
  connect_->setEnabled(d != nullptr && !d->connected);
  disconnect_->setEnabled(d != nullptr && d->connected);
  remove_->setEnabled(d != nullptr);
}

void BluetoothPanel::showPrompt(const QJsonObject& request) {
  if (prompt_ != nullptr) {
    prompt_->close();
  }
  prompt_ = new BtPromptDialog(bt_, request, this);
  BtPromptDialog* p = prompt_;
  connect(p, &QObject::destroyed, this, [this, p] {
    if (prompt_ == p) {
      prompt_ = nullptr;
    }
  });
  p->setWindowModality(Qt::NonModal);
  p->show();
  if (p->code() != nullptr) {
    p->code()->setFocus();
  } else {
    p->acceptButton()->setFocus();
  }
}

}  // namespace qaudio::mixer
