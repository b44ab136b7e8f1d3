// The Bluetooth manager's logic on a fake bus (no D-Bus): agent answers and
// timeouts, "just works" only for pairings the user started, reconnects of
// trusted audio devices when the adapter powers on, BlueZ leaving, and the
// argument checks of every action.
#include <gtest/gtest.h>

#include <cerrno>

#include "qaudio/bluetooth/bluez.hpp"
#include "qaudio/bluetooth/bt_manager.hpp"

namespace qaudio::bt {
namespace {

using namespace std::chrono_literals;

// Records calls; replies come from the test (done callbacks kept).
class FakeBus : public BluezBus {
 public:
  struct Call {
    std::string path, iface, method;
    BusDone done;
  };
  void set_listener(BusListener* l) override { listener = l; }
  void get_managed_objects(std::function<void(const BusError*, const ObjectMap&)> done) override {
    done(nullptr, objects);
  }
  void call(const std::string& path,
            const std::string& iface,
            const std::string& method,
            BusDone done) override {
    calls.push_back({path, iface, method, std::move(done)});
  }
  void remove_device(const std::string& a, const std::string& d, BusDone done) override {
    calls.push_back({a, d, bluez::kRemoveDevice, std::move(done)});
  }
  void set_discovery_filter(const std::string& a,
                            const std::vector<std::string>& uuids,
                            BusDone done) override {
    filter = uuids;
    calls.push_back({a, bluez::kAdapter, bluez::kSetDiscoveryFilter, std::move(done)});
  }
  void set_bool(const std::string& path,
                const std::string&,
                const std::string& prop,
                bool,
                BusDone done) override {
    calls.push_back({path, "Set", prop, std::move(done)});
  }
  void register_agent(const std::string&, const std::string&, BusDone done) override {
    done(nullptr);
  }
  std::string unique_name() const override { return ":1.1"; }

  size_t count(const std::string& method) const {
    size_t n = 0;
    for (const auto& c : calls) {
      n += c.method == method;
    }
    return n;
  }

  BusListener* listener = nullptr;
  ObjectMap objects;
  std::vector<Call> calls;
  std::vector<std::string> filter;
};

const std::string kAdapterPath = "/org/bluez/hci0";
const std::string kDevPath = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01";
const std::string kAddr = "AA:BB:CC:DD:EE:01";

InterfaceMap headset(bool paired, bool trusted, bool connected) {
  return {{bluez::kDevice,
           {{bluez::kAddress, std::string(kAddr)},
            {bluez::kAlias, std::string("Headset")},
            {bluez::kClass, int64_t{0x240404}},
            {bluez::kPaired, paired},
            {bluez::kTrusted, trusted},
            {bluez::kConnected, connected}}},
          {bluez::kBattery, {{bluez::kPercentage, int64_t{80}}}}};
}

class ManagerTest : public ::testing::Test {
 protected:
  void start(bool powered = true, InterfaceMap dev = headset(false, false, false)) {
    bus.objects[kAdapterPath] = {
        {bluez::kAdapter,
         {{bluez::kAddress, std::string("00:01:02:03:04:05")}, {bluez::kPowered, powered}}}};
    bus.objects[kDevPath] = std::move(dev);
    mgr = std::make_unique<Manager>(bus, loop, opt,
                                    [this](const BtEvent& e) { events.push_back(e); });
    mgr->start();
  }
  size_t count(BtEvent::Type t) const {
    size_t n = 0;
    for (const auto& e : events) {
      n += e.type == t;
    }
    return n;
  }
  const BtEvent* last(BtEvent::Type t) const {
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if (it->type == t) {
        return &*it;
      }
    }
    return nullptr;
  }
  // Runs the loop until `cond` holds or `timeout` passes.
  bool spin_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cond()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return false;
      }
      loop.run_once(10ms);
    }
    return true;
  }

  EventLoop loop;
  FakeBus bus;
  ManagerOptions opt;
  std::vector<BtEvent> events;
  std::unique_ptr<Manager> mgr;
};

TEST_F(ManagerTest, objects_become_adapters_and_devices_with_battery) {
  start();
  ASSERT_EQ(mgr->adapters().size(), 1u);
  EXPECT_EQ(mgr->adapters()[0].name, "hci0");
  auto devs = mgr->devices(true);
  ASSERT_EQ(devs.size(), 1u);
  EXPECT_EQ(devs[0].address, kAddr);
  EXPECT_EQ(devs[0].name, "Headset");
  EXPECT_TRUE(devs[0].is_audio());
  EXPECT_EQ(devs[0].battery, 80);
  EXPECT_EQ(count(BtEvent::Type::AdapterAdded), 1u);
  EXPECT_EQ(count(BtEvent::Type::DeviceAdded), 1u);
}

TEST_F(ManagerTest, scan_sets_the_audio_filter_before_starting_discovery) {
  start();
  ASSERT_TRUE(mgr->scan("", true));
  ASSERT_EQ(bus.calls.size(), 1u);
  EXPECT_EQ(bus.calls[0].method, bluez::kSetDiscoveryFilter);
  EXPECT_EQ(bus.filter.size(), bluez::kAudioUuids.size());
  EXPECT_EQ(bus.count(bluez::kStartDiscovery), 0u);
  bus.calls[0].done(nullptr);
  ASSERT_EQ(bus.count(bluez::kStartDiscovery), 1u);
  bus.calls[1].done(nullptr);
  ASSERT_NE(last(BtEvent::Type::ActionFinished), nullptr);
  EXPECT_EQ(last(BtEvent::Type::ActionFinished)->action, "scan_on");
  EXPECT_TRUE(last(BtEvent::Type::ActionFinished)->ok);
}

TEST_F(ManagerTest, actions_check_their_arguments) {
  start();
  EXPECT_EQ(mgr->pair("nonsense").error().code, EINVAL);
  EXPECT_EQ(mgr->connect("AA:BB:CC:DD:EE:99").error().code, ENOENT);
  EXPECT_EQ(mgr->set_powered("hci9", true).error().code, ENOENT);
  ASSERT_TRUE(mgr->pair("aa:bb:cc:dd:ee:01"));  // any case
  EXPECT_EQ(mgr->pair(kAddr).error().code, EBUSY);
  EXPECT_TRUE(bus.calls.size() == 1u && bus.calls[0].method == bluez::kPair);
  BusError e{"org.bluez.Error.AuthenticationFailed", "bad passkey"};
  bus.calls[0].done(&e);
  const BtEvent* f = last(BtEvent::Type::ActionFinished);
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(f->ok);
  EXPECT_NE(f->message.find("AuthenticationFailed: bad passkey"), std::string::npos) << f->message;
  EXPECT_TRUE(mgr->pair(kAddr));  // no longer busy
}

TEST_F(ManagerTest, confirmation_answered_once_then_nothing_pending) {
  start();
  AgentCall c(bluez::kRequestConfirmation, kDevPath);
  c.passkey = 42;
  std::optional<AgentReply> reply;
  bus.listener->on_agent_call(c, [&](const AgentReply& r) { reply = r; });
  ASSERT_FALSE(reply);
  const BtEvent* req = last(BtEvent::Type::AgentRequest);
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(req->request.passkey, 42u);
  EXPECT_EQ(req->request.name, "Headset");
  EXPECT_EQ(mgr->enter_code(kAddr, "1234").error().code, ENOENT);  // yes/no, not a code
  ASSERT_TRUE(mgr->confirm(kAddr, true));
  ASSERT_TRUE(reply);
  EXPECT_TRUE(reply->ok);
  EXPECT_EQ(mgr->confirm(kAddr, true).error().code, ENOENT);
  EXPECT_EQ(last(BtEvent::Type::AgentRequestDone)->outcome, "accepted");
}

TEST_F(ManagerTest, unanswered_request_is_rejected_by_the_timeout) {
  opt.agent_timeout = 50ms;
  start();
  std::optional<AgentReply> reply;
  bus.listener->on_agent_call(AgentCall(bluez::kRequestPinCode, kDevPath),
                              [&](const AgentReply& r) { reply = r; });
  ASSERT_TRUE(spin_until([&] { return reply.has_value(); }, 5s));
  EXPECT_FALSE(reply->ok);
  EXPECT_EQ(reply->error, bluez::kErrorRejected);
  EXPECT_EQ(last(BtEvent::Type::AgentRequestDone)->outcome, "timeout");
  EXPECT_TRUE(mgr->pending_requests().empty());
}

TEST_F(ManagerTest, just_works_accepted_only_when_the_user_started_the_pairing) {
  start();
  std::optional<AgentReply> reply;
  bus.listener->on_agent_call(AgentCall(bluez::kRequestAuthorization, kDevPath),
                              [&](const AgentReply& r) { reply = r; });
  EXPECT_FALSE(reply) << "unsolicited pairing must wait for the user";
  ASSERT_TRUE(mgr->confirm(kAddr, false));
  ASSERT_TRUE(reply);
  EXPECT_FALSE(reply->ok);

  ASSERT_TRUE(mgr->pair(kAddr));
  reply.reset();
  bus.listener->on_agent_call(AgentCall(bluez::kRequestAuthorization, kDevPath),
                              [&](const AgentReply& r) { reply = r; });
  ASSERT_TRUE(reply);
  EXPECT_TRUE(reply->ok);
}

TEST_F(ManagerTest, pin_and_passkey_answers_are_validated) {
  start();
  std::optional<AgentReply> reply;
  bus.listener->on_agent_call(AgentCall(bluez::kRequestPasskey, kDevPath),
                              [&](const AgentReply& r) { reply = r; });
  EXPECT_EQ(mgr->enter_code(kAddr, "1234567").error().code, EINVAL);
  EXPECT_EQ(mgr->enter_code(kAddr, "12a").error().code, EINVAL);
  EXPECT_FALSE(reply);
  ASSERT_TRUE(mgr->enter_code(kAddr, "000123"));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->passkey, 123u);
  reply.reset();
  bus.listener->on_agent_call(AgentCall(bluez::kRequestPinCode, kDevPath),
                              [&](const AgentReply& r) { reply = r; });
  EXPECT_EQ(mgr->enter_code(kAddr, "with space").error().code, EINVAL);
  ASSERT_TRUE(mgr->enter_code(kAddr, "0000"));
  EXPECT_EQ(reply->pin, "0000");
}

TEST_F(ManagerTest, trusted_headset_reconnects_when_the_adapter_powers_on) {
  start(/*powered=*/false, headset(true, true, false));
  EXPECT_EQ(bus.count(bluez::kConnect), 0u) << "no reconnect while powered off";
  bus.listener->on_properties_changed(kAdapterPath, bluez::kAdapter, {{bluez::kPowered, true}});
  ASSERT_EQ(bus.count(bluez::kConnect), 1u);
  EXPECT_EQ(bus.calls.back().path, kDevPath);
  bus.calls.back().done(nullptr);
  EXPECT_EQ(last(BtEvent::Type::ActionFinished)->action, "reconnect");
  bus.listener->on_properties_changed(kDevPath, bluez::kDevice, {{bluez::kConnected, true}});
  EXPECT_EQ(count(BtEvent::Type::HeadsetConnected), 1u);
  // The user disconnects: no reconnect until they connect or the qube resumes.
  ASSERT_TRUE(mgr->disconnect(kAddr));
  bus.listener->on_properties_changed(kDevPath, bluez::kDevice, {{bluez::kConnected, false}});
  EXPECT_EQ(count(BtEvent::Type::HeadsetDisconnected), 1u);
  bus.listener->on_properties_changed(kAdapterPath, bluez::kAdapter, {{bluez::kPowered, false}});
  bus.listener->on_properties_changed(kAdapterPath, bluez::kAdapter, {{bluez::kPowered, true}});
  EXPECT_EQ(bus.count(bluez::kConnect), 1u);
  mgr->reconnect_trusted();  // resume
  EXPECT_EQ(bus.count(bluez::kConnect), 2u);
}

TEST_F(ManagerTest, untrusted_or_unpaired_devices_are_not_reconnected) {
  start(true, headset(true, false, false));
  mgr->reconnect_trusted();
  EXPECT_EQ(bus.count(bluez::kConnect), 0u);
}

TEST_F(ManagerTest, bluez_leaving_drops_everything_and_rejects_prompts) {
  start(true, headset(true, true, true));
  std::optional<AgentReply> reply;
  bus.listener->on_agent_call(AgentCall(bluez::kRequestConfirmation, kDevPath),
                              [&](const AgentReply& r) { reply = r; });
  bus.listener->on_service_changed(false);
  ASSERT_TRUE(reply);
  EXPECT_FALSE(reply->ok);
  EXPECT_TRUE(mgr->adapters().empty());
  EXPECT_TRUE(mgr->devices().empty());
  EXPECT_EQ(count(BtEvent::Type::HeadsetDisconnected), 1u);
  EXPECT_EQ(count(BtEvent::Type::AdapterRemoved), 1u);
  EXPECT_EQ(mgr->connect(kAddr).error().code, EAGAIN);
  bus.listener->on_service_changed(true);  // back: objects read again
  EXPECT_EQ(mgr->adapters().size(), 1u);
}

TEST_F(ManagerTest, agent_call_for_an_unknown_device_is_rejected_at_once) {
  start();
  std::optional<AgentReply> reply;
  bus.listener->on_agent_call(AgentCall(bluez::kRequestConfirmation, "/org/bluez/hci0/dev_X"),
                              [&](const AgentReply& r) { reply = r; });
  ASSERT_TRUE(reply);
  EXPECT_FALSE(reply->ok);
  EXPECT_EQ(count(BtEvent::Type::AgentRequest), 0u);
}

TEST(BtTypes, addresses_and_audio_detection) {
  EXPECT_EQ(parse_address("aa:bb:cc:dd:ee:0f"), "AA:BB:CC:DD:EE:0F");
  EXPECT_FALSE(parse_address("aa:bb:cc:dd:ee"));
  EXPECT_FALSE(parse_address("aa-bb-cc-dd-ee-ff"));
  EXPECT_FALSE(parse_address("gg:bb:cc:dd:ee:ff"));
  Device d;
  EXPECT_FALSE(d.is_audio());
  d.uuids = {"0000110B-0000-1000-8000-00805F9B34FB"};
  EXPECT_TRUE(d.is_audio());
  d.uuids.clear();
  d.icon = "audio-headphones";
  EXPECT_TRUE(d.is_audio());
  EXPECT_EQ(adapter_name_of("/org/bluez/hci1/dev_A"), "hci1");
  EXPECT_EQ(adapter_name_of("/org/other/hci1"), "");
}

}  // namespace
}  // namespace qaudio::bt
