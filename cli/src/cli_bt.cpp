// qvm-audio bt ... (see cli_bt.hpp).
#include "cli_bt.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>

#include "cli_output.hpp"
#include "control_client.hpp"

namespace qaudio::cli {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

std::string s(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return "-";
  }
  return it->is_string() ? it->get<std::string>()
                         : it->dump(-1, ' ', false, json::error_handler_t::replace);
}
std::string yn(const json& j, const char* key) {
  return j.value(key, false) ? "yes" : "no";
}
std::string upper(std::string v) {
  std::transform(v.begin(), v.end(), v.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return v;
}
std::optional<bool> on_off(const std::string& v) {
  if (v == "on" || v == "yes" || v == "true" || v == "1") {
    return true;
  }
  if (v == "off" || v == "no" || v == "false" || v == "0") {
    return false;
  }
  return std::nullopt;
}

struct Runner {
  ControlClient& c;
  bool json_out;
  std::ostream& out;
  std::ostream& err;

  int failed(const std::string& what) {
    err << "qvm-audio: " << what << "\n";
    return kFailed;
  }
  void print_json(const json& j) {
    out << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    out.flush();
  }

  // The result of `method`, or nullopt after printing the error.
  std::optional<json> call(const std::string& what, const std::string& method, const json& params) {
    auto r = c.call(method, params);
    if (!r) {
      failed(what + ": " + r.error().message);
      return std::nullopt;
    }
    if (auto e = r->find("error"); e != r->end()) {
      std::string code = e->is_object() ? e->value("code", "error") : "error";
      std::string msg = e->is_object() ? e->value("message", "no message") : "no message";
      failed(what + ": " + msg + " [" + code + "]");
      return std::nullopt;
    }
    return r->value("result", json::object());
  }

  // Starts `method` and waits for its bt_action (action, target). Prints
  // pairing prompts for `address` meanwhile.
  int act(const std::string& what,
          const std::string& method,
          const json& params,
          const std::string& action,
          const std::string& target,
          double timeout_s) {
    if (!call(what, "subscribe", json::object())) {
      return kFailed;
    }
    if (!call(what, method, params)) {
      return kFailed;
    }
    auto deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return failed(what + ": no outcome within " + std::to_string(static_cast<int>(timeout_s)) +
                      " s (it may still finish: see qvm-audio bt devices)");
      }
      auto ev = c.read_message(left);
      if (!ev) {
        return failed(what + ": " + ev.error().message);
      }
      std::string type = ev->value("event", "");
      const json data = ev->value("data", json::object());
      if (type == "bt_agent_request" || type == "bt_agent_request_done") {
        const json req = data.value("request", json::object());
        if (req.value("address", "") != target) {
          continue;
        }
        if (json_out) {
          print_json(*ev);
        } else if (type == "bt_agent_request") {
          out << render_bt_request(req);
          out.flush();
        } else {
          out << "request " << req.value("kind", "") << " for " << target << ": "
              << data.value("outcome", "") << "\n";
        }
        continue;
      }
      if (type != "bt_action" || data.value("action", "") != action ||
          data.value("target", "") != target) {
        continue;
      }
      if (json_out) {
        print_json(data);
      }
      if (!data.value("ok", false)) {
        return failed(data.value("message", what + " failed"));
      }
      if (!json_out) {
        out << what << ": done\n";
      }
      return kOk;
    }
  }

  int scan_for(const BtArgs& a) {
    if (!call("scan", "subscribe", json::object())) {
      return kFailed;
    }
    json params{{"on", true}, {"all", a.all}};
    if (!a.adapter.empty()) {
      params["adapter"] = a.adapter;
    }
    if (!call("scan", "bt_scan", params)) {
      return kFailed;
    }
    if (!json_out) {
      out << "scanning for " << (a.all ? "all devices" : "audio devices") << " for " << a.seconds
          << " s...\n";
      out.flush();
    }
    std::set<std::string> seen;
    auto deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(a.seconds * 1000));
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        break;
      }
      auto ev = c.read_message(left);
      if (!ev) {
        break;  // timeout: the scan time is over
      }
      std::string type = ev->value("event", "");
      if (type == "bt_action" && !ev->value("data", json::object()).value("ok", true)) {
        return failed(ev->value("data", json::object()).value("message", "scan failed"));
      }
      if (type != "bt_device_added" && type != "bt_device_changed") {
        continue;
      }
      json dev = ev->value("data", json::object()).value("device", json::object());
      std::string addr = dev.value("address", "");
      if ((!a.all && !dev.value("audio", false)) || !seen.insert(addr).second) {
        continue;
      }
      if (json_out) {
        print_json(dev);
      } else {
        out << "found " << addr << "  " << dev.value("name", "") << "\n";
        out.flush();
      }
    }
    json off{{"on", false}};
    if (!a.adapter.empty()) {
      off["adapter"] = a.adapter;
    }
    call("scan off", "bt_scan", off);
    return kOk;
  }
};

}  // namespace

std::string render_bt_adapters(const json& result) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : result.value("adapters", json::array())) {
    rows.push_back({s(a, "name"), s(a, "address"), yn(a, "powered"), yn(a, "discoverable"),
                    yn(a, "discovering"), s(a, "alias")});
  }
  std::string t =
      format_table({"ADAPTER", "ADDRESS", "POWERED", "DISCOVERABLE", "SCANNING", "NAME"}, rows);
  if (!result.value("bluez", true)) {
    t += "(BlueZ is not running)\n";
  }
  return t;
}

std::string render_bt_devices(const json& result) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : result.value("devices", json::array())) {
    std::string battery = d.contains("battery") && d["battery"].is_number()
                              ? std::to_string(d["battery"].get<int>()) + "%"
                              : "-";
    std::string rssi = d.contains("rssi") && d["rssi"].is_number()
                           ? std::to_string(d["rssi"].get<int>()) + " dBm"
                           : "-";
    rows.push_back({s(d, "address"), s(d, "name"), yn(d, "audio"), yn(d, "paired"),
                    yn(d, "trusted"), yn(d, "connected"), rssi, battery,
                    d.value("icon", "").empty() ? "-" : d.value("icon", "")});
  }
  return format_table(
      {"ADDRESS", "NAME", "AUDIO", "PAIRED", "TRUSTED", "CONNECTED", "RSSI", "BATTERY", "ICON"},
      rows);
}

std::string render_bt_output(const json& result) {
  std::string t = std::string("a connecting headset becomes the default output: ") +
                  (result.value("auto_output", false) ? "yes" : "no") + "\n";
  const std::string fb = result.value("fallback_output", "");
  if (!fb.empty()) {
    t += "when it disconnects, the default goes back to: " + fb + "\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& h : result.value("headsets", json::array())) {
    rows.push_back({s(h, "address"), s(h, "name"), s(h, "sink")});
  }
  if (!rows.empty()) {
    t += format_table({"ADDRESS", "NAME", "SINK"}, rows);
  }
  return t;
}

std::string render_bt_request(const json& r) {
  std::string kind = r.value("kind", "");
  std::string addr = r.value("address", "");
  std::string who = r.value("name", addr) + " (" + addr + ")";
  if (kind == "confirmation") {
    return "confirm passkey " + r.value("passkey", std::string("?")) + " on " + who +
           ": qvm-audio bt confirm " + addr + " yes|no\n";
  }
  if (kind == "passkey") {
    return "type the passkey shown on " + who + ": qvm-audio bt pin " + addr + " NUMBER\n";
  }
  if (kind == "pin") {
    return "enter the PIN for " + who + ": qvm-audio bt pin " + addr + " CODE\n";
  }
  if (kind == "display_passkey") {
    return "type passkey " + r.value("passkey", std::string("?")) + " on " + who + "\n";
  }
  if (kind == "display_pin") {
    return "type PIN " + r.value("pin", std::string("?")) + " on " + who + "\n";
  }
  return "allow " + kind + " for " + who + "? qvm-audio bt confirm " + addr + " yes|no\n";
}

void add_bt_commands(CLI::App& bt, BtArgs& a) {
  bt.require_subcommand(1);
  a.adapters = bt.add_subcommand("adapters", "Bluetooth adapters of the audio qube");
  a.power = bt.add_subcommand("power", "power an adapter on or off");
  a.power->add_option("state", a.state, "on|off")->required();
  a.power->add_option("--adapter", a.adapter, "adapter (default: the first)");
  a.discoverable = bt.add_subcommand("discoverable", "make an adapter visible to others");
  a.discoverable->add_option("state", a.state, "on|off")->required();
  a.discoverable->add_option("--adapter", a.adapter, "adapter (default: the first)");
  a.scan = bt.add_subcommand("scan", "look for audio devices (SECONDS, or on|off)");
  a.scan->add_option("state", a.state, "on|off: start/stop only, without waiting");
  a.scan->add_option("--adapter", a.adapter, "adapter (default: the first)");
  a.scan->add_option("--seconds", a.seconds, "how long to scan")->capture_default_str();
  a.scan->add_flag("--all", a.all, "every device, not only audio devices");
  a.devices = bt.add_subcommand("devices", "known devices (audio and paired ones)");
  a.devices->add_flag("--all", a.all, "every device BlueZ knows");
  a.requests = bt.add_subcommand("requests", "pairing prompts waiting for an answer");
  a.output = bt.add_subcommand("output", "connected headsets' sinks and the auto-output setting");
  a.output->add_option("--auto", a.auto_output,
                       "on|off: make a connecting headset the default output");
  auto with_address = [&](const char* name, const char* help) {
    auto* sc = bt.add_subcommand(name, help);
    sc->add_option("address", a.address, "device address AA:BB:CC:DD:EE:FF")->required();
    sc->add_option("--timeout", a.timeout, "seconds to wait for the outcome")
        ->capture_default_str();
    return sc;
  };
  a.pair = with_address("pair", "pair with a device (answer its prompt with confirm or pin)");
  a.trust = with_address("trust", "trust a device (it reconnects by itself)");
  a.trust->add_flag("--off", a.untrust, "stop trusting it");
  a.connect = with_address("connect", "connect a paired device");
  a.disconnect = with_address("disconnect", "disconnect a device");
  a.remove = with_address("remove", "forget a device (unpair)");
  a.confirm = bt.add_subcommand("confirm", "answer a pairing prompt: yes or no");
  a.confirm->add_option("address", a.address, "device address")->required();
  a.confirm->add_option("answer", a.state, "yes|no")->required();
  a.pin = bt.add_subcommand("pin", "answer a passkey or PIN prompt");
  a.pin->add_option("address", a.address, "device address")->required();
  a.pin->add_option("code", a.code, "passkey (digits) or PIN")->required();
}

int run_bt(const BtArgs& a, ControlClient& c, bool json_out, std::ostream& out, std::ostream& err) {
  Runner r{c, json_out, out, err};
  std::string addr = upper(a.address);
  if (*a.adapters || *a.devices || *a.requests) {
    const char* method = *a.adapters ? "bt_adapters" : *a.devices ? "bt_devices" : "bt_requests";
    json params = json::object();
    if (*a.devices && a.all) {
      params["all"] = true;
    }
    auto res = r.call(std::string("bt ") + (method + 3), method, params);
    if (!res) {
      return kFailed;
    }
    if (json_out) {
      out << res->dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    } else if (*a.adapters) {
      out << render_bt_adapters(*res);
    } else if (*a.devices) {
      out << render_bt_devices(*res);
    } else {
      for (const auto& q : res->value("requests", json::array())) {
        out << render_bt_request(q);
      }
    }
    return kOk;
  }
  if (*a.output) {
    json params = json::object();
    if (!a.auto_output.empty()) {
      auto v = on_off(a.auto_output);
      if (!v) {
        err << "qvm-audio: bt output --auto: '" << a.auto_output << "' is not on or off\n";
        return kUsage;
      }
      params["auto_output"] = *v;
    }
    auto res = r.call("bt output", "bt_output", params);
    if (!res) {
      return kFailed;
    }
    if (json_out) {
      r.print_json(*res);
    } else {
      out << render_bt_output(*res);
    }
    return kOk;
  }
  if (*a.power || *a.discoverable) {
    auto v = on_off(a.state);
    if (!v) {
      err << "qvm-audio: bt " << (*a.power ? "power" : "discoverable") << ": '" << a.state
          << "' is not on or off\n";
      return kUsage;
    }
    const char* key = *a.power ? "powered" : "discoverable";
    json params{{key, *v}};
    if (!a.adapter.empty()) {
      params["adapter"] = a.adapter;
    }
    auto ad = r.call("bt adapters", "bt_adapters", json::object());
    if (!ad) {
      return kFailed;
    }
    std::string name = a.adapter;
    for (const auto& x : ad->value("adapters", json::array())) {
      if (name.empty() || x.value("address", "") == name || x.value("path", "") == name) {
        name = x.value("name", name);
        break;
      }
    }
    return r.act(std::string("bt ") + (*a.power ? "power " : "discoverable ") + a.state,
                 "bt_set_adapter", params, *a.power ? "power" : "discoverable", name, a.timeout);
  }
  if (*a.scan) {
    if (a.state.empty()) {
      return r.scan_for(a);
    }
    auto v = on_off(a.state);
    if (!v) {
      err << "qvm-audio: bt scan: '" << a.state << "' is not on or off\n";
      return kUsage;
    }
    json params{{"on", *v}, {"all", a.all}};
    if (!a.adapter.empty()) {
      params["adapter"] = a.adapter;
    }
    auto res = r.call("bt scan " + a.state, "bt_scan", params);
    if (res && json_out) {
      r.print_json(*res);
    }
    return res ? kOk : kFailed;
  }
  if (*a.confirm) {
    auto v = on_off(a.state);
    if (!v) {
      err << "qvm-audio: bt confirm: '" << a.state << "' is not yes or no\n";
      return kUsage;
    }
    auto res = r.call("bt confirm " + addr, "bt_confirm", json{{"address", addr}, {"accept", *v}});
    if (res && json_out) {
      r.print_json(*res);
    }
    return res ? kOk : kFailed;
  }
  if (*a.pin) {
    auto res = r.call("bt pin " + addr, "bt_pin", json{{"address", addr}, {"code", a.code}});
    if (res && json_out) {
      r.print_json(*res);
    }
    return res ? kOk : kFailed;
  }
  struct Act {
    CLI::App* cmd;
    const char* name;
    const char* method;
  };
  for (const Act& x :
       {Act{a.pair, "pair", "bt_pair"}, Act{a.trust, "trust", "bt_trust"},
        Act{a.connect, "connect", "bt_connect"}, Act{a.disconnect, "disconnect", "bt_disconnect"},
        Act{a.remove, "remove", "bt_remove"}}) {
    if (!*x.cmd) {
      continue;
    }
    json params{{"address", addr}};
    if (x.cmd == a.trust) {
      params["trusted"] = !a.untrust;
    }
    return r.act(std::string("bt ") + x.name + " " + addr, x.method, params, x.name, addr,
                 a.timeout);
  }
  err << "qvm-audio: bt: missing command (see qvm-audio bt --help)\n";
  return kUsage;
}

}  // namespace qaudio::cli
