// Request parsing and dispatch of the control API (see control_api.hpp).
#include "control_api.hpp"

#include "control_api_bt.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

namespace qaudio::control {

namespace {

constexpr size_t kMaxNameBytes = 256;
constexpr int64_t kMaxVolumeInput = 1000000;

ControlError err(ErrorCode c, std::string msg) {
  return ControlError{c, std::move(msg)};
}

// Deepest nesting of arrays/objects outside strings; stops counting once
// `limit` is passed. Lets us refuse deep documents before parsing them.
int json_depth(std::string_view s, int limit) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) {
        return max_depth;
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

// Short, printable rendering of a client-supplied name for messages.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s.substr(0, 64)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  if (s.size() > 64) {
    out += "...";
  }
  return out + "'";
}

// Parameter access: every problem is an InvalidParams error naming the key.
class Params {
 public:
  Params(const std::string& method, const json& p) : method_(method), p_(p) {}

  std::optional<ControlError> only(std::initializer_list<const char*> allowed) const {
    std::set<std::string_view> ok(allowed.begin(), allowed.end());
    for (const auto& item : p_.items()) {
      if (!ok.count(item.key())) {
        return err(ErrorCode::InvalidParams, method_ + ": unknown parameter " + quoted(item.key()));
      }
    }
    return std::nullopt;
  }
  bool has(const char* key) const { return p_.contains(key); }

  Outcome<std::string> name(const char* key) const {
    auto it = p_.find(key);
    if (it == p_.end()) {
      return err(ErrorCode::InvalidParams, method_ + ": missing parameter '" + key + "'");
    }
    if (!it->is_string()) {
      return err(ErrorCode::InvalidParams, method_ + ": '" + key + "' must be a string");
    }
    const auto& s = it->get_ref<const std::string&>();
    if (s.empty() || s.size() > kMaxNameBytes) {
      return err(ErrorCode::InvalidParams, method_ + ": '" + key + "' must be 1 to " +
                                               std::to_string(kMaxNameBytes) + " bytes");
    }
    return s;
  }
  Outcome<bool> boolean(const char* key, std::optional<bool> dflt = std::nullopt) const {
    auto it = p_.find(key);
    if (it == p_.end()) {
      if (dflt) {
        return *dflt;
      }
      return err(ErrorCode::InvalidParams, method_ + ": missing parameter '" + key + "'");
    }
    if (!it->is_boolean()) {
      return err(ErrorCode::InvalidParams, method_ + ": '" + key + "' must be true or false");
    }
    return it->get<bool>();
  }
  Outcome<int64_t> integer(const char* key) const {
    auto it = p_.find(key);
    if (it == p_.end()) {
      return err(ErrorCode::InvalidParams, method_ + ": missing parameter '" + key + "'");
    }
    bool ok = it->is_number_integer();
    int64_t v = 0;
    if (ok && it->is_number_unsigned()) {
      ok = it->get<uint64_t>() <= static_cast<uint64_t>(kMaxVolumeInput);
      v = ok ? static_cast<int64_t>(it->get<uint64_t>()) : 0;
    } else if (ok) {
      v = it->get<int64_t>();
      ok = v >= -kMaxVolumeInput && v <= kMaxVolumeInput;
    }
    if (!ok) {
      return err(ErrorCode::InvalidParams,
                 method_ + ": '" + key + "' must be an integer (percent)");
    }
    return v;
  }

 private:
  const std::string& method_;
  const json& p_;
};

uint32_t clamp_volume(int64_t v) {
  return static_cast<uint32_t>(std::clamp<int64_t>(v, 0, kMaxVolumePercent));
}

std::optional<QubeStatus> find_qube(ControlTarget& t, const std::string& qube) {
  for (auto& q : t.list()) {
    if (q.name == qube) {
      return std::move(q);
    }
  }
  return std::nullopt;
}

ControlError no_qube(const std::string& qube) {
  return err(ErrorCode::NotFound,
             "no qube named " + quoted(qube) + " (qvm-audio list shows the configured qubes)");
}

}  // namespace

std::string_view to_string(ErrorCode c) {
  switch (c) {
    case ErrorCode::ParseError:
      return "parse_error";
    case ErrorCode::InvalidRequest:
      return "invalid_request";
    case ErrorCode::UnknownMethod:
      return "unknown_method";
    case ErrorCode::InvalidParams:
      return "invalid_params";
    case ErrorCode::NotFound:
      return "not_found";
    case ErrorCode::Refused:
      return "refused";
    case ErrorCode::NeedsConfirmation:
      return "needs_confirmation";
    case ErrorCode::Unsupported:
      return "unsupported";
    case ErrorCode::Internal:
      return "internal";
  }
  return "internal";
}

// ---- events ----
ControlEvent event_qube_connected(const std::string& qube, const std::string& protocol) {
  return {"qube_connected", {{"qube", qube}, {"protocol", protocol}}};
}
ControlEvent event_qube_disconnected(const std::string& qube, const std::string& reason) {
  return {"qube_disconnected", {{"qube", qube}, {"reason", reason}}};
}
ControlEvent event_volume_changed(const std::string& qube, uint32_t volume) {
  return {"volume_changed", {{"qube", qube}, {"volume", volume}}};
}
ControlEvent event_mute_changed(const std::string& qube, bool muted) {
  return {"mute_changed", {{"qube", qube}, {"muted", muted}}};
}
ControlEvent event_mic_requested(const std::string& qube) {
  return {"mic_requested", {{"qube", qube}}};
}
ControlEvent event_mic_attached(const std::string& qube, bool persistent) {
  return {"mic_attached", {{"qube", qube}, {"persistent", persistent}}};
}
ControlEvent event_mic_detached(const std::string& qube) {
  return {"mic_detached", {{"qube", qube}}};
}
ControlEvent event_device_added(const std::string& device) {
  return {"device_added", {{"device", device}}};
}
ControlEvent event_device_removed(const std::string& device) {
  return {"device_removed", {{"device", device}}};
}

ControlEvent event_level(const std::string& qube, double peak) {
  return {"level", {{"qube", qube}, {"peak", std::round(peak * 1000.0) / 1000.0}}};
}

std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string event_line(const ControlEvent& ev) {
  return dump_json(json{{"event", ev.type}, {"data", ev.data}}) + "\n";
}

std::string error_line(const json& id, const ControlError& e) {
  json j{{"id", id}, {"error", {{"code", std::string(to_string(e.code))}, {"message", e.message}}}};
  return dump_json(j) + "\n";
}

// ---- serialisation ----
json to_json(const QubeStatus& q) {
  json counters = json::object();
  for (const auto& c : q.counters) {
    counters[c.name] = c.value;
  }
  return json{{"name", q.name},
              {"domid", q.domid},
              {"label", q.label},
              {"state", q.state},
              {"protocol", q.protocol},
              {"playback_format", q.playback_format},
              {"capture_format", q.capture_format},
              {"latency_us", q.latency_us},
              {"level", std::round(q.level * 1000.0) / 1000.0},
              {"volume", q.volume},
              {"muted", q.muted},
              {"corked", q.corked},
              {"mic",
               {{"requested", q.mic_requested},
                {"attached", q.mic_attached},
                {"persistent", q.mic_persistent},
                {"policy", q.mic_policy}}},
              {"output_device", q.output_device},
              {"playing_on", q.playing_on},
              {"last_error", q.last_error},
              {"counters", counters},
              {"network", q.network ? to_json(*q.network) : json(nullptr)}};
}

json to_json(const NetworkStatus& n) {
  auto r1 = [](double v) { return std::round(v * 10.0) / 10.0; };
  return json{{"peer", n.peer},
              {"connected", n.connected},
              {"tx_bytes", n.tx_bytes},
              {"rx_bytes", n.rx_bytes},
              {"tx_packets", n.tx_packets},
              {"rx_packets", n.rx_packets},
              {"tx_kbps", r1(n.tx_kbps)},
              {"rx_kbps", r1(n.rx_kbps)},
              {"loss_pct", std::round(n.loss_pct * 100.0) / 100.0},
              {"jitter_ms", r1(n.jitter_ms)},
              {"rtt_ms", r1(n.rtt_ms)},
              {"latency_ms", r1(n.latency_ms)},
              {"buffer_ms", r1(n.buffer_ms)},
              {"drift_ppm", std::round(n.drift_ppm)},
              {"red", n.red},
              {"fec", n.fec},
              {"plc", n.plc},
              {"underruns", n.underruns},
              {"late", n.late},
              {"dropped", n.dropped},
              {"age_ms", n.age_ms}};
}

Outcome<NetworkStatus> parse_network(const json& j) {
  const std::string what = "net_report: 'network'";
  if (!j.is_object()) {
    return err(ErrorCode::InvalidParams, what + " must be an object");
  }
  struct Count {
    const char* key;
    uint64_t NetworkStatus::*field;
  };
  struct Real {
    const char* key;
    double NetworkStatus::*field;
    double lo, hi;
  };
  static const Count counts[] = {{"tx_bytes", &NetworkStatus::tx_bytes},
                                 {"rx_bytes", &NetworkStatus::rx_bytes},
                                 {"tx_packets", &NetworkStatus::tx_packets},
                                 {"rx_packets", &NetworkStatus::rx_packets},
                                 {"red", &NetworkStatus::red},
                                 {"fec", &NetworkStatus::fec},
                                 {"plc", &NetworkStatus::plc},
                                 {"underruns", &NetworkStatus::underruns},
                                 {"late", &NetworkStatus::late},
                                 {"dropped", &NetworkStatus::dropped}};
  static const Real reals[] = {{"tx_kbps", &NetworkStatus::tx_kbps, 0, 1e6},
                               {"rx_kbps", &NetworkStatus::rx_kbps, 0, 1e6},
                               {"loss_pct", &NetworkStatus::loss_pct, 0, 100},
                               {"jitter_ms", &NetworkStatus::jitter_ms, 0, 60000},
                               {"rtt_ms", &NetworkStatus::rtt_ms, -1, 60000},
                               {"latency_ms", &NetworkStatus::latency_ms, 0, 60000},
                               {"buffer_ms", &NetworkStatus::buffer_ms, 0, 60000},
                               {"drift_ppm", &NetworkStatus::drift_ppm, -10000, 10000}};
  std::set<std::string_view> known{"peer", "connected"};
  for (const auto& c : counts) {
    known.insert(c.key);
  }
  for (const auto& r : reals) {
    known.insert(r.key);
  }
  for (const auto& item : j.items()) {
    if (!known.count(item.key())) {
      return err(ErrorCode::InvalidParams, what + ": unknown member " + quoted(item.key()));
    }
  }
  NetworkStatus n;
  constexpr uint64_t kMaxCount = uint64_t{1} << 53;  // exact in every JSON reader
  for (const auto& c : counts) {
    auto it = j.find(c.key);
    if (it == j.end() || !it->is_number_unsigned() || it->get<uint64_t>() > kMaxCount) {
      return err(ErrorCode::InvalidParams,
                 what + ": '" + c.key + "' must be an integer from 0 to 2^53");
    }
    n.*(c.field) = it->get<uint64_t>();
  }
  for (const auto& r : reals) {
    auto it = j.find(r.key);
    double v = 0;
    if (it == j.end() || !it->is_number() || !std::isfinite(v = it->get<double>()) || v < r.lo ||
        v > r.hi) {
      char range[64];
      std::snprintf(range, sizeof range, " must be a number from %g to %g", r.lo, r.hi);
      return err(ErrorCode::InvalidParams, what + ": '" + r.key + "'" + range);
    }
    n.*(r.field) = v;
  }
  auto c = j.find("connected");
  if (c == j.end() || !c->is_boolean()) {
    return err(ErrorCode::InvalidParams, what + ": 'connected' must be true or false");
  }
  n.connected = c->get<bool>();
  if (auto p = j.find("peer"); p != j.end()) {
    bool ok = p->is_string() && p->get_ref<const std::string&>().size() <= 64;
    if (ok) {
      for (char ch : p->get_ref<const std::string&>()) {
        ok = ok && ch >= 0x20 && ch < 0x7f;
      }
    }
    if (!ok) {
      return err(ErrorCode::InvalidParams,
                 what + ": 'peer' must be at most 64 printable ASCII characters");
    }
    n.peer = p->get<std::string>();
  }
  return n;
}

json to_json(const DaemonStatus& d) {
  return json{{"version", d.version},
              {"backend", d.backend},
              {"backend_connected", d.backend_connected},
              {"uptime_seconds", d.uptime_seconds}};
}

json to_json(const DeviceEntry& d) {
  return json{{"name", d.name},
              {"description", d.description},
              {"direction", d.is_output ? "output" : "input"},
              {"default", d.is_default}};
}

// ---- parsing ----
std::variant<Request, ParseFailure> parse_request(std::string_view line) {
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  if (line.size() > kMaxRequestBytes) {
    return ParseFailure{nullptr,
                        err(ErrorCode::InvalidRequest,
                            "request longer than " + std::to_string(kMaxRequestBytes) + " bytes")};
  }
  if (json_depth(line, kMaxJsonDepth) > kMaxJsonDepth) {
    return ParseFailure{
        nullptr, err(ErrorCode::InvalidRequest,
                     "request nests deeper than " + std::to_string(kMaxJsonDepth) + " levels")};
  }
  json doc = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return ParseFailure{nullptr, err(ErrorCode::ParseError,
                                     "request is not valid JSON (one JSON object per line)")};
  }
  if (!doc.is_object()) {
    return ParseFailure{nullptr, err(ErrorCode::InvalidRequest, "request must be a JSON object")};
  }
  Request req;
  if (auto it = doc.find("id"); it != doc.end()) {
    bool ok = it->is_null() || it->is_number_integer() ||
              (it->is_string() && it->get_ref<const std::string&>().size() <= kMaxNameBytes);
    if (!ok) {
      return ParseFailure{
          nullptr, err(ErrorCode::InvalidRequest, "'id' must be an integer or a short string")};
    }
    req.id = *it;
  }
  for (const auto& item : doc.items()) {
    if (item.key() != "id" && item.key() != "method" && item.key() != "params") {
      return ParseFailure{
          req.id, err(ErrorCode::InvalidRequest, "unknown request member " + quoted(item.key()))};
    }
  }
  auto m = doc.find("method");
  if (m == doc.end() || !m->is_string()) {
    return ParseFailure{req.id, err(ErrorCode::InvalidRequest, "'method' must be a string")};
  }
  req.method = m->get<std::string>();
  if (auto p = doc.find("params"); p != doc.end() && !p->is_null()) {
    if (!p->is_object()) {
      return ParseFailure{req.id, err(ErrorCode::InvalidParams, "'params' must be an object")};
    }
    req.params = *p;
  }
  return req;
}

// ---- dispatch ----
const std::vector<std::string>& ControlApi::methods() {
  static const std::vector<std::string> m = [] {
    std::vector<std::string> v{"info",        "list",        "set_volume", "set_mute",
                               "mic_attach",  "mic_detach",  "devices",    "set_output",
                               "attach_qube", "detach_qube", "subscribe",  "net_report"};
    v.insert(v.end(), bt_methods().begin(), bt_methods().end());
    return v;
  }();
  return m;
}

ControlReply ControlApi::handle_line(std::string_view line) {
  auto parsed = parse_request(line);
  if (auto* f = std::get_if<ParseFailure>(&parsed)) {
    return ControlReply{error_line(f->id, f->error), false};
  }
  return handle(std::get<Request>(parsed));
}

ControlReply ControlApi::handle(const Request& req) {
  bool subscribe = false;
  Outcome<json> r = call(req, subscribe);
  if (!r) {
    return ControlReply{error_line(req.id, r.error()), false};
  }
  return ControlReply{dump_json(json{{"id", req.id}, {"result", r.value()}}) + "\n", subscribe};
}

Outcome<json> ControlApi::call(const Request& req, bool& subscribe) {
  const std::string& m = req.method;
  Params p(m, req.params);

  if (m == "info") {
    if (auto e = p.only({})) {
      return *e;
    }
    return to_json(target_.info());
  }
  if (m == "list") {
    if (auto e = p.only({"qube"})) {
      return *e;
    }
    std::optional<std::string> filter;
    if (p.has("qube")) {
      auto q = p.name("qube");
      if (!q) {
        return q.error();
      }
      filter = q.value();
    }
    json qubes = json::array();
    for (const auto& q : target_.list()) {
      if (!filter || q.name == *filter) {
        qubes.push_back(to_json(q));
      }
    }
    if (filter && qubes.empty()) {
      return no_qube(*filter);
    }
    return json{{"qubes", qubes}};
  }
  if (m == "set_volume") {
    if (auto e = p.only({"qube", "percent", "delta"})) {
      return *e;
    }
    auto q = p.name("qube");
    if (!q) {
      return q.error();
    }
    if (p.has("percent") == p.has("delta")) {
      return err(ErrorCode::InvalidParams, "set_volume: give exactly one of 'percent' or 'delta'");
    }
    auto cur = find_qube(target_, q.value());
    if (!cur) {
      return no_qube(q.value());
    }
    int64_t wanted = 0;
    if (p.has("percent")) {
      auto v = p.integer("percent");
      if (!v) {
        return v.error();
      }
      wanted = v.value();
    } else {
      auto d = p.integer("delta");
      if (!d) {
        return d.error();
      }
      wanted = static_cast<int64_t>(cur->volume) + d.value();
    }
    uint32_t vol = clamp_volume(wanted);
    if (auto e = target_.set_volume(q.value(), vol)) {
      return *e;
    }
    return json{{"qube", q.value()}, {"volume", vol}};
  }
  if (m == "set_mute") {
    if (auto e = p.only({"qube", "muted"})) {
      return *e;
    }
    auto q = p.name("qube");
    if (!q) {
      return q.error();
    }
    auto muted = p.boolean("muted");
    if (!muted) {
      return muted.error();
    }
    if (auto e = target_.set_mute(q.value(), muted.value())) {
      return *e;
    }
    return json{{"qube", q.value()}, {"muted", muted.value()}};
  }
  if (m == "mic_attach" || m == "mic_detach") {
    bool attach = m == "mic_attach";
    if (auto e = attach ? p.only({"qube", "persistent", "confirm"}) : p.only({"qube"})) {
      return *e;
    }
    auto q = p.name("qube");
    if (!q) {
      return q.error();
    }
    auto persistent = p.boolean("persistent", false);
    if (!persistent) {
      return persistent.error();
    }
    auto confirm = p.boolean("confirm", false);
    if (!confirm) {
      return confirm.error();
    }
    if (auto e = target_.set_mic_attached(q.value(), attach, persistent.value(), confirm.value())) {
      return *e;
    }
    json r{{"qube", q.value()}, {"mic_attached", attach}};
    if (attach) {
      r["persistent"] = persistent.value();
    }
    return r;
  }
  if (m == "devices") {
    if (auto e = p.only({})) {
      return *e;
    }
    auto d = target_.devices();
    if (!d) {
      return d.error();
    }
    json arr = json::array();
    for (const auto& dev : d.value()) {
      arr.push_back(to_json(dev));
    }
    // The daemon's own default choice (set_output without a qube); "" = the backend's.
    return json{{"devices", arr}, {"default_output", target_.default_output()}};
  }
  if (m == "set_output") {
    if (auto e = p.only({"device", "qube"})) {
      return *e;
    }
    auto dev = p.name("device");
    if (!dev) {
      return dev.error();
    }
    std::string qube;
    if (p.has("qube")) {
      auto q = p.name("qube");
      if (!q) {
        return q.error();
      }
      qube = q.value();
    }
    // "@default": back to the backend's default device.
    const std::string device = dev.value() == "@default" ? std::string() : dev.value();
    if (auto e = target_.set_output(device, qube)) {
      return *e;
    }
    json r{{"device", dev.value()}};
    r["qube"] = qube.empty() ? json(nullptr) : json(qube);
    return r;
  }
  if (m == "attach_qube") {
    if (auto e = p.only({"qube", "domid", "volume", "muted"})) {
      return *e;
    }
    auto q = p.name("qube");
    if (!q) {
      return q.error();
    }
    auto domid = p.integer("domid");
    if (!domid) {
      return domid.error();
    }
    if (domid.value() < 1 || domid.value() > 32767) {
      return err(ErrorCode::InvalidParams, "attach_qube: 'domid' must be 1 to 32767");
    }
    std::optional<uint32_t> volume;
    if (p.has("volume")) {
      auto v = p.integer("volume");
      if (!v) {
        return v.error();
      }
      if (v.value() < 0 || v.value() > kMaxVolumePercent) {
        return err(ErrorCode::InvalidParams, "attach_qube: 'volume' must be 0 to 150");
      }
      volume = static_cast<uint32_t>(v.value());
    }
    std::optional<bool> muted;
    if (p.has("muted")) {
      auto b = p.boolean("muted");
      if (!b) {
        return b.error();
      }
      muted = b.value();
    }
    if (auto e =
            target_.attach_qube(q.value(), static_cast<uint32_t>(domid.value()), volume, muted)) {
      return *e;
    }
    return json{{"qube", q.value()}, {"domid", domid.value()}, {"attached", true}};
  }
  if (m == "detach_qube") {
    if (auto e = p.only({"qube"})) {
      return *e;
    }
    auto q = p.name("qube");
    if (!q) {
      return q.error();
    }
    if (auto e = target_.detach_qube(q.value())) {
      return *e;
    }
    return json{{"qube", q.value()}, {"attached", false}};
  }
  if (m == "net_report") {
    if (auto e = p.only({"qube", "network"})) {
      return *e;
    }
    auto q = p.name("qube");
    if (!q) {
      return q.error();
    }
    if (!req.params.contains("network")) {
      return err(ErrorCode::InvalidParams, "net_report: missing parameter 'network'");
    }
    auto n = parse_network(req.params["network"]);
    if (!n) {
      return n.error();
    }
    if (auto e = target_.set_network(q.value(), n.value())) {
      return *e;
    }
    return json{{"qube", q.value()}, {"stored", true}};
  }
  if (m == "subscribe") {
    if (auto e = p.only({})) {
      return *e;
    }
    subscribe = true;
    return json{{"subscribed", true}};
  }
  if (auto bt = call_bt(target_, req)) {
    return *bt;
  }
  return err(ErrorCode::UnknownMethod,
             "unknown method " + quoted(m) +
                 " (info, list, set_volume, set_mute, mic_attach, mic_detach, devices, "
                 "set_output, attach_qube, detach_qube, subscribe, net_report, bt_*)");
}

}  // namespace qaudio::control
