// How qvm-audio prints things: aligned tables in the style of the qvm-*
// tools (upper-case headers, columns separated by two spaces) built from
// the control API's JSON results, and one line per event for `monitor`.
//
//   std::cout << render_list(result);   // result of the "list" call
//   NAME      STATE    PROTOCOL  FORMAT               LATENCY  VOLUME  MUTED  MIC
//   work      running  native    s16le 48000 Hz 2 ch  21.0 ms  80%     no     off
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qaudio::cli {

using json = nlohmann::json;

std::string format_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows);

std::string render_list(const json& result);          // "list"
std::string render_info(const json& result);          // "info"
std::string render_volume(const json& qube);          // one entry of "list"
std::string render_mic_status(const json& result);    // "list"
std::string render_mic_requests(const json& result);  // "list"
std::string render_devices(const json& result);       // "devices"
std::string render_event(const json& event);          // "volume_changed qube=work volume=80"

// "off" | "requested" | "attached" | "attached (persistent)"
std::string mic_state(const json& qube);
// A remote qube's network session in one cell ("rx 98k tx 2k loss 0.0% ..."); "-" if local.
std::string net_summary(const json& qube);

}  // namespace qaudio::cli
