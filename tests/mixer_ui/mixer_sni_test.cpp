// The tray as a StatusNotifierItem: qubes-audio-mixer runs under Xvfb with a
// private session bus on which python3-dbusmock provides
// org.kde.StatusNotifierWatcher (no XEmbed tray host). Qt registers an item
// with the watcher; the test reads the item's org.kde.StatusNotifierItem
// properties over D-Bus (tooltip, icon pixmaps: a red dot appears when work's
// microphone is attached), reads its menu through com.canonical.dbusmenu
// GetLayout (both qubes, the Microphone submenu with work's request) and
// clicks work's microphone item through dbusmenu Event, checked with the
// control API.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include "dbus_rig.hpp"
#include "ui_support.hpp"
#include "x_session.hpp"

namespace qaudio::mixer {
namespace {

using namespace test;

constexpr const char* kWatcher = "org.kde.StatusNotifierWatcher";
constexpr const char* kItemIface = "org.kde.StatusNotifierItem";

// Pixels of the largest IconPixmap entry that are the recording dot's red
// (ARGB32, network byte order).
int red_pixels(const json& pixmaps) {
  const json* best = nullptr;
  for (const auto& p : pixmaps) {
    if (best == nullptr || p[0].get<int>() > (*best)[0].get<int>()) {
      best = &p;
    }
  }
  if (best == nullptr) {
    return -1;
  }
  const json& px = (*best)[2];
  int n = 0;
  for (size_t i = 0; i + 3 < px.size(); i += 4) {
    int a = px[i], r = px[i + 1], g = px[i + 2], b = px[i + 3];
    n += a > 200 && r > 200 && g < 80 && b < 80;
  }
  return n;
}

// Every (id, label) of a dbusmenu layout (ia{sv}av), depth first.
void collect(const json& node, std::vector<std::pair<int, std::string>>& out) {
  int id = node[0];
  std::string label;
  if (node[1].contains("label")) {
    label = node[1]["label"]["data"];
  }
  out.emplace_back(id, label);
  for (const auto& child : node[2]) {
    collect(child["data"], out);
  }
}

struct SniTest : ::testing::Test {
  void SetUp() override {
    ASSERT_TRUE(x.start(rig.dir(), /*tray_host=*/false));
    ASSERT_TRUE(bus.start()) << bus.error;
    ASSERT_TRUE(
        bus.start_mock({"--session", kWatcher, "/StatusNotifierWatcher", kWatcher}, kWatcher))
        << bus.error;
    // The watcher's members (StatusNotifierItem spec): a host is registered.
    auto mock = [&](std::vector<std::string> args) {
      args.insert(args.begin(),
                  {"call", kWatcher, "/StatusNotifierWatcher", "org.freedesktop.DBus.Mock"});
      return bus.busctl(args).status == 0;
    };
    ASSERT_TRUE(mock({"AddMethod", "sssss", kWatcher, "RegisterStatusNotifierItem", "s", "",
                      "self.EmitSignal('org.kde.StatusNotifierWatcher', "
                      "'StatusNotifierItemRegistered', 's', [args[0]])"}));
    ASSERT_TRUE(mock({"AddMethod", "sssss", kWatcher, "RegisterStatusNotifierHost", "s", "", ""}));
    ASSERT_TRUE(
        mock({"AddProperty", "ssv", kWatcher, "IsStatusNotifierHostRegistered", "b", "true"}));
    ASSERT_TRUE(mock({"AddProperty", "ssv", kWatcher, "ProtocolVersion", "i", "0"}));
    ASSERT_TRUE(mock({"AddProperty", "ssv", kWatcher, "RegisteredStatusNotifierItems", "as", "0"}));
    ASSERT_TRUE(rig.start()) << rig.daemon_log();
    std::string run = rig.dir() + "/mixer-run";
    qaudio::test::make_dir(run);
    ::chmod(run.c_str(), 0700);
    auto m = Child::spawn({QAUDIO_MIXER_BIN, "--control", rig.control()},
                          {{"DISPLAY", x.display()},
                           {"QT_QPA_PLATFORM", "xcb"},
                           {"DBUS_SESSION_BUS_ADDRESS", bus.address()},
                           {"XDG_RUNTIME_DIR", run},
                           {"HOME", rig.dir()},
                           {"QT_LOGGING_RULES", "qt.qpa.tray=true"}},
                          rig.dir() + "/mixer.log");
    ASSERT_TRUE(m);
    mixer = std::move(*m);
  }
  // The item's service name, as registered with the watcher.
  std::string item() {
    auto calls = bus.mock_calls(kWatcher, "/StatusNotifierWatcher", "RegisterStatusNotifierItem");
    return calls.empty() ? std::string() : calls[0][0]["data"].get<std::string>();
  }
  json prop(const std::string& name) {
    json j = bus.busctl_json({"get-property", service, "/StatusNotifierItem", kItemIface, name});
    return j.is_object() ? j["data"] : json();
  }
  std::vector<std::pair<int, std::string>> menu() {
    std::vector<std::pair<int, std::string>> out;
    json j = bus.busctl_json({"call", service, menu_path, "com.canonical.dbusmenu", "GetLayout",
                              "iias", "--", "0", "-1", "0"});
    if (j.is_object()) {
      collect(j["data"][1], out);
    }
    return out;
  }
  std::string log() {
    std::ifstream in(rig.dir() + "/mixer.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  UiRig rig{"null"};
  XSession x;
  PrivateBus bus{rig.dir(), "session"};
  Child mixer;
  std::string service;
  std::string menu_path;
};

TEST_F(SniTest, item_registers_shows_recording_and_exports_its_menu) {
  ASSERT_TRUE(qaudio::test::wait_until([&] { return !item().empty(); }, 30s)) << log();
  service = item();  // Qt registers its connection's unique name

  // Connected, nothing recording: tooltip and an icon without the red dot.
  ASSERT_TRUE(qaudio::test::wait_until(
      [&] {
        json t = prop("ToolTip");
        return t.is_array() && t[2] == "Qubes audio: no microphone attached";
      },
      30s))
      << prop("ToolTip").dump() << log();
  json idle = prop("IconPixmap");
  ASSERT_TRUE(idle.is_array() && !idle.empty()) << idle.dump();
  EXPECT_EQ(red_pixels(idle), 0);
  EXPECT_EQ(prop("Status"), "Active");
  EXPECT_EQ(prop("IconName"), "");  // Qt exports the drawn icon as pixmaps only

  // The menu over dbusmenu: both qubes, the Microphone submenu with work's
  // pending request and personal's denial.
  menu_path = prop("Menu").get<std::string>();
  std::vector<std::pair<int, std::string>> items;
  int mic_work = -1;
  ASSERT_TRUE(qaudio::test::wait_until(
      [&] {
        items = menu();
        mic_work = -1;
        for (const auto& [id, label] : items) {
          if (label.rfind("work wants the microphone", 0) == 0) {
            mic_work = id;
          }
        }
        return mic_work >= 0;
      },
      30s))
      << bus.busctl({"call", service, menu_path, "com.canonical.dbusmenu", "GetLayout", "iias",
                     "--", "0", "-1", "0"})
             .out;
  auto has = [&](const std::string& prefix) {
    for (const auto& [id, label] : items) {
      if (label.rfind(prefix, 0) == 0) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(has("work — 100 %"));
  EXPECT_TRUE(has("personal — 100 %"));
  EXPECT_TRUE(has("_Microphone"));  // Qt exports the & mnemonic as _
  EXPECT_TRUE(has("personal — denied by policy"));
  EXPECT_TRUE(has("_Detach microphone from all"));

  // A click on work's microphone item, the way a tray host sends it.
  auto r = bus.busctl({"call", service, menu_path, "com.canonical.dbusmenu", "Event", "isvu",
                       std::to_string(mic_work), "clicked", "s", "", "0"});
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(
      qaudio::test::wait_until([&] { return rig.qube("work")["mic"]["attached"] == true; }, 20s))
      << log();
  // Recording: the tooltip names work and the icon gets its red dot.
  ASSERT_TRUE(qaudio::test::wait_until(
      [&] {
        json t = prop("ToolTip");
        return t.is_array() && t[2] == "Qubes audio: microphone attached to work";
      },
      20s))
      << prop("ToolTip").dump();
  ASSERT_TRUE(qaudio::test::wait_until([&] { return red_pixels(prop("IconPixmap")) > 10; }, 20s));
  // Detached again through the control API: the dot goes.
  rig.query("mic_detach", {{"qube", "work"}});
  ASSERT_TRUE(qaudio::test::wait_until([&] { return red_pixels(prop("IconPixmap")) == 0; }, 20s));
}

}  // namespace
}  // namespace qaudio::mixer
