// The daemon's command line and config file (config.hpp).
#include <gtest/gtest.h>

#include <fstream>
#include <variant>

#include "config.hpp"
#include "sound_servers.hpp"

namespace qaudio::daemon {
namespace {

std::variant<DaemonCli, int> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "qubes-audiovm-daemon");
  std::vector<const char*> argv;
  for (auto& a : args) {
    argv.push_back(a.c_str());
  }
  return parse_cli(static_cast<int>(argv.size()), argv.data());
}

TEST(DaemonConfig, qube_names_follow_the_qubes_rules) {
  EXPECT_TRUE(is_valid_qube_name("work"));
  EXPECT_TRUE(is_valid_qube_name("sys-usb.2_a"));
  EXPECT_TRUE(is_valid_qube_name(std::string(31, 'a')));
  EXPECT_FALSE(is_valid_qube_name(std::string(32, 'a')));
  EXPECT_FALSE(is_valid_qube_name(""));
  EXPECT_FALSE(is_valid_qube_name("1work"));
  EXPECT_FALSE(is_valid_qube_name("-work"));
  EXPECT_FALSE(is_valid_qube_name("wo rk"));
  EXPECT_FALSE(is_valid_qube_name("../etc"));
}

TEST(DaemonConfig, qube_spec_needs_a_domid_between_1_and_32767) {
  auto q = parse_qube_spec("work=5");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->name, "work");
  EXPECT_EQ(q->domid, 5u);
  EXPECT_FALSE(parse_qube_spec("work").has_value());
  EXPECT_FALSE(parse_qube_spec("work=0").has_value());
  EXPECT_FALSE(parse_qube_spec("work=32768").has_value());
  EXPECT_FALSE(parse_qube_spec("work=5x").has_value());
  EXPECT_FALSE(parse_qube_spec("=5").has_value());
}

TEST(DaemonConfig, command_line_builds_the_options) {
  auto r =
      parse({"--channel",   "shm:/tmp/x",  "--qube",       "work=1",        "--qube", "personal=2",
             "--volume",    "personal=50", "--backend",    "null",          "--rate", "44100",
             "--period-ms", "5",           "--stock-only", "--audio-domid", "7",      "--duration",
             "2",           "--label",     "work=red"});
  ASSERT_TRUE(std::holds_alternative<DaemonCli>(r));
  auto& c = std::get<DaemonCli>(r);
  EXPECT_EQ(c.options.channel, "shm:/tmp/x");
  ASSERT_EQ(c.options.qubes.size(), 2u);
  EXPECT_EQ(c.options.qubes[0].label, "red");
  EXPECT_EQ(c.options.qubes[1].initial_volume, 50u);
  EXPECT_EQ(c.options.backend, "null");
  EXPECT_EQ(c.options.backend_options.format.rate, 44100u);
  EXPECT_EQ(c.options.backend_options.period, std::chrono::milliseconds(5));
  EXPECT_FALSE(c.options.native_enabled);
  EXPECT_EQ(c.options.audio_domid, 7u);
  EXPECT_EQ(c.duration_s, 2.0);
}

TEST(DaemonConfig, bad_options_exit_with_2_and_help_with_0) {
  EXPECT_EQ(std::get<int>(parse({"--help"})), 0);
  EXPECT_EQ(std::get<int>(parse({"--version"})), 0);
  EXPECT_EQ(std::get<int>(parse({"--no-such-option"})), 2);
  EXPECT_EQ(std::get<int>(parse({"--qube", "bad name=3"})), 2);
  EXPECT_EQ(std::get<int>(parse({"--qube", "a=3", "--qube", "b=3"})), 2);  // domid twice
  EXPECT_EQ(std::get<int>(parse({"--qube", "a=3", "--qube", "a=4"})), 2);  // name twice
  EXPECT_EQ(std::get<int>(parse({"--qube", "a=3", "--volume", "b=50"})), 2);
  EXPECT_EQ(std::get<int>(parse({"--qube", "a=3", "--volume", "a=151"})), 2);
  EXPECT_EQ(std::get<int>(parse({"--rate", "abc"})), 2);
  EXPECT_EQ(std::get<int>(parse({"--period-ms", "0"})), 2);
}

TEST(DaemonConfig, config_file_sets_qubes_labels_and_settings_and_the_command_line_wins) {
  test::TempDir dir("daemon-config");
  std::string path = dir.path() + "/daemon.conf";
  std::ofstream(path) << "# audio qube\n"
                         "channel = unix:/run/q\n"
                         "qube = work=5\n"
                         "volume = work=80\n"
                         "label.work = blue\n"
                         "\n"
                         "qube = personal=7\n"
                         "backend = null\n"
                         "stock-only = true\n";
  auto r = parse({"--config", path, "--backend", "wav:/tmp/o.wav", "--qube", "vault=9"});
  ASSERT_TRUE(std::holds_alternative<DaemonCli>(r));
  auto& c = std::get<DaemonCli>(r);
  EXPECT_EQ(c.options.channel, "unix:/run/q");
  EXPECT_EQ(c.options.backend, "wav:/tmp/o.wav");
  ASSERT_EQ(c.options.qubes.size(), 3u);
  EXPECT_EQ(c.options.qubes[0].name, "work");
  EXPECT_EQ(c.options.qubes[0].label, "blue");
  EXPECT_EQ(c.options.qubes[0].initial_volume, 80u);
  EXPECT_EQ(c.options.qubes[2].name, "vault");
  EXPECT_FALSE(c.options.native_enabled);
}

TEST(DaemonConfig, config_file_errors_name_file_and_line) {
  test::TempDir dir("daemon-config");
  std::string path = dir.path() + "/bad.conf";
  std::ofstream(path) << "qube = work=5\n\nrate = fast\n";
  DaemonCli cli;
  auto r = load_config_file(path, cli);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find(path + ":3:"), std::string::npos) << r.error().message;

  std::ofstream(path) << "nonsense line\n";
  DaemonCli cli2;
  auto r2 = load_config_file(path, cli2);
  ASSERT_FALSE(r2.has_value());
  EXPECT_NE(r2.error().message.find(path + ":1:"), std::string::npos);

  std::ofstream(path) << "qube = work=5\nwhat = 3\n";
  DaemonCli cli3;
  auto r3 = load_config_file(path, cli3);
  ASSERT_FALSE(r3.has_value());
  EXPECT_NE(r3.error().message.find(":2: unknown setting 'what'"), std::string::npos);

  EXPECT_EQ(std::get<int>(parse({"--config", dir.path() + "/missing.conf"})), 2);
}

}  // namespace
}  // namespace qaudio::daemon
