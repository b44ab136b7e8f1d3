// The seam between the Bluetooth logic (bt_manager) and D-Bus: the few
// BlueZ operations the manager needs, all asynchronous, and the signals and
// agent calls it receives. SdbusBluez (sdbus_bluez.hpp) implements it with
// sdbus-c++ on the daemon's EventLoop; tests may fake it.
//
//   bus.set_listener(&manager);
//   bus.call(dev.path, bluez::kDevice, bluez::kConnect, [](const BusError* e) { ... });
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "qaudio/bluetooth/bt_types.hpp"

namespace qaudio::bt {

struct BusError {
  std::string name;  // org.bluez.Error.Failed, org.freedesktop.DBus.Error.NoReply, ...
  std::string message;
};
// nullptr = success.
using BusDone = std::function<void(const BusError*)>;

// A call BlueZ made on our Agent1 object.
struct AgentCall {
  AgentCall() = default;
  explicit AgentCall(std::string m, std::string dev = {})
      : method(std::move(m)), device_path(std::move(dev)) {}
  std::string method;  // bluez::kRequestConfirmation, ...
  std::string device_path;
  uint32_t passkey = 0;
  uint32_t entered = 0;
  std::string pin;
  std::string uuid;
};
// The answer to an AgentCall: ok (with pin/passkey for the Request* calls
// that return one) or an error name (bluez::kErrorRejected / kErrorCanceled).
struct AgentReply {
  bool ok = false;
  std::string error = "org.bluez.Error.Rejected";
  std::string message;  // why, for BlueZ's log
  std::string pin;
  uint32_t passkey = 0;
};
using AgentReplyFn = std::function<void(const AgentReply&)>;

class BusListener {
 public:
  virtual ~BusListener() = default;
  virtual void on_interfaces_added(const std::string& path, const InterfaceMap& ifaces) = 0;
  virtual void on_interfaces_removed(const std::string& path,
                                     const std::vector<std::string>& ifaces) = 0;
  virtual void on_properties_changed(const std::string& path,
                                     const std::string& iface,
                                     const PropMap& changed) = 0;
  // org.bluez got a new owner (bluetoothd started) or lost it (stopped).
  virtual void on_service_changed(bool present) = 0;
  // BlueZ called our agent; `reply` must be called exactly once.
  virtual void on_agent_call(const AgentCall& call, AgentReplyFn reply) = 0;
};

class BluezBus {
 public:
  virtual ~BluezBus() = default;
  virtual void set_listener(BusListener* l) = 0;
  virtual void get_managed_objects(std::function<void(const BusError*, const ObjectMap&)> done) = 0;
  // A method without arguments or results (StartDiscovery, Pair, Connect, ...).
  virtual void call(const std::string& path,
                    const std::string& iface,
                    const std::string& method,
                    BusDone done) = 0;
  virtual void remove_device(const std::string& adapter_path,
                             const std::string& device_path,
                             BusDone done) = 0;
  // Empty uuids: no UUID filter.
  virtual void set_discovery_filter(const std::string& adapter_path,
                                    const std::vector<std::string>& uuids,
                                    BusDone done) = 0;
  virtual void set_bool(const std::string& path,
                        const std::string& iface,
                        const std::string& prop,
                        bool value,
                        BusDone done) = 0;
  // Exports Agent1 at `agent_path` (once), registers it and makes it the default.
  virtual void register_agent(const std::string& agent_path,
                              const std::string& capability,
                              BusDone done) = 0;
  // Our unique bus name (tests call our agent through it).
  virtual std::string unique_name() const = 0;
};

}  // namespace qaudio::bt
