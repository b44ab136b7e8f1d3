// The mic gate's internal API: result codes and messages for the control
// side, list/pending views, and the event forwarder.
#include "mic_gate_api.hpp"

#include <gtest/gtest.h>

#include "mic_test_util.hpp"

namespace qaudio::daemon {
namespace {

using testing::FakeClock;
using testing::policy_from;
using testing::qube_table;

const char* kPolicy =
    "qaudio.Mic  *  work      sys-audio  allow\n"
    "qaudio.Mic  *  personal  sys-audio  ask\n"
    "qaudio.Mic  *  @anyvm    @anyvm     deny\n";

MicGate make_gate() {
  MicGate g({.audio_qube = "sys-audio"}, qube_table(), policy_from(kPolicy));
  for (const char* q : {"work", "personal", "untrusted"}) {
    g.add_qube(q);
  }
  return g;
}

TEST(MicGateApi, attach_and_detach_map_to_codes) {
  MicGate g = make_gate();
  EXPECT_TRUE(mic_api_set_attached(g, "work", true, false, false).ok());
  EXPECT_TRUE(g.gate_open("work"));
  EXPECT_TRUE(mic_api_set_attached(g, "work", false, false, false).ok());
  EXPECT_FALSE(g.gate_open("work"));
}

TEST(MicGateApi, refusal_says_why_and_what_to_do) {
  MicGate g = make_gate();
  MicApiResult r = mic_api_set_attached(g, "untrusted", true, false, true);
  EXPECT_EQ(r.code, MicApiCode::Refused);
  EXPECT_NE(r.message.find("30-qaudio.policy:3"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("qaudio.Mic policy"), std::string::npos) << r.message;
  EXPECT_STREQ(to_string(r.code), "refused");
}

TEST(MicGateApi, ask_returns_needs_confirmation_then_attaches_when_confirmed) {
  MicGate g = make_gate();
  EXPECT_EQ(mic_api_set_attached(g, "personal", true, false, false).code,
            MicApiCode::NeedsConfirmation);
  EXPECT_FALSE(g.gate_open("personal"));
  EXPECT_TRUE(mic_api_set_attached(g, "personal", true, false, true).ok());
  EXPECT_TRUE(g.gate_open("personal"));
}

TEST(MicGateApi, unknown_qube_is_not_found_for_attach_and_detach) {
  MicGate g = make_gate();
  EXPECT_EQ(mic_api_set_attached(g, "nope", true, false, false).code, MicApiCode::NotFound);
  EXPECT_EQ(mic_api_set_attached(g, "nope", false, false, false).code, MicApiCode::NotFound);
}

TEST(MicGateApi, list_and_pending_show_the_gate_state) {
  MicGate g = make_gate();
  FakeClock clock;
  ASSERT_TRUE(mic_api_set_attached(g, "work", true, true, false).ok());
  ASSERT_EQ(g.on_mic_requested("personal", clock.now()), RequestOutcome::Emitted);
  auto list = mic_api_list(g);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "personal");
  EXPECT_TRUE(list[0].requested);
  EXPECT_EQ(list[0].mic_policy, MicPolicy::Ask);
  EXPECT_EQ(list[2].name, "work");
  EXPECT_TRUE(list[2].gate_open);
  EXPECT_TRUE(list[2].persistent);
  auto pending = mic_api_pending(g, clock.now());
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].qube, "personal");
}

TEST(MicGateApi, forwarder_calls_the_set_functions_only) {
  MicGate g = make_gate();
  MicEventForwarder fwd;
  std::vector<std::string> seen;
  fwd.on_attached = [&](const std::string& q, bool p) {
    seen.push_back("attached " + q + (p ? " persistent" : ""));
  };
  fwd.on_gate = [&](const std::string& q, bool open) {
    seen.push_back("gate " + q + (open ? " open" : " closed"));
  };
  g.add_listener(&fwd);
  ASSERT_TRUE(mic_api_set_attached(g, "work", true, true, false).ok());
  ASSERT_TRUE(mic_api_set_attached(g, "work", false, false, false).ok());  // no on_detached set
  EXPECT_EQ(seen, (std::vector<std::string>{"attached work persistent", "gate work open",
                                            "gate work closed"}));
}

}  // namespace
}  // namespace qaudio::daemon
