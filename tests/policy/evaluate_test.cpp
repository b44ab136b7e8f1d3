// Evaluator tests: a decision table checked against the documented Qubes
// semantics (first match wins; @anyvm is every qube but dom0; @tag/@type via
// the qube information; @dispvm and @dispvm:NAME for disposables; service and
// argument wildcards; @default), and the fail-closed denials.
#include <gtest/gtest.h>

#include "policy_test_util.hpp"

namespace qaudio::policy {
namespace {

using testing::parse_text;
using testing::table_qubes;

struct Row {
  const char* policy;  // lines of one file
  const char* service;
  const char* argument;
  const char* source;
  const char* target;
  Action expect;
  int expect_line;  // 0: no rule (default deny)
};

constexpr Action A = Action::Allow;
constexpr Action D = Action::Deny;
constexpr Action Q = Action::Ask;

const Row kTable[] = {
    // First match wins.
    {"qaudio.Mic * work @anyvm allow\nqaudio.Mic * work @anyvm deny\n", "qaudio.Mic", "+", "work",
     "sys-audio", A, 1},
    {"qaudio.Mic * work @anyvm deny\nqaudio.Mic * work @anyvm allow\n", "qaudio.Mic", "+", "work",
     "sys-audio", D, 1},
    {"qaudio.Mic * @anyvm @anyvm deny\nqaudio.Mic * work @anyvm allow\n", "qaudio.Mic", "+", "work",
     "sys-audio", D, 1},
    // No rule: deny.
    {"qaudio.Play * work @anyvm allow\n", "qaudio.Mic", "+", "work", "sys-audio", D, 0},
    {"", "qaudio.Mic", "+", "work", "sys-audio", D, 0},
    // Plain names, case-sensitive.
    {"qaudio.Mic * work sys-audio allow\n", "qaudio.Mic", "+", "work", "sys-audio", A, 1},
    {"qaudio.Mic * work sys-audio allow\n", "qaudio.Mic", "+", "Work", "sys-audio", D, 0},
    {"qaudio.Mic * work sys-audio allow\n", "qaudio.Mic", "+", "personal", "sys-audio", D, 0},
    {"qaudio.Mic * work sys-audio allow\n", "qaudio.Mic", "+", "work", "other", D, 0},
    // @anyvm: every qube but dom0, as source and as target.
    {"qaudio.Mic * @anyvm @anyvm ask\n", "qaudio.Mic", "+", "work", "sys-audio", Q, 1},
    {"qaudio.Mic * @anyvm @anyvm ask\n", "qaudio.Mic", "+", "disp1", "sys-audio", Q, 1},
    {"qaudio.Mic * @anyvm @anyvm ask\n", "qaudio.Mic", "+", "unknown-qube", "sys-audio", Q, 1},
    {"qaudio.Mic * @anyvm @anyvm ask\n", "qaudio.Mic", "+", "dom0", "sys-audio", D, 0},
    {"qaudio.Mic * @anyvm @anyvm ask\n", "qaudio.Mic", "+", "work", "dom0", D, 0},
    {"qaudio.Mic * @anyvm @anyvm ask\n", "qaudio.Mic", "+", "work", "@adminvm", D, 0},
    {"qaudio.Mic * @anyvm @anyvm ask\n", "qaudio.Mic", "+", "work", "@default", Q, 1},
    // dom0 only explicitly: dom0, @adminvm or '*'.
    {"qaudio.Mic * dom0 @anyvm allow\n", "qaudio.Mic", "+", "dom0", "sys-audio", A, 1},
    {"qaudio.Mic * @adminvm @anyvm allow\n", "qaudio.Mic", "+", "dom0", "sys-audio", A, 1},
    {"qaudio.Mic * * * allow\n", "qaudio.Mic", "+", "dom0", "sys-audio", A, 1},
    {"qaudio.Mic * * * allow\n", "qaudio.Mic", "+", "work", "dom0", A, 1},
    {"qaudio.Mic * @type:AdminVM @anyvm allow\n", "qaudio.Mic", "+", "dom0", "sys-audio", D, 0},
    {"qaudio.Mic * @adminvm @anyvm allow\n", "qaudio.Mic", "+", "work", "sys-audio", D, 0},
    // @tag through the provider.
    {"qaudio.Mic * @tag:trusted @anyvm allow\n", "qaudio.Mic", "+", "work", "sys-audio", A, 1},
    {"qaudio.Mic * @tag:trusted @anyvm allow\n", "qaudio.Mic", "+", "personal", "sys-audio", D, 0},
    {"qaudio.Mic * @tag:trusted @anyvm allow\n", "qaudio.Mic", "+", "unknown-qube", "sys-audio", D,
     0},
    {"qaudio.Mic * @anyvm @tag:audiovm allow\n", "qaudio.Mic", "+", "work", "sys-audio", A, 1},
    {"qaudio.Mic * @anyvm @tag:audiovm allow\n", "qaudio.Mic", "+", "work", "personal", D, 0},
    {"qaudio.Mic * @anyvm @tag:audiovm allow\n", "qaudio.Mic", "+", "work", "@default", D, 0},
    // @type through the provider.
    {"qaudio.Mic * @type:AppVM @anyvm allow\n", "qaudio.Mic", "+", "work", "sys-audio", A, 1},
    {"qaudio.Mic * @type:AppVM @anyvm allow\n", "qaudio.Mic", "+", "disp1", "sys-audio", D, 0},
    {"qaudio.Mic * @type:DispVM @anyvm allow\n", "qaudio.Mic", "+", "disp1", "sys-audio", A, 1},
    {"qaudio.Mic * @type:TemplateVM @anyvm allow\n", "qaudio.Mic", "+", "tpl", "sys-audio", A, 1},
    {"qaudio.Mic * @type:StandaloneVM @anyvm allow\n", "qaudio.Mic", "+", "sa", "sys-audio", A, 1},
    {"qaudio.Mic * @anyvm @type:AppVM allow\n", "qaudio.Mic", "+", "work", "sys-audio", A, 1},
    // @dispvm: any disposable; @dispvm:NAME: disposables of template NAME.
    {"qaudio.Mic * @dispvm @anyvm deny\n* * * * allow\n", "qaudio.Mic", "+", "disp1", "sys-audio",
     D, 1},
    {"qaudio.Mic * @dispvm @anyvm deny\n* * * * allow\n", "qaudio.Mic", "+", "disp2", "sys-audio",
     D, 1},
    {"qaudio.Mic * @dispvm @anyvm deny\n* * * * allow\n", "qaudio.Mic", "+", "work", "sys-audio", A,
     2},
    {"qaudio.Mic * @dispvm:fedora-dvm @anyvm allow\n", "qaudio.Mic", "+", "disp1", "sys-audio", A,
     1},
    {"qaudio.Mic * @dispvm:fedora-dvm @anyvm allow\n", "qaudio.Mic", "+", "disp2", "sys-audio", D,
     0},
    {"qaudio.Mic * @dispvm:fedora-dvm @anyvm allow\n", "qaudio.Mic", "+", "fedora-dvm", "sys-audio",
     D, 0},
    {"qaudio.Mic * @dispvm:@tag:x @anyvm allow\n", "qaudio.Mic", "+", "disp2", "sys-audio", A, 1},
    {"qaudio.Mic * @dispvm:@tag:x @anyvm allow\n", "qaudio.Mic", "+", "disp1", "sys-audio", D, 0},
    {"qaudio.Mic * @dispvm:@tag:x @anyvm allow\n", "qaudio.Mic", "+", "other-dvm", "sys-audio", D,
     0},
    // Service and argument wildcards.
    {"* * work @anyvm allow\n", "qaudio.Play", "+", "work", "sys-audio", A, 1},
    {"* * work @anyvm allow\n", "qaudio.Mic", "+", "work", "sys-audio", A, 1},
    {"qaudio.Play * work @anyvm allow\n", "qaudio.Mic", "+", "work", "sys-audio", D, 0},
    {"qaudio.Mic + work @anyvm allow\n", "qaudio.Mic", "+", "work", "sys-audio", A, 1},
    {"qaudio.Mic + work @anyvm allow\n", "qaudio.Mic", "", "work", "sys-audio", A, 1},
    {"qaudio.Mic + work @anyvm allow\n", "qaudio.Mic", "+left", "work", "sys-audio", D, 0},
    {"qaudio.Mic +left work @anyvm allow\n", "qaudio.Mic", "+left", "work", "sys-audio", A, 1},
    {"qaudio.Mic +left work @anyvm allow\n", "qaudio.Mic", "+", "work", "sys-audio", D, 0},
    {"qaudio.Mic * work @anyvm allow\n", "qaudio.Mic", "+left", "work", "sys-audio", A, 1},
    // @default target: only a request that named no target.
    {"qaudio.Mic * work @default ask\n", "qaudio.Mic", "+", "work", "@default", Q, 1},
    {"qaudio.Mic * work @default ask\n", "qaudio.Mic", "+", "work", "", Q, 1},
    {"qaudio.Mic * work @default ask\n", "qaudio.Mic", "+", "work", "sys-audio", D, 0},
    {"qaudio.Mic * work @default allow target=sys-audio\n", "qaudio.Mic", "+", "work", "@default",
     A, 1},
    // allow without any target (request @default, no target=): denied, as Qubes does.
    {"qaudio.Mic * work @anyvm allow\n", "qaudio.Mic", "+", "work", "@default", D, 1},
    // The documented example policy.
    {"qaudio.Mic * work @default ask\nqaudio.Mic * @anyvm @anyvm deny\n", "qaudio.Mic", "+",
     "personal", "@default", D, 2},
    {"qaudio.Mic * work @default ask\nqaudio.Mic * @anyvm @anyvm deny\n", "qaudio.Mic", "+", "work",
     "@default", Q, 1},
};

TEST(PolicyEvaluate, DecisionTableMatchesQubesSemantics) {
  auto qubes = table_qubes();
  int i = 0;
  for (const Row& row : kTable) {
    auto snap = parse_text(row.policy);
    ASSERT_TRUE(snap.valid()) << "row " << i << ": " << snap.errors[0].to_string();
    Request req{row.service, row.argument, row.source, row.target};
    Decision d = evaluate(snap, req, qubes);
    EXPECT_EQ(d.action, row.expect) << "row " << i << ": " << row.policy << " / " << row.source
                                    << " -> " << row.target << ": " << d.reason;
    if (row.expect_line == 0) {
      EXPECT_EQ(d.rule, nullptr) << "row " << i;
      EXPECT_EQ(d.reason, "no rule matched: default deny") << "row " << i;
    } else {
      ASSERT_NE(d.rule, nullptr) << "row " << i << ": " << d.reason;
      EXPECT_EQ(d.rule->line, row.expect_line) << "row " << i;
      EXPECT_EQ(d.rule_location(), "/p/test.policy:" + std::to_string(row.expect_line));
    }
    ++i;
  }
}

TEST(PolicyEvaluate, AllowReportsTargetAndRedirect) {
  auto qubes = table_qubes();
  auto snap = parse_text(
      "qaudio.Play * work @anyvm allow\nqaudio.Mic * work @anyvm allow target=sys-audio\n");
  Decision play = evaluate(snap, Request{"qaudio.Play", "+", "work", "sys-audio"}, qubes);
  EXPECT_EQ(play.action, Action::Allow);
  EXPECT_EQ(play.target, "sys-audio");
  EXPECT_EQ(play.reason, "allowed by policy /p/test.policy:1");
  Decision mic = evaluate(snap, Request{"qaudio.Mic", "+", "work", "@default"}, qubes);
  EXPECT_EQ(mic.action, Action::Allow);
  EXPECT_EQ(mic.target, "sys-audio");
}

TEST(PolicyEvaluate, RedirectToAnotherQubeIsDetected) {
  auto qubes = table_qubes();
  auto snap = parse_text(
      "qaudio.Mic * work @anyvm allow target=other-audio\n"
      "qaudio.Mic * personal @anyvm ask target=sys-audio\n"
      "qaudio.Mic * untrusted @anyvm allow\n");
  Decision w = evaluate(snap, Request{"qaudio.Mic", "+", "work", "sys-audio"}, qubes);
  EXPECT_TRUE(redirected_elsewhere(w, "sys-audio"));
  Decision p = evaluate(snap, Request{"qaudio.Mic", "+", "personal", "@default"}, qubes);
  EXPECT_FALSE(redirected_elsewhere(p, "sys-audio"));
  Decision u = evaluate(snap, Request{"qaudio.Mic", "+", "untrusted", "sys-audio"}, qubes);
  EXPECT_FALSE(redirected_elsewhere(u, "sys-audio"));
}

TEST(PolicyEvaluate, AskCarriesDefaultTargetAndNotify) {
  auto snap = parse_text("qaudio.Mic * work @default ask default_target=sys-audio notify=yes\n");
  Decision d = evaluate(snap, Request{"qaudio.Mic", "+", "work", "@default"}, table_qubes());
  EXPECT_EQ(d.action, Action::Ask);
  EXPECT_EQ(d.default_target, "sys-audio");
  EXPECT_TRUE(d.notify);
  EXPECT_EQ(d.rule->text, "qaudio.Mic * work @default ask default_target=sys-audio notify=yes");
}

TEST(PolicyEvaluate, DenyNotifiesUnlessTurnedOff) {
  auto snap =
      parse_text("qaudio.Mic * work @anyvm deny\nqaudio.Mic * @anyvm @anyvm deny notify=no\n");
  auto qubes = table_qubes();
  EXPECT_TRUE(evaluate(snap, Request{"qaudio.Mic", "+", "work", "sys-audio"}, qubes).notify);
  EXPECT_FALSE(evaluate(snap, Request{"qaudio.Mic", "+", "personal", "sys-audio"}, qubes).notify);
}

TEST(PolicyEvaluate, InvalidSnapshotDeniesEvenWhatItWouldAllow) {
  auto snap = parse_text("* * @anyvm @anyvm allow\nqaudio.Mic * work\n");
  ASSERT_FALSE(snap.valid());
  ASSERT_EQ(snap.rules.size(), 1u);  // the good line parsed, but must not be used
  Decision d = evaluate(snap, Request{"qaudio.Play", "+", "work", "sys-audio"}, table_qubes());
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.rule, nullptr);
  EXPECT_EQ(d.reason.rfind("policy invalid: /p/test.policy:2: wrong number of fields", 0), 0u)
      << d.reason;
}

TEST(PolicyEvaluate, FailedQubeInformationDeniesEverything) {
  auto snap = parse_text("* * @anyvm @anyvm allow\n");
  auto qubes = StaticQubeInfo::parse("work type=Bogus\n", "qubes.txt");
  ASSERT_FALSE(qubes.failure().empty());
  Decision d = evaluate(snap, Request{"qaudio.Play", "+", "work", "sys-audio"}, qubes);
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.reason.rfind("qube information invalid: qubes.txt:1: unknown type", 0), 0u)
      << d.reason;
}

TEST(PolicyEvaluate, MalformedRequestsAreDenied) {
  auto snap = parse_text("* * * * allow\n");
  auto qubes = table_qubes();
  const Request bad[] = {
      {"", "+", "work", "sys-audio"},
      {"qaudio Mic", "+", "work", "sys-audio"},
      {"qaudio.Mic", "noplus", "work", "sys-audio"},
      {"qaudio.Mic", "+", "", "sys-audio"},
      {"qaudio.Mic", "+", "wo rk", "sys-audio"},
      {"qaudio.Mic", "+", "work", "sys audio"},
  };
  for (const auto& r : bad) {
    Decision d = evaluate(snap, r, qubes);
    EXPECT_EQ(d.action, Action::Deny) << r.service << "/" << r.source << "/" << r.target;
    EXPECT_EQ(d.reason.rfind("invalid request", 0), 0u) << d.reason;
  }
}

}  // namespace
}  // namespace qaudio::policy
