// qvm-audio bt ...: Bluetooth headsets in the audio qube, through the
// control API's bt_* methods (docs/bluetooth.md). Actions (power, scan,
// pair, trust, connect, ...) subscribe to events first and wait for their
// outcome (the bt_action event), printing pairing prompts as they come.
//
//   qvm-audio bt adapters
//   qvm-audio bt scan --seconds 10
//   qvm-audio bt pair AA:BB:CC:DD:EE:01        # waits; prints "confirm passkey ..."
//   qvm-audio bt confirm AA:BB:CC:DD:EE:01 yes # from another terminal
//   qvm-audio bt output --auto off             # headsets no longer become the default
#pragma once

#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

namespace CLI {
class App;
}

namespace qaudio::cli {

class ControlClient;

struct BtArgs {
  CLI::App* adapters = nullptr;
  CLI::App* power = nullptr;
  CLI::App* discoverable = nullptr;
  CLI::App* scan = nullptr;
  CLI::App* devices = nullptr;
  CLI::App* pair = nullptr;
  CLI::App* confirm = nullptr;
  CLI::App* pin = nullptr;
  CLI::App* trust = nullptr;
  CLI::App* connect = nullptr;
  CLI::App* disconnect = nullptr;
  CLI::App* remove = nullptr;
  CLI::App* requests = nullptr;
  CLI::App* output = nullptr;
  std::string auto_output;  // bt output --auto on|off
  std::string adapter;
  std::string address;
  std::string state;  // on|off, yes|no
  std::string code;
  bool all = false;
  bool untrust = false;
  double seconds = 10;  // scan duration
  double timeout = 60;  // waiting for an action's outcome
};

void add_bt_commands(CLI::App& bt, BtArgs& a);
// Exit codes as qvm-audio: 0 ok, 1 failed, 2 usage.
int run_bt(const BtArgs& a, ControlClient& c, bool json_out, std::ostream& out, std::ostream& err);

std::string render_bt_adapters(const nlohmann::json& result);  // "bt_adapters"
std::string render_bt_devices(const nlohmann::json& result);   // "bt_devices"
std::string render_bt_output(const nlohmann::json& result);    // "bt_output"
// One line for a pairing prompt event (bt_agent_request), with what to run.
std::string render_bt_request(const nlohmann::json& request);

}  // namespace qaudio::cli
