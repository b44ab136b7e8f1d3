// qvm-audio's tables and event lines: exact text.
#include "cli_output.hpp"

#include <gtest/gtest.h>

namespace qaudio::cli {
namespace {

json two_qubes() {
  return json::parse(R"({"qubes": [
    {"name": "work", "state": "running", "protocol": "native",
     "playback_format": "s16le 48000 Hz 2 ch", "latency_us": 21000, "volume": 80,
     "muted": false, "mic": {"requested": false, "attached": true, "persistent": true, "policy": "allow"}},
    {"name": "personal", "state": "waiting", "protocol": "none",
     "playback_format": "s16le 44100 Hz 2 ch", "latency_us": 0, "volume": 100,
     "muted": true, "mic": {"requested": true, "attached": false, "persistent": false}}]})");
}

TEST(CliOutput, table_aligns_columns_with_two_spaces_and_no_trailing_blanks) {
  EXPECT_EQ(format_table({"A", "LONGER", "C"}, {{"xxxx", "y", ""}, {"z", "wwwwwwww", "end"}}),
            "A     LONGER    C\n"
            "xxxx  y\n"
            "z     wwwwwwww  end\n");
}

TEST(CliOutput, list_renders_every_qube) {
  EXPECT_EQ(
      render_list(two_qubes()),
      "NAME      STATE    PROTOCOL  FORMAT               LATENCY  VOLUME  MUTED  MIC\n"
      "work      running  native    s16le 48000 Hz 2 ch  21.0 ms  80%     no     attached "
      "(persistent)\n"
      "personal  waiting  none      s16le 44100 Hz 2 ch  -        100%    yes    requested\n");
}

TEST(CliOutput, list_shows_a_net_column_only_for_remote_qubes) {
  json r = two_qubes();
  r["qubes"][0]["network"] = json{{"connected", true}, {"rx_kbps", 98.2},  {"tx_kbps", 1.5},
                                  {"loss_pct", 4.9},   {"jitter_ms", 6.2}, {"rtt_ms", 0.4}};
  std::string out = render_list(r);
  EXPECT_NE(out.find("MIC                    NET\n"), std::string::npos) << out;
  EXPECT_NE(out.find("rx 98k tx 2k loss 4.9% jit 6.2ms rtt 0.4ms\n"), std::string::npos) << out;
  EXPECT_NE(out.find("requested              -\n"), std::string::npos) << out;
  r["qubes"][0]["network"]["connected"] = false;
  EXPECT_NE(render_list(r).find("down\n"), std::string::npos);
  EXPECT_EQ(render_list(two_qubes()).find("NET"), std::string::npos);
}

TEST(CliOutput, empty_list_is_just_the_header) {
  EXPECT_EQ(render_list(json{{"qubes", json::array()}}),
            "NAME  STATE  PROTOCOL  FORMAT  LATENCY  VOLUME  MUTED  MIC\n");
}

TEST(CliOutput, mic_status_and_requests) {
  EXPECT_EQ(render_mic_status(two_qubes()),
            "NAME      STATE    MIC       REQUESTED  PERSISTENT  POLICY\n"
            "work      running  attached  no         yes         allow\n"
            "personal  waiting  detached  yes        no          -\n");
  EXPECT_EQ(render_mic_requests(two_qubes()),
            "NAME      STATE\n"
            "personal  waiting\n");
  EXPECT_EQ(render_mic_requests(json{{"qubes", json::array()}}),
            "no pending microphone requests\n");
}

TEST(CliOutput, volume_line_shows_mute) {
  EXPECT_EQ(render_volume(two_qubes()["qubes"][0]), "work: 80%\n");
  EXPECT_EQ(render_volume(two_qubes()["qubes"][1]), "personal: 100% (muted)\n");
}

TEST(CliOutput, devices_table) {
  json d = json::parse(R"({"devices": [
    {"name": "speakers", "description": "Built-in speakers", "direction": "output", "default": true},
    {"name": "mic", "description": "Built-in microphone", "direction": "input", "default": false}]})");
  EXPECT_EQ(render_devices(d),
            "NAME      DIRECTION  DEFAULT  DESCRIPTION\n"
            "speakers  output     yes      Built-in speakers\n"
            "mic       input      no       Built-in microphone\n");
}

TEST(CliOutput, info_block) {
  json i{
      {"version", "0.1.0"}, {"backend", "wav"}, {"backend_connected", true}, {"uptime_seconds", 5}};
  EXPECT_EQ(render_info(i), "version:  0.1.0\nbackend:  wav (connected)\nuptime:   5 s\n");
}

TEST(CliOutput, event_line_lists_data_sorted_and_quotes_spaces) {
  json e = json::parse(
      R"({"event": "qube_disconnected", "data": {"qube": "work", "reason": "peer closed"}})");
  EXPECT_EQ(render_event(e), "qube_disconnected qube=work reason=\"peer closed\"\n");
  json v = json::parse(R"({"event": "volume_changed", "data": {"volume": 80, "qube": "work"}})");
  EXPECT_EQ(render_event(v), "volume_changed qube=work volume=80\n");
}

TEST(CliOutput, missing_fields_render_as_dash) {
  EXPECT_EQ(render_list(json{{"qubes", json::array({json{{"name", "x"}}})}}),
            "NAME  STATE  PROTOCOL  FORMAT  LATENCY  VOLUME  MUTED  MIC\n"
            "x     -      -         -       -        -%      no     off\n");
}

}  // namespace
}  // namespace qaudio::cli
