// Microphone request notifications against a real daemon (null backend)
// and a notification server mocked by python3-dbusmock's notification_daemon
// template on a private session bus: the Notify call and its Attach action,
// the action attaching (checked through the control API), replaces_id on a
// repeated request, CloseNotification when the mic gets attached or the
// request ends, the refusal shown when policy denies, and the tray fallback
// when no server is on the bus.
#include <gtest/gtest.h>

#include <QDBusConnection>
#include <QDBusError>
#include <QSignalSpy>

#include "dbus_rig.hpp"
#include "mic_notifier.hpp"
#include "mixer_controller.hpp"
#include "tray.hpp"
#include "ui_support.hpp"

namespace qaudio::mixer {
namespace {

using namespace test;

constexpr const char* kSvc = "org.freedesktop.Notifications";
constexpr const char* kPath = "/org/freedesktop/Notifications";

// A fresh private connection per test (sessionBus() is cached per process).
QDBusConnection connect_bus(const std::string& address) {
  static int n = 0;
  return QDBusConnection::connectToBus(QString::fromStdString(address),
                                       QStringLiteral("notify-test-%1").arg(++n));
}

struct NotifyTest : ::testing::Test {
  void SetUp() override {
    qt_app();
    ASSERT_TRUE(bus.start()) << bus.error;
    ASSERT_TRUE(bus.start_mock({"--template", "notification_daemon"}, kSvc)) << bus.error;
    ASSERT_TRUE(rig.start()) << rig.daemon_log();
    conn = std::make_unique<QDBusConnection>(connect_bus(bus.address()));
    ASSERT_TRUE(conn->isConnected()) << conn->lastError().message().toStdString();
    notifier = std::make_unique<MicNotifier>(mixer, *conn);
    client.setRetryInterval(50, 200);
    client.start();
    ASSERT_TRUE(qt_wait([&] { return mixer.isReady(); }, 30s)) << rig.daemon_log();
  }
  std::vector<json> notifies() { return bus.mock_calls(kSvc, kPath, "Notify"); }
  std::vector<json> closes() { return bus.mock_calls(kSvc, kPath, "CloseNotification"); }
  bool closed(uint id) {
    for (const auto& c : closes()) {
      if (c[0]["data"] == id) {
        return true;
      }
    }
    return false;
  }
  void invoke(uint id, const std::string& key) {
    auto r = bus.busctl({"call", kSvc, kPath, "org.freedesktop.DBus.Mock", "EmitSignal", "sssav",
                         kSvc, "ActionInvoked", "us", "2", "u", std::to_string(id), "s", key});
    ASSERT_EQ(r.status, 0) << r.out;
  }

  UiRig rig{"null"};
  PrivateBus bus{rig.dir(), "session"};
  ControlClient client{QString::fromStdString(rig.control())};
  MixerController mixer{client};
  std::unique_ptr<QDBusConnection> conn;
  std::unique_ptr<MicNotifier> notifier;
};

// Notify's arguments: app, replaces_id, icon, summary, body, actions, hints, timeout.
TEST_F(NotifyTest, request_shows_a_notification_whose_attach_action_attaches) {
  ASSERT_TRUE(qt_wait([&] { return notifies().size() == 1; }, 20s));
  json n = notifies()[0];
  EXPECT_EQ(n[1]["data"], 0);  // a new notification
  EXPECT_EQ(n[3]["data"], "Microphone request");
  EXPECT_EQ(n[4]["data"], "work wants the microphone.");
  EXPECT_EQ(n[5]["data"], json::array({"attach", "Attach"}));
  ASSERT_TRUE(qt_wait([&] { return notifier->notificationId("work") != 0; }, 10s));
  uint id = notifier->notificationId("work");
  EXPECT_EQ(notifier->notificationId("personal"), 0u);  // denied by policy: no request to answer
  EXPECT_EQ(rig.qube("work")["mic"]["attached"], false);

  // The same request announced again replaces the notification, no second one.
  emit mixer.micRequested("work");
  ASSERT_TRUE(qt_wait([&] { return notifies().size() == 2; }, 10s));
  EXPECT_EQ(notifies()[1][1]["data"], id);
  EXPECT_EQ(notifier->notificationId("work"), id);

  invoke(id, "attach");
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["mic"]["attached"] == true; }, 10s))
      << rig.daemon_log();
  // Attached: the notification is closed.
  ASSERT_TRUE(qt_wait([&] { return closed(id); }, 10s));
  EXPECT_EQ(notifier->notificationId("work"), 0u);
  EXPECT_EQ(notifier->fallbackCount(), 0);
}

TEST_F(NotifyTest, attach_refused_by_policy_shows_the_reason_and_attaches_nothing) {
  ASSERT_TRUE(qt_wait([&] { return notifier->notificationId("work") != 0; }, 20s));
  uint id = notifier->notificationId("work");
  QSignalSpy refused(notifier.get(), &MicNotifier::refused);
  invoke(id, "default");            // not our key: ignored
  rig.set_work_mic_policy("deny");  // the policy changed before the user clicked
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["mic"]["policy"] == "deny"; }, 20s));
  invoke(id, "attach");
  ASSERT_TRUE(qt_wait([&] { return refused.count() == 1; }, 10s));
  ASSERT_TRUE(qt_wait([&] { return notifies().size() == 2; }, 10s));
  json n = notifies()[1];
  EXPECT_EQ(n[3]["data"], "Microphone not attached");
  std::string body = n[4]["data"];
  EXPECT_EQ(body.rfind("work: ", 0), 0u) << body;
  EXPECT_NE(body.find("refused"), std::string::npos) << body;
  EXPECT_EQ(n[5]["data"], json::array());  // nothing to click
  EXPECT_EQ(rig.qube("work")["mic"]["attached"], false);
}

TEST_F(NotifyTest, closed_when_another_client_attaches) {
  ASSERT_TRUE(qt_wait([&] { return notifier->notificationId("work") != 0; }, 20s));
  uint id = notifier->notificationId("work");
  // qvm-audio (or the tray menu) attaches: the notification goes.
  rig.query("mic_attach", {{"qube", "work"}, {"confirm", true}});
  ASSERT_TRUE(qt_wait([&] { return closed(id); }, 10s));
  EXPECT_EQ(notifier->notificationId("work"), 0u);
  EXPECT_EQ(notifies().size(), 1u);
}

TEST_F(NotifyTest, closed_when_the_request_ends) {
  ASSERT_TRUE(qt_wait([&] { return notifier->notificationId("work") != 0; }, 20s));
  uint id = notifier->notificationId("work");
  // work's agent stops recording (it leaves): nothing left to answer.
  rig.stop_work();
  ASSERT_TRUE(qt_wait([&] { return closed(id); }, 20s));
  EXPECT_EQ(notifier->notificationId("work"), 0u);
  EXPECT_EQ(notifies().size(), 1u);
  EXPECT_EQ(rig.qube("work")["mic"]["attached"], false);
}

TEST(NotifyFallback, without_a_notification_server_the_tray_message_is_used) {
  qt_app();
  UiRig rig("null");
  PrivateBus bus(rig.dir(), "empty");
  ASSERT_TRUE(bus.start()) << bus.error;
  ASSERT_TRUE(rig.start()) << rig.daemon_log();
  QDBusConnection conn = connect_bus(bus.address());
  ASSERT_TRUE(conn.isConnected());
  ControlClient client(QString::fromStdString(rig.control()));
  MixerController mixer(client);
  TrayController tray(mixer);
  MicNotifier notifier(mixer, conn);
  tray.useNotifier(notifier);
  client.start();
  ASSERT_TRUE(qt_wait([&] { return notifier.fallbackCount() == 1; }, 30s)) << rig.daemon_log();
  EXPECT_EQ(tray.notifiedQube(), "work");
  emit tray.icon().messageClicked();  // the fallback message's Attach
  ASSERT_TRUE(qt_wait([&] { return rig.qube("work")["mic"]["attached"] == true; }, 10s));
}

}  // namespace
}  // namespace qaudio::mixer
