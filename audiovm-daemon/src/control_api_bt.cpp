// Bluetooth methods and events of the control API (see control_api_bt.hpp).
#include "control_api_bt.hpp"

#include <cerrno>

#include "qaudio/bluetooth/bt_manager.hpp"

namespace qaudio::control {

namespace {

ControlError err(ErrorCode c, std::string msg) {
  return ControlError{c, std::move(msg)};
}

ControlError from_result(const Error& e) {
  switch (e.code) {
    case ENOENT:
      return err(ErrorCode::NotFound, e.message);
    case EINVAL:
      return err(ErrorCode::InvalidParams, e.message);
    case EBUSY:
      return err(ErrorCode::Refused, e.message);
    case EAGAIN:
      return err(ErrorCode::Unsupported, e.message);
    default:
      return err(ErrorCode::Internal, e.message);
  }
}

// Checks that params has only `allowed` keys and fetches typed values.
class BtParams {
 public:
  BtParams(const std::string& m, const json& p) : m_(m), p_(p) {}
  std::optional<ControlError> only(std::initializer_list<const char*> allowed) const {
    for (const auto& item : p_.items()) {
      bool ok = false;
      for (const char* a : allowed) {
        ok = ok || item.key() == a;
      }
      if (!ok) {
        return err(ErrorCode::InvalidParams,
                   m_ + ": unknown parameter '" + item.key().substr(0, 64) + "'");
      }
    }
    return std::nullopt;
  }
  Outcome<std::string> str(const char* key, bool required = true) const {
    auto it = p_.find(key);
    if (it == p_.end()) {
      if (!required) {
        return std::string();
      }
      return err(ErrorCode::InvalidParams, m_ + ": missing parameter '" + key + "'");
    }
    if (!it->is_string() || it->get_ref<const std::string&>().size() > 64) {
      return err(ErrorCode::InvalidParams, m_ + ": '" + key + "' must be a string (<= 64 bytes)");
    }
    return it->get<std::string>();
  }
  Outcome<bool> boolean(const char* key, std::optional<bool> dflt) const {
    auto it = p_.find(key);
    if (it == p_.end()) {
      if (dflt) {
        return *dflt;
      }
      return err(ErrorCode::InvalidParams, m_ + ": missing parameter '" + key + "'");
    }
    if (!it->is_boolean()) {
      return err(ErrorCode::InvalidParams, m_ + ": '" + key + "' must be true or false");
    }
    return it->get<bool>();
  }
  bool has(const char* key) const { return p_.contains(key); }

 private:
  const std::string& m_;
  const json& p_;
};

Outcome<json> started(const Result<void>& r, json result) {
  if (!r) {
    return from_result(r.error());
  }
  result["started"] = true;
  return result;
}

json opt_int(const std::optional<int>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

const std::vector<std::string>& bt_methods() {
  static const std::vector<std::string> m{
      "bt_adapters", "bt_set_adapter", "bt_scan",      "bt_devices", "bt_pair",
      "bt_confirm",  "bt_pin",         "bt_trust",     "bt_connect", "bt_disconnect",
      "bt_remove",   "bt_requests",    "bt_reconnect", "bt_output"};
  return m;
}

json to_json(const bt::Adapter& a) {
  return json{{"name", a.name},
              {"path", a.path},
              {"address", a.address},
              {"alias", a.alias},
              {"powered", a.powered},
              {"discoverable", a.discoverable},
              {"discovering", a.discovering},
              {"pairable", a.pairable}};
}

json to_json(const bt::Device& d) {
  return json{{"address", d.address},     {"name", d.name},
              {"adapter", d.adapter},     {"icon", d.icon},
              {"class", d.device_class},  {"audio", d.is_audio()},
              {"rssi", opt_int(d.rssi)},  {"battery", opt_int(d.battery)},
              {"paired", d.paired},       {"trusted", d.trusted},
              {"connected", d.connected}, {"blocked", d.blocked}};
}

json to_json(const bt::AgentRequest& r) {
  json j{{"id", r.id},
         {"kind", bt::to_string(r.kind)},
         {"address", r.address},
         {"name", r.name},
         {"needs_answer", bt::needs_answer(r.kind)}};
  if (r.passkey) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%06u", *r.passkey % 1000000u);
    j["passkey"] = std::string(buf);
  }
  if (!r.pin.empty()) {
    j["pin"] = r.pin;
  }
  if (!r.service.empty()) {
    j["service"] = r.service;
  }
  return j;
}

ControlEvent bt_event(const bt::BtEvent& ev) {
  using T = bt::BtEvent::Type;
  ControlEvent out{bt::to_string(ev.type)};
  switch (ev.type) {
    case T::AdapterAdded:
    case T::AdapterChanged:
    case T::AdapterRemoved:
      out.data = json{{"adapter", to_json(ev.adapter)}};
      break;
    case T::DeviceAdded:
    case T::DeviceChanged:
    case T::DeviceRemoved:
    case T::HeadsetConnected:
    case T::HeadsetDisconnected:
      out.data = json{{"device", to_json(ev.device)}};
      break;
    case T::AgentRequest:
      out.data = json{{"request", to_json(ev.request)}};
      break;
    case T::AgentRequestDone:
      out.data = json{{"request", to_json(ev.request)}, {"outcome", ev.outcome}};
      break;
    case T::ActionFinished:
      out.data = json{
          {"action", ev.action}, {"target", ev.address}, {"ok", ev.ok}, {"message", ev.message}};
      if (!ev.device.address.empty()) {
        out.data["device"] = to_json(ev.device);
      }
      break;
  }
  return out;
}

ControlEvent headset_output_event(const daemon::HeadsetOutputEvent& ev) {
  ControlEvent out;
  out.type = "bt_output";
  out.data = json{{"action", daemon::to_string(ev.kind)},
                  {"address", ev.address},
                  {"device", ev.device},
                  {"message", ev.message}};
  return out;
}

std::optional<Outcome<json>> call_bt(ControlTarget& target, const Request& req) {
  const std::string& m = req.method;
  if (m.rfind("bt_", 0) != 0) {
    return std::nullopt;
  }
  bt::Manager* bt = target.bluetooth();
  if (bt == nullptr) {
    return Outcome<json>(err(ErrorCode::Unsupported,
                             "Bluetooth is not enabled in this daemon (start it with --bluetooth; "
                             "it needs a build with sdbus-c++)"));
  }
  BtParams p(m, req.params);
  auto address = [&]() -> Outcome<std::string> { return p.str("address"); };

  if (m == "bt_adapters") {
    if (auto e = p.only({})) {
      return Outcome<json>(*e);
    }
    json arr = json::array();
    for (const auto& a : bt->adapters()) {
      arr.push_back(to_json(a));
    }
    return Outcome<json>(json{{"adapters", arr}, {"bluez", bt->bluez_present()}});
  }
  if (m == "bt_devices") {
    if (auto e = p.only({"all"})) {
      return Outcome<json>(*e);
    }
    auto all = p.boolean("all", false);
    if (!all) {
      return Outcome<json>(all.error());
    }
    json arr = json::array();
    daemon::HeadsetOutput* ho = target.headset_output();
    for (const auto& d : bt->devices(!all.value())) {
      arr.push_back(to_json(d));
      if (auto sink = ho != nullptr ? ho->sink_of(d.address) : std::nullopt) {
        arr.back()["sink"] = *sink;
      }
    }
    return Outcome<json>(json{{"devices", arr}});
  }
  if (m == "bt_requests") {
    if (auto e = p.only({})) {
      return Outcome<json>(*e);
    }
    json arr = json::array();
    for (const auto& r : bt->pending_requests()) {
      arr.push_back(to_json(r));
    }
    return Outcome<json>(json{{"requests", arr}});
  }
  if (m == "bt_reconnect") {
    if (auto e = p.only({})) {
      return Outcome<json>(*e);
    }
    bt->reconnect_trusted();
    return Outcome<json>(json{{"started", true}});
  }
  if (m == "bt_output") {
    if (auto e = p.only({"auto_output"})) {
      return Outcome<json>(*e);
    }
    daemon::HeadsetOutput* ho = target.headset_output();
    if (ho == nullptr) {
      return Outcome<json>(err(ErrorCode::Unsupported, "headset output switching is not running"));
    }
    if (p.has("auto_output")) {
      auto on = p.boolean("auto_output", std::nullopt);
      if (!on) {
        return Outcome<json>(on.error());
      }
      if (auto r = ho->set_auto_output(on.value()); !r) {
        return Outcome<json>(from_result(r.error()));
      }
    }
    json heads = json::array();
    for (const auto& d : bt->devices(true)) {
      if (auto sink = ho->sink_of(d.address)) {
        heads.push_back(json{{"address", d.address}, {"name", d.name}, {"sink", *sink}});
      }
    }
    return Outcome<json>(json{{"auto_output", ho->settings().auto_output},
                              {"fallback_output", ho->settings().fallback_output},
                              {"headsets", heads}});
  }
  if (m == "bt_set_adapter") {
    if (auto e = p.only({"adapter", "powered", "discoverable"})) {
      return Outcome<json>(*e);
    }
    auto a = p.str("adapter", false);
    if (!a) {
      return Outcome<json>(a.error());
    }
    if (!p.has("powered") && !p.has("discoverable")) {
      return Outcome<json>(
          err(ErrorCode::InvalidParams, "bt_set_adapter: give 'powered' and/or 'discoverable'"));
    }
    json r{{"adapter", a.value()}};
    for (const char* key : {"powered", "discoverable"}) {
      if (!p.has(key)) {
        continue;
      }
      auto v = p.boolean(key, std::nullopt);
      if (!v) {
        return Outcome<json>(v.error());
      }
      auto res = std::string(key) == "powered" ? bt->set_powered(a.value(), v.value())
                                               : bt->set_discoverable(a.value(), v.value());
      if (!res) {
        return Outcome<json>(from_result(res.error()));
      }
      r[key] = v.value();
    }
    r["started"] = true;
    return Outcome<json>(r);
  }
  if (m == "bt_scan") {
    if (auto e = p.only({"adapter", "on", "all"})) {
      return Outcome<json>(*e);
    }
    auto a = p.str("adapter", false);
    auto on = p.boolean("on", true);
    auto all = p.boolean("all", false);
    if (!a || !on || !all) {
      return Outcome<json>(!a ? a.error() : !on ? on.error() : all.error());
    }
    return started(bt->scan(a.value(), on.value(), !all.value()),
                   json{{"adapter", a.value()}, {"on", on.value()}, {"audio_only", !all.value()}});
  }
  if (m == "bt_pair" || m == "bt_connect" || m == "bt_disconnect" || m == "bt_remove") {
    if (auto e = p.only({"address"})) {
      return Outcome<json>(*e);
    }
    auto a = address();
    if (!a) {
      return Outcome<json>(a.error());
    }
    Result<void> r = m == "bt_pair"         ? bt->pair(a.value())
                     : m == "bt_connect"    ? bt->connect(a.value())
                     : m == "bt_disconnect" ? bt->disconnect(a.value())
                                            : bt->remove(a.value());
    return started(r, json{{"address", a.value()}});
  }
  if (m == "bt_trust") {
    if (auto e = p.only({"address", "trusted"})) {
      return Outcome<json>(*e);
    }
    auto a = address();
    auto t = p.boolean("trusted", true);
    if (!a || !t) {
      return Outcome<json>(!a ? a.error() : t.error());
    }
    return started(bt->trust(a.value(), t.value()),
                   json{{"address", a.value()}, {"trusted", t.value()}});
  }
  if (m == "bt_confirm") {
    if (auto e = p.only({"address", "accept"})) {
      return Outcome<json>(*e);
    }
    auto a = address();
    auto acc = p.boolean("accept", std::nullopt);
    if (!a || !acc) {
      return Outcome<json>(!a ? a.error() : acc.error());
    }
    if (auto r = bt->confirm(a.value(), acc.value()); !r) {
      return Outcome<json>(from_result(r.error()));
    }
    return Outcome<json>(json{{"address", a.value()}, {"accepted", acc.value()}});
  }
  if (m == "bt_pin") {
    if (auto e = p.only({"address", "code"})) {
      return Outcome<json>(*e);
    }
    auto a = address();
    auto code = p.str("code");
    if (!a || !code) {
      return Outcome<json>(!a ? a.error() : code.error());
    }
    if (auto r = bt->enter_code(a.value(), code.value()); !r) {
      return Outcome<json>(from_result(r.error()));
    }
    return Outcome<json>(json{{"address", a.value()}, {"entered", true}});
  }
  std::string list;
  for (const auto& n : bt_methods()) {
    list += (list.empty() ? "" : ", ") + n;
  }
  return Outcome<json>(
      err(ErrorCode::UnknownMethod, "unknown method '" + m.substr(0, 64) + "' (" + list + ")"));
}

}  // namespace qaudio::control
