// Plain data for Bluetooth in the audio qube: adapters, devices, agent
// requests and the events the manager reports. No D-Bus types: property
// values arrive as PropValue from whichever bus binding is in use.
//
//   bt::Device d; apply_device_props(d, props);   // bt_device.cpp
//   if (d.is_audio()) { ... }
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace qaudio::bt {

// A D-Bus property value, reduced to what BlueZ's properties need.
using PropValue = std::variant<bool, int64_t, std::string, std::vector<std::string>>;
using PropMap = std::map<std::string, PropValue>;
using InterfaceMap = std::map<std::string, PropMap>;    // interface -> properties
using ObjectMap = std::map<std::string, InterfaceMap>;  // object path -> interfaces

struct Adapter {
  std::string path;  // /org/bluez/hci0
  std::string name;  // hci0
  std::string address;
  std::string alias;
  bool powered = false;
  bool discoverable = false;
  bool discovering = false;
  bool pairable = false;
};

struct Device {
  std::string path;     // /org/bluez/hci0/dev_AA_BB_CC_DD_EE_01
  std::string adapter;  // hci0
  std::string address;  // AA:BB:CC:DD:EE:01
  std::string name;     // Alias, else Name, else the address
  std::string icon;     // BlueZ's icon name, e.g. audio-headset
  uint32_t device_class = 0;
  std::optional<int> rssi;     // dBm, while discovering
  std::optional<int> battery;  // percent (Battery1)
  bool paired = false;
  bool trusted = false;
  bool connected = false;
  bool blocked = false;
  std::vector<std::string> uuids;

  // A headset, speaker or other audio device: an audio profile UUID, the
  // Audio/Video major class, or an audio-* icon.
  bool is_audio() const;
};

// Updates from a property dict (unknown keys and ill-typed values ignored).
// Returns whether anything the user sees changed.
bool apply_adapter_props(Adapter& a, const PropMap& props);
bool apply_device_props(Device& d, const PropMap& props);
// "hci0" from "/org/bluez/hci0/dev_..." or "/org/bluez/hci0"; empty if not BlueZ's.
std::string adapter_name_of(const std::string& path);
// AA:BB:CC:DD:EE:FF with hex digits (any case). Normalises to upper case.
std::optional<std::string> parse_address(const std::string& s);

enum class AgentKind {
  Confirmation,    // RequestConfirmation: compare `passkey` on both sides, yes/no
  Authorization,   // RequestAuthorization: "just works" pairing, yes/no
  Service,         // AuthorizeService: a profile connection, yes/no
  Passkey,         // RequestPasskey: type the 6-digit number shown on the device
  PinCode,         // RequestPinCode: legacy PIN (1-16 characters)
  DisplayPasskey,  // DisplayPasskey: show `passkey`, nothing to answer
  DisplayPinCode,  // DisplayPinCode: show `pin`, nothing to answer
};
const char* to_string(AgentKind k);
bool needs_answer(AgentKind k);

struct AgentRequest {
  uint64_t id = 0;
  AgentKind kind = AgentKind::Confirmation;
  std::string device_path;
  std::string address;
  std::string name;
  std::optional<uint32_t> passkey;
  std::string pin;      // DisplayPinCode
  std::string service;  // AuthorizeService UUID
};

struct BtEvent {
  enum class Type {
    AdapterAdded,
    AdapterChanged,
    AdapterRemoved,
    DeviceAdded,
    DeviceChanged,
    DeviceRemoved,
    AgentRequest,      // request: the user must answer (or just see) it
    AgentRequestDone,  // request + outcome: accepted|rejected|timeout|canceled
    ActionFinished,    // action (pair, connect, ...) on address: ok + message
    HeadsetConnected,  // an audio device connected: pick its sink (hook)
    HeadsetDisconnected,
  };
  explicit BtEvent(Type t) : type(t) {}
  Type type;
  Adapter adapter;
  Device device;
  AgentRequest request;
  std::string action;
  std::string address;
  std::string outcome;
  bool ok = true;
  std::string message;
};
const char* to_string(BtEvent::Type t);

}  // namespace qaudio::bt
