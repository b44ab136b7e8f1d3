// Loader tests on a real directory: lexical order across files, which file
// names count, and the fail-closed cases (syntax error in a later file,
// missing or unreadable directory, missing include, include cycle).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy_test_util.hpp"

namespace qaudio::policy {
namespace {

using testing::MapFs;
using testing::table_qubes;
using testing::TempDir;

Decision mic(const PolicySnapshot& s, const char* source, const char* target = "sys-audio") {
  return evaluate(s, Request{"qaudio.Mic", "+", source, target}, table_qubes());
}

TEST(PolicyLoader, FirstMatchWinsAcrossFilesInLexicalOrder) {
  TempDir d;
  d.write("50-late.policy", "qaudio.Mic * work @anyvm deny\n");
  d.write("30-early.policy", "qaudio.Mic * work @anyvm allow\n");
  d.write("100-first.policy", "qaudio.Mic * personal @anyvm ask\n");
  auto s = load_policy_dir(d.path());
  ASSERT_TRUE(s->valid()) << s->errors[0].to_string();
  ASSERT_EQ(s->files.size(), 3u);
  EXPECT_EQ(s->files[0], d.file("100-first.policy"));  // lexical, not numeric
  Decision w = mic(*s, "work");
  EXPECT_EQ(w.action, Action::Allow);
  EXPECT_EQ(w.rule_location(), d.file("30-early.policy") + ":1");
  EXPECT_EQ(mic(*s, "personal").action, Action::Ask);
}

TEST(PolicyLoader, OnlyDotPolicyFilesNotHiddenCount) {
  TempDir d;
  d.write("30-audio.policy", "qaudio.Mic * work @anyvm allow\n");
  d.write(".30-audio.policy.swp", "garbage\n");
  d.write("30-audio.policy~", "garbage\n");
  d.write("README", "garbage\n");
  ::mkdir(d.file("sub.policy").c_str(), 0755);  // a directory is not a file
  auto s = load_policy_dir(d.path());
  EXPECT_TRUE(s->valid()) << s->errors[0].to_string();
  EXPECT_EQ(s->rules.size(), 1u);
}

TEST(PolicyLoader, EmptyDirectoryIsValidAndDeniesEverything) {
  TempDir d;
  auto s = load_policy_dir(d.path());
  EXPECT_TRUE(s->valid());
  EXPECT_EQ(mic(*s, "work").reason, "no rule matched: default deny");
}

TEST(PolicyLoader, SyntaxErrorInALaterFileDeniesEverything) {
  TempDir d;
  d.write("10-audio.policy", "qaudio.Mic * work @anyvm allow\nqaudio.Play * @anyvm @anyvm allow\n");
  d.write("90-other.policy", "qubes.Filecopy * @anyvm @anyvm ask\nqubes.Gpg * work\n");
  auto s = load_policy_dir(d.path());
  ASSERT_FALSE(s->valid());
  ASSERT_EQ(s->errors.size(), 1u);
  EXPECT_EQ(s->errors[0].file, d.file("90-other.policy"));
  EXPECT_EQ(s->errors[0].line, 2);
  Decision w = mic(*s, "work");
  EXPECT_EQ(w.action, Action::Deny);
  EXPECT_EQ(w.reason.rfind("policy invalid: " + d.file("90-other.policy") + ":2: ", 0), 0u)
      << w.reason;
  EXPECT_EQ(evaluate(*s, Request{"qaudio.Play", "+", "work", "sys-audio"}, table_qubes()).action,
            Action::Deny);
}

TEST(PolicyLoader, MissingDirectoryDenies) {
  TempDir d;
  auto s = load_policy_dir(d.file("nope"));
  ASSERT_FALSE(s->valid());
  EXPECT_EQ(s->errors[0].file, d.file("nope"));
  EXPECT_NE(s->errors[0].message.find("cannot read policy directory"), std::string::npos);
  EXPECT_EQ(mic(*s, "work").action, Action::Deny);
}

TEST(PolicyLoader, FileInsteadOfDirectoryDenies) {
  TempDir d;
  std::string f = d.write("not-a-dir", "qaudio.Mic * work @anyvm allow\n");
  auto s = load_policy_dir(f);
  EXPECT_FALSE(s->valid());
  EXPECT_EQ(mic(*s, "work").action, Action::Deny);
}

TEST(PolicyLoader, UnreadableDirectoryDenies) {
  // Tests run as root, which reads any mode: the EACCES comes from a fake fs.
  MapFs fs;
  fs.files["/etc/qubes/policy.d/30-audio.policy"] = "qaudio.Mic * work @anyvm allow\n";
  fs.dir_errors["/etc/qubes/policy.d"] = EACCES;
  auto s = load_policy_dir("/etc/qubes/policy.d", fs);
  ASSERT_FALSE(s->valid());
  EXPECT_EQ(s->errors[0].to_string(),
            "/etc/qubes/policy.d: cannot read policy directory: opendir /etc/qubes/policy.d: "
            "Permission denied");
  EXPECT_EQ(mic(*s, "work").action, Action::Deny);
}

TEST(PolicyLoader, UnreadableFileDenies) {
  if (::geteuid() == 0) {
    // root reads mode 000 files: use a FIFO, which the loader refuses instead.
    TempDir d;
    d.write("10-ok.policy", "qaudio.Mic * work @anyvm allow\n");
    ASSERT_EQ(::mkfifo(d.file("20-fifo.policy").c_str(), 0644), 0);
    auto s = load_policy_dir(d.path());
    EXPECT_TRUE(s->valid());  // a FIFO is not a regular file: not listed at all
    d.write("include/x", "");
    ::unlink(d.file("include/x").c_str());
    ASSERT_EQ(::mkfifo(d.file("include/x").c_str(), 0644), 0);
    d.write("30-inc.policy", "!include include/x\n");
    auto s2 = load_policy_dir(d.path());
    ASSERT_FALSE(s2->valid());
    EXPECT_NE(s2->errors[0].message.find("not a regular file"), std::string::npos);
    return;
  }
  TempDir d;
  std::string f = d.write("10-audio.policy", "qaudio.Mic * work @anyvm allow\n");
  ::chmod(f.c_str(), 0);
  auto s = load_policy_dir(d.path());
  EXPECT_FALSE(s->valid());
}

TEST(PolicyLoader, BadFileNameInDirectoryDenies) {
  TempDir d;
  d.write("30-Audio.policy", "qaudio.Mic * work @anyvm allow\n");
  auto s = load_policy_dir(d.path());
  ASSERT_FALSE(s->valid());
  EXPECT_EQ(s->errors[0].file, d.file("30-Audio.policy"));
}

TEST(PolicyLoader, IncludesResolveAgainstThePolicyDirectory) {
  TempDir d;
  d.write("30-audio.policy",
          "!include include/audio\n!include-dir audio.d\n"
          "!include-service qaudio.Play + include/play-40\n");
  d.write("include/audio", "qaudio.Mic * work @anyvm allow\n");
  d.write("audio.d/10-x.policy", "qaudio.Mic * personal @anyvm ask\n");
  d.write("include/play-40", "$anyvm $anyvm allow\n");
  auto s = load_policy_dir(d.path());
  ASSERT_TRUE(s->valid()) << s->errors[0].to_string();
  ASSERT_EQ(s->rules.size(), 3u);
  EXPECT_EQ(s->rules[0].location(), d.file("include/audio") + ":1");
  EXPECT_EQ(s->rules[1].location(), d.file("audio.d") + "/10-x.policy:1");
  EXPECT_EQ(s->rules[2].service, std::optional<std::string>("qaudio.Play"));
  // The watcher needs every directory that was read.
  EXPECT_NE(std::find(s->dirs.begin(), s->dirs.end(), d.file("audio.d")), s->dirs.end());
  EXPECT_NE(std::find(s->dirs.begin(), s->dirs.end(), d.file("include")), s->dirs.end());
}

TEST(PolicyLoader, IncludeOfMissingFileDenies) {
  TempDir d;
  d.write("30-audio.policy", "qaudio.Play * @anyvm @anyvm allow\n!include include/gone\n");
  auto s = load_policy_dir(d.path());
  ASSERT_EQ(s->errors.size(), 1u);
  EXPECT_EQ(s->errors[0].file, d.file("30-audio.policy"));
  EXPECT_EQ(s->errors[0].line, 2);
  EXPECT_EQ(evaluate(*s, Request{"qaudio.Play", "+", "work", "sys-audio"}, table_qubes()).action,
            Action::Deny);
}

TEST(PolicyLoader, IncludeCycleThroughIncludeDirDenies) {
  TempDir d;
  d.write("30-audio.policy", "qaudio.Play * @anyvm @anyvm allow\n!include-dir .\n");
  auto s = load_policy_dir(d.path());
  ASSERT_FALSE(s->valid());
  EXPECT_NE(s->errors[0].message.find("include cycle"), std::string::npos)
      << s->errors[0].to_string();
}

TEST(PolicyLoader, IncludeCycleThroughSymlinkDenies) {
  TempDir d;
  d.write("include/a", "!include include/b\n");
  ASSERT_EQ(::symlink(d.file("include/a").c_str(), d.file("include/b").c_str()), 0);
  d.write("30-audio.policy", "!include include/a\n");
  auto s = load_policy_dir(d.path());
  ASSERT_FALSE(s->valid());
  EXPECT_NE(s->errors[0].message.find("include cycle"), std::string::npos);
}

TEST(PolicyLoader, OversizedFileDenies) {
  TempDir d;
  d.write("30-audio.policy", std::string(2 << 20, '#'));
  auto s = load_policy_dir(d.path());
  ASSERT_FALSE(s->valid());
  EXPECT_NE(s->errors[0].message.find("larger than"), std::string::npos);
}

}  // namespace
}  // namespace qaudio::policy
