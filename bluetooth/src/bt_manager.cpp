// Bluetooth manager logic (see bt_manager.hpp).
#include "qaudio/bluetooth/bt_manager.hpp"

#include <cerrno>

#include "qaudio/bluetooth/bluez.hpp"
#include "qaudio/log.hpp"

namespace qaudio::bt {

namespace {

std::string describe(const BusError& e) {
  std::string name = e.name;
  if (auto dot = name.rfind('.'); dot != std::string::npos) {
    name = name.substr(dot + 1);
  }
  return e.message.empty() ? name : name + ": " + e.message;
}

bool has(const std::vector<std::string>& v, const char* s) {
  for (const auto& x : v) {
    if (x == s) {
      return true;
    }
  }
  return false;
}

}  // namespace

Manager::Manager(BluezBus& bus, EventLoop& loop, ManagerOptions opt, EventFn on_event)
    : bus_(bus),
      loop_(loop),
      opt_(std::move(opt)),
      on_event_(std::move(on_event)),
      agent_(loop, opt_.agent_timeout, [this](BtEvent e) { emit(std::move(e)); }) {
  bus_.set_listener(this);
}

Manager::~Manager() {
  *alive_ = false;
  bus_.set_listener(nullptr);
  agent_.cancel_all("canceled");
}

void Manager::emit(BtEvent ev) {
  if (on_event_) {
    on_event_(ev);
  }
}

void Manager::start() {
  std::weak_ptr<bool> alive = alive_;
  bus_.register_agent(opt_.agent_path, bluez::kCapability, [this, alive](const BusError* e) {
    if (alive.expired()) {
      return;
    }
    agent_registered_ = e == nullptr;
    if (e != nullptr) {
      log_warn(
          "bluetooth: registering our pairing agent failed (%s); pairing will use "
          "another agent if one is registered",
          describe(*e).c_str());
    } else {
      log_info("bluetooth: pairing agent registered as the default (%s)", opt_.agent_path.c_str());
    }
  });
  bus_.get_managed_objects([this, alive](const BusError* e, const ObjectMap& objects) {
    if (alive.expired()) {
      return;
    }
    if (e != nullptr) {
      present_ = false;
      log_warn("bluetooth: BlueZ is not reachable (%s); is bluetoothd running?",
               describe(*e).c_str());
      return;
    }
    present_ = true;
    // Adapters first, so that devices find theirs.
    for (const auto& [path, ifaces] : objects) {
      if (ifaces.count(bluez::kAdapter)) {
        add_object(path, ifaces, true);
      }
    }
    for (const auto& [path, ifaces] : objects) {
      if (!ifaces.count(bluez::kAdapter)) {
        add_object(path, ifaces, true);
      }
    }
    if (opt_.auto_reconnect) {
      reconnect_trusted();
    }
  });
}

std::vector<Adapter> Manager::adapters() const {
  std::vector<Adapter> out;
  for (const auto& [p, a] : adapters_) {
    out.push_back(a);
  }
  return out;
}

std::vector<Device> Manager::devices(bool audio_only) const {
  std::vector<Device> out;
  for (const auto& [p, d] : devices_) {
    if (!audio_only || d.is_audio() || d.paired) {
      out.push_back(d);
    }
  }
  return out;
}

const Adapter* Manager::find_adapter(const std::string& key) const {
  for (const auto& [p, a] : adapters_) {
    if (key.empty() || key == a.name || key == a.path || key == a.address) {
      return &a;
    }
  }
  return nullptr;
}

Device* Manager::find_device(const std::string& address) {
  auto norm = parse_address(address);
  for (auto& [p, d] : devices_) {
    if (norm && d.address == *norm) {
      return &d;
    }
  }
  return nullptr;
}

Result<const Device*> Manager::device_for(const std::string& address, const char* action) {
  if (!parse_address(address)) {
    return fail(std::string(action) + ": '" + address.substr(0, 40) +
                    "' is not a Bluetooth address (AA:BB:CC:DD:EE:FF)",
                EINVAL);
  }
  if (!present_) {
    return fail(std::string(action) + ": BlueZ is not running (start bluetoothd)", EAGAIN);
  }
  Device* d = find_device(address);
  if (d == nullptr) {
    return fail(std::string(action) + ": no device " + address +
                    " is known (scan first: qvm-audio bt scan)",
                ENOENT);
  }
  std::string key = std::string(action) + " " + d->address;
  if (busy_.count(key)) {
    return fail(std::string(action) + " " + d->address + " is already in progress", EBUSY);
  }
  return d;
}

void Manager::finish(const std::string& action, const std::string& address, const BusError* e) {
  busy_.erase(action + " " + address);
  BtEvent ev{BtEvent::Type::ActionFinished};
  ev.action = action;
  ev.address = address;
  ev.ok = e == nullptr;
  if (e != nullptr) {
    ev.message = action + " " + address + " failed: " + describe(*e);
    log_info("bluetooth: %s", ev.message.c_str());
  }
  if (Device* d = find_device(address)) {
    ev.device = *d;
  }
  emit(std::move(ev));
}

Result<void> Manager::set_powered(const std::string& adapter, bool on) {
  const Adapter* a = find_adapter(adapter);
  if (a == nullptr) {
    return fail("no Bluetooth adapter " + (adapter.empty() ? std::string() : "'" + adapter + "' ") +
                    "(qvm-audio bt adapters lists them)",
                ENOENT);
  }
  std::weak_ptr<bool> alive = alive_;
  std::string name = a->name;
  bus_.set_bool(a->path, bluez::kAdapter, bluez::kPowered, on,
                [this, alive, name](const BusError* e) {
                  if (!alive.expired()) {
                    finish("power", name, e);
                  }
                });
  return {};
}

Result<void> Manager::set_discoverable(const std::string& adapter, bool on) {
  const Adapter* a = find_adapter(adapter);
  if (a == nullptr) {
    return fail("no Bluetooth adapter " + (adapter.empty() ? std::string() : "'" + adapter + "' ") +
                    "(qvm-audio bt adapters lists them)",
                ENOENT);
  }
  std::weak_ptr<bool> alive = alive_;
  std::string name = a->name;
  bus_.set_bool(a->path, bluez::kAdapter, bluez::kDiscoverable, on,
                [this, alive, name](const BusError* e) {
                  if (!alive.expired()) {
                    finish("discoverable", name, e);
                  }
                });
  return {};
}

Result<void> Manager::scan(const std::string& adapter, bool on, bool audio_only) {
  const Adapter* a = find_adapter(adapter);
  if (a == nullptr) {
    return fail("no Bluetooth adapter " + (adapter.empty() ? std::string() : "'" + adapter + "' ") +
                    "(qvm-audio bt adapters lists them)",
                ENOENT);
  }
  if (on && !a->powered) {
    return fail("adapter " + a->name + " is powered off (qvm-audio bt power " + a->name + " on)",
                EINVAL);
  }
  std::weak_ptr<bool> alive = alive_;
  std::string name = a->name;
  std::string path = a->path;
  if (!on) {
    bus_.call(path, bluez::kAdapter, bluez::kStopDiscovery, [this, alive, name](const BusError* e) {
      if (!alive.expired()) {
        finish("scan_off", name, e);
      }
    });
    return {};
  }
  std::vector<std::string> uuids;
  if (audio_only) {
    uuids.assign(bluez::kAudioUuids.begin(), bluez::kAudioUuids.end());
  }
  // BlueZ applies the filter to the next StartDiscovery of this client.
  bus_.set_discovery_filter(path, uuids, [this, alive, name, path](const BusError* e) {
    if (alive.expired()) {
      return;
    }
    if (e != nullptr) {
      finish("scan_on", name, e);
      return;
    }
    bus_.call(path, bluez::kAdapter, bluez::kStartDiscovery,
              [this, alive, name](const BusError* e2) {
                if (!alive.expired()) {
                  finish("scan_on", name, e2);
                }
              });
  });
  return {};
}

#define QAUDIO_BT_DEVICE_ACTION(ACTION)     \
  auto found = device_for(address, ACTION); \
  if (!found) {                             \
    return fail(found.error());             \
  }                                         \
  const Device& d = **found;                \
  std::string addr = d.address;             \
  std::string path = d.path;                \
  std::weak_ptr<bool> alive = alive_;       \
  busy_.insert(std::string(ACTION) + " " + addr)

Result<void> Manager::pair(const std::string& address) {
  QAUDIO_BT_DEVICE_ACTION("pair");
  user_pairing_.insert(addr);
  bus_.call(path, bluez::kDevice, bluez::kPair, [this, alive, addr](const BusError* e) {
    if (alive.expired()) {
      return;
    }
    user_pairing_.erase(addr);
    finish("pair", addr, e);
  });
  return {};
}

Result<void> Manager::trust(const std::string& address, bool trusted) {
  QAUDIO_BT_DEVICE_ACTION("trust");
  bus_.set_bool(path, bluez::kDevice, bluez::kTrusted, trusted,
                [this, alive, addr](const BusError* e) {
                  if (!alive.expired()) {
                    finish("trust", addr, e);
                  }
                });
  return {};
}

Result<void> Manager::connect(const std::string& address) {
  QAUDIO_BT_DEVICE_ACTION("connect");
  user_disconnected_.erase(addr);
  bus_.call(path, bluez::kDevice, bluez::kConnect, [this, alive, addr](const BusError* e) {
    if (!alive.expired()) {
      finish("connect", addr, e);
    }
  });
  return {};
}

Result<void> Manager::disconnect(const std::string& address) {
  QAUDIO_BT_DEVICE_ACTION("disconnect");
  user_disconnected_.insert(addr);
  bus_.call(path, bluez::kDevice, bluez::kDisconnect, [this, alive, addr](const BusError* e) {
    if (!alive.expired()) {
      finish("disconnect", addr, e);
    }
  });
  return {};
}

Result<void> Manager::remove(const std::string& address) {
  QAUDIO_BT_DEVICE_ACTION("remove");
  std::string adapter_path = std::string(bluez::kPathPrefix) + d.adapter;
  bus_.remove_device(adapter_path, path, [this, alive, addr](const BusError* e) {
    if (!alive.expired()) {
      finish("remove", addr, e);
    }
  });
  return {};
}
#undef QAUDIO_BT_DEVICE_ACTION

Result<void> Manager::confirm(const std::string& address, bool accept) {
  auto norm = parse_address(address);
  if (!norm) {
    return fail("confirm: '" + address.substr(0, 40) + "' is not a Bluetooth address", EINVAL);
  }
  return agent_.answer_yes_no(*norm, accept);
}

Result<void> Manager::enter_code(const std::string& address, const std::string& code) {
  auto norm = parse_address(address);
  if (!norm) {
    return fail("pin: '" + address.substr(0, 40) + "' is not a Bluetooth address", EINVAL);
  }
  return agent_.answer_code(*norm, code);
}

void Manager::reconnect_trusted() {
  user_disconnected_.clear();
  for (const auto& [p, d] : devices_) {
    maybe_reconnect(d);
  }
}

void Manager::maybe_reconnect(const Device& d) {
  if (!opt_.auto_reconnect || !d.paired || !d.trusted || d.connected || d.blocked ||
      !d.is_audio() || user_disconnected_.count(d.address)) {
    return;
  }
  const Adapter* a = find_adapter(d.adapter);
  if (a == nullptr || !a->powered) {
    return;
  }
  std::string key = "connect " + d.address;
  if (busy_.count(key)) {
    return;
  }
  log_info("bluetooth: reconnecting trusted %s (%s)", d.name.c_str(), d.address.c_str());
  busy_.insert(key);
  std::weak_ptr<bool> alive = alive_;
  std::string addr = d.address;
  bus_.call(d.path, bluez::kDevice, bluez::kConnect, [this, alive, addr](const BusError* e) {
    if (!alive.expired()) {
      finish("reconnect", addr, e);
      busy_.erase("connect " + addr);
    }
  });
}

void Manager::add_object(const std::string& path, const InterfaceMap& ifaces, bool announce) {
  if (adapter_name_of(path).empty()) {
    return;
  }
  if (auto it = ifaces.find(bluez::kAdapter); it != ifaces.end()) {
    Adapter& a = adapters_[path];
    bool fresh = a.path.empty();
    a.path = path;
    a.name = adapter_name_of(path);
    apply_adapter_props(a, it->second);
    if (announce) {
      BtEvent ev{fresh ? BtEvent::Type::AdapterAdded : BtEvent::Type::AdapterChanged};
      ev.adapter = a;
      emit(std::move(ev));
    }
    if (fresh && announce && present_) {
      resync();  // its devices (BlueZ may announce them before or after it)
    }
  }
  auto dev = ifaces.find(bluez::kDevice);
  auto bat = ifaces.find(bluez::kBattery);
  if (dev == ifaces.end() && bat == ifaces.end()) {
    return;
  }
  auto existing = devices_.find(path);
  if (existing == devices_.end() && dev == ifaces.end()) {
    return;  // battery of a device we do not know
  }
  Device before = existing == devices_.end() ? Device{} : existing->second;
  Device& d = devices_[path];
  d.path = path;
  d.adapter = adapter_name_of(path);
  if (dev != ifaces.end()) {
    apply_device_props(d, dev->second);
  }
  if (bat != ifaces.end()) {
    apply_device_props(d, bat->second);
  }
  if (existing == devices_.end()) {
    if (announce) {
      BtEvent ev{BtEvent::Type::DeviceAdded};
      ev.device = d;
      ev.address = d.address;
      emit(std::move(ev));
    }
    if (d.connected && d.is_audio()) {
      BtEvent ev{BtEvent::Type::HeadsetConnected};
      ev.device = d;
      ev.address = d.address;
      emit(std::move(ev));
    }
    maybe_reconnect(d);
  } else {
    device_changed(d, before);
  }
}

void Manager::device_changed(Device& d, const Device& before) {
  BtEvent ev{BtEvent::Type::DeviceChanged};
  ev.device = d;
  ev.address = d.address;
  emit(std::move(ev));
  if (d.connected != before.connected && d.is_audio()) {
    BtEvent h{d.connected ? BtEvent::Type::HeadsetConnected : BtEvent::Type::HeadsetDisconnected};
    h.device = d;
    h.address = d.address;
    emit(std::move(h));
  }
}

void Manager::remove_device_path(const std::string& path) {
  auto it = devices_.find(path);
  if (it == devices_.end()) {
    return;
  }
  Device d = it->second;
  devices_.erase(it);
  if (d.connected && d.is_audio()) {
    BtEvent h{BtEvent::Type::HeadsetDisconnected};
    h.device = d;
    h.address = d.address;
    h.device.connected = false;
    emit(std::move(h));
  }
  BtEvent ev{BtEvent::Type::DeviceRemoved};
  ev.device = d;
  ev.address = d.address;
  emit(std::move(ev));
}

void Manager::resync() {
  std::weak_ptr<bool> alive = alive_;
  bus_.get_managed_objects([this, alive](const BusError* e, const ObjectMap& objects) {
    if (alive.expired() || e != nullptr) {
      return;
    }
    for (const auto& [path, ifaces] : objects) {
      if (!devices_.count(path) && !adapters_.count(path) && ifaces.count(bluez::kDevice) &&
          adapters_.count(std::string(bluez::kPathPrefix) + adapter_name_of(path))) {
        add_object(path, ifaces, true);
      }
    }
  });
}

void Manager::on_interfaces_added(const std::string& path, const InterfaceMap& ifaces) {
  present_ = true;
  add_object(path, ifaces, true);
}

void Manager::on_interfaces_removed(const std::string& path,
                                    const std::vector<std::string>& ifaces) {
  if (has(ifaces, bluez::kDevice)) {
    remove_device_path(path);
  } else if (has(ifaces, bluez::kBattery)) {
    if (auto it = devices_.find(path); it != devices_.end() && it->second.battery) {
      Device before = it->second;
      it->second.battery.reset();
      device_changed(it->second, before);
    }
  }
  if (has(ifaces, bluez::kAdapter)) {
    // The adapter went away (unplugged, reset): its devices went with it.
    std::vector<std::string> gone;
    std::string name = adapter_name_of(path);
    for (const auto& [p, d] : devices_) {
      if (d.adapter == name) {
        gone.push_back(p);
      }
    }
    for (const auto& p : gone) {
      user_disconnected_.erase(devices_[p].address);  // a reset is a return
      remove_device_path(p);
    }
    auto it = adapters_.find(path);
    if (it != adapters_.end()) {
      BtEvent ev{BtEvent::Type::AdapterRemoved};
      ev.adapter = it->second;
      adapters_.erase(it);
      emit(std::move(ev));
    }
  }
}

void Manager::on_properties_changed(const std::string& path,
                                    const std::string& iface,
                                    const PropMap& changed) {
  if (iface == bluez::kAdapter) {
    auto it = adapters_.find(path);
    if (it == adapters_.end()) {
      return;
    }
    bool was_powered = it->second.powered;
    if (apply_adapter_props(it->second, changed)) {
      BtEvent ev{BtEvent::Type::AdapterChanged};
      ev.adapter = it->second;
      emit(std::move(ev));
    }
    if (!was_powered && it->second.powered && opt_.auto_reconnect) {
      std::string name = it->second.name;
      for (const auto& [p, d] : devices_) {
        if (d.adapter == name) {
          maybe_reconnect(d);
        }
      }
    }
    return;
  }
  if (iface == bluez::kDevice || iface == bluez::kBattery) {
    auto it = devices_.find(path);
    if (it == devices_.end()) {
      return;
    }
    Device before = it->second;
    if (apply_device_props(it->second, changed)) {
      device_changed(it->second, before);
    }
  }
}

void Manager::reset_objects() {
  std::vector<std::string> adapters;
  for (const auto& [p, a] : adapters_) {
    adapters.push_back(p);
  }
  for (const auto& p : adapters) {
    on_interfaces_removed(p, {bluez::kAdapter});
  }
  devices_.clear();
  busy_.clear();
}

void Manager::on_service_changed(bool present) {
  if (!present) {
    log_warn("bluetooth: BlueZ left the bus; waiting for it to return");
    present_ = false;
    agent_.cancel_all("canceled");
    reset_objects();
    return;
  }
  log_info("bluetooth: BlueZ is on the bus; reading its adapters and devices");
  reset_objects();
  start();
}

void Manager::on_agent_call(const AgentCall& call, AgentReplyFn reply) {
  Device d;
  if (auto it = devices_.find(call.device_path); it != devices_.end()) {
    d = it->second;
  }
  agent_.handle(call, d, std::move(reply), user_pairing_.count(d.address) > 0);
}

}  // namespace qaudio::bt
