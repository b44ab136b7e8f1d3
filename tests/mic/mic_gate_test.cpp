// MicGate rules (issue 6): no gate opens before attach, after detach, under
// deny, after a policy syntax error, after a restart unless persistent and
// allowed; ask needs confirmation; several qubes at once; request events are
// recorded, rate-limited and cleared. Time comes from a fake clock.
#include "mic_gate.hpp"

#include <gtest/gtest.h>

#include "mic_test_util.hpp"

namespace qaudio::daemon {
namespace {

using namespace std::chrono_literals;
using testing::FakeClock;
using testing::policy_from;
using testing::qube_table;
using testing::Recorder;

// Line numbers matter: reasons name file:line.
const char* kPolicy =
    "qaudio.Play  *  @dispvm:web-dvm  @anyvm     deny\n"   // 1
    "qaudio.Play  *  @anyvm           @anyvm     allow\n"  // 2
    "qaudio.Mic   *  work             sys-audio  allow\n"  // 3
    "qaudio.Mic   *  music            sys-audio  allow\n"  // 4
    "qaudio.Mic   *  personal         sys-audio  ask\n"    // 5
    "qaudio.Mic   *  @anyvm           @anyvm     deny\n";  // 6

const char* kAllDenied =
    "qaudio.Play  *  @anyvm  @anyvm  allow\n"
    "qaudio.Mic   *  @anyvm  @anyvm  deny\n";

const char* kSyntaxError =
    "qaudio.Play  *  @anyvm  @anyvm  allow\n"
    "qaudio.Mic   *  work    sys-audio  alow\n";

const std::vector<std::string> kQubes = {"work", "music", "personal", "untrusted", "disp7"};

class MicGateTest : public ::testing::Test {
 protected:
  MicGate make(const std::string& policy_text, MicGateConfig cfg = {}) {
    cfg.audio_qube = "sys-audio";
    MicGate g(cfg, qube_table(), policy_from(policy_text));
    for (const auto& q : kQubes) {
      g.add_qube(q);
    }
    return g;
  }
  static void expect_all_closed(const MicGate& g) {
    for (const auto& q : kQubes) {
      EXPECT_FALSE(g.gate_open(q)) << q;
    }
  }
  FakeClock clock;
};

TEST_F(MicGateTest, no_gate_is_open_before_attach) {
  MicGate g = make(kPolicy);
  expect_all_closed(g);
  EXPECT_EQ(g.mic_policy("work"), MicPolicy::Allow);
  EXPECT_FALSE(g.attached("work"));
}

TEST_F(MicGateTest, attach_under_allow_opens_the_gate_and_reports_it) {
  MicGate g = make(kPolicy);
  Recorder rec;
  g.add_listener(&rec);
  AttachResult r = g.attach("work", false, false);
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_TRUE(g.gate_open("work"));
  EXPECT_EQ(rec.log, (std::vector<std::string>{"attached work", "gate work open"}));
}

TEST_F(MicGateTest, detach_closes_the_gate_before_reporting_the_detach) {
  MicGate g = make(kPolicy);
  ASSERT_TRUE(g.attach("work", false, false).ok());
  Recorder rec;
  g.add_listener(&rec);
  EXPECT_TRUE(g.detach("work"));
  EXPECT_FALSE(g.gate_open("work"));
  EXPECT_FALSE(g.attached("work"));
  EXPECT_EQ(rec.log, (std::vector<std::string>{"gate work closed", "detached work user"}));
  // Detaching again is harmless and silent.
  EXPECT_TRUE(g.detach("work"));
  EXPECT_EQ(rec.log.size(), 2u);
}

TEST_F(MicGateTest, attach_is_refused_with_the_policy_reason_under_deny) {
  MicGate g = make(kPolicy);
  Recorder rec;
  g.add_listener(&rec);
  AttachResult r = g.attach("untrusted", true, true);
  EXPECT_EQ(r.status, AttachStatus::Denied);
  EXPECT_NE(r.reason.find("untrusted"), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find("30-qaudio.policy:6"), std::string::npos) << r.reason;
  EXPECT_FALSE(g.gate_open("untrusted"));
  EXPECT_FALSE(g.attached("untrusted"));
  EXPECT_TRUE(rec.log.empty());
}

TEST_F(MicGateTest, ask_needs_confirmation_before_the_gate_opens) {
  MicGate g = make(kPolicy);
  AttachResult r = g.attach("personal", false, false);
  EXPECT_EQ(r.status, AttachStatus::NeedsConfirmation);
  EXPECT_NE(r.reason.find("30-qaudio.policy:5"), std::string::npos) << r.reason;
  EXPECT_FALSE(g.gate_open("personal"));
  EXPECT_FALSE(g.attached("personal"));

  EXPECT_TRUE(g.attach("personal", false, true).ok());
  EXPECT_TRUE(g.gate_open("personal"));
  EXPECT_TRUE(g.state("personal")->confirmed);
}

TEST_F(MicGateTest, several_qubes_hold_the_mic_at_once) {
  MicGate g = make(kPolicy);
  ASSERT_TRUE(g.attach("work", false, false).ok());
  ASSERT_TRUE(g.attach("music", false, false).ok());
  ASSERT_TRUE(g.attach("personal", false, true).ok());
  EXPECT_TRUE(g.gate_open("work"));
  EXPECT_TRUE(g.gate_open("music"));
  EXPECT_TRUE(g.gate_open("personal"));
  EXPECT_TRUE(g.detach("music"));
  EXPECT_TRUE(g.gate_open("work"));
  EXPECT_FALSE(g.gate_open("music"));
  EXPECT_TRUE(g.gate_open("personal"));
}

TEST_F(MicGateTest, a_qube_stays_closed_while_another_holds_the_mic) {
  MicGate g = make(kPolicy);
  ASSERT_TRUE(g.attach("work", false, false).ok());
  EXPECT_EQ(g.on_mic_requested("music", clock.now()), RequestOutcome::Emitted);
  EXPECT_TRUE(g.gate_open("work"));
  EXPECT_FALSE(g.gate_open("music"));
  EXPECT_FALSE(g.gate_open("personal"));
  EXPECT_FALSE(g.gate_open("untrusted"));
}

TEST_F(MicGateTest, policy_change_to_deny_closes_and_detaches_at_once) {
  MicGate g = make(kPolicy);
  ASSERT_TRUE(g.attach("work", true, false).ok());
  ASSERT_TRUE(g.attach("personal", false, true).ok());
  Recorder rec;
  g.add_listener(&rec);
  g.on_policy_changed(policy_from(kAllDenied));
  expect_all_closed(g);
  EXPECT_FALSE(g.attached("work"));
  EXPECT_FALSE(g.attached("personal"));
  // Gates close first, then the detaches are reported.
  ASSERT_GE(rec.log.size(), 4u);
  EXPECT_EQ(rec.log[0], "gate personal closed");
  EXPECT_EQ(rec.log[1], "gate work closed");
  EXPECT_EQ(rec.count("detached work policy"), 1u);
  EXPECT_EQ(rec.count("detached personal policy"), 1u);
  // The persistent preference survives a policy detach (used at restart).
  EXPECT_TRUE(g.state("work")->persistent);
}

TEST_F(MicGateTest, policy_back_to_allow_does_not_reopen_a_detached_mic) {
  MicGate g = make(kPolicy);
  ASSERT_TRUE(g.attach("work", false, false).ok());
  g.on_policy_changed(policy_from(kAllDenied));
  g.on_policy_changed(policy_from(kPolicy));
  EXPECT_FALSE(g.gate_open("work"));
  EXPECT_TRUE(g.attach("work", false, false).ok());
  EXPECT_TRUE(g.gate_open("work"));
}

TEST_F(MicGateTest, syntax_error_closes_every_gate_and_denies_play) {
  MicGate g = make(kPolicy);
  ASSERT_TRUE(g.attach("work", false, false).ok());
  ASSERT_TRUE(g.attach("music", false, false).ok());
  auto bad = policy_from(kSyntaxError);
  ASSERT_FALSE(bad->valid());
  Recorder rec;
  g.add_listener(&rec);
  g.on_policy_changed(bad);
  expect_all_closed(g);
  for (const auto& q : kQubes) {
    EXPECT_FALSE(g.playback_allowed(q)) << q;
  }
  AttachResult r = g.attach("work", false, true);
  EXPECT_EQ(r.status, AttachStatus::Denied);
  EXPECT_NE(r.reason.find("policy invalid"), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find("30-qaudio.policy:2"), std::string::npos) << r.reason;
  EXPECT_EQ(rec.count("gate "), 2u);
  EXPECT_EQ(rec.count("playback "), 4u);  // disp7 was already discarded
}

TEST_F(MicGateTest, change_to_ask_detaches_an_unconfirmed_attachment_only) {
  MicGate g = make(kPolicy);
  ASSERT_TRUE(g.attach("work", false, false).ok());     // allow: not confirmed
  ASSERT_TRUE(g.attach("personal", false, true).ok());  // ask: confirmed
  g.on_policy_changed(policy_from("qaudio.Mic  *  @anyvm  sys-audio  ask\n"));
  EXPECT_FALSE(g.gate_open("work"));
  EXPECT_FALSE(g.attached("work"));
  EXPECT_TRUE(g.gate_open("personal"));
}

TEST_F(MicGateTest, no_snapshot_fails_closed_unless_policy_is_not_enforced) {
  MicGate closed({.audio_qube = "sys-audio"}, qube_table(), nullptr);
  closed.add_qube("work");
  EXPECT_EQ(closed.attach("work", false, true).status, AttachStatus::Denied);
  EXPECT_FALSE(closed.gate_open("work"));
  EXPECT_FALSE(closed.playback_allowed("work"));

  MicGate open({.audio_qube = "", .enforce_policy = false}, nullptr, nullptr);
  open.add_qube("work");
  EXPECT_FALSE(open.gate_open("work"));
  EXPECT_TRUE(open.playback_allowed("work"));
  EXPECT_TRUE(open.attach("work", false, false).ok());
  EXPECT_TRUE(open.gate_open("work"));
}

TEST_F(MicGateTest, a_redirect_to_another_audio_qube_is_a_deny) {
  MicGate g = make(
      "qaudio.Mic  *  work  @anyvm  allow target=other-audio\n"
      "qaudio.Play *  work  @anyvm  allow target=other-audio\n");
  AttachResult r = g.attach("work", false, true);
  EXPECT_EQ(r.status, AttachStatus::Denied);
  EXPECT_NE(r.reason.find("other-audio"), std::string::npos) << r.reason;
  EXPECT_FALSE(g.playback_allowed("work"));
}

TEST_F(MicGateTest, unknown_qubes_are_refused) {
  MicGate g = make(kPolicy);
  EXPECT_EQ(g.attach("nope", false, false).status, AttachStatus::UnknownQube);
  EXPECT_FALSE(g.detach("nope"));
  EXPECT_FALSE(g.gate_open("nope"));
  EXPECT_FALSE(g.playback_allowed("nope"));
  EXPECT_EQ(g.on_mic_requested("nope", clock.now()), RequestOutcome::UnknownQube);
  EXPECT_FALSE(g.state("nope").has_value());
}

// ---- restart ----

// What the daemon stores across a restart: the persistent flags.
std::vector<std::string> persistent_of(const MicGate& g) {
  std::vector<std::string> out;
  for (const auto& s : g.list()) {
    if (s.persistent) {
      out.push_back(s.name);
    }
  }
  return out;
}

TEST_F(MicGateTest, restart_restores_only_persistent_and_allowed_attachments) {
  MicGate before = make(kPolicy);
  ASSERT_TRUE(before.attach("work", true, false).ok());     // persistent, allow
  ASSERT_TRUE(before.attach("music", false, false).ok());   // not persistent
  ASSERT_TRUE(before.attach("personal", true, true).ok());  // persistent, ask
  auto stored = persistent_of(before);
  ASSERT_EQ(stored, (std::vector<std::string>{"personal", "work"}));

  MicGate after = make(kPolicy);
  expect_all_closed(after);  // a restart starts detached
  EXPECT_TRUE(after.restore_persistent("work").ok());
  AttachResult r = after.restore_persistent("personal");
  EXPECT_EQ(r.status, AttachStatus::Denied);
  EXPECT_NE(r.reason.find("ask"), std::string::npos) << r.reason;
  EXPECT_TRUE(after.gate_open("work"));
  EXPECT_FALSE(after.gate_open("music"));
  EXPECT_FALSE(after.gate_open("personal"));
  EXPECT_TRUE(after.state("work")->persistent);
}

TEST_F(MicGateTest, restart_under_deny_keeps_the_preference_but_not_the_mic) {
  MicGate after = make(kAllDenied);
  AttachResult r = after.restore_persistent("work");
  EXPECT_EQ(r.status, AttachStatus::Denied);
  EXPECT_FALSE(after.gate_open("work"));
  EXPECT_TRUE(after.state("work")->persistent);
  // A later restart under allow restores it.
  MicGate again = make(kPolicy);
  for (const auto& q : persistent_of(after)) {
    (void)again.restore_persistent(q);
  }
  EXPECT_TRUE(again.gate_open("work"));
}

TEST_F(MicGateTest, restart_after_a_syntax_error_restores_nothing) {
  MicGate after = make(kSyntaxError);
  EXPECT_EQ(after.restore_persistent("work").status, AttachStatus::Denied);
  expect_all_closed(after);
}

TEST_F(MicGateTest, user_detach_forgets_the_persistent_preference) {
  MicGate g = make(kPolicy);
  ASSERT_TRUE(g.attach("work", true, false).ok());
  EXPECT_TRUE(g.detach("work"));
  EXPECT_FALSE(g.state("work")->persistent);
}

// ---- playback ----

TEST_F(MicGateTest, play_deny_discards_playback_of_that_qube_only) {
  MicGate g = make(kPolicy);
  EXPECT_TRUE(g.playback_allowed("work"));
  EXPECT_TRUE(g.playback_allowed("untrusted"));
  EXPECT_FALSE(g.playback_allowed("disp7"));
  EXPECT_NE(g.state("disp7")->play_reason.find("30-qaudio.policy:1"), std::string::npos);
  Recorder rec;
  g.add_listener(&rec);
  g.on_policy_changed(
      policy_from("qaudio.Play * work @anyvm deny\n"
                  "qaudio.Play * @anyvm @anyvm allow\n"));
  EXPECT_FALSE(g.playback_allowed("work"));
  EXPECT_TRUE(g.playback_allowed("disp7"));
  EXPECT_EQ(rec.count("playback work discarded"), 1u);
  EXPECT_EQ(rec.count("playback disp7 allowed"), 1u);
  EXPECT_EQ(rec.count("playback "), 2u);
}

TEST_F(MicGateTest, play_ask_counts_as_deny) {
  MicGate g = make("qaudio.Play * @anyvm @anyvm ask\n");
  EXPECT_FALSE(g.playback_allowed("work"));
}

TEST_F(MicGateTest, qube_info_change_reevaluates_tag_rules) {
  MicGate g = make("qaudio.Mic * @tag:mic-ok sys-audio allow\n");
  ASSERT_TRUE(g.attach("work", false, false).ok());
  auto q = std::make_shared<policy::StaticQubeInfo>();
  q->add("work", {"AppVM", {}, "", false});  // tag removed
  g.on_qube_info_changed(q);
  EXPECT_FALSE(g.gate_open("work"));
  EXPECT_EQ(g.attach("work", false, true).status, AttachStatus::Denied);
}

// ---- requests ----

TEST_F(MicGateTest, a_burst_of_requests_emits_one_event) {
  MicGate g = make(kPolicy);
  Recorder rec;
  g.add_listener(&rec);
  EXPECT_EQ(g.on_mic_requested("music", clock.now()), RequestOutcome::Emitted);
  for (int i = 0; i < 50; ++i) {
    clock.advance(100ms);
    EXPECT_EQ(g.on_mic_requested("music", clock.now()), RequestOutcome::RateLimited);
  }
  EXPECT_EQ(rec.count("requested music"), 1u);
  auto pending = g.pending_requests(clock.now());
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].qube, "music");
  EXPECT_EQ(pending[0].count, 51u);
  EXPECT_EQ(pending[0].policy, MicPolicy::Allow);
  EXPECT_FALSE(g.gate_open("music"));  // a request never opens anything
}

TEST_F(MicGateTest, another_event_after_the_window) {
  MicGate g = make(kPolicy);
  Recorder rec;
  g.add_listener(&rec);
  EXPECT_EQ(g.on_mic_requested("work", clock.now()), RequestOutcome::Emitted);
  clock.advance(9999ms);
  EXPECT_EQ(g.on_mic_requested("work", clock.now()), RequestOutcome::RateLimited);
  clock.advance(1ms);
  EXPECT_EQ(g.on_mic_requested("work", clock.now()), RequestOutcome::Emitted);
  EXPECT_EQ(rec.count("requested work"), 2u);
}

TEST_F(MicGateTest, one_qube_cannot_starve_another_but_the_global_cap_holds) {
  MicGateConfig cfg;
  cfg.global_burst = 3;
  cfg.global_window = 10s;
  cfg.request_interval = 10s;
  cfg.audio_qube = "sys-audio";
  MicGate g(cfg, qube_table(), policy_from("qaudio.Mic * @anyvm sys-audio ask\n"));
  Recorder rec;
  g.add_listener(&rec);
  std::vector<std::string> qs;
  for (int i = 0; i < 8; ++i) {
    qs.push_back("q" + std::to_string(i));
    g.add_qube(qs.back());
  }
  int emitted = 0;
  for (const auto& q : qs) {
    emitted += g.on_mic_requested(q, clock.now()) == RequestOutcome::Emitted;
  }
  EXPECT_EQ(emitted, 3);
  EXPECT_EQ(g.pending_requests(clock.now()).size(), 8u);  // all recorded
  clock.advance(10s);
  emitted = 0;
  for (const auto& q : qs) {
    emitted += g.on_mic_requested(q, clock.now()) == RequestOutcome::Emitted;
  }
  EXPECT_EQ(emitted, 3);
  EXPECT_EQ(rec.count("requested "), 6u);
}

TEST_F(MicGateTest, attach_clears_the_pending_request) {
  MicGate g = make(kPolicy);
  ASSERT_EQ(g.on_mic_requested("personal", clock.now()), RequestOutcome::Emitted);
  auto p = g.pending_requests(clock.now());
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].policy, MicPolicy::Ask);
  EXPECT_TRUE(g.state("personal")->requested);
  // Needs confirmation: the request stays so the UI can still offer it.
  EXPECT_EQ(g.attach("personal", false, false).status, AttachStatus::NeedsConfirmation);
  EXPECT_EQ(g.pending_requests(clock.now()).size(), 1u);
  EXPECT_TRUE(g.attach("personal", false, true).ok());
  EXPECT_TRUE(g.pending_requests(clock.now()).empty());
  EXPECT_EQ(g.on_mic_requested("personal", clock.now()), RequestOutcome::AlreadyAttached);
  EXPECT_TRUE(g.pending_requests(clock.now()).empty());
}

TEST_F(MicGateTest, requests_expire_and_are_withdrawn_when_the_qube_stops) {
  MicGateConfig cfg;
  cfg.request_ttl = 60s;
  MicGate g = make(kPolicy, cfg);
  ASSERT_EQ(g.on_mic_requested("work", clock.now()), RequestOutcome::Emitted);
  ASSERT_EQ(g.on_mic_requested("music", clock.now()), RequestOutcome::Emitted);
  g.on_mic_stopped("music");
  EXPECT_EQ(g.pending_requests(clock.now()).size(), 1u);
  clock.advance(59s);
  EXPECT_EQ(g.pending_requests(clock.now()).size(), 1u);
  clock.advance(1s);
  EXPECT_TRUE(g.pending_requests(clock.now()).empty());
  g.expire(clock.now());
  EXPECT_FALSE(g.state("work")->requested);
  // A new request after expiry starts a fresh record.
  EXPECT_EQ(g.on_mic_requested("work", clock.now()), RequestOutcome::Emitted);
  EXPECT_EQ(g.pending_requests(clock.now())[0].count, 1u);
}

TEST_F(MicGateTest, requests_under_deny_are_not_offered) {
  MicGate g = make(kPolicy);
  Recorder rec;
  g.add_listener(&rec);
  EXPECT_EQ(g.on_mic_requested("untrusted", clock.now()), RequestOutcome::Denied);
  EXPECT_TRUE(g.pending_requests(clock.now()).empty());
  EXPECT_TRUE(rec.log.empty());
  // A pending request is dropped when the policy turns to deny.
  ASSERT_EQ(g.on_mic_requested("work", clock.now()), RequestOutcome::Emitted);
  g.on_policy_changed(policy_from(kAllDenied));
  EXPECT_TRUE(g.pending_requests(clock.now()).empty());
}

// ---- listeners ----

struct Reentrant : MicGateListener {
  MicGate* gate = nullptr;
  bool seen_open = false;
  void gate_changed(const std::string& q, bool open) override {
    seen_open = gate->gate_open(q) == open;
    if (open) {
      gate->detach(q);  // a listener may call back in
    }
  }
};

TEST_F(MicGateTest, listeners_see_the_new_state_and_may_call_back) {
  MicGate g = make(kPolicy);
  Reentrant l;
  l.gate = &g;
  g.add_listener(&l);
  ASSERT_TRUE(g.attach("work", false, false).ok());
  EXPECT_TRUE(l.seen_open);
  EXPECT_FALSE(g.gate_open("work"));
  g.remove_listener(&l);
  ASSERT_TRUE(g.attach("work", false, false).ok());
  EXPECT_TRUE(g.gate_open("work"));
}

}  // namespace
}  // namespace qaudio::daemon
