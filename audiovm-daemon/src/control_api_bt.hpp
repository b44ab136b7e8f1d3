// The control API's Bluetooth methods and events (bt_*), on top of
// libqaudio-bluetooth's Manager (bluetooth/). Parsing and JSON only: the
// Manager does the work and reports outcomes as events, which this file
// turns into control events. Documented in docs/control-api.md
// ("Bluetooth") and docs/bluetooth.md.
//
//   {"id": 7, "method": "bt_pair", "params": {"address": "AA:BB:CC:DD:EE:01"}}
//   -> {"id": 7, "result": {"address": "AA:BB:CC:DD:EE:01", "started": true}}
//   ...  {"event": "bt_agent_request", "data": {"kind": "confirmation", "passkey": 123456, ...}}
//   ...  {"event": "bt_action", "data": {"action": "pair", "ok": true, ...}}
#pragma once

#include <optional>

#include "control_api.hpp"
#include "headset_output.hpp"
#include "qaudio/bluetooth/bt_types.hpp"

namespace qaudio::control {

// nullopt when `req.method` is not a bt_* method.
std::optional<Outcome<json>> call_bt(ControlTarget& target, const Request& req);
const std::vector<std::string>& bt_methods();

ControlEvent bt_event(const bt::BtEvent& ev);
// {"event": "bt_output", "data": {"action": "selected"|"available"|
// "sink_missing"|"fell_back", "address": ..., "device": ..., "message": ...}}
ControlEvent headset_output_event(const daemon::HeadsetOutputEvent& ev);
json to_json(const bt::Adapter& a);
json to_json(const bt::Device& d);
json to_json(const bt::AgentRequest& r);

}  // namespace qaudio::control
