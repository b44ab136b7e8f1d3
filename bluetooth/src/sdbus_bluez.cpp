// BluezBus over sdbus-c++ on qaudio's EventLoop (see sdbus_bluez.hpp).
#include "qaudio/bluetooth/sdbus_bluez.hpp"

#include <poll.h>
#include <time.h>

#include <sdbus-c++/sdbus-c++.h>

#include "qaudio/bluetooth/bluez.hpp"
#include "qaudio/log.hpp"

namespace qaudio::bt {

namespace {

using VariantMap = std::map<std::string, sdbus::Variant>;
using IfaceVariants = std::map<std::string, VariantMap>;
using ManagedObjects = std::map<sdbus::ObjectPath, IfaceVariants>;

// Only the types BlueZ's properties use; anything else is left out.
std::optional<PropValue> to_prop(const sdbus::Variant& v) {
  try {
    std::string t = v.peekValueType();
    if (t == "b") {
      return PropValue{v.get<bool>()};
    }
    if (t == "s") {
      return PropValue{v.get<std::string>()};
    }
    if (t == "o") {
      return PropValue{std::string(v.get<sdbus::ObjectPath>())};
    }
    if (t == "y") {
      return PropValue{static_cast<int64_t>(v.get<uint8_t>())};
    }
    if (t == "n") {
      return PropValue{static_cast<int64_t>(v.get<int16_t>())};
    }
    if (t == "q") {
      return PropValue{static_cast<int64_t>(v.get<uint16_t>())};
    }
    if (t == "i") {
      return PropValue{static_cast<int64_t>(v.get<int32_t>())};
    }
    if (t == "u") {
      return PropValue{static_cast<int64_t>(v.get<uint32_t>())};
    }
    if (t == "as") {
      return PropValue{v.get<std::vector<std::string>>()};
    }
  } catch (const sdbus::Error&) {
  }
  return std::nullopt;
}

PropMap to_props(const VariantMap& in) {
  PropMap out;
  for (const auto& [k, v] : in) {
    if (auto p = to_prop(v)) {
      out.emplace(k, std::move(*p));
    }
  }
  return out;
}

InterfaceMap to_ifaces(const IfaceVariants& in) {
  InterfaceMap out;
  for (const auto& [iface, props] : in) {
    out.emplace(iface, to_props(props));
  }
  return out;
}

BusError to_bus_error(const sdbus::Error& e) {
  return BusError{e.getName(), e.getMessage()};
}

bool is_bluez_path(const std::string& p) {
  return p.rfind(bluez::kPathPrefix, 0) == 0;
}

}  // namespace

Result<std::unique_ptr<SdbusBluez>> SdbusBluez::connect(EventLoop& loop,
                                                        const std::string& address) {
  std::unique_ptr<sdbus::IConnection> conn;
  try {
    conn = address.empty() ? sdbus::createSystemBusConnection()
                           : sdbus::createSessionBusConnectionWithAddress(address);
  } catch (const sdbus::Error& e) {
    return fail("bluetooth: cannot connect to the " +
                (address.empty() ? std::string("system bus") : "D-Bus at " + address) + ": " +
                e.getMessage() + " (is dbus running? BlueZ is reached through it)");
  }
  std::unique_ptr<SdbusBluez> bus(new SdbusBluez(loop, std::move(conn)));
  if (auto r = bus->init(); !r) {
    return fail(r.error());
  }
  return bus;
}

SdbusBluez::SdbusBluez(EventLoop& loop, std::unique_ptr<sdbus::IConnection> conn)
    : loop_(loop), conn_(std::move(conn)) {}

SdbusBluez::~SdbusBluez() {
  *alive_ = false;
  if (fd_watch_ != 0) {
    loop_.remove(fd_watch_);
  }
  if (timer_ != 0) {
    loop_.remove(timer_);
  }
  agent_.reset();
  proxies_.clear();
}

Result<void> SdbusBluez::init() {
  try {
    // No sender in the rules: sd-bus cannot match a well-known sender
    // locally; the paths say which objects are BlueZ's.
    conn_->addMatch(
        "type='signal',interface='org.freedesktop.DBus.ObjectManager'",
        [this](sdbus::Message& msg) {
          if (listener_ == nullptr) {
            return;
          }
          sdbus::ObjectPath path;
          if (msg.getMemberName() == bluez::kInterfacesAdded) {
            IfaceVariants ifaces;
            msg >> path >> ifaces;
            if (is_bluez_path(path)) {
              listener_->on_interfaces_added(path, to_ifaces(ifaces));
            }
          } else if (msg.getMemberName() == bluez::kInterfacesRemoved) {
            std::vector<std::string> ifaces;
            msg >> path >> ifaces;
            if (is_bluez_path(path)) {
              listener_->on_interfaces_removed(path, ifaces);
            }
          }
        },
        sdbus::floating_slot);
    conn_->addMatch(
        "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',"
        "path_namespace='/org/bluez'",
        [this](sdbus::Message& msg) {
          if (listener_ == nullptr || !is_bluez_path(msg.getPath())) {
            return;
          }
          std::string iface;
          VariantMap changed;
          msg >> iface >> changed;
          listener_->on_properties_changed(msg.getPath(), iface, to_props(changed));
        },
        sdbus::floating_slot);
    conn_->addMatch(
        "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
        "member='NameOwnerChanged',arg0='org.bluez'",
        [this](sdbus::Message& msg) {
          std::string name, old_owner, new_owner;
          msg >> name >> old_owner >> new_owner;
          if (listener_ != nullptr && name == bluez::kService) {
            listener_->on_service_changed(!new_owner.empty());
          }
        },
        sdbus::floating_slot);
    auto pd = conn_->getEventLoopPollData();
    fd_watch_ = loop_.add_fd(pd.fd, pd.events, [this](short) { pump(); });
  } catch (const sdbus::Error& e) {
    return fail("bluetooth: watching BlueZ's signals failed: " + e.getMessage());
  }
  schedule_pump();
  return {};
}

std::string SdbusBluez::unique_name() const {
  try {
    return conn_->getUniqueName();
  } catch (const sdbus::Error&) {
    return {};
  }
}

void SdbusBluez::pump() {
  if (in_pump_) {
    return;
  }
  in_pump_ = true;
  try {
    while (conn_->processPendingRequest()) {
    }
    auto pd = conn_->getEventLoopPollData();
    loop_.update_fd(fd_watch_, pd.fd, pd.events);
    if (timer_ != 0) {
      loop_.remove(timer_);
      timer_ = 0;
    }
    if (pd.timeout_usec != UINT64_MAX) {
      timespec ts{};
      clock_gettime(CLOCK_MONOTONIC, &ts);
      uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000u + ts.tv_nsec / 1000;
      uint64_t ms = pd.timeout_usec > now ? (pd.timeout_usec - now) / 1000 + 1 : 0;
      timer_ = loop_.add_timer(std::chrono::milliseconds(ms), [this] {
        timer_ = 0;
        pump();
      });
    }
  } catch (const sdbus::Error& e) {
    log_error("bluetooth: D-Bus connection failed: %s", e.getMessage().c_str());
  }
  in_pump_ = false;
}

void SdbusBluez::schedule_pump() {
  if (pump_posted_) {
    return;
  }
  pump_posted_ = true;
  std::weak_ptr<bool> alive = alive_;
  loop_.post([this, alive] {
    if (alive.expired()) {
      return;
    }
    pump_posted_ = false;
    pump();
  });
}

void SdbusBluez::fail_later(BusDone done, const std::string& what, const std::exception& e) {
  const auto* se = dynamic_cast<const sdbus::Error*>(&e);
  BusError err{se ? se->getName() : "org.qaudio.Error.Failed",
               what + ": " + (se ? se->getMessage() : std::string(e.what()))};
  std::weak_ptr<bool> alive = alive_;
  loop_.post([alive, done = std::move(done), err] {
    if (!alive.expired()) {
      done(&err);
    }
  });
}

sdbus::IProxy& SdbusBluez::proxy(const std::string& path) {
  auto& p = proxies_[path];
  if (!p) {
    p = sdbus::createProxy(*conn_, bluez::kService, path);
  }
  return *p;
}

namespace {
// The reply handler for calls without results.
auto void_reply(BusDone done) {
  return [done = std::move(done)](const sdbus::Error* e) {
    if (e != nullptr) {
      BusError be = to_bus_error(*e);
      done(&be);
    } else {
      done(nullptr);
    }
  };
}
}  // namespace

void SdbusBluez::get_managed_objects(std::function<void(const BusError*, const ObjectMap&)> done) {
  try {
    proxy(bluez::kRootPath)
        .callMethodAsync(bluez::kGetManagedObjects)
        .onInterface(bluez::kObjectManager)
        .uponReplyInvoke([done](const sdbus::Error* e, const ManagedObjects& objs) {
          if (e != nullptr) {
            BusError be = to_bus_error(*e);
            done(&be, {});
            return;
          }
          ObjectMap out;
          for (const auto& [path, ifaces] : objs) {
            if (is_bluez_path(path)) {
              out.emplace(path, to_ifaces(ifaces));
            }
          }
          done(nullptr, out);
        });
  } catch (const std::exception& e) {
    fail_later([done](const BusError* be) { done(be, {}); }, "GetManagedObjects", e);
  }
  schedule_pump();
}

void SdbusBluez::call(const std::string& path,
                      const std::string& iface,
                      const std::string& method,
                      BusDone done) {
  try {
    // Pairing and connecting take as long as the device and the user do.
    proxy(path)
        .callMethodAsync(method)
        .onInterface(iface)
        .withTimeout(std::chrono::seconds(90))
        .uponReplyInvoke(void_reply(done));
  } catch (const std::exception& e) {
    fail_later(done, method + " on " + path, e);
  }
  schedule_pump();
}

void SdbusBluez::remove_device(const std::string& adapter_path,
                               const std::string& device_path,
                               BusDone done) {
  try {
    proxy(adapter_path)
        .callMethodAsync(bluez::kRemoveDevice)
        .onInterface(bluez::kAdapter)
        .withArguments(sdbus::ObjectPath(device_path))
        .uponReplyInvoke(void_reply(done));
  } catch (const std::exception& e) {
    fail_later(done, "RemoveDevice " + device_path, e);
  }
  schedule_pump();
}

void SdbusBluez::set_discovery_filter(const std::string& adapter_path,
                                      const std::vector<std::string>& uuids,
                                      BusDone done) {
  try {
    VariantMap filter;
    if (!uuids.empty()) {
      filter[bluez::kFilterUuids] = sdbus::Variant(uuids);
    }
    filter[bluez::kFilterTransport] = sdbus::Variant(std::string("auto"));
    proxy(adapter_path)
        .callMethodAsync(bluez::kSetDiscoveryFilter)
        .onInterface(bluez::kAdapter)
        .withArguments(filter)
        .uponReplyInvoke(void_reply(done));
  } catch (const std::exception& e) {
    fail_later(done, "SetDiscoveryFilter on " + adapter_path, e);
  }
  schedule_pump();
}

void SdbusBluez::set_bool(const std::string& path,
                          const std::string& iface,
                          const std::string& prop,
                          bool value,
                          BusDone done) {
  try {
    proxy(path)
        .callMethodAsync(bluez::kSet)
        .onInterface(bluez::kProperties)
        .withArguments(iface, prop, sdbus::Variant(value))
        .uponReplyInvoke(void_reply(done));
  } catch (const std::exception& e) {
    fail_later(done, "setting " + prop + " on " + path, e);
  }
  schedule_pump();
}

void SdbusBluez::export_agent(const std::string& path) {
  if (agent_) {
    return;
  }
  agent_ = sdbus::createObject(*conn_, path);
  auto* self = this;
  // Each call is handed to the listener with a reply it may call later
  // (the user answers); the reply queues the D-Bus answer and pumps.
  auto forward = [self](AgentCall call, auto result_ptr, auto on_ok) {
    if (self->listener_ == nullptr) {
      result_ptr->returnError(sdbus::Error(bluez::kErrorRejected, "no handler"));
      return;
    }
    std::weak_ptr<bool> alive = self->alive_;
    self->listener_->on_agent_call(call, [self, alive, result_ptr, on_ok](const AgentReply& r) {
      if (alive.expired()) {
        return;
      }
      try {
        if (r.ok) {
          on_ok(*result_ptr, r);
        } else {
          result_ptr->returnError(sdbus::Error(r.error, r.message));
        }
      } catch (const sdbus::Error& e) {
        log_warn("bluetooth agent: reply failed: %s", e.getMessage().c_str());
      }
      self->schedule_pump();
    });
  };
  using R0 = sdbus::Result<>;
  auto ok0 = [](const R0& res, const AgentReply&) { res.returnResults(); };
  agent_->registerMethod(bluez::kRelease)
      .onInterface(bluez::kAgent)
      .implementedAs([forward, ok0](R0&& res) {
        forward(AgentCall{bluez::kRelease}, std::make_shared<R0>(std::move(res)), ok0);
      });
  agent_->registerMethod(bluez::kCancel)
      .onInterface(bluez::kAgent)
      .implementedAs([forward, ok0](R0&& res) {
        forward(AgentCall{bluez::kCancel}, std::make_shared<R0>(std::move(res)), ok0);
      });
  agent_->registerMethod(bluez::kRequestPinCode)
      .onInterface(bluez::kAgent)
      .implementedAs([forward](sdbus::Result<std::string>&& res, sdbus::ObjectPath dev) {
        AgentCall c{bluez::kRequestPinCode, dev};
        forward(c, std::make_shared<sdbus::Result<std::string>>(std::move(res)),
                [](const sdbus::Result<std::string>& r, const AgentReply& a) {
                  r.returnResults(a.pin);
                });
      });
  agent_->registerMethod(bluez::kRequestPasskey)
      .onInterface(bluez::kAgent)
      .implementedAs([forward](sdbus::Result<uint32_t>&& res, sdbus::ObjectPath dev) {
        AgentCall c{bluez::kRequestPasskey, dev};
        forward(c, std::make_shared<sdbus::Result<uint32_t>>(std::move(res)),
                [](const sdbus::Result<uint32_t>& r, const AgentReply& a) {
                  r.returnResults(a.passkey);
                });
      });
  agent_->registerMethod(bluez::kDisplayPinCode)
      .onInterface(bluez::kAgent)
      .implementedAs([forward, ok0](R0&& res, sdbus::ObjectPath dev, std::string pin) {
        AgentCall c{bluez::kDisplayPinCode, dev};
        c.pin = pin;
        forward(c, std::make_shared<R0>(std::move(res)), ok0);
      });
  agent_->registerMethod(bluez::kDisplayPasskey)
      .onInterface(bluez::kAgent)
      .implementedAs(
          [forward, ok0](R0&& res, sdbus::ObjectPath dev, uint32_t passkey, uint16_t entered) {
            AgentCall c{bluez::kDisplayPasskey, dev};
            c.passkey = passkey;
            c.entered = entered;
            forward(c, std::make_shared<R0>(std::move(res)), ok0);
          });
  agent_->registerMethod(bluez::kRequestConfirmation)
      .onInterface(bluez::kAgent)
      .implementedAs([forward, ok0](R0&& res, sdbus::ObjectPath dev, uint32_t passkey) {
        AgentCall c{bluez::kRequestConfirmation, dev};
        c.passkey = passkey;
        forward(c, std::make_shared<R0>(std::move(res)), ok0);
      });
  agent_->registerMethod(bluez::kRequestAuthorization)
      .onInterface(bluez::kAgent)
      .implementedAs([forward, ok0](R0&& res, sdbus::ObjectPath dev) {
        forward(AgentCall{bluez::kRequestAuthorization, dev}, std::make_shared<R0>(std::move(res)),
                ok0);
      });
  agent_->registerMethod(bluez::kAuthorizeService)
      .onInterface(bluez::kAgent)
      .implementedAs([forward, ok0](R0&& res, sdbus::ObjectPath dev, std::string uuid) {
        AgentCall c{bluez::kAuthorizeService, dev};
        c.uuid = uuid;
        forward(c, std::make_shared<R0>(std::move(res)), ok0);
      });
  agent_->finishRegistration();
}

void SdbusBluez::register_agent(const std::string& agent_path,
                                const std::string& capability,
                                BusDone done) {
  try {
    export_agent(agent_path);
    auto& mgr = proxy(bluez::kManagerPath);
    std::weak_ptr<bool> alive = alive_;
    mgr.callMethodAsync(bluez::kRegisterAgent)
        .onInterface(bluez::kAgentManager)
        .withArguments(sdbus::ObjectPath(agent_path), capability)
        .uponReplyInvoke([this, alive, agent_path, done](const sdbus::Error* e) {
          if (alive.expired()) {
            return;
          }
          // AlreadyExists: registered before BlueZ restarted, or twice; go on.
          if (e != nullptr && e->getName() != bluez::kErrorAlreadyExists) {
            BusError be = to_bus_error(*e);
            done(&be);
            return;
          }
          try {
            proxy(bluez::kManagerPath)
                .callMethodAsync(bluez::kRequestDefaultAgent)
                .onInterface(bluez::kAgentManager)
                .withArguments(sdbus::ObjectPath(agent_path))
                .uponReplyInvoke(void_reply(done));
          } catch (const std::exception& ex) {
            fail_later(done, "RequestDefaultAgent", ex);
          }
          schedule_pump();
        });
  } catch (const std::exception& e) {
    fail_later(done, "RegisterAgent " + agent_path, e);
  }
  schedule_pump();
}

}  // namespace qaudio::bt
