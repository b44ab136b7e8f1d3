// qvm-audio: argument parsing in-process, and the built binary against a
// control server with a fake target (output, exit codes, qrexec path,
// monitor, unreachable daemon), plus `policy check` on a policy directory.
#include "cli_app.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include "control_test_util.hpp"
#include "fake_control_target.hpp"

extern char** environ;

namespace qaudio::cli {
namespace {

using json = nlohmann::json;
using control::FakeControlTarget;
using control::test::ServedApi;

struct Outcome {
  int rc = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class CliBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = control::test::make_temp_dir();
    ASSERT_FALSE(dir.empty());
    opt.path = dir + "/control";
  }
  void TearDown() override {
    served.reset();
    std::string cmd = "rm -rf '" + dir + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  void serve() {
    served = std::make_unique<ServedApi>(target, opt);
    auto r = served->start();
    ASSERT_TRUE(r) << r.error().message;
  }
  // Starts the binary with stdout/stderr in files; returns its pid.
  pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, (dir + "/out").c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_addopen(&fa, 2, (dir + "/err").c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    std::vector<std::string> all{QVM_AUDIO_BIN};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
      envs.emplace_back(*e);
    }
    envs.insert(envs.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& e : envs) {
      envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, QVM_AUDIO_BIN, &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    EXPECT_EQ(rc, 0);
    return pid;
  }
  Outcome run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    pid_t pid = spawn(args, env);
    int st = 0;
    ::waitpid(pid, &st, 0);
    Outcome r;
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = slurp(dir + "/out");
    r.err = slurp(dir + "/err");
    return r;
  }
  Outcome ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--control", opt.path});
    return run(args);
  }

  std::string dir;
  control::ControlServerOptions opt;
  FakeControlTarget target;
  std::unique_ptr<ServedApi> served;
};

TEST(CliArgs, volume_argument_forms) {
  EXPECT_FALSE(parse_volume_arg("80")->relative);
  EXPECT_EQ(parse_volume_arg("80")->value, 80);
  EXPECT_TRUE(parse_volume_arg("+5")->relative);
  EXPECT_EQ(parse_volume_arg("+5")->value, 5);
  EXPECT_EQ(parse_volume_arg("-10")->value, -10);
  EXPECT_EQ(parse_volume_arg("150")->value, 150);
  for (const char* bad : {"", "+", "-", "151", "abc", "5%", "1.5", "++5", "99999999"}) {
    EXPECT_FALSE(parse_volume_arg(bad)) << bad;
  }
}

TEST(CliArgs, policy_service_short_names) {
  EXPECT_EQ(policy_service_name("mic"), "qaudio.Mic");
  EXPECT_EQ(policy_service_name("Play"), "qaudio.Play");
  EXPECT_EQ(policy_service_name("qaudio.Mic"), "qaudio.Mic");
}

TEST(CliArgs, usage_errors_exit_2) {
  std::ostringstream out, err;
  EXPECT_EQ(run_cli({}, out, err), 2);
  EXPECT_EQ(run_cli({"frobnicate"}, out, err), 2);
  EXPECT_EQ(run_cli({"volume"}, out, err), 2);
  EXPECT_EQ(run_cli({"volume", "work", "loud"}, out, err), 2);
  EXPECT_EQ(run_cli({"mic"}, out, err), 2);
  EXPECT_EQ(run_cli({"mic", "attach"}, out, err), 2);
  EXPECT_EQ(run_cli({"--control", "a", "--audiovm", "b", "list"}, out, err), 2);
  EXPECT_NE(err.str().find("qvm-audio:"), std::string::npos);
}

TEST(CliArgs, help_exits_0) {
  std::ostringstream out, err;
  EXPECT_EQ(run_cli({"--help"}, out, err), 0);
  EXPECT_NE(out.str().find("monitor"), std::string::npos);
}

TEST_F(CliBinaryTest, unreachable_daemon_is_exit_1_with_message) {
  Outcome r = ctl({"list"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("cannot reach the audio daemon at " + opt.path), std::string::npos) << r.err;
}

TEST_F(CliBinaryTest, list_prints_table_and_json) {
  serve();
  Outcome r = ctl({"list"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(
      r.out,
      "NAME      STATE    PROTOCOL  FORMAT               LATENCY  VOLUME  MUTED  MIC\n"
      "work      running  native    s16le 48000 Hz 2 ch  21.0 ms  80%     no     off\n"
      "personal  waiting  none      s16le 44100 Hz 2 ch  -        100%    no     requested\n");
  Outcome j = ctl({"list", "--json"});
  EXPECT_EQ(j.rc, 0);
  json parsed = json::parse(j.out);
  EXPECT_EQ(parsed["qubes"][0]["name"], "work");
}

TEST_F(CliBinaryTest, volume_set_relative_and_show) {
  serve();
  EXPECT_EQ(ctl({"volume", "work", "+5"}).rc, 0);
  EXPECT_EQ(ctl({"volume", "work", "-20"}).rc, 0);
  Outcome show = ctl({"volume", "work"});
  EXPECT_EQ(show.rc, 0);
  EXPECT_EQ(show.out, "work: 65%\n");
  EXPECT_EQ(ctl({"volume", "work", "150"}).rc, 0);
  EXPECT_EQ(served->on_loop([&](control::ControlServer&) { return target.calls; }),
            (std::vector<std::string>{"set_volume work 85", "set_volume work 65",
                                      "set_volume work 150"}));
}

TEST_F(CliBinaryTest, unknown_qube_is_exit_1_with_reason) {
  serve();
  Outcome r = ctl({"mute", "nope"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "qvm-audio: mute nope: no qube named 'nope' [not_found]\n");
}

TEST_F(CliBinaryTest, mute_unmute_and_mic_commands_reach_the_daemon) {
  serve();
  EXPECT_EQ(ctl({"mute", "work"}).rc, 0);
  EXPECT_EQ(ctl({"unmute", "work"}).rc, 0);
  EXPECT_EQ(ctl({"mic", "attach", "personal", "--persistent"}).rc, 0);
  Outcome st = ctl({"mic", "status"});
  EXPECT_EQ(st.out,
            "NAME      STATE    MIC       REQUESTED  PERSISTENT  POLICY\n"
            "work      running  detached  no         no          -\n"
            "personal  waiting  attached  yes        yes         -\n");
  EXPECT_EQ(ctl({"mic", "requests"}).out, "no pending microphone requests\n");
  EXPECT_EQ(ctl({"mic", "detach", "personal"}).rc, 0);
  EXPECT_EQ(ctl({"mic", "requests"}).out, "NAME      STATE\npersonal  waiting\n");
  EXPECT_EQ(ctl({"mic", "requests", "--json"}).out,
            "{\n  \"requests\": [\n    \"personal\"\n  ]\n}\n");
  EXPECT_EQ(
      served->on_loop([&](control::ControlServer&) { return target.calls; }),
      (std::vector<std::string>{"set_mute work 1", "set_mute work 0",
                                "set_mic_attached personal 1 p", "set_mic_attached personal 0"}));
}

TEST_F(CliBinaryTest, refused_and_unsupported_are_exit_1) {
  serve();
  served->on_loop([&](control::ControlServer&) {
    target.forced = control::ControlError{control::ErrorCode::Unsupported, "not here"};
  });
  Outcome r = ctl({"output", "headset", "work"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "qvm-audio: output headset: not here [unsupported]\n");
}

TEST_F(CliBinaryTest, ask_policy_needs_confirm_flag) {
  serve();
  served->on_loop([&](control::ControlServer&) {
    target.forced =
        control::ControlError{control::ErrorCode::NeedsConfirmation, "policy says ask for work"};
  });
  Outcome r = ctl({"mic", "attach", "work"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err,
            "qvm-audio: mic attach work: policy says ask for work [needs_confirmation]\n"
            "qvm-audio: run it again with --confirm to confirm\n");
  served->on_loop([&](control::ControlServer&) { target.forced.reset(); });
  EXPECT_EQ(ctl({"mic", "attach", "work", "--confirm"}).rc, 0);
  EXPECT_EQ(served->on_loop([&](control::ControlServer&) { return target.calls.back(); }),
            "set_mic_attached work 1 c");
}

TEST_F(CliBinaryTest, refused_peer_is_exit_1) {
  opt.authorize = [](const control::PeerCred&) { return false; };
  serve();
  Outcome r = ctl({"list"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("[refused]"), std::string::npos) << r.err;
}

TEST_F(CliBinaryTest, devices_and_output) {
  serve();
  Outcome d = ctl({"devices"});
  EXPECT_EQ(d.rc, 0);
  EXPECT_EQ(d.out,
            "NAME      DIRECTION  DEFAULT  DESCRIPTION\n"
            "speakers  output     yes      Built-in speakers\n"
            "headset   output     no       USB headset\n"
            "mic       input      yes      Built-in microphone\n");
  EXPECT_EQ(ctl({"output", "headset"}).rc, 0);
  EXPECT_EQ(ctl({"output", "nothing"}).rc, 1);
}

TEST_F(CliBinaryTest, monitor_prints_events_in_order) {
  serve();
  pid_t pid = spawn({"--control", opt.path, "monitor"});
  ASSERT_TRUE(
      served->wait_for([](control::ControlServer& s) { return s.subscriber_count() == 1; }));
  served->on_loop([](control::ControlServer& s) {
    s.publish(control::event_qube_connected("work", "native"));
    s.publish(control::event_volume_changed("work", 70));
    s.publish(control::event_mic_requested("work"));
  });
  std::string want =
      "qube_connected protocol=native qube=work\n"
      "volume_changed qube=work volume=70\n"
      "mic_requested qube=work\n";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (slurp(dir + "/out").size() < want.size() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(slurp(dir + "/out"), want);
  // The daemon going away ends the monitor with exit 1.
  served.reset();
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 1);
  EXPECT_NE(slurp(dir + "/err").find("closed the connection"), std::string::npos);
}

TEST_F(CliBinaryTest, audiovm_goes_through_the_qrexec_service_script) {
  serve();
  std::string fake = dir + "/fake-qrexec-client-vm";
  {
    std::ofstream f(fake);
    f << "#!/bin/sh\n"
      << "[ \"$1\" = sys-audio ] && [ \"$2\" = qaudio.Control ] || exit 3\n"
      << "QAUDIO_CONTROL_BRIDGE=" << QAUDIO_BRIDGE_BIN << " QAUDIO_CONTROL=" << opt.path << " exec "
      << QAUDIO_RPC_SCRIPT << "\n";
  }
  ::chmod(fake.c_str(), 0755);
  Outcome r =
      run({"--audiovm", "sys-audio", "volume", "work", "-30"}, {"QVM_AUDIO_QREXEC_CLIENT=" + fake});
  EXPECT_EQ(r.rc, 0) << r.err;
  Outcome l =
      run({"--audiovm", "sys-audio", "volume", "work"}, {"QVM_AUDIO_QREXEC_CLIENT=" + fake});
  EXPECT_EQ(l.out, "work: 50%\n");
  served.reset();
  Outcome down = run({"--audiovm", "sys-audio", "list"}, {"QVM_AUDIO_QREXEC_CLIENT=" + fake});
  EXPECT_EQ(down.rc, 1);
  EXPECT_NE(down.err.find("not reachable"), std::string::npos) << down.err;
}

TEST_F(CliBinaryTest, policy_check_evaluates_the_policy_directory) {
  std::string pdir = dir + "/policy.d";
  ::mkdir(pdir.c_str(), 0755);
  {
    std::ofstream f(pdir + "/30-qaudio.policy");
    f << "qaudio.Mic  *  work    @default  allow target=sys-audio\n"
      << "qaudio.Mic  *  @anyvm  @anyvm    deny\n";
  }
  Outcome ok = run({"policy", "check", "work", "mic", "--policy-dir", pdir});
  EXPECT_EQ(ok.rc, 0) << ok.err;
  EXPECT_NE(ok.out.find("decision: allow"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("30-qaudio.policy:1"), std::string::npos) << ok.out;
  Outcome no = run({"policy", "check", "personal", "qaudio.Mic", "--policy-dir", pdir});
  EXPECT_EQ(no.rc, 1);
  EXPECT_NE(no.out.find("decision: deny"), std::string::npos);
  Outcome js = run({"policy", "check", "work", "mic", "--policy-dir", pdir, "--json"});
  EXPECT_EQ(json::parse(js.out)["decision"], "allow");
}

}  // namespace
}  // namespace qaudio::cli
