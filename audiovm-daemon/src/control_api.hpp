// The control API's logic (no sockets): parses one request line of
// newline-delimited JSON, validates it, dispatches it to a ControlTarget and
// builds the reply line. The socket side lives in control_server.*, the
// binding to the real daemon in control_daemon_adapter.*; the wire format is
// documented in docs/control-api.md.
//
//   {"id": 1, "method": "set_volume", "params": {"qube": "work", "delta": -10}}
//   -> {"id": 1, "result": {"qube": "work", "volume": 70}}
//   {"id": 2, "method": "set_mute", "params": {"qube": "nope", "muted": true}}
//   -> {"id": 2, "error": {"code": "not_found", "message": "no qube named 'nope'"}}
//
//   ControlApi api(target);
//   ControlReply r = api.handle_line(line);   // r.line ends with '\n'
//   if (r.subscribe) { ...stream events to this client... }
//
// Limits: a request is at most kMaxRequestBytes bytes and nests at most
// kMaxJsonDepth levels; anything else is an error reply, never a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace qaudio::bt {
class Manager;
}
namespace qaudio::daemon {
class HeadsetOutput;
}

namespace qaudio::control {

using json = nlohmann::json;

inline constexpr size_t kMaxRequestBytes = 64 * 1024;
inline constexpr int kMaxJsonDepth = 16;
inline constexpr uint32_t kMaxVolumePercent = 150;

enum class ErrorCode {
  ParseError,      // not JSON
  InvalidRequest,  // JSON, but not a request object (id/method/params shape)
  UnknownMethod,
  InvalidParams,      // missing or ill-typed parameter
  NotFound,           // no such qube / device
  Refused,            // not allowed (peer credentials, limits, policy)
  NeedsConfirmation,  // policy says ask: retry with "confirm": true
  Unsupported,        // the daemon or its backend cannot do this (yet)
  Internal,           // the daemon failed to do it
};
std::string_view to_string(ErrorCode c);

struct ControlError {
  ErrorCode code = ErrorCode::Internal;
  std::string message;  // says what failed, on what, and what to do
};

// A value or a ControlError; for calls that return nothing use Status.
template <class T>
class Outcome {
 public:
  Outcome(T v) : v_(std::in_place_index<0>, std::move(v)) {}             // NOLINT
  Outcome(ControlError e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT
  explicit operator bool() const { return v_.index() == 0; }
  const T& value() const { return std::get<0>(v_); }
  const ControlError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ControlError> v_;
};
using Status = std::optional<ControlError>;  // nullopt = success

// ---- what the target reports ----
struct CounterEntry {
  std::string name;
  uint64_t value = 0;
};

// A network session's counters (docs/control-api.md, "net_report"): what the
// audio-domain end of the network channel (qaudio-net-bridge --role audiovm)
// measures for a remote qube and reports with net_report about once a second.
struct NetworkStatus {
  std::string peer;  // the qube's address as last seen ("HOST:PORT"); may be empty
  bool connected = false;
  uint64_t tx_bytes = 0, rx_bytes = 0, tx_packets = 0, rx_packets = 0;
  double tx_kbps = 0, rx_kbps = 0;  // over the last report interval
  double loss_pct = 0;
  double jitter_ms = 0;
  double rtt_ms = -1;  // -1: not measured yet
  double latency_ms = 0;
  double buffer_ms = 0;
  double drift_ppm = 0;  // clock-drift correction of the playout (> 0: the peer's clock runs fast)
  uint64_t red = 0, fec = 0, plc = 0, underruns = 0, late = 0, dropped = 0;
  uint64_t age_ms = 0;  // since the report arrived (filled in by the daemon)
};

struct QubeStatus {
  std::string name;
  uint32_t domid = 0;
  std::string label;
  std::string state;            // "waiting" | "connecting" | "running" | "stopped"
  std::string protocol;         // "none" | "stock" | "negotiating" | "native"
  std::string playback_format;  // e.g. "s16le 44100 Hz 2 ch"
  std::string capture_format;
  uint32_t latency_us = 0;
  double level = 0;       // playback peak after volume, 0..1 (a decaying meter)
  uint32_t volume = 100;  // percent, 0..150
  bool muted = false;
  bool corked = false;
  bool mic_requested = false;  // the qube wants to record
  bool mic_attached = false;   // the user let it
  bool mic_persistent = false;
  std::string mic_policy;     // "allow" | "ask" | "deny"; empty: unknown
  std::string output_device;  // the qube's own choice; empty: the default
  std::string playing_on;     // the device it plays on now; empty: the backend's default
  std::string last_error;
  std::vector<CounterEntry> counters;
  std::optional<NetworkStatus> network;  // a remote qube's network session, if reported
};

struct DaemonStatus {
  std::string version;
  std::string backend;
  bool backend_connected = false;
  uint64_t uptime_seconds = 0;
};

struct DeviceEntry {
  std::string name;
  std::string description;
  bool is_output = true;
  bool is_default = false;
};

// What the control API drives. Every call runs on the daemon's loop thread.
// Unknown qubes are NotFound; things the daemon cannot do are Unsupported.
class ControlTarget {
 public:
  virtual ~ControlTarget() = default;
  virtual DaemonStatus info() = 0;
  virtual std::vector<QubeStatus> list() = 0;
  virtual Status set_volume(const std::string& qube, uint32_t percent) = 0;
  virtual Status set_mute(const std::string& qube, bool muted) = 0;
  // `confirmed`: the user confirmed an "ask" policy for this attach.
  virtual Status set_mic_attached(const std::string& qube,
                                  bool attached,
                                  bool persistent,
                                  bool confirmed) = 0;
  virtual Outcome<std::vector<DeviceEntry>> devices() = 0;
  // The output chosen by set_output without a qube ("": the backend's default).
  virtual std::string default_output() { return {}; }
  // qube empty: the default for every qube.
  virtual Status set_output(const std::string& device, const std::string& qube) = 0;
  // Bluetooth (bt_* methods, control_api_bt.hpp); nullptr: not enabled.
  virtual bt::Manager* bluetooth() { return nullptr; }
  // The headset output policy (bt_output); nullptr: not enabled.
  virtual daemon::HeadsetOutput* headset_output() { return nullptr; }
  // Adds / removes a qube at run time (the pacat-simple-vchan launcher).
  // `volume` (0-150) and `muted` apply unless the qube has saved state.
  virtual Status attach_qube(const std::string& /*qube*/,
                             uint32_t /*domid*/,
                             std::optional<uint32_t> /*volume*/,
                             std::optional<bool> /*muted*/) {
    return ControlError{ErrorCode::Unsupported, "this daemon cannot attach qubes at run time"};
  }
  virtual Status detach_qube(const std::string& /*qube*/) {
    return ControlError{ErrorCode::Unsupported, "this daemon cannot detach qubes at run time"};
  }
  // Stores the network counters reported for a configured qube (net_report).
  virtual Status set_network(const std::string& /*qube*/, const NetworkStatus& /*n*/) {
    return ControlError{ErrorCode::Unsupported, "this daemon does not keep network counters"};
  }
};

// ---- events streamed to subscribers ----
struct ControlEvent {
  std::string type;  // see the event_* helpers below
  json data = json::object();
};
ControlEvent event_qube_connected(const std::string& qube, const std::string& protocol);
ControlEvent event_qube_disconnected(const std::string& qube, const std::string& reason);
ControlEvent event_volume_changed(const std::string& qube, uint32_t volume);
ControlEvent event_mute_changed(const std::string& qube, bool muted);
ControlEvent event_mic_requested(const std::string& qube);
ControlEvent event_mic_attached(const std::string& qube, bool persistent);
ControlEvent event_mic_detached(const std::string& qube);
ControlEvent event_device_added(const std::string& device);
ControlEvent event_device_removed(const std::string& device);
ControlEvent event_level(const std::string& qube, double peak);
// {"event": TYPE, "data": {...}}\n
std::string event_line(const ControlEvent& ev);

// ---- requests ----
struct Request {
  json id;  // number, string or null (absent)
  std::string method;
  json params = json::object();
};

// Parses and validates the envelope of one request (without the newline).
// On failure the error carries the id when one could be read.
struct ParseFailure {
  json id;
  ControlError error;
};
std::variant<Request, ParseFailure> parse_request(std::string_view line);

// JSON text of a value, never throwing (invalid UTF-8 is replaced).
std::string dump_json(const json& j);
std::string error_line(const json& id, const ControlError& e);  // ends with '\n'

struct ControlReply {
  std::string line;        // the reply, '\n'-terminated
  bool subscribe = false;  // the client asked for the event stream
};

class ControlApi {
 public:
  explicit ControlApi(ControlTarget& target) : target_(target) {}
  ControlReply handle_line(std::string_view line);
  ControlReply handle(const Request& req);
  // Names of every method, for docs and tests.
  static const std::vector<std::string>& methods();

 private:
  Outcome<json> call(const Request& req, bool& subscribe);
  ControlTarget& target_;
};

json to_json(const QubeStatus& q);
json to_json(const DaemonStatus& d);
json to_json(const DeviceEntry& d);
json to_json(const NetworkStatus& n);
// Validates net_report's "network" object: exactly the documented members,
// each of its type and within its bounds; says what is wrong.
Outcome<NetworkStatus> parse_network(const json& j);

}  // namespace qaudio::control
