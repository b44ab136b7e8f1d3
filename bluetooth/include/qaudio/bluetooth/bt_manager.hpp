// Bluetooth headsets in the audio qube: the logic on top of BluezBus.
// Keeps the live list of adapters and devices from BlueZ's ObjectManager and
// PropertiesChanged signals, runs the user's actions (power, discoverable,
// scan with an audio filter, pair, trust, connect, disconnect, remove) and
// reports their outcome as ActionFinished events, acts as BlueZ's default
// agent through BtAgent (bt_agent.hpp), and reconnects paired, trusted
// audio devices when they or their adapter come back.
//
// Every call runs on the loop thread; results arrive as events:
//
//   Manager m(bus, loop, {}, [](const BtEvent& e) { ... });
//   m.start();
//   if (auto r = m.pair("AA:BB:CC:DD:EE:01"); !r) { r.error().message }
//   // ... BtEvent{AgentRequest} -> m.confirm(address, true)
//   // ... BtEvent{ActionFinished, action "pair", ok}
//
// Errors from the calls carry an errno-style code: ENOENT (no such adapter
// or device), EINVAL (bad argument), EBUSY (already in progress), EAGAIN
// (BlueZ is not running).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "qaudio/bluetooth/bt_agent.hpp"
#include "qaudio/bluetooth/bt_bus.hpp"
#include "qaudio/bluetooth/bt_types.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/result.hpp"

namespace qaudio::bt {

struct ManagerOptions {
  std::string agent_path = "/org/qaudio/bluetooth/agent";
  std::chrono::milliseconds agent_timeout{30000};  // unanswered requests are rejected
  std::chrono::milliseconds call_timeout{60000};   // shown in docs; the bus applies it
  bool auto_reconnect = true;  // trusted audio devices, when they or the adapter return
};

using EventFn = std::function<void(const BtEvent&)>;

class Manager : public BusListener {
 public:
  Manager(BluezBus& bus, EventLoop& loop, ManagerOptions opt, EventFn on_event);
  ~Manager() override;
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Registers the agent and reads BlueZ's objects (again after BlueZ restarts).
  void start();
  bool bluez_present() const { return present_; }

  std::vector<Adapter> adapters() const;
  // All known devices, or only audio devices (and paired ones) when audio_only.
  std::vector<Device> devices(bool audio_only = false) const;
  std::vector<AgentRequest> pending_requests() const { return agent_.pending(); }

  // `adapter`: "hci0", its path or its address; empty = the first adapter.
  Result<void> set_powered(const std::string& adapter, bool on);
  Result<void> set_discoverable(const std::string& adapter, bool on);
  // audio_only: SetDiscoveryFilter with the audio profile UUIDs first.
  Result<void> scan(const std::string& adapter, bool on, bool audio_only = true);

  Result<void> pair(const std::string& address);
  Result<void> trust(const std::string& address, bool trusted);
  Result<void> connect(const std::string& address);
  Result<void> disconnect(const std::string& address);
  Result<void> remove(const std::string& address);
  // Answers the agent's pending request for this device.
  Result<void> confirm(const std::string& address, bool accept);
  Result<void> enter_code(const std::string& address, const std::string& code);

  // Connects every paired, trusted audio device that is not connected (also
  // called after the audio qube resumes).
  void reconnect_trusted();

  // BusListener
  void on_interfaces_added(const std::string& path, const InterfaceMap& ifaces) override;
  void on_interfaces_removed(const std::string& path,
                             const std::vector<std::string>& ifaces) override;
  void on_properties_changed(const std::string& path,
                             const std::string& iface,
                             const PropMap& changed) override;
  void on_service_changed(bool present) override;
  void on_agent_call(const AgentCall& call, AgentReplyFn reply) override;

 private:
  const Adapter* find_adapter(const std::string& key) const;
  Device* find_device(const std::string& address);
  Result<const Device*> device_for(const std::string& address, const char* action);
  void add_object(const std::string& path, const InterfaceMap& ifaces, bool announce);
  void remove_device_path(const std::string& path);
  void device_changed(Device& d, const Device& before);
  void maybe_reconnect(const Device& d);
  void finish(const std::string& action, const std::string& address, const BusError* e);
  void emit(BtEvent ev);
  void reset_objects();
  void resync();

  BluezBus& bus_;
  [[maybe_unused]] EventLoop& loop_;  // kept for timers the manager may need
  ManagerOptions opt_;
  EventFn on_event_;
  BtAgent agent_;
  bool present_ = false;
  bool agent_registered_ = false;
  std::map<std::string, Adapter> adapters_;  // by path
  std::map<std::string, Device> devices_;    // by path
  std::set<std::string> busy_;               // "action address" in flight
  std::set<std::string> user_pairing_;       // addresses the user asked to pair
  std::set<std::string> user_disconnected_;  // no auto-reconnect until connect/resume
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace qaudio::bt
