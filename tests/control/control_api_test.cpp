// Control API parsing and dispatch against a fake target: every method,
// every error code, bad JSON, huge and deep input, wrong types.
#include "control_api.hpp"

#include <gtest/gtest.h>

#include "fake_control_target.hpp"

namespace qaudio::control {
namespace {

class ControlApiTest : public ::testing::Test {
 protected:
  json call(const std::string& line) {
    ControlReply r = api.handle_line(line);
    EXPECT_FALSE(r.line.empty());
    EXPECT_EQ(r.line.back(), '\n');
    EXPECT_EQ(r.line.find('\n'), r.line.size() - 1) << "exactly one line";
    last_subscribe = r.subscribe;
    json j = json::parse(r.line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.line;
    return j;
  }
  std::string code(const json& reply) { return reply["error"]["code"].get<std::string>(); }

  FakeControlTarget target;
  ControlApi api{target};
  bool last_subscribe = false;
};

TEST_F(ControlApiTest, info_reports_version_backend_uptime) {
  json r = call(R"({"id": 1, "method": "info"})");
  EXPECT_EQ(r["id"], 1);
  EXPECT_EQ(r["result"]["version"], "0.1.0");
  EXPECT_EQ(r["result"]["backend"], "fake");
  EXPECT_EQ(r["result"]["backend_connected"], true);
  EXPECT_EQ(r["result"]["uptime_seconds"], 42);
}

TEST_F(ControlApiTest, list_reports_every_qube_with_session_details) {
  json r = call(R"({"id": "a", "method": "list"})");
  EXPECT_EQ(r["id"], "a");
  ASSERT_EQ(r["result"]["qubes"].size(), 2u);
  const json& w = r["result"]["qubes"][0];
  EXPECT_EQ(w["name"], "work");
  EXPECT_EQ(w["domid"], 5);
  EXPECT_EQ(w["state"], "running");
  EXPECT_EQ(w["protocol"], "native");
  EXPECT_EQ(w["playback_format"], "s16le 48000 Hz 2 ch");
  EXPECT_EQ(w["latency_us"], 21000);
  EXPECT_EQ(w["volume"], 80);
  EXPECT_EQ(w["muted"], false);
  EXPECT_EQ(w["counters"]["bytes_in"], 1234);
  EXPECT_EQ(w["counters"]["underruns"], 2);
  EXPECT_EQ(r["result"]["qubes"][1]["mic"]["requested"], true);
  EXPECT_EQ(r["result"]["qubes"][1]["mic"]["attached"], false);
}

TEST_F(ControlApiTest, list_filters_by_qube_and_unknown_qube_is_not_found) {
  json r = call(R"({"id": 1, "method": "list", "params": {"qube": "personal"}})");
  ASSERT_EQ(r["result"]["qubes"].size(), 1u);
  EXPECT_EQ(r["result"]["qubes"][0]["name"], "personal");
  json e = call(R"({"id": 2, "method": "list", "params": {"qube": "x"}})");
  EXPECT_EQ(code(e), "not_found");
  EXPECT_EQ(e["id"], 2);
}

TEST_F(ControlApiTest, set_volume_absolute_sets_and_reports_value) {
  json r = call(R"({"id": 1, "method": "set_volume", "params": {"qube": "work", "percent": 42}})");
  EXPECT_EQ(r["result"], (json{{"qube", "work"}, {"volume", 42}}));
  EXPECT_EQ(target.find("work")->volume, 42u);
}

TEST_F(ControlApiTest, set_volume_relative_adds_to_current_value) {
  json r = call(R"({"id": 1, "method": "set_volume", "params": {"qube": "work", "delta": -15}})");
  EXPECT_EQ(r["result"]["volume"], 65);
  r = call(R"({"id": 2, "method": "set_volume", "params": {"qube": "work", "delta": 10}})");
  EXPECT_EQ(r["result"]["volume"], 75);
}

TEST_F(ControlApiTest, set_volume_clamps_to_0_and_150) {
  EXPECT_EQ(
      call(R"({"method":"set_volume","params":{"qube":"work","delta":500}})")["result"]["volume"],
      150);
  EXPECT_EQ(
      call(R"({"method":"set_volume","params":{"qube":"work","delta":-500}})")["result"]["volume"],
      0);
  EXPECT_EQ(
      call(R"({"method":"set_volume","params":{"qube":"work","percent":999}})")["result"]["volume"],
      150);
  EXPECT_EQ(
      call(R"({"method":"set_volume","params":{"qube":"work","percent":-3}})")["result"]["volume"],
      0);
  EXPECT_EQ(target.calls.back(), "set_volume work 0");
}

TEST_F(ControlApiTest, set_volume_needs_exactly_one_integer_value) {
  EXPECT_EQ(code(call(R"({"method":"set_volume","params":{"qube":"work"}})")), "invalid_params");
  EXPECT_EQ(code(call(R"({"method":"set_volume","params":{"qube":"work","percent":1,"delta":1}})")),
            "invalid_params");
  EXPECT_EQ(code(call(R"({"method":"set_volume","params":{"qube":"work","percent":1.5}})")),
            "invalid_params");
  EXPECT_EQ(code(call(R"({"method":"set_volume","params":{"qube":"work","percent":"50"}})")),
            "invalid_params");
  EXPECT_EQ(
      code(call(
          R"({"method":"set_volume","params":{"qube":"work","percent":18446744073709551615}})")),
      "invalid_params");
  EXPECT_EQ(code(call(R"({"method":"set_volume","params":{"qube":"nope","percent":5}})")),
            "not_found");
  EXPECT_TRUE(target.calls.empty()) << "nothing reached the target";
}

TEST_F(ControlApiTest, set_mute_mutes_and_unmutes) {
  json r = call(R"({"id": 3, "method": "set_mute", "params": {"qube": "work", "muted": true}})");
  EXPECT_EQ(r["result"], (json{{"qube", "work"}, {"muted", true}}));
  EXPECT_TRUE(target.find("work")->muted);
  call(R"({"id": 4, "method": "set_mute", "params": {"qube": "work", "muted": false}})");
  EXPECT_FALSE(target.find("work")->muted);
}

TEST_F(ControlApiTest, set_mute_rejects_non_boolean) {
  EXPECT_EQ(code(call(R"({"method":"set_mute","params":{"qube":"work","muted":1}})")),
            "invalid_params");
  EXPECT_EQ(code(call(R"({"method":"set_mute","params":{"qube":"work"}})")), "invalid_params");
  EXPECT_EQ(code(call(R"({"method":"set_mute","params":{"qube":5,"muted":true}})")),
            "invalid_params");
  EXPECT_EQ(code(call(R"({"method":"set_mute","params":{"qube":"","muted":true}})")),
            "invalid_params");
}

TEST_F(ControlApiTest, mic_attach_and_detach_reach_target) {
  json r = call(R"({"id":1,"method":"mic_attach","params":{"qube":"personal","persistent":true}})");
  EXPECT_EQ(r["result"],
            (json{{"qube", "personal"}, {"mic_attached", true}, {"persistent", true}}));
  r = call(R"({"id":2,"method":"mic_detach","params":{"qube":"personal"}})");
  EXPECT_EQ(r["result"], (json{{"qube", "personal"}, {"mic_attached", false}}));
  EXPECT_EQ(target.calls, (std::vector<std::string>{"set_mic_attached personal 1 p",
                                                    "set_mic_attached personal 0"}));
}

TEST_F(ControlApiTest, mic_attach_passes_user_confirmation) {
  call(R"({"id":1,"method":"mic_attach","params":{"qube":"work","confirm":true}})");
  EXPECT_EQ(target.calls.back(), "set_mic_attached work 1 c");
  EXPECT_EQ(code(call(R"({"method":"mic_attach","params":{"qube":"work","confirm":"yes"}})")),
            "invalid_params");
}

TEST_F(ControlApiTest, mic_detach_does_not_take_persistent) {
  EXPECT_EQ(code(call(R"({"method":"mic_detach","params":{"qube":"work","persistent":true}})")),
            "invalid_params");
}

TEST_F(ControlApiTest, devices_lists_outputs_and_inputs) {
  json r = call(R"({"id":1,"method":"devices"})");
  ASSERT_EQ(r["result"]["devices"].size(), 3u);
  EXPECT_EQ(r["result"]["devices"][0], (json{{"name", "speakers"},
                                             {"description", "Built-in speakers"},
                                             {"direction", "output"},
                                             {"default", true}}));
  EXPECT_EQ(r["result"]["devices"][2]["direction"], "input");
}

TEST_F(ControlApiTest, set_output_for_all_or_one_qube) {
  json r = call(R"({"id":1,"method":"set_output","params":{"device":"headset"}})");
  EXPECT_EQ(r["result"], (json{{"device", "headset"}, {"qube", nullptr}}));
  r = call(R"({"id":2,"method":"set_output","params":{"device":"headset","qube":"work"}})");
  EXPECT_EQ(r["result"]["qube"], "work");
  EXPECT_EQ(code(call(R"({"method":"set_output","params":{"device":"nope"}})")), "not_found");
}

TEST_F(ControlApiTest, subscribe_asks_for_event_stream) {
  json r = call(R"({"id":9,"method":"subscribe"})");
  EXPECT_TRUE(last_subscribe);
  EXPECT_EQ(r["result"]["subscribed"], true);
  call(R"({"id":10,"method":"info"})");
  EXPECT_FALSE(last_subscribe);
}

TEST_F(ControlApiTest, target_errors_pass_through_with_their_code) {
  for (ErrorCode c : {ErrorCode::Refused, ErrorCode::NeedsConfirmation, ErrorCode::Unsupported,
                      ErrorCode::Internal}) {
    target.forced = ControlError{c, "because"};
    json r = call(R"({"id":1,"method":"set_mute","params":{"qube":"work","muted":true}})");
    EXPECT_EQ(code(r), to_string(c));
    EXPECT_EQ(r["error"]["message"], "because");
  }
  EXPECT_EQ(code(call(R"({"id":1,"method":"devices"})")), "internal");
}

TEST_F(ControlApiTest, unknown_method_names_the_methods) {
  json r = call(R"({"id":1,"method":"reboot"})");
  EXPECT_EQ(code(r), "unknown_method");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("set_volume"), std::string::npos);
}

TEST_F(ControlApiTest, unknown_parameter_is_invalid_params) {
  json r = call(R"({"id":1,"method":"info","params":{"verbose":true}})");
  EXPECT_EQ(code(r), "invalid_params");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("verbose"), std::string::npos);
}

TEST_F(ControlApiTest, bad_json_is_parse_error_with_null_id) {
  for (const char* bad : {"", "{", "not json", "{\"id\":1,", "\xff\xfe", "{\"id\":1}}"}) {
    json r = call(bad);
    EXPECT_EQ(code(r), "parse_error") << bad;
    EXPECT_TRUE(r["id"].is_null());
  }
}

TEST_F(ControlApiTest, envelope_shape_errors_are_invalid_request) {
  EXPECT_EQ(code(call("[1,2]")), "invalid_request");
  EXPECT_EQ(code(call("42")), "invalid_request");
  EXPECT_EQ(code(call(R"({"id":1})")), "invalid_request");
  EXPECT_EQ(code(call(R"({"id":1,"method":7})")), "invalid_request");
  EXPECT_EQ(code(call(R"({"id":[1],"method":"info"})")), "invalid_request");
  EXPECT_EQ(code(call(R"({"id":1.5,"method":"info"})")), "invalid_request");
  EXPECT_EQ(code(call(R"({"id":1,"method":"info","extra":1})")), "invalid_request");
  json r = call(R"({"id":3,"method":"info","params":[1]})");
  EXPECT_EQ(code(r), "invalid_params");
  EXPECT_EQ(r["id"], 3) << "the id is echoed once it could be read";
}

TEST_F(ControlApiTest, huge_request_is_refused_without_parsing) {
  std::string line =
      R"({"id":1,"method":"info","params":{"x":")" + std::string(kMaxRequestBytes, 'a') + "\"}}";
  json r = call(line);
  EXPECT_EQ(code(r), "invalid_request");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("longer than"), std::string::npos);
}

TEST_F(ControlApiTest, deep_nesting_is_refused) {
  std::string deep = std::string(10000, '[') + std::string(10000, ']');
  EXPECT_EQ(code(call(deep)), "invalid_request");
  // Brackets inside strings do not count.
  json r = call(R"({"id":1,"method":"list","params":{"qube":"[[[[[[[[[[[[[[[[[[[[[[[[[[[["}})");
  EXPECT_EQ(code(r), "not_found");
}

TEST_F(ControlApiTest, control_characters_in_names_are_escaped_and_bad_utf8_refused) {
  ControlReply r = api.handle_line(
      "{\"id\":1,\"method\":\"set_mute\",\"params\":{\"qube\":\"a\\u0001b\",\"muted\":true}}");
  EXPECT_EQ(r.line.find('\x01'), std::string::npos) << "escaped as \\u0001 in the reply";
  EXPECT_EQ(
      code(call(
          "{\"id\":1,\"method\":\"set_mute\",\"params\":{\"qube\":\"a\\u0001b\",\"muted\":true}}")),
      "not_found");
  EXPECT_EQ(code(call("{\"id\":1,\"method\":\"list\",\"params\":{\"qube\":\"a\xff\"}}")),
            "parse_error");
}

TEST_F(ControlApiTest, trailing_carriage_return_is_accepted) {
  EXPECT_EQ(call("{\"id\":1,\"method\":\"info\"}\r")["result"]["backend"], "fake");
}

// net_report: a remote qube's network counters, stored and shown by list.
const char* kGoodNetwork =
    R"("network": {"peer": "192.0.2.7:40000", "connected": true, "tx_bytes": 1000,
    "rx_bytes": 250000, "tx_packets": 10, "rx_packets": 2000, "tx_kbps": 1.5, "rx_kbps": 98.2,
    "loss_pct": 4.9, "jitter_ms": 6.2, "rtt_ms": 0.4, "latency_ms": 41.5, "buffer_ms": 22.0,
    "drift_ppm": -120, "red": 40, "fec": 3, "plc": 95, "underruns": 1, "late": 2, "dropped": 0})";

TEST_F(ControlApiTest, net_report_is_stored_and_listed_as_network) {
  json before = call(R"({"id":1,"method":"list"})");
  EXPECT_TRUE(before["result"]["qubes"][0]["network"].is_null()) << "a local qube has none";
  json r = call(std::string(R"({"id":2,"method":"net_report","params":{"qube":"work",)") +
                kGoodNetwork + "}}");
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(r["result"]["stored"], true);
  json l = call(R"({"id":3,"method":"list","params":{"qube":"work"}})");
  const json& n = l["result"]["qubes"][0]["network"];
  ASSERT_TRUE(n.is_object()) << l.dump();
  EXPECT_EQ(n["peer"], "192.0.2.7:40000");
  EXPECT_EQ(n["connected"], true);
  EXPECT_EQ(n["rx_bytes"], 250000);
  EXPECT_DOUBLE_EQ(n["rx_kbps"].get<double>(), 98.2);
  EXPECT_DOUBLE_EQ(n["loss_pct"].get<double>(), 4.9);
  EXPECT_DOUBLE_EQ(n["jitter_ms"].get<double>(), 6.2);
  EXPECT_DOUBLE_EQ(n["rtt_ms"].get<double>(), 0.4);
  EXPECT_EQ(n["plc"], 95);
  EXPECT_EQ(n["fec"], 3);
  EXPECT_EQ(n["red"], 40);
  EXPECT_EQ(n["drift_ppm"], -120);
  EXPECT_TRUE(l["result"]["qubes"][0]["network"].contains("age_ms"));
}

TEST_F(ControlApiTest, net_report_bad_input_is_refused_and_changes_nothing) {
  auto with = [&](const std::string& qube, const std::string& network) {
    return call(R"({"id":9,"method":"net_report","params":{"qube":")" + qube + R"(",)" + network +
                "}}");
  };
  std::string good = kGoodNetwork;
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  const std::vector<std::string> bad = {
      R"("network": 5)",
      R"("network": {})",
      replace(R"("loss_pct": 4.9)", R"("loss_pct": 101)"),
      replace(R"("loss_pct": 4.9)", R"("loss_pct": -0.5)"),
      replace(R"("rtt_ms": 0.4)", R"("rtt_ms": -2)"),
      replace(R"("drift_ppm": -120)", R"("drift_ppm": 20000)"),
      replace(R"("drift_ppm": -120, )", ""),
      replace(R"("tx_bytes": 1000)", R"("tx_bytes": -1)"),
      replace(R"("tx_bytes": 1000)", R"("tx_bytes": 1.5)"),
      replace(R"("tx_bytes": 1000)", R"("tx_bytes": 18446744073709551615)"),
      replace(R"("rx_kbps": 98.2)", R"("rx_kbps": "fast")"),
      replace(R"("connected": true)", R"("connected": 1)"),
      replace(R"("fec": 3, )", ""),
      replace(R"("peer": "192.0.2.7:40000")", R"("peer": "a\u0001b")"),
      replace(R"("peer": "192.0.2.7:40000")", R"("peer": ")" + std::string(65, 'x') + "\""),
      replace(R"("dropped": 0)", R"("dropped": 0, "secret": 1)"),
  };
  for (const auto& b : bad) {
    json r = with("work", b);
    EXPECT_EQ(code(r), "invalid_params") << b;
    EXPECT_FALSE(r["error"]["message"].get<std::string>().empty());
  }
  EXPECT_EQ(code(with("nope", good)), "not_found");
  EXPECT_EQ(code(call(R"({"id":1,"method":"net_report","params":{"qube":"work"}})")),
            "invalid_params");
  EXPECT_EQ(code(call(std::string(R"({"id":1,"method":"net_report","params":{"qube":"work",)") +
                      kGoodNetwork + R"(, "extra": 1}})")),
            "invalid_params");
  // Nothing reached the target except the one unknown-qube call, and no qube changed.
  EXPECT_EQ(target.calls, std::vector<std::string>{"set_network nope"});
  json l = call(R"({"id":3,"method":"list"})");
  for (const auto& q : l["result"]["qubes"]) {
    EXPECT_TRUE(q["network"].is_null()) << q.dump();
  }
  EXPECT_EQ(l["result"]["qubes"][0]["volume"], 80);
}

TEST(ControlEvents, event_lines_carry_type_and_data) {
  EXPECT_EQ(event_line(event_volume_changed("work", 80)),
            "{\"data\":{\"qube\":\"work\",\"volume\":80},\"event\":\"volume_changed\"}\n");
  EXPECT_EQ(event_line(event_mic_requested("work")),
            "{\"data\":{\"qube\":\"work\"},\"event\":\"mic_requested\"}\n");
  EXPECT_EQ(event_qube_connected("a", "native").type, "qube_connected");
  EXPECT_EQ(event_qube_disconnected("a", "").type, "qube_disconnected");
  EXPECT_EQ(event_mute_changed("a", true).data["muted"], true);
  EXPECT_EQ(event_mic_attached("a", true).data["persistent"], true);
  EXPECT_EQ(event_mic_detached("a").type, "mic_detached");
  EXPECT_EQ(event_device_added("d").data["device"], "d");
  EXPECT_EQ(event_device_removed("d").type, "device_removed");
}

TEST(ControlErrors, every_code_has_a_wire_name) {
  EXPECT_EQ(to_string(ErrorCode::ParseError), "parse_error");
  EXPECT_EQ(to_string(ErrorCode::InvalidRequest), "invalid_request");
  EXPECT_EQ(to_string(ErrorCode::UnknownMethod), "unknown_method");
  EXPECT_EQ(to_string(ErrorCode::InvalidParams), "invalid_params");
  EXPECT_EQ(to_string(ErrorCode::NotFound), "not_found");
  EXPECT_EQ(to_string(ErrorCode::Refused), "refused");
  EXPECT_EQ(to_string(ErrorCode::NeedsConfirmation), "needs_confirmation");
  EXPECT_EQ(to_string(ErrorCode::Unsupported), "unsupported");
  EXPECT_EQ(to_string(ErrorCode::Internal), "internal");
}

}  // namespace
}  // namespace qaudio::control
