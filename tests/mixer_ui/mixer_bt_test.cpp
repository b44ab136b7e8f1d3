// The mixer window's Bluetooth section against a real daemon started with
// --bluetooth on a private bus where python3-dbusmock's bluez5 template
// plays BlueZ (TESTRIG.md), offscreen: the adapter and the headset appear,
// the power and scan toggles and the Pair/Connect/Disconnect/Remove buttons
// reach BlueZ (the mock's recorded calls and properties), a pairing prompt
// of the daemon's agent is answered from the dialog (BlueZ's side gets the
// reply). Without --bluetooth the section is greyed with the daemon's reason.
// The section and the prompt are saved as mixer-bluetooth*.png into
// $QAUDIO_SCREENSHOT_DIR (docs/images via `make mixer-screenshots`).
#include <gtest/gtest.h>

#include <QTest>

#include <sstream>

#include "dbus_rig.hpp"
#include "mixer_controller.hpp"
#include "mixer_window.hpp"
#include "ui_support.hpp"

namespace qaudio::mixer {
namespace {

using namespace test;

constexpr const char* kHeadset = "AA:BB:CC:DD:EE:01";
constexpr const char* kHeadsetPath = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01";
constexpr const char* kHeadsetClass = "2360324";  // audio/video, headset
constexpr const char* kAgentPath = "/org/qaudio/bluetooth/agent";

// Waits (running Qt's event loop: the answer is sent from it) for `c` to
// exit; its wait status, nullopt on timeout.
std::optional<int> exit_status(Child& c) {
  if (!qt_wait([&] { return !c.running(); }, 20s)) {
    return std::nullopt;
  }
  return c.last_status();
}

bool has(const std::vector<json>& calls, size_t n) {
  return calls.size() >= n;
}

struct BtWindowTest : ::testing::Test {
  void SetUp() override {
    qt_app();
    ASSERT_TRUE(bus.start()) << bus.error;
    ASSERT_TRUE(bus.start_mock({"--system", "--template", "bluez5"}, "org.bluez")) << bus.error;
    ASSERT_TRUE(mock("AddAdapter", "ss", {"hci0", "host"}));
    ASSERT_TRUE(mock("AddDevice", "sss", {"hci0", kHeadset, "Headset"}));
    ASSERT_EQ(bus.busctl({"set-property", "org.bluez", kHeadsetPath, "org.bluez.Device1", "Class",
                          "u", kHeadsetClass})
                  .status,
              0);
    rig.extra_args = {"--bluetooth", "--bluetooth-bus", bus.address()};
    rig.daemon_env = {{"XDG_RUNTIME_DIR", rig.dir()}, {"HOME", rig.dir()}};
    ASSERT_TRUE(rig.start()) << rig.daemon_log();
    client.setRetryInterval(50, 200);
    client.start();
    ASSERT_TRUE(qt_wait([&] { return mixer.isReady(); }, 30s)) << rig.daemon_log();
  }
  bool mock(const std::string& method, const std::string& sig, std::vector<std::string> args) {
    std::vector<std::string> a{"call", "org.bluez", "/", "org.bluez.Mock", method, sig};
    a.insert(a.end(), args.begin(), args.end());
    return bus.busctl(a).status == 0;
  }
  std::vector<json> calls(const std::string& path, const std::string& method) {
    return bus.mock_calls("org.bluez", path, method);
  }
  bool adapter_powered() {
    json j = bus.busctl_json(
        {"get-property", "org.bluez", "/org/bluez/hci0", "org.bluez.Adapter1", "Powered"});
    return j.is_object() && j["data"] == true;
  }
  QTreeWidgetItem* row(BluetoothPanel* p, const QString& address) {
    for (int i = 0; i < p->list()->topLevelItemCount(); ++i) {
      if (p->list()->topLevelItem(i)->text(1) == address) {
        return p->list()->topLevelItem(i);
      }
    }
    return nullptr;
  }
  // The daemon's unique name on the bus (by pid): where BlueZ calls its agent.
  std::string daemon_bus_name() {
    auto r = bus.busctl({"list", "--no-legend"});
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string name, pid;
      f >> name >> pid;
      if (name.rfind(':', 0) == 0 && pid == std::to_string(rig.daemon_pid())) {
        return name;
      }
    }
    return {};
  }

  UiRig rig{"null"};
  PrivateBus bus{rig.dir(), "sysbus"};
  ControlClient client{QString::fromStdString(rig.control())};
  MixerController mixer{client};
};

TEST_F(BtWindowTest, devices_listed_and_buttons_drive_bluez) {
  MixerWindow win(mixer);
  win.show();
  BluetoothPanel* p = win.bluetooth();
  ASSERT_TRUE(qt_wait([&] { return row(p, kHeadset) != nullptr; }, 20s)) << rig.daemon_log();
  EXPECT_TRUE(p->isEnabled());
  EXPECT_TRUE(p->status()->text().startsWith("Adapter hci0")) << p->status()->text().toStdString();
  QTreeWidgetItem* it = row(p, kHeadset);
  EXPECT_EQ(it->text(0), "Headset");
  EXPECT_EQ(it->text(2), "not connected");
  EXPECT_EQ(it->text(3), "–");  // no battery reported
  ASSERT_TRUE(p->power()->isChecked());

  // Power off and on again with the keyboard (space toggles the focused box).
  p->power()->setFocus();
  QTest::keyClick(p->power(), Qt::Key_Space);
  ASSERT_TRUE(qt_wait([&] { return !adapter_powered(); }, 10s));
  ASSERT_TRUE(qt_wait([&] { return p->status()->text().endsWith(": off"); }, 10s));
  EXPECT_FALSE(p->scan()->isEnabled());
  QTest::keyClick(p->power(), Qt::Key_Space);
  ASSERT_TRUE(qt_wait([&] { return adapter_powered() && p->scan()->isEnabled(); }, 10s));

  // Scan: the daemon sets the audio filter, then starts discovery.
  QTest::mouseClick(p->scan(), Qt::LeftButton);
  ASSERT_TRUE(qt_wait([&] { return has(calls("/org/bluez/hci0", "StartDiscovery"), 1); }, 10s));
  EXPECT_TRUE(has(calls("/org/bluez/hci0", "SetDiscoveryFilter"), 1));
  ASSERT_TRUE(qt_wait([&] { return p->scan()->isChecked(); }, 10s));
  QTest::mouseClick(p->scan(), Qt::LeftButton);
  ASSERT_TRUE(qt_wait([&] { return has(calls("/org/bluez/hci0", "StopDiscovery"), 1); }, 10s));

  // Pair, then connect the selected headset.
  ASSERT_TRUE(p->select(kHeadset));
  ASSERT_TRUE(p->pairButton()->isEnabled());
  EXPECT_FALSE(p->disconnectButton()->isEnabled());
  QTest::mouseClick(p->pairButton(), Qt::LeftButton);
  ASSERT_TRUE(qt_wait([&] { return has(calls(kHeadsetPath, "Pair"), 1); }, 10s));
  ASSERT_TRUE(qt_wait(
      [&] {
        auto* r = row(p, kHeadset);
        return r && r->text(2).contains("paired");
      },
      10s));
  EXPECT_FALSE(p->pairButton()->isEnabled());
  ASSERT_TRUE(p->connectButton()->isEnabled());
  QTest::mouseClick(p->connectButton(), Qt::LeftButton);
  ASSERT_TRUE(qt_wait([&] { return has(calls(kHeadsetPath, "Connect"), 1); }, 10s));
  // The mock's Device1.Connect leaves Connected false; its ConnectDevice sets it.
  ASSERT_TRUE(mock("ConnectDevice", "ss", {"hci0", kHeadset}));
  ASSERT_TRUE(qt_wait(
      [&] {
        auto* r = row(p, kHeadset);
        return r && r->text(2).startsWith("connected");
      },
      10s));
  json listed = rig.query("bt_devices");
  EXPECT_EQ(listed["result"]["devices"][0]["connected"], true);
  ASSERT_TRUE(qt_wait([&] { return p->disconnectButton()->isEnabled(); }, 10s));
  QTest::mouseClick(p->disconnectButton(), Qt::LeftButton);
  ASSERT_TRUE(qt_wait([&] { return has(calls(kHeadsetPath, "Disconnect"), 1); }, 10s));

  // Remove: BlueZ forgets it and the row goes.
  QTest::mouseClick(p->removeButton(), Qt::LeftButton);
  ASSERT_TRUE(qt_wait([&] { return has(calls("/org/bluez/hci0", "RemoveDevice"), 1); }, 10s));
  ASSERT_TRUE(qt_wait([&] { return row(p, kHeadset) == nullptr; }, 10s));
}

TEST_F(BtWindowTest, pairing_prompts_are_answered_from_the_dialog) {
  MixerWindow win(mixer);
  win.show();
  BluetoothPanel* p = win.bluetooth();
  ASSERT_TRUE(qt_wait([&] { return row(p, kHeadset) != nullptr; }, 20s));
  std::string name = daemon_bus_name();
  ASSERT_FALSE(name.empty());

  // BlueZ (the test) asks the daemon's agent to compare a passkey; busctl
  // waits for the answer.
  auto agent = Child::spawn(
      {"busctl", "--address=" + bus.address(), "--timeout=60", "call", name, kAgentPath,
       "org.bluez.Agent1", "RequestConfirmation", "ou", kHeadsetPath, "482915"},
      {}, rig.dir() + "/agent1.out");
  ASSERT_TRUE(agent);
  ASSERT_TRUE(qt_wait([&] { return p->prompt() != nullptr; }, 20s)) << rig.daemon_log();
  EXPECT_EQ(p->prompt()->text()->text(),
            QString("Does Headset (%1) show the passkey 482915?").arg(kHeadset));
  EXPECT_TRUE(p->prompt()->isVisible());
  // docs/images (make mixer-screenshots), else the test's directory.
  QByteArray shots = qgetenv("QAUDIO_SCREENSHOT_DIR");
  QString dir = shots.isEmpty() ? QString::fromStdString(rig.dir()) : QString::fromUtf8(shots);
  ASSERT_TRUE(p->grab().save(dir + "/mixer-bluetooth.png"));
  ASSERT_TRUE(p->prompt()->grab().save(dir + "/mixer-bluetooth-prompt.png"));
  QTest::mouseClick(p->prompt()->acceptButton(), Qt::LeftButton);
  std::optional<int> rc = exit_status(*agent);
  ASSERT_TRUE(rc);
  EXPECT_EQ(*rc, 0);  // BlueZ got the confirmation
  ASSERT_TRUE(qt_wait([&] { return p->prompt() == nullptr; }, 10s));

  // A PIN prompt: typed into the dialog, BlueZ receives that PIN.
  auto pin = Child::spawn({"busctl", "--address=" + bus.address(), "--timeout=60", "call", name,
                           kAgentPath, "org.bluez.Agent1", "RequestPinCode", "o", kHeadsetPath},
                          {}, rig.dir() + "/agent2.out");
  ASSERT_TRUE(pin);
  ASSERT_TRUE(qt_wait([&] { return p->prompt() != nullptr && p->prompt()->code(); }, 20s));
  QTest::keyClicks(p->prompt()->code(), "0000");
  QTest::keyClick(p->prompt()->code(), Qt::Key_Return);  // the default button
  rc = exit_status(*pin);
  ASSERT_TRUE(rc);
  EXPECT_EQ(*rc, 0);
  std::ifstream out(rig.dir() + "/agent2.out");
  std::string got((std::istreambuf_iterator<char>(out)), {});
  EXPECT_NE(got.find("\"0000\""), std::string::npos) << got;

  // Rejected from the dialog: BlueZ gets an error.
  auto rej = Child::spawn(
      {"busctl", "--address=" + bus.address(), "--timeout=60", "call", name, kAgentPath,
       "org.bluez.Agent1", "RequestConfirmation", "ou", kHeadsetPath, "111111"},
      {}, rig.dir() + "/agent3.out");
  ASSERT_TRUE(rej);
  ASSERT_TRUE(qt_wait(
      [&] { return p->prompt() != nullptr && p->prompt()->text()->text().contains("111111"); },
      20s));
  QTest::mouseClick(p->prompt()->rejectButton(), Qt::LeftButton);
  rc = exit_status(*rej);
  ASSERT_TRUE(rc);
  EXPECT_NE(*rc, 0);
}

TEST(BtWindowUnavailable, greyed_with_the_daemons_reason_without_bluetooth) {
  qt_app();
  UiRig rig("null");
  ASSERT_TRUE(rig.start()) << rig.daemon_log();
  ControlClient client(QString::fromStdString(rig.control()));
  MixerController mixer(client);
  MixerWindow win(mixer);
  client.start();
  ASSERT_TRUE(qt_wait([&] { return mixer.isReady(); }, 30s));
  BluetoothPanel* p = win.bluetooth();
  ASSERT_TRUE(qt_wait(
      [&] { return p->status()->text().contains("Bluetooth is not enabled in this daemon"); }, 10s))
      << p->status()->text().toStdString();
  EXPECT_TRUE(p->status()->text().startsWith("Bluetooth is not available: "));
  EXPECT_FALSE(p->power()->isEnabled());
  EXPECT_FALSE(p->list()->isEnabled());
  EXPECT_FALSE(p->connectButton()->isEnabled());
  EXPECT_EQ(p->list()->topLevelItemCount(), 0);
}

}  // namespace
}  // namespace qaudio::mixer
