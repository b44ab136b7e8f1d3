#include "state_store.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace qaudio::daemon {
namespace {

namespace fs = std::filesystem;

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/qaudio-state-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write_file(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  std::string read_file(const std::string& name) {
    std::ifstream f(dir_ + "/" + name);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

TEST_F(StateStoreTest, UnknownQubeGetsDefaults) {
  StateStore s(dir_);
  ASSERT_TRUE(s.load());
  EXPECT_EQ(s.get("work"), QubeState{});
  EXPECT_EQ(s.get("work").volume_percent, 100u);
}

TEST_F(StateStoreTest, SavedStateIsRestoredByANewStore) {
  {
    StateStore s(dir_);
    ASSERT_TRUE(s.load());
    ASSERT_TRUE(s.set("work", {80, true, true, ""}));
    ASSERT_TRUE(s.set("personal", {150, false, false, ""}));
  }
  StateStore s2(dir_);
  ASSERT_TRUE(s2.load());
  EXPECT_EQ(s2.get("work"), (QubeState{80, true, true, ""}));
  EXPECT_EQ(s2.get("personal"), (QubeState{150, false, false, ""}));
  EXPECT_TRUE(s2.warnings().empty());
  EXPECT_FALSE(fs::exists(dir_ + "/qube-work.json.tmp"));
}

TEST_F(StateStoreTest, FileIsReadableJson) {
  StateStore s(dir_);
  ASSERT_TRUE(s.load());
  ASSERT_TRUE(s.set("work", {42, false, true, ""}));
  EXPECT_EQ(read_file("qube-work.json"),
            "{\"mic_persistent\":true,\"muted\":false,\"volume\":42}\n");
}

TEST_F(StateStoreTest, VolumeIsClampedOnSet) {
  StateStore s(dir_);
  ASSERT_TRUE(s.load());
  ASSERT_TRUE(s.set("work", {900, false, false, ""}));
  EXPECT_EQ(s.get("work").volume_percent, 150u);
}

TEST_F(StateStoreTest, CorruptFilesAreReportedAndIgnored) {
  write_file("qube-good.json", "{\"volume\":30}");
  write_file("qube-garbage.json", "{\"volume\":");
  write_file("qube-range.json", "{\"volume\":1000}");
  write_file("qube-type.json", "{\"muted\":\"yes\"}");
  write_file("qube-array.json", "[1,2,3]");
  write_file("qube-big.json", std::string(100000, ' ') + "{}");
  write_file("qube-..json", "{}");
  write_file("unrelated.txt", "hello");
  StateStore s(dir_);
  ASSERT_TRUE(s.load());
  EXPECT_EQ(s.get("good").volume_percent, 30u);
  EXPECT_EQ(s.get("garbage"), QubeState{});
  EXPECT_EQ(s.get("range"), QubeState{});
  EXPECT_EQ(s.get("type"), QubeState{});
  EXPECT_EQ(s.all().size(), 1u);
  EXPECT_EQ(s.warnings().size(), 6u);
}

TEST_F(StateStoreTest, InvalidQubeNamesNeverTouchThePath) {
  StateStore s(dir_);
  ASSERT_TRUE(s.load());
  EXPECT_FALSE(s.set("../etc", {}));
  EXPECT_FALSE(s.set("a/b", {}));
  EXPECT_FALSE(s.set("", {}));
  EXPECT_FALSE(s.set(std::string(40, 'a'), {}));
  EXPECT_TRUE(valid_qube_name("sys-audio"));
  EXPECT_TRUE(valid_qube_name("disp1234"));
  EXPECT_FALSE(valid_qube_name("-x"));
}

TEST_F(StateStoreTest, MissingDirectoryIsCreatedPrivate) {
  std::string sub = dir_ + "/state";
  StateStore s(sub);
  ASSERT_TRUE(s.load());
  struct stat st;
  ASSERT_EQ(stat(sub.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(s.set("work", {10, false, false, ""}));
}

TEST_F(StateStoreTest, UnusableDirectoryIsAnErrorButTheStoreStillWorksInMemory) {
  write_file("file", "x");
  StateStore s(dir_ + "/file/sub");
  EXPECT_FALSE(s.load());
  EXPECT_FALSE(s.set("work", {10, false, false, ""}));  // cannot persist
  EXPECT_EQ(s.get("work").volume_percent, 10u);         // but remembered
}

TEST(StateStoreJson, ParsesPartialObjectsWithDefaults) {
  auto st = StateStore::from_json("{\"muted\":true}");
  ASSERT_TRUE(st);
  EXPECT_EQ(*st, (QubeState{100, true, false, ""}));
  EXPECT_FALSE(StateStore::from_json(""));
  EXPECT_FALSE(StateStore::from_json("{\"volume\":-1}"));
  EXPECT_FALSE(StateStore::from_json("{\"volume\":1.5}"));
}

TEST(StateStoreMemory, EmptyDirKeepsStateInMemoryOnly) {
  StateStore s("");
  ASSERT_TRUE(s.load());
  ASSERT_TRUE(s.set("work", {5, false, false, ""}));
  EXPECT_EQ(s.get("work").volume_percent, 5u);
}

TEST_F(StateStoreTest, OutputDeviceAndDefaultOutputSurviveANewStore) {
  {
    StateStore s(dir_);
    ASSERT_TRUE(s.load());
    ASSERT_TRUE(s.set("work", {90, false, false, "bluez_sink.AA_BB.a2dp"}));
    ASSERT_TRUE(s.set_default_output("alsa_output.usb"));
  }
  StateStore s2(dir_);
  ASSERT_TRUE(s2.load());
  EXPECT_EQ(s2.get("work").output_device, "bluez_sink.AA_BB.a2dp");
  EXPECT_EQ(s2.default_output(), "alsa_output.usb");
  EXPECT_TRUE(s2.warnings().empty());
}

TEST_F(StateStoreTest, BadDeviceNamesAreRefusedAndACorruptDefaultIsIgnored) {
  StateStore s(dir_);
  ASSERT_TRUE(s.load());
  EXPECT_FALSE(s.set_default_output("two words"));
  EXPECT_FALSE(s.set_default_output(std::string(300, 'x')));
  EXPECT_EQ(s.default_output(), "");
  EXPECT_FALSE(StateStore::from_json("{\"output_device\":7}"));
  EXPECT_FALSE(StateStore::from_json("{\"output_device\":\"a\\nb\"}"));
  write_file("default-output.json", "{\"output_device\": [1]}");
  StateStore s2(dir_);
  ASSERT_TRUE(s2.load());
  EXPECT_EQ(s2.default_output(), "");
  EXPECT_EQ(s2.warnings().size(), 1u);
}

TEST_F(StateStoreTest, HeadsetOutputSettingsSurviveANewStoreAndBadOnesAreIgnored) {
  {
    StateStore s(dir_);
    ASSERT_TRUE(s.load());
    EXPECT_TRUE(s.headset_output().auto_output);  // default: on
    ASSERT_TRUE(s.set_headset_output({false, "alsa_output.pci"}));
    EXPECT_FALSE(s.set_headset_output({true, "bad name"}));
    EXPECT_EQ(s.headset_output(), (HeadsetOutputSettings{false, "alsa_output.pci"}));
  }
  StateStore s2(dir_);
  ASSERT_TRUE(s2.load());
  EXPECT_EQ(s2.headset_output(), (HeadsetOutputSettings{false, "alsa_output.pci"}));
  EXPECT_TRUE(s2.warnings().empty());
  for (const char* bad : {"{\"auto_output\": \"yes\"}", "{\"fallback_output\": 3}", "[]", "{"}) {
    write_file("bluetooth-output.json", bad);
    StateStore s3(dir_);
    ASSERT_TRUE(s3.load());
    EXPECT_EQ(s3.headset_output(), HeadsetOutputSettings{}) << bad;
    EXPECT_EQ(s3.warnings().size(), 1u) << bad;
  }
}

}  // namespace
}  // namespace qaudio::daemon
