// qvm-audio's tables and event lines (see cli_output.hpp).
#include "cli_output.hpp"

#include <algorithm>
#include <cstdio>

namespace qaudio::cli {

namespace {

std::string str(const json& j, const char* key, const std::string& dflt = "-") {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return dflt;
  }
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    return s.empty() ? dflt : s;
  }
  return it->dump(-1, ' ', false, json::error_handler_t::replace);
}

bool flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

const json& qubes_of(const json& result) {
  static const json empty = json::array();
  auto it = result.find("qubes");
  return (it != result.end() && it->is_array()) ? *it : empty;
}

std::string latency(const json& q) {
  auto it = q.find("latency_us");
  if (str(q, "state") != "running" || it == q.end() || !it->is_number()) {
    return "-";
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", it->get<double>() / 1000.0);
  return buf;
}

std::string percent(const json& q) {
  return str(q, "volume") + "%";
}

}  // namespace

std::string net_summary(const json& q) {
  auto it = q.find("network");
  if (it == q.end() || !it->is_object()) {
    return "-";
  }
  const json& n = *it;
  auto num = [&](const char* k) {
    auto v = n.find(k);
    return v != n.end() && v->is_number() ? v->get<double>() : 0.0;
  };
  if (!flag(n, "connected")) {
    return "down";
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "rx %.0fk tx %.0fk loss %.1f%% jit %.1fms rtt %.1fms",
                num("rx_kbps"), num("tx_kbps"), num("loss_pct"), num("jitter_ms"), num("rtt_ms"));
  return buf;
}

std::string format_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(headers.size(), 0);
  for (size_t i = 0; i < headers.size(); ++i) {
    width[i] = headers[i].size();
  }
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      out += cell;
      if (i + 1 < width.size()) {
        out += std::string(width[i] - cell.size() + 2, ' ');
      }
    }
    while (!out.empty() && out.back() == ' ') {
      out.pop_back();
    }
    return out + "\n";
  };
  std::string out = line(headers);
  for (const auto& r : rows) {
    out += line(r);
  }
  return out;
}

std::string mic_state(const json& q) {
  auto it = q.find("mic");
  if (it == q.end() || !it->is_object()) {
    return "off";
  }
  if (flag(*it, "attached")) {
    return flag(*it, "persistent") ? "attached (persistent)" : "attached";
  }
  return flag(*it, "requested") ? "requested" : "off";
}

std::string render_list(const json& result) {
  // The NET column appears only when some qube is remote (has a network
  // session), so a purely local setup keeps its narrow table.
  bool any_net = false;
  for (const auto& q : qubes_of(result)) {
    any_net = any_net || (q.contains("network") && q["network"].is_object());
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& q : qubes_of(result)) {
    rows.push_back({str(q, "name"), str(q, "state"), str(q, "protocol"), str(q, "playback_format"),
                    latency(q), percent(q), flag(q, "muted") ? "yes" : "no", mic_state(q)});
    if (any_net) {
      rows.back().push_back(net_summary(q));
    }
  }
  std::vector<std::string> headers{"NAME",    "STATE",  "PROTOCOL", "FORMAT",
                                   "LATENCY", "VOLUME", "MUTED",    "MIC"};
  if (any_net) {
    headers.push_back("NET");
  }
  return format_table(headers, rows);
}

std::string render_info(const json& r) {
  std::string out;
  out += "version:  " + str(r, "version") + "\n";
  out += "backend:  " + str(r, "backend") +
         (flag(r, "backend_connected") ? " (connected)" : " (not connected)") + "\n";
  out += "uptime:   " + str(r, "uptime_seconds") + " s\n";
  return out;
}

std::string render_volume(const json& q) {
  return str(q, "name") + ": " + percent(q) + (flag(q, "muted") ? " (muted)" : "") + "\n";
}

std::string render_mic_status(const json& result) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& q : qubes_of(result)) {
    const json& mic = q.contains("mic") ? q["mic"] : json::object();
    rows.push_back({str(q, "name"), str(q, "state"),
                    flag(mic, "attached") ? "attached" : "detached",
                    flag(mic, "requested") ? "yes" : "no", flag(mic, "persistent") ? "yes" : "no",
                    str(mic, "policy")});
  }
  return format_table({"NAME", "STATE", "MIC", "REQUESTED", "PERSISTENT", "POLICY"}, rows);
}

std::string render_mic_requests(const json& result) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& q : qubes_of(result)) {
    if (mic_state(q) == "requested") {
      rows.push_back({str(q, "name"), str(q, "state")});
    }
  }
  if (rows.empty()) {
    return "no pending microphone requests\n";
  }
  return format_table({"NAME", "STATE"}, rows);
}

std::string render_devices(const json& result) {
  std::vector<std::vector<std::string>> rows;
  auto it = result.find("devices");
  if (it != result.end() && it->is_array()) {
    for (const auto& d : *it) {
      rows.push_back({str(d, "name"), str(d, "direction"), flag(d, "default") ? "yes" : "no",
                      str(d, "description")});
    }
  }
  return format_table({"NAME", "DIRECTION", "DEFAULT", "DESCRIPTION"}, rows);
}

std::string render_event(const json& ev) {
  std::string out = str(ev, "event", "?");
  auto it = ev.find("data");
  if (it != ev.end() && it->is_object()) {
    for (const auto& item : it->items()) {  // keys sorted: stable output
      const json& v = item.value();
      std::string text = v.is_string() ? v.get<std::string>()
                                       : v.dump(-1, ' ', false, json::error_handler_t::replace);
      bool quote = text.empty() || text.find(' ') != std::string::npos;
      out += " " + item.key() + "=" + (quote ? "\"" + text + "\"" : text);
    }
  }
  return out + "\n";
}

}  // namespace qaudio::cli
