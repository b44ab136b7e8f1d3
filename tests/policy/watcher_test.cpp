// Watcher tests: a change in the policy directory (or a directory it
// includes) makes the fd readable, and reloading gives the new decision.
// Waits poll the fd with a deadline; no sleeps.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>

#include <cstdio>

#include "policy_test_util.hpp"
#include "qaudio/policy/watcher.hpp"

namespace qaudio::policy {
namespace {

using testing::table_qubes;
using testing::TempDir;

// True when fd becomes readable within the deadline.
bool readable_within(int fd, int timeout_ms = 5000) {
  struct pollfd p {
    fd, POLLIN, 0
  };
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

// Waits until the watcher reports a change (the fd can wake for an event
// that check() then drains).
bool changed_within(PolicyWatcher& w, int timeout_ms = 5000) {
  while (readable_within(w.fd(), timeout_ms)) {
    if (w.check()) {
      return true;
    }
  }
  return false;
}

Action mic_for(const PolicySnapshot& s, const char* source) {
  return evaluate(s, Request{"qaudio.Mic", "+", source, "sys-audio"}, table_qubes()).action;
}

TEST(PolicyWatcher, ModifyingAFileTriggersAReloadWithTheNewDecision) {
  TempDir d;
  d.write("30-audio.policy", "qaudio.Mic * work @anyvm allow\n");
  PolicyHolder holder(load_policy_dir(d.path()));
  PolicyWatcher w(d.path());
  ASSERT_TRUE(w.start());
  ASSERT_GE(w.fd(), 0);
  EXPECT_FALSE(w.check()) << "nothing changed yet";
  auto before = holder.get();
  EXPECT_EQ(mic_for(*before, "work"), Action::Allow);

  d.write("30-audio.policy", "qaudio.Mic * work @anyvm deny\n");
  ASSERT_TRUE(changed_within(w));
  auto fresh = load_policy_dir(d.path());
  w.watch(*fresh);
  holder.set(fresh);

  EXPECT_EQ(mic_for(*holder.get(), "work"), Action::Deny);
  EXPECT_EQ(mic_for(*before, "work"), Action::Allow) << "an old snapshot stays intact";
}

TEST(PolicyWatcher, NewFileAndSyntaxErrorAreSeen) {
  TempDir d;
  d.write("30-audio.policy", "qaudio.Mic * work @anyvm allow\n");
  PolicyWatcher w(d.path());
  ASSERT_TRUE(w.start());
  d.write("10-broken.policy", "qaudio.Mic * work\n");
  ASSERT_TRUE(changed_within(w));
  auto s = load_policy_dir(d.path());
  EXPECT_FALSE(s->valid());
  EXPECT_EQ(mic_for(*s, "work"), Action::Deny);
}

TEST(PolicyWatcher, ChangeInAnIncludedDirectoryIsSeenAfterWatch) {
  TempDir d;
  d.write("30-audio.policy", "!include-dir audio.d\n");
  d.write("audio.d/10-a.policy", "qaudio.Mic * work @anyvm allow\n");
  PolicyWatcher w(d.path());
  ASSERT_TRUE(w.start());
  auto s = load_policy_dir(d.path());
  w.watch(*s);
  EXPECT_EQ(mic_for(*s, "work"), Action::Allow);
  d.write("audio.d/10-a.policy", "qaudio.Mic * work @anyvm ask\n");
  ASSERT_TRUE(changed_within(w));
  EXPECT_EQ(mic_for(*load_policy_dir(d.path()), "work"), Action::Ask);
}

TEST(PolicyWatcher, DirectoryCreatedLaterIsSeen) {
  TempDir d;
  std::string dir = d.file("policy.d");
  PolicyWatcher w(dir);
  ASSERT_TRUE(w.start());
  auto missing = load_policy_dir(dir);
  EXPECT_FALSE(missing->valid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ASSERT_TRUE(changed_within(w));
  auto empty = load_policy_dir(dir);
  w.watch(*empty);
  EXPECT_TRUE(empty->valid());
  d.write("policy.d/30-audio.policy", "qaudio.Mic * work @anyvm allow\n");
  ASSERT_TRUE(changed_within(w));
  EXPECT_EQ(mic_for(*load_policy_dir(dir), "work"), Action::Allow);
}

TEST(PolicyWatcher, RemovingAFileIsSeen) {
  TempDir d;
  std::string f = d.write("30-audio.policy", "qaudio.Mic * work @anyvm allow\n");
  PolicyWatcher w(d.path());
  ASSERT_TRUE(w.start());
  ASSERT_EQ(std::remove(f.c_str()), 0);
  ASSERT_TRUE(changed_within(w));
  EXPECT_EQ(mic_for(*load_policy_dir(d.path()), "work"), Action::Deny);
}

}  // namespace
}  // namespace qaudio::policy
