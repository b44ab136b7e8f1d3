// Bluetooth end to end: qubes-audiovm-daemon --bluetooth against python-
// dbusmock's bluez5 template on a private bus, driven with qvm-audio bt ...
// and checked through the control API's event stream and the mock's record
// of the calls it received. The mock never calls agents, so the tests call
// our Agent1 object themselves (busctl), as BlueZ would during pairing.
#include <gtest/gtest.h>

#include <sstream>

#include "bluez_mock.hpp"

namespace qaudio::test {
namespace {

constexpr const char* kHeadset = "AA:BB:CC:DD:EE:01";
constexpr const char* kMouse = "AA:BB:CC:DD:EE:02";
constexpr const char* kAgentPath = "/org/qaudio/bluetooth/agent";
// Class of device: major Audio/Video, minor wearable headset.
constexpr const char* kHeadsetClass = "2360324";

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

json find_device(const json& devices_result, const std::string& addr) {
  for (const auto& d : devices_result.value("devices", json::array())) {
    if (d.value("address", "") == addr) {
      return d;
    }
  }
  return nullptr;
}

class BluetoothTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir.path().empty());
    ASSERT_TRUE(mock.start()) << mock.error;
    ASSERT_TRUE(mock.mock("AddAdapter", "ss", {"hci0", "host"}));
  }
  void start_daemon(const std::vector<std::string>& extra = {}) {
    ASSERT_TRUE(daemon.start(mock.address(), extra)) << daemon.log();
    ASSERT_TRUE(events.connect(daemon.control()));
  }
  // A device the mock announces, given the headset class so it counts as audio.
  void add_headset(const std::string& addr, const std::string& name) {
    ASSERT_TRUE(mock.mock("AddDevice", "sss", {"hci0", addr, name}));
    ASSERT_EQ(mock.busctl({"set-property", "org.bluez", BluezMock::dev_path(addr),
                           "org.bluez.Device1", "Class", "u", kHeadsetClass})
                  .status,
              0);
  }
  // Our unique name on the bus (the daemon's connection, by pid).
  std::string daemon_bus_name() {
    auto r = mock.busctl({"list", "--no-legend"});
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string name, pid;
      f >> name >> pid;
      if (name.rfind(':', 0) == 0 && pid == std::to_string(daemon.pid())) {
        return name;
      }
    }
    return {};
  }
  // Calls our Agent1 as BlueZ does; returns the busctl process (it blocks
  // until the user answers or the agent times out).
  std::optional<Child> agent_call(const std::vector<std::string>& args, const std::string& out) {
    std::string name = daemon_bus_name();
    if (name.empty()) {
      return std::nullopt;
    }
    std::vector<std::string> argv{
        "busctl",          "--address=" + mock.address(), "--timeout=60", "call", name, kAgentPath,
        "org.bluez.Agent1"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Child::spawn(argv, {}, dir.path() + "/" + out);
  }
  std::string slurp(const std::string& name) {
    std::ifstream f(dir.path() + "/" + name);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  static std::function<bool(const json&)> device_is(const std::string& addr,
                                                    const char* key = nullptr,
                                                    bool value = true) {
    return [addr, key, value](const json& d) {
      const json dev = d.value("device", json::object());
      return dev.value("address", "") == addr &&
             (key == nullptr || dev.value(key, !value) == value);
    };
  }
  static std::function<bool(const json&)> action_is(const std::string& action,
                                                    const std::string& target) {
    return [action, target](const json& d) {
      return d.value("action", "") == action && d.value("target", "") == target;
    };
  }

  TempDir dir{"bt"};
  BluezMock mock{dir.path()};
  BtDaemon daemon{dir.path()};
  EventReader events;
};

TEST_F(BluetoothTest, adapters_listed_and_agent_registered_as_default) {
  start_daemon();
  json a = daemon.cli_json({"bt", "adapters"});
  ASSERT_EQ(a["adapters"].size(), 1u) << a.dump();
  EXPECT_EQ(a["adapters"][0]["name"], "hci0");
  EXPECT_EQ(a["adapters"][0]["address"], "00:01:02:03:04:05");
  EXPECT_EQ(a["adapters"][0]["powered"], true);
  EXPECT_EQ(a["bluez"], true);
  auto calls = mock.calls("/org/bluez");
  EXPECT_TRUE(has(calls, "RegisterAgent"));
  EXPECT_TRUE(has(calls, "RequestDefaultAgent"));
  EXPECT_NE(mock.call_args("/org/bluez", "RegisterAgent").find(kAgentPath), std::string::npos);
}

TEST_F(BluetoothTest, power_and_discoverable_change_the_adapter_and_report_it) {
  start_daemon();
  auto r = daemon.cli({"bt", "discoverable", "on"});
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(events.wait("bt_adapter_changed",
                          [](const json& d) { return d["adapter"].value("discoverable", false); }));
  r = daemon.cli({"bt", "power", "off", "--adapter", "hci0"});
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(events.wait("bt_adapter_changed",
                          [](const json& d) { return !d["adapter"].value("powered", true); }));
  EXPECT_EQ(daemon.cli_json({"bt", "adapters"})["adapters"][0]["powered"], false);
  // Scanning needs power: a clear error, nothing started.
  r = daemon.cli({"bt", "scan", "on"});
  EXPECT_EQ(r.status, 1);
  EXPECT_FALSE(has(mock.calls("/org/bluez/hci0"), "StartDiscovery"));
}

TEST_F(BluetoothTest, discovery_uses_the_audio_filter_and_lists_devices_live) {
  start_daemon();
  auto r = daemon.cli({"bt", "scan", "on"});
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(events.wait("bt_action", action_is("scan_on", "hci0")));
  auto calls = mock.calls("/org/bluez/hci0");
  ASSERT_TRUE(has(calls, "SetDiscoveryFilter"));
  ASSERT_TRUE(has(calls, "StartDiscovery"));
  std::string filter = mock.call_args("/org/bluez/hci0", "SetDiscoveryFilter");
  EXPECT_NE(filter.find("0000110b-0000-1000-8000-00805f9b34fb"), std::string::npos) << filter;
  EXPECT_NE(filter.find("0000111e-0000-1000-8000-00805f9b34fb"), std::string::npos) << filter;
  EXPECT_TRUE(daemon.cli_json({"bt", "adapters"})["adapters"][0]["discovering"]);

  add_headset(kHeadset, "Headset");
  ASSERT_TRUE(mock.mock("AddDevice", "sss", {"hci0", kMouse, "Mouse"}));
  ASSERT_TRUE(events.wait("bt_device_added", device_is(kHeadset)));
  ASSERT_TRUE(events.wait("bt_device_changed", device_is(kHeadset, "audio")));
  ASSERT_TRUE(events.wait("bt_device_added", device_is(kMouse)));

  json audio = daemon.cli_json({"bt", "devices"});
  json h = find_device(audio, kHeadset);
  ASSERT_FALSE(h.is_null()) << audio.dump();
  EXPECT_EQ(h["name"], "Headset");
  EXPECT_EQ(h["rssi"], -79);
  EXPECT_EQ(h["class"], 2360324);
  EXPECT_EQ(h["paired"], false);
  EXPECT_TRUE(find_device(audio, kMouse).is_null()) << "a mouse is not an audio device";
  EXPECT_FALSE(find_device(daemon.cli_json({"bt", "devices", "--all"}), kMouse).is_null());

  r = daemon.cli({"bt", "scan", "off"});
  ASSERT_EQ(r.status, 0);
  ASSERT_TRUE(events.wait("bt_action", action_is("scan_off", "hci0")));
  EXPECT_TRUE(has(mock.calls("/org/bluez/hci0"), "StopDiscovery"));
}

TEST_F(BluetoothTest, pairing_confirmation_answered_through_the_cli) {
  start_daemon();
  add_headset(kHeadset, "Headset");
  ASSERT_TRUE(events.wait("bt_device_added", device_is(kHeadset)));

  // BlueZ asks our agent to compare a passkey (the test plays BlueZ).
  auto agent = agent_call({"RequestConfirmation", "ou", BluezMock::dev_path(kHeadset), "123456"},
                          "agent1.out");
  ASSERT_TRUE(agent);
  auto req = events.wait("bt_agent_request", [](const json& d) {
    return d["request"].value("address", "") == kHeadset;
  });
  ASSERT_TRUE(req);
  EXPECT_EQ((*req)["data"]["request"]["kind"], "confirmation");
  EXPECT_EQ((*req)["data"]["request"]["passkey"], "123456");
  EXPECT_EQ((*req)["data"]["request"]["name"], "Headset");
  json pending = daemon.cli_json({"bt", "requests"});
  ASSERT_EQ(pending["requests"].size(), 1u);

  auto r = daemon.cli({"bt", "confirm", "aa:bb:cc:dd:ee:01", "yes"});
  ASSERT_EQ(r.status, 0) << r.out;
  auto rc = agent->wait_exit(20s);
  ASSERT_TRUE(rc);
  EXPECT_EQ(*rc, 0) << slurp("agent1.out");  // BlueZ got "confirmed"
  auto done = events.wait("bt_agent_request_done", [](const json&) { return true; });
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["data"]["outcome"], "accepted");
  EXPECT_EQ(daemon.cli_json({"bt", "requests"})["requests"].size(), 0u);

  // The pairing itself (the mock's Pair completes at once).
  r = daemon.cli({"bt", "pair", kHeadset});
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("done"), std::string::npos) << r.out;
  ASSERT_TRUE(events.wait("bt_action", action_is("pair", kHeadset)));
  ASSERT_TRUE(events.wait("bt_device_changed", device_is(kHeadset, "paired")));
  EXPECT_EQ(find_device(daemon.cli_json({"bt", "devices"}), kHeadset)["paired"], true);
  EXPECT_TRUE(has(mock.calls(BluezMock::dev_path(kHeadset)), "Pair"));

  // Pairing again fails with BlueZ's reason and exit code 1.
  r = daemon.cli({"bt", "pair", kHeadset});
  EXPECT_EQ(r.status, 1);
}

TEST_F(BluetoothTest, pairing_rejected_by_the_user_and_by_the_timeout) {
  start_daemon({"--bluetooth-agent-timeout", "1"});
  add_headset(kHeadset, "Headset");
  ASSERT_TRUE(events.wait("bt_device_added", device_is(kHeadset)));

  auto agent = agent_call({"RequestConfirmation", "ou", BluezMock::dev_path(kHeadset), "111111"},
                          "agent-no.out");
  ASSERT_TRUE(agent);
  ASSERT_TRUE(events.wait("bt_agent_request", [](const json&) { return true; }));
  // A PIN is not the answer to a yes/no question: refused, still pending.
  EXPECT_EQ(daemon.cli({"bt", "pin", kHeadset, "0000"}).status, 1);
  ASSERT_EQ(daemon.cli({"bt", "confirm", kHeadset, "no"}).status, 0);
  auto rc = agent->wait_exit(20s);
  ASSERT_TRUE(rc);
  EXPECT_NE(*rc, 0);
  EXPECT_NE(slurp("agent-no.out").find("rejected by the user"), std::string::npos)
      << slurp("agent-no.out");
  ASSERT_TRUE(events.wait("bt_agent_request_done",
                          [](const json& d) { return d.value("outcome", "") == "rejected"; }));

  // Nobody answers a passkey request: rejected after the 1 s timeout.
  auto agent2 = agent_call({"RequestPasskey", "o", BluezMock::dev_path(kHeadset)}, "agent-t.out");
  ASSERT_TRUE(agent2);
  auto rc2 = agent2->wait_exit(30s);
  ASSERT_TRUE(rc2);
  EXPECT_NE(*rc2, 0);
  EXPECT_NE(slurp("agent-t.out").find("not answered in time"), std::string::npos)
      << slurp("agent-t.out");
  auto t = events.wait("bt_agent_request_done",
                       [](const json& d) { return d.value("outcome", "") == "timeout"; });
  ASSERT_TRUE(t);
  EXPECT_EQ((*t)["data"]["request"]["kind"], "passkey");
  // Answering late finds nothing.
  EXPECT_EQ(daemon.cli({"bt", "pin", kHeadset, "123456"}).status, 1);
}

TEST_F(BluetoothTest, passkey_entered_through_the_cli_reaches_bluez) {
  start_daemon();
  add_headset(kHeadset, "Headset");
  ASSERT_TRUE(events.wait("bt_device_added", device_is(kHeadset)));
  auto agent = agent_call({"RequestPasskey", "o", BluezMock::dev_path(kHeadset)}, "pk.out");
  ASSERT_TRUE(agent);
  ASSERT_TRUE(events.wait("bt_agent_request", [](const json& d) {
    return d["request"].value("kind", "") == "passkey";
  }));
  EXPECT_EQ(daemon.cli({"bt", "pin", kHeadset, "12x"}).status, 1);  // not digits
  ASSERT_EQ(daemon.cli({"bt", "pin", kHeadset, "004711"}).status, 0);
  auto rc = agent->wait_exit(20s);
  ASSERT_TRUE(rc);
  EXPECT_EQ(*rc, 0);
  EXPECT_NE(slurp("pk.out").find("u 4711"), std::string::npos) << slurp("pk.out");
}

TEST_F(BluetoothTest, trust_connect_disconnect_remove_and_their_events) {
  start_daemon();
  add_headset(kHeadset, "Headset");
  ASSERT_TRUE(events.wait("bt_device_added", device_is(kHeadset)));
  ASSERT_EQ(daemon.cli({"bt", "pair", kHeadset}).status, 0);

  auto r = daemon.cli({"bt", "trust", kHeadset});
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(events.wait("bt_device_changed", device_is(kHeadset, "trusted")));
  ASSERT_TRUE(events.wait("bt_action", action_is("trust", kHeadset)));

  r = daemon.cli({"bt", "connect", kHeadset});
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(events.wait("bt_device_changed", device_is(kHeadset, "connected")));
  ASSERT_TRUE(events.wait("bt_headset_connected", device_is(kHeadset)));
  EXPECT_EQ(find_device(daemon.cli_json({"bt", "devices"}), kHeadset)["connected"], true);

  r = daemon.cli({"bt", "disconnect", kHeadset});
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(events.wait("bt_headset_disconnected", device_is(kHeadset)));
  EXPECT_EQ(find_device(daemon.cli_json({"bt", "devices"}), kHeadset)["connected"], false);
  auto calls = mock.calls(BluezMock::dev_path(kHeadset));
  EXPECT_TRUE(has(calls, "Connect"));
  EXPECT_TRUE(has(calls, "Disconnect"));

  r = daemon.cli({"bt", "remove", kHeadset});
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(events.wait("bt_device_removed", device_is(kHeadset)));
  EXPECT_TRUE(has(mock.calls("/org/bluez/hci0"), "RemoveDevice"));
  EXPECT_TRUE(find_device(daemon.cli_json({"bt", "devices", "--all"}), kHeadset).is_null());

  // Unknown and malformed addresses: clear errors, nothing called.
  auto bad = daemon.cli({"bt", "connect", "AA:BB:CC:DD:EE:99"});
  EXPECT_EQ(bad.status, 1);
  bad = daemon.cli({"bt", "connect", "not-an-address"});
  EXPECT_EQ(bad.status, 1);
}

TEST_F(BluetoothTest, adapter_removal_and_return_reconnects_the_trusted_headset) {
  start_daemon();
  add_headset(kHeadset, "Headset");
  ASSERT_TRUE(events.wait("bt_device_added", device_is(kHeadset)));
  ASSERT_EQ(daemon.cli({"bt", "pair", kHeadset}).status, 0);
  ASSERT_EQ(daemon.cli({"bt", "trust", kHeadset}).status, 0);
  ASSERT_EQ(daemon.cli({"bt", "connect", kHeadset}).status, 0);
  ASSERT_EQ(daemon.cli({"bt", "disconnect", kHeadset}).status, 0);
  ASSERT_TRUE(events.wait("bt_headset_disconnected", device_is(kHeadset)));

  // The adapter goes away (unplugged, reset): it and its devices are gone.
  ASSERT_TRUE(mock.mock("RemoveAdapter", "s", {"hci0"}));
  ASSERT_TRUE(events.wait("bt_device_removed", device_is(kHeadset)));
  ASSERT_TRUE(events.wait("bt_adapter_removed",
                          [](const json& d) { return d["adapter"].value("name", "") == "hci0"; }));
  EXPECT_EQ(daemon.cli_json({"bt", "adapters"})["adapters"].size(), 0u);
  EXPECT_EQ(daemon.cli_json({"bt", "devices", "--all"})["devices"].size(), 0u);
  size_t connects_before = 0;
  for (const auto& c : mock.calls(BluezMock::dev_path(kHeadset))) {
    connects_before += c == "Connect";
  }

  // It returns: the paired, trusted headset is found again and reconnected
  // without anyone asking (the user's earlier disconnect was before the reset).
  ASSERT_TRUE(mock.mock("AddAdapter", "ss", {"hci0", "host"}));
  ASSERT_TRUE(events.wait("bt_adapter_added",
                          [](const json& d) { return d["adapter"].value("name", "") == "hci0"; }));
  ASSERT_TRUE(events.wait("bt_device_added", device_is(kHeadset)));
  ASSERT_TRUE(events.wait("bt_action", action_is("reconnect", kHeadset)));
  ASSERT_TRUE(events.wait("bt_headset_connected", device_is(kHeadset)));
  size_t connects_after = 0;
  for (const auto& c : mock.calls(BluezMock::dev_path(kHeadset))) {
    connects_after += c == "Connect";
  }
  EXPECT_EQ(connects_after, connects_before + 1);
}

TEST_F(BluetoothTest, bad_requests_get_clear_errors) {
  start_daemon();
  EXPECT_EQ(daemon.cli({"bt", "power", "maybe"}).status, 2);
  EXPECT_EQ(daemon.cli({"bt", "confirm", kHeadset, "perhaps"}).status, 2);
  EXPECT_EQ(daemon.cli({"bt", "confirm", kHeadset, "yes"}).status, 1);  // nothing pending
  EXPECT_EQ(daemon.cli({"bt", "power", "on", "--adapter", "hci7"}).status, 1);
  // The daemon is still fine.
  EXPECT_EQ(daemon.cli_json({"bt", "adapters"})["adapters"].size(), 1u);
}

}  // namespace
}  // namespace qaudio::test
