// Adapter1 / Device1 / Battery1 properties into plain structs (bt_types.hpp).
#include <algorithm>
#include <cctype>

#include "qaudio/bluetooth/bluez.hpp"
#include "qaudio/bluetooth/bt_types.hpp"

namespace qaudio::bt {

namespace {

template <class T>
const T* get(const PropMap& props, const char* key) {
  auto it = props.find(key);
  return it == props.end() ? nullptr : std::get_if<T>(&it->second);
}

template <class T>
bool set_if(const PropMap& props, const char* key, T& field) {
  if (const T* v = get<T>(props, key); v != nullptr && *v != field) {
    field = *v;
    return true;
  }
  return false;
}

bool set_int(const PropMap& props, const char* key, std::optional<int>& field, int lo, int hi) {
  const int64_t* v = get<int64_t>(props, key);
  if (v == nullptr) {
    return false;
  }
  int clamped = static_cast<int>(std::clamp<int64_t>(*v, lo, hi));
  if (field == clamped) {
    return false;
  }
  field = clamped;
  return true;
}

}  // namespace

std::string adapter_name_of(const std::string& path) {
  std::string_view prefix = bluez::kPathPrefix;
  if (path.compare(0, prefix.size(), prefix) != 0) {
    return {};
  }
  std::string rest = path.substr(prefix.size());
  return rest.substr(0, rest.find('/'));
}

std::optional<std::string> parse_address(const std::string& s) {
  if (s.size() != 17) {
    return std::nullopt;
  }
  std::string out = s;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i % 3 == 2) {
      if (s[i] != ':') {
        return std::nullopt;
      }
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return std::nullopt;
    } else {
      out[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[i])));
    }
  }
  return out;
}

bool Device::is_audio() const {
  if (((device_class >> 8) & 0x1f) == bluez::kMajorClassAudioVideo) {
    return true;
  }
  if (icon.rfind("audio-", 0) == 0) {
    return true;
  }
  for (const auto& u : uuids) {
    std::string low = u;
    std::transform(low.begin(), low.end(), low.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (std::find(bluez::kAudioUuids.begin(), bluez::kAudioUuids.end(), low) !=
        bluez::kAudioUuids.end()) {
      return true;
    }
  }
  return false;
}

bool apply_adapter_props(Adapter& a, const PropMap& props) {
  bool changed = false;
  changed |= set_if(props, bluez::kAddress, a.address);
  changed |= set_if(props, bluez::kAlias, a.alias);
  if (a.alias.empty()) {
    changed |= set_if(props, bluez::kName, a.alias);
  }
  changed |= set_if(props, bluez::kPowered, a.powered);
  changed |= set_if(props, bluez::kDiscoverable, a.discoverable);
  changed |= set_if(props, bluez::kDiscovering, a.discovering);
  changed |= set_if(props, bluez::kPairable, a.pairable);
  return changed;
}

bool apply_device_props(Device& d, const PropMap& props) {
  bool changed = false;
  if (const auto* addr = get<std::string>(props, bluez::kAddress)) {
    auto norm = parse_address(*addr);
    std::string v = norm ? *norm : *addr;
    changed |= v != d.address;
    d.address = v;
  }
  std::string name = d.name;
  if (const auto* alias = get<std::string>(props, bluez::kAlias); alias && !alias->empty()) {
    name = *alias;
  } else if (const auto* n = get<std::string>(props, bluez::kName); n && !n->empty()) {
    name = *n;
  }
  if (name.empty()) {
    name = d.address;
  }
  changed |= name != d.name;
  d.name = name;
  changed |= set_if(props, bluez::kIcon, d.icon);
  if (const auto* cls = get<int64_t>(props, bluez::kClass)) {
    auto v = static_cast<uint32_t>(std::clamp<int64_t>(*cls, 0, 0xffffff));
    changed |= v != d.device_class;
    d.device_class = v;
  }
  changed |= set_int(props, bluez::kRssi, d.rssi, -127, 20);
  changed |= set_int(props, bluez::kPercentage, d.battery, 0, 100);
  changed |= set_if(props, bluez::kPaired, d.paired);
  changed |= set_if(props, bluez::kTrusted, d.trusted);
  changed |= set_if(props, bluez::kConnected, d.connected);
  changed |= set_if(props, bluez::kBlocked, d.blocked);
  changed |= set_if(props, bluez::kUuids, d.uuids);
  return changed;
}

const char* to_string(AgentKind k) {
  switch (k) {
    case AgentKind::Confirmation:
      return "confirmation";
    case AgentKind::Authorization:
      return "authorization";
    case AgentKind::Service:
      return "service";
    case AgentKind::Passkey:
      return "passkey";
    case AgentKind::PinCode:
      return "pin";
    case AgentKind::DisplayPasskey:
      return "display_passkey";
    case AgentKind::DisplayPinCode:
      return "display_pin";
  }
  return "unknown";
}

bool needs_answer(AgentKind k) {
  return k != AgentKind::DisplayPasskey && k != AgentKind::DisplayPinCode;
}

const char* to_string(BtEvent::Type t) {
  using T = BtEvent::Type;
  switch (t) {
    case T::AdapterAdded:
      return "bt_adapter_added";
    case T::AdapterChanged:
      return "bt_adapter_changed";
    case T::AdapterRemoved:
      return "bt_adapter_removed";
    case T::DeviceAdded:
      return "bt_device_added";
    case T::DeviceChanged:
      return "bt_device_changed";
    case T::DeviceRemoved:
      return "bt_device_removed";
    case T::AgentRequest:
      return "bt_agent_request";
    case T::AgentRequestDone:
      return "bt_agent_request_done";
    case T::ActionFinished:
      return "bt_action";
    case T::HeadsetConnected:
      return "bt_headset_connected";
    case T::HeadsetDisconnected:
      return "bt_headset_disconnected";
  }
  return "bt_unknown";
}

}  // namespace qaudio::bt
