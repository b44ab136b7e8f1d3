// CLI tests: run the built qubes-audio-policy on temporary directories and
// check exit codes and output.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>

#include "policy_test_util.hpp"

namespace qaudio::policy {
namespace {

using testing::TempDir;

struct CliRun {
  int rc = -1;
  std::string out;  // stdout only
};

CliRun run(const std::string& args) {
  std::string cmd = std::string(QAUDIO_POLICY_CLI) + " " + args + " 2>/dev/null";
  CliRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    return r;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    r.out.append(buf, n);
  }
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(PolicyCli, LintValidDirectoryExitsZero) {
  TempDir d;
  d.write("30-audio.policy", "qaudio.Mic * work @default ask\nqaudio.Mic * @anyvm @anyvm deny\n");
  CliRun r = run("lint " + d.path());
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.out, d.path() + ": OK (2 rules in 1 files)\n");
}

TEST(PolicyCli, LintPrintsEveryErrorWithFileAndLineAndExitsOne) {
  TempDir d;
  d.write("10-a.policy", "qaudio.Mic * work sys-audio maybe\n");
  d.write("20-b.policy", "# fine\nqaudio.Mic * @tag: sys-audio deny\n");
  CliRun r = run("lint " + d.path());
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out, d.file("10-a.policy") + ":1: invalid action 'maybe' (allow, deny or ask)\n" +
                       d.file("20-b.policy") + ":2: empty @tag: token\n");
}

TEST(PolicyCli, LintMissingDirectoryExitsOne) {
  TempDir d;
  CliRun r = run("lint " + d.file("nope"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find(d.file("nope") + ": cannot read policy directory"), std::string::npos);
}

TEST(PolicyCli, CheckPrintsDecisionAndRule) {
  TempDir d;
  d.write("30-audio.policy",
          "qaudio.Mic * work @default ask default_target=sys-audio\n"
          "qaudio.Mic * @tag:trusted sys-audio allow\n"
          "qaudio.Mic * @anyvm @anyvm deny\n");
  std::string qubes = d.write("qubes", "personal type=AppVM tags=trusted\n");

  CliRun ask = run("check " + d.path() + " qaudio.Mic work");
  EXPECT_EQ(ask.rc, 0);
  EXPECT_EQ(ask.out, "decision: ask\nrule: " + d.file("30-audio.policy") +
                         ":1: qaudio.Mic * work @default ask default_target=sys-audio\n"
                         "default_target: sys-audio\n"
                         "reason: ask the user, by policy " +
                         d.file("30-audio.policy") + ":1\n");

  CliRun allow =
      run("check " + d.path() + " qaudio.Mic personal --target sys-audio --qubes " + qubes);
  EXPECT_EQ(allow.rc, 0);
  EXPECT_EQ(allow.out.rfind("decision: allow\nrule: " + d.file("30-audio.policy") + ":2: ", 0), 0u)
      << allow.out;
  EXPECT_NE(allow.out.find("target: sys-audio\n"), std::string::npos);

  CliRun no_tags = run("check " + d.path() + " qaudio.Mic personal --target sys-audio");
  EXPECT_EQ(no_tags.out.rfind("decision: deny\nrule: " + d.file("30-audio.policy") + ":3: ", 0), 0u)
      << no_tags.out;

  CliRun none = run("check " + d.path() + " qaudio.Play work");
  EXPECT_EQ(none.rc, 0);
  EXPECT_EQ(none.out, "decision: deny\nreason: no rule matched: default deny\n");
}

TEST(PolicyCli, CheckOnInvalidPolicyPrintsDenyWithTheError) {
  TempDir d;
  d.write("30-audio.policy", "* * @anyvm @anyvm allow\nqaudio.Mic * work\n");
  CliRun r = run("check " + d.path() + " qaudio.Mic work");
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.out.rfind("decision: deny\nreason: policy invalid: " + d.file("30-audio.policy") +
                            ":2: wrong number of fields",
                        0),
            0u)
      << r.out;
}

TEST(PolicyCli, CheckWithBrokenQubeFileDenies) {
  TempDir d;
  d.write("30-audio.policy", "* * @anyvm @anyvm allow\n");
  std::string qubes = d.write("qubes", "work type=Nope\n");
  CliRun r = run("check " + d.path() + " qaudio.Mic work --target sys-audio --qubes " + qubes);
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("decision: deny\nreason: qube information invalid: " + qubes + ":1:"),
            std::string::npos)
      << r.out;
}

TEST(PolicyCli, CheckArgumentForms) {
  TempDir d;
  d.write("30-audio.policy", "qaudio.Mic +left work sys-audio allow\n");
  EXPECT_NE(run("check " + d.path() + " qaudio.Mic+left work --target sys-audio")
                .out.find("decision: allow"),
            std::string::npos);
  EXPECT_NE(run("check " + d.path() + " qaudio.Mic work --target sys-audio --argument +left")
                .out.find("decision: allow"),
            std::string::npos);
  EXPECT_NE(
      run("check " + d.path() + " qaudio.Mic work --target sys-audio").out.find("decision: deny"),
      std::string::npos);
}

TEST(PolicyCli, UsageErrorsExitTwo) {
  EXPECT_EQ(run("").rc, 2);
  EXPECT_EQ(run("frob").rc, 2);
  EXPECT_EQ(run("lint").rc, 2);
  EXPECT_EQ(run("lint a b").rc, 2);
  EXPECT_EQ(run("check /tmp qaudio.Mic").rc, 2);
  EXPECT_EQ(run("check /tmp qaudio.Mic work --target").rc, 2);
  EXPECT_EQ(run("check /tmp qaudio.Mic work --bogus x").rc, 2);
}

TEST(PolicyCli, HelpExitsZero) {
  CliRun r = run("--help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("qubes-audio-policy lint DIR"), std::string::npos);
  EXPECT_NE(r.out.find("qubes-audio-policy check DIR"), std::string::npos);
}

}  // namespace
}  // namespace qaudio::policy
