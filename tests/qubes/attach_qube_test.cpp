// The control methods the launcher uses, attach_qube and detach_qube, on a
// real Daemon through ControlApi + ControlDaemonAdapter: a qube attached at
// run time is connected like a configured one (a stock qube peer on the unix
// channel plays into it), bad parameters change nothing, a detach lets go of
// the qube's channels and of its microphone.
#include <gtest/gtest.h>

#include "control_api.hpp"
#include "control_daemon_adapter.hpp"
#include "e2e_support.hpp"

namespace qaudio::e2e {
namespace {

using control::ControlApi;
using control::ControlDaemonAdapter;
using json = nlohmann::json;

json call(ControlApi& api, const std::string& method, const json& params) {
  json req{{"id", 1}, {"method", method}, {"params", params}};
  auto r = api.handle_line(req.dump());
  return json::parse(r.line);
}
std::string error_code(const json& reply) {
  return reply.contains("error") ? reply["error"].value("code", "") : "";
}

TEST(AttachQube, a_qube_attached_at_run_time_connects_plays_and_detaches) {
  DaemonHarness h("unix", "null", {}, [](auto& o) {
    o.session.backoff_initial = 20ms;
    o.session.backoff_max = 200ms;
  });
  ASSERT_TRUE(h.start());
  ControlDaemonAdapter adapter(h.daemon(), [](const control::ControlEvent&) {});
  ControlApi api(adapter);
  QubePeer q(h.peer_transport(), 5);
  ASSERT_TRUE(q.serve());

  auto r = call(api, "attach_qube", {{"qube", "work"}, {"domid", 5}, {"volume", 40}});
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(r["result"]["attached"], true);
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  EXPECT_EQ(h.info("work").volume_percent, 40u);
  EXPECT_EQ(h.info("work").domid, 5u);
  ToneWriter tone;
  auto pcm = tone.make(0, 2205);
  ASSERT_EQ(q.write_pcm(pcm), pcm.size());
  ASSERT_TRUE(h.drive([&] { return h.info("work").counters.bytes_in == pcm.size(); }, 3s,
                      [&] { q.poll(); }));

  // Again with the same identity: accepted, nothing changes (a launcher
  // re-attaching after a daemon restart).
  r = call(api, "attach_qube", {{"qube", "work"}, {"domid", 5}});
  EXPECT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(h.info("work").counters.connects, 1u);

  // Bad or conflicting requests: clear errors, the session untouched.
  struct Bad {
    json params;
    std::string code;
  };
  for (const auto& b : std::vector<Bad>{
           {{{"qube", "work"}, {"domid", 6}}, "refused"},      // name taken by domid 5
           {{{"qube", "other"}, {"domid", 5}}, "refused"},     // domid taken by work
           {{{"qube", "x"}, {"domid", 0}}, "invalid_params"},  // dom0 / out of range
           {{{"qube", "x"}, {"domid", 32768}}, "invalid_params"},
           {{{"qube", "x"}, {"domid", "5"}}, "invalid_params"},
           {{{"qube", "x"}, {"domid", 9}, {"volume", 151}}, "invalid_params"},
           {{{"qube", "x"}, {"domid", 9}, {"muted", 1}}, "invalid_params"},
           {{{"qube", "1bad"}, {"domid", 9}}, "invalid_params"},
           {{{"qube", "x"}, {"domid", 9}, {"label", "red"}}, "invalid_params"},
           {{{"domid", 9}}, "invalid_params"},
       }) {
    auto e = call(api, "attach_qube", b.params);
    EXPECT_EQ(error_code(e), b.code) << b.params.dump() << " -> " << e.dump();
  }
  EXPECT_EQ(h.daemon().list().size(), 1u);
  EXPECT_TRUE(h.running("work"));

  // Mic attached, then the qube detached: the session and its channels go,
  // and attaching it again does not bring the mic back.
  ASSERT_TRUE(h.daemon().set_mic_attached("work", true).has_value());
  EXPECT_EQ(error_code(call(api, "detach_qube", {{"qube", "nope"}})), "not_found");
  r = call(api, "detach_qube", {{"qube", "work"}});
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_FALSE(h.daemon().info("work").has_value());
  ASSERT_TRUE(h.drive([&] { return q.closed(); }, 5s, [&] { q.poll(); }));
  EXPECT_FALSE(h.daemon().mic_gate().attached("work"));

  ASSERT_TRUE(q.serve());
  r = call(api, "attach_qube", {{"qube", "work"}, {"domid", 5}});
  ASSERT_TRUE(r.contains("result")) << r.dump();
  ASSERT_TRUE(h.drive([&] { return h.running("work"); }, 5s, [&] { q.poll(); }));
  EXPECT_FALSE(h.info("work").mic_attached);
}

}  // namespace
}  // namespace qaudio::e2e
