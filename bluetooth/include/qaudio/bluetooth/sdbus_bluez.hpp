// BluezBus over sdbus-c++ (1.x), driven by qaudio's EventLoop: the bus fd
// and sd-bus's timeout are watched by the loop, so every callback (method
// replies, signals, calls on our Agent1) runs on the loop thread and no
// sdbus-c++ thread exists. sdbus-c++ exceptions stop here and become
// BusError values.
//
//   auto bus = SdbusBluez::connect(loop, "");   // "" = the system bus
//   if (!bus) { log_error("%s", bus.error().message.c_str()); }
//   bt::Manager manager(**bus, loop, {}, on_event);
//   manager.start();
#pragma once

#include <map>
#include <memory>
#include <string>

#include "qaudio/bluetooth/bt_bus.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/result.hpp"

namespace sdbus {
class IConnection;
class IProxy;
class IObject;
}  // namespace sdbus

namespace qaudio::bt {

class SdbusBluez : public BluezBus {
 public:
  // `address`: a D-Bus address (unix:path=...), or empty for the system bus
  // (which sd-bus takes from $DBUS_SYSTEM_BUS_ADDRESS when set).
  static Result<std::unique_ptr<SdbusBluez>> connect(EventLoop& loop, const std::string& address);
  ~SdbusBluez() override;
  SdbusBluez(const SdbusBluez&) = delete;
  SdbusBluez& operator=(const SdbusBluez&) = delete;

  void set_listener(BusListener* l) override { listener_ = l; }
  void get_managed_objects(std::function<void(const BusError*, const ObjectMap&)> done) override;
  void call(const std::string& path,
            const std::string& iface,
            const std::string& method,
            BusDone done) override;
  void remove_device(const std::string& adapter_path,
                     const std::string& device_path,
                     BusDone done) override;
  void set_discovery_filter(const std::string& adapter_path,
                            const std::vector<std::string>& uuids,
                            BusDone done) override;
  void set_bool(const std::string& path,
                const std::string& iface,
                const std::string& prop,
                bool value,
                BusDone done) override;
  void register_agent(const std::string& agent_path,
                      const std::string& capability,
                      BusDone done) override;
  std::string unique_name() const override;

 private:
  SdbusBluez(EventLoop& loop, std::unique_ptr<sdbus::IConnection> conn);
  Result<void> init();
  sdbus::IProxy& proxy(const std::string& path);
  void export_agent(const std::string& path);
  void pump();           // dispatches what sd-bus has, then re-arms fd and timer
  void schedule_pump();  // pump() soon, from the loop
  void fail_later(BusDone done, const std::string& what, const std::exception& e);

  EventLoop& loop_;
  std::unique_ptr<sdbus::IConnection> conn_;
  std::map<std::string, std::unique_ptr<sdbus::IProxy>> proxies_;
  std::unique_ptr<sdbus::IObject> agent_;
  BusListener* listener_ = nullptr;
  EventLoop::Id fd_watch_ = 0;
  EventLoop::Id timer_ = 0;
  bool in_pump_ = false;
  bool pump_posted_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace qaudio::bt
