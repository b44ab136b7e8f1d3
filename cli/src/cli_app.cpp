// qvm-audio's commands (see cli_app.hpp).
#include "cli_app.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <memory>

#include "cli_bt.hpp"
#include "cli_output.hpp"
#include "control_client.hpp"
#include "qaudio/policy/loader.hpp"
#include "qaudio/policy/policy.hpp"
#include "qaudio/policy/qube_info.hpp"

namespace qaudio::cli {

namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

std::string default_socket() {
  const char* rt = std::getenv("XDG_RUNTIME_DIR");
  if (rt != nullptr && rt[0] == '/') {
    return std::string(rt) + "/qaudio/control";
  }
  return "/run/qaudio/control";
}

struct Context {
  std::string control;
  std::string audiovm;
  bool json_out = false;
  std::ostream& out;
  std::ostream& err;
  std::unique_ptr<ControlClient> client;

  int failed(const std::string& what) {
    err << "qvm-audio: " << what << "\n";
    return kFailed;
  }

  bool connect() {
    auto c = audiovm.empty()
                 ? ControlClient::connect_unix(control.empty() ? default_socket() : control)
                 : ControlClient::connect_qrexec(audiovm);
    if (!c) {
      failed(c.error().message +
             (audiovm.empty() ? " (is qubes-audiovm-daemon running? see --control and --audiovm)"
                              : ""));
      return false;
    }
    client = std::move(*c);
    return true;
  }

  // Calls `method`; on success stores the result. Errors are printed.
  bool call(const std::string& what, const std::string& method, const json& params, json& result) {
    if (!client && !connect()) {
      return false;
    }
    auto r = client->call(method, params);
    if (!r) {
      failed(what + ": " + r.error().message);
      return false;
    }
    if (auto e = r->find("error"); e != r->end()) {
      std::string code = e->is_object() && e->contains("code") && (*e)["code"].is_string()
                             ? (*e)["code"].get<std::string>()
                             : "error";
      std::string msg = e->is_object() && e->contains("message") && (*e)["message"].is_string()
                            ? (*e)["message"].get<std::string>()
                            : "no message";
      failed(what + ": " + msg + " [" + code + "]" +
             (code == "needs_confirmation" ? "\nqvm-audio: run it again with --confirm to confirm"
                                           : ""));
      return false;
    }
    result = r->value("result", json::object());
    return true;
  }

  void print_json(const json& j) {
    out << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  }
};

json find_qube(const json& list_result, const std::string& name) {
  for (const auto& q : list_result.value("qubes", json::array())) {
    if (q.value("name", "") == name) {
      return q;
    }
  }
  return nullptr;
}

int policy_check(Context& ctx,
                 const std::string& qube,
                 const std::string& service,
                 const std::string& dir,
                 const std::string& target,
                 const std::string& qubes_file) {
  using namespace qaudio::policy;
  Request req;
  req.service = policy_service_name(service);
  req.argument = "+";
  req.source = qube;
  req.target = target;
  StaticQubeInfo qubes;
  if (!qubes_file.empty()) {
    qubes = StaticQubeInfo::load_file(qubes_file);
    for (const auto& e : qubes.errors()) {
      ctx.err << "qvm-audio: " << e << "\n";
    }
  }
  auto snap = load_policy_dir(dir);
  for (const auto& e : snap->errors) {
    ctx.err << "qvm-audio: policy: " << e.to_string() << "\n";
  }
  Decision d = evaluate(*snap, req, qubes);
  if (ctx.json_out) {
    json j{{"qube", qube},
           {"service", req.service},
           {"decision", action_name(d.action)},
           {"rule", d.rule ? json(d.rule->location() + ": " + d.rule->text) : json(nullptr)},
           {"reason", d.reason}};
    ctx.print_json(j);
  } else {
    ctx.out << "decision: " << action_name(d.action) << "\n";
    if (d.rule) {
      ctx.out << "rule: " << d.rule->location() << ": " << d.rule->text << "\n";
    }
    ctx.out << "reason: " << d.reason << "\n";
  }
  return d.action == Action::Deny ? kFailed : kOk;
}

}  // namespace

std::optional<VolumeArg> parse_volume_arg(const std::string& s) {
  if (s.empty() || s.size() > 5) {
    return std::nullopt;
  }
  VolumeArg v;
  size_t i = 0;
  int sign = 1;
  if (s[0] == '+' || s[0] == '-') {
    v.relative = true;
    sign = s[0] == '-' ? -1 : 1;
    i = 1;
  }
  if (i == s.size()) {
    return std::nullopt;
  }
  int n = 0;
  for (; i < s.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
      return std::nullopt;
    }
    n = n * 10 + (s[i] - '0');
  }
  if (n > 150) {
    return std::nullopt;
  }
  v.value = sign * n;
  return v;
}

std::string policy_service_name(const std::string& s) {
  std::string low = s;
  std::transform(low.begin(), low.end(), low.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (low == "mic") {
    return "qaudio.Mic";
  }
  if (low == "play") {
    return "qaudio.Play";
  }
  return s;
}

int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"qvm-audio: control the audio qube (volume, mute, microphone, devices, events)",
               "qvm-audio"};
  app.fallthrough();
  app.require_subcommand(1);
  Context ctx{"", "", false, out, err, nullptr};
  app.add_option("--control", ctx.control,
                 "control socket (default $XDG_RUNTIME_DIR/qaudio/control or /run/qaudio/control)");
  app.add_option("--audiovm", ctx.audiovm,
                 "reach the daemon in this qube through qrexec (qaudio.Control)");
  app.add_flag("--json", ctx.json_out, "print JSON instead of tables (read commands)");

  std::string qube;
  std::string value;
  std::string device;
  std::string service;
  bool persistent = false;
  bool confirm = false;
  std::string policy_dir = "/etc/qubes/policy.d";
  std::string policy_target = "@default";
  std::string qubes_file;

  auto* list = app.add_subcommand("list", "qubes, their sessions, volume, mute and mic state");
  auto* info = app.add_subcommand("info", "daemon version, backend and uptime");
  auto* volume =
      app.add_subcommand("volume", "show or set a qube's volume (N, +N or -N percent, 0-150)");
  volume->add_option("qube", qube, "qube name")->required();
  volume->add_option("value", value, "N, +N or -N");
  auto* mute = app.add_subcommand("mute", "mute a qube");
  mute->add_option("qube", qube, "qube name")->required();
  auto* unmute = app.add_subcommand("unmute", "unmute a qube");
  unmute->add_option("qube", qube, "qube name")->required();
  auto* mic = app.add_subcommand("mic", "microphone: attach, detach, status, requests");
  mic->require_subcommand(1);
  auto* mic_attach = mic->add_subcommand("attach", "give the microphone to a qube");
  mic_attach->add_option("qube", qube, "qube name")->required();
  mic_attach->add_flag("--persistent", persistent, "keep it attached across restarts");
  mic_attach->add_flag("--confirm", confirm, "confirm the attachment where policy says 'ask'");
  auto* mic_detach = mic->add_subcommand("detach", "take the microphone away from a qube");
  mic_detach->add_option("qube", qube, "qube name")->required();
  auto* mic_status = mic->add_subcommand("status", "microphone state of every qube");
  auto* mic_requests = mic->add_subcommand("requests", "qubes asking to record");
  auto* devices = app.add_subcommand("devices", "output and input devices of the backend");
  auto* output = app.add_subcommand("output", "choose the output device (for every qube, or QUBE)");
  output->add_option("device", device, "device name (see devices)")->required();
  output->add_option("qube", qube, "qube name");
  auto* monitor = app.add_subcommand("monitor", "print events as they happen");
  auto* bt = app.add_subcommand("bt", "Bluetooth headsets: adapters, scan, pair, connect, ...");
  BtArgs bt_args;
  add_bt_commands(*bt, bt_args);
  auto* policy = app.add_subcommand("policy", "qrexec policy for audio");
  policy->require_subcommand(1);
  auto* policy_check_cmd =
      policy->add_subcommand("check", "would SERVICE (mic, play) be allowed for QUBE?");
  policy_check_cmd->add_option("qube", qube, "qube name")->required();
  policy_check_cmd->add_option("service", service, "mic, play, qaudio.Mic or qaudio.Play")
      ->required();
  policy_check_cmd->add_option("--policy-dir", policy_dir, "policy directory")
      ->capture_default_str();
  policy_check_cmd->add_option("--target", policy_target, "requested target")
      ->capture_default_str();
  policy_check_cmd->add_option("--qubes", qubes_file,
                               "qube types/tags file ('NAME type=AppVM tags=a,b')");

  try {
    std::vector<std::string> rev(args.rbegin(), args.rend());
    app.parse(rev);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return kOk;
  } catch (const CLI::CallForAllHelp&) {
    out << app.help("", CLI::AppFormatMode::All);
    return kOk;
  } catch (const CLI::ParseError& e) {
    err << "qvm-audio: " << e.what() << "\n"
        << "run 'qvm-audio --help' for usage\n";
    return kUsage;
  }
  if (!ctx.control.empty() && !ctx.audiovm.empty()) {
    err << "qvm-audio: give either --control or --audiovm, not both\n";
    return kUsage;
  }

  json r;
  if (*list || *mic_status || *mic_requests) {
    if (!ctx.call("list", "list", json::object(), r)) {
      return kFailed;
    }
    if (ctx.json_out) {
      if (*mic_requests) {
        json pending = json::array();
        for (const auto& q : r.value("qubes", json::array())) {
          if (mic_state(q) == "requested") {
            pending.push_back(q.value("name", ""));
          }
        }
        r = json{{"requests", pending}};
      }
      ctx.print_json(r);
    } else {
      ctx.out << (*list         ? render_list(r)
                  : *mic_status ? render_mic_status(r)
                                : render_mic_requests(r));
    }
    return kOk;
  }
  if (*info || *devices) {
    if (!ctx.call(*info ? "info" : "devices", *info ? "info" : "devices", json::object(), r)) {
      return kFailed;
    }
    if (ctx.json_out) {
      ctx.print_json(r);
    } else {
      ctx.out << (*info ? render_info(r) : render_devices(r));
    }
    return kOk;
  }
  if (*volume) {
    if (value.empty()) {
      if (!ctx.call("volume " + qube, "list", json{{"qube", qube}}, r)) {
        return kFailed;
      }
      json q = find_qube(r, qube);
      if (ctx.json_out) {
        ctx.print_json(json{
            {"qube", qube}, {"volume", q.value("volume", 0)}, {"muted", q.value("muted", false)}});
      } else {
        ctx.out << render_volume(q);
      }
      return kOk;
    }
    auto v = parse_volume_arg(value);
    if (!v) {
      err << "qvm-audio: volume: '" << value << "' is not N, +N or -N (percent, 0-150)\n";
      return kUsage;
    }
    json params{{"qube", qube}};
    params[v->relative ? "delta" : "percent"] = v->value;
    return ctx.call("volume " + qube, "set_volume", params, r) ? kOk : kFailed;
  }
  if (*mute || *unmute) {
    return ctx.call(std::string(*mute ? "mute " : "unmute ") + qube, "set_mute",
                    json{{"qube", qube}, {"muted", static_cast<bool>(*mute)}}, r)
               ? kOk
               : kFailed;
  }
  if (*mic_attach) {
    json params{{"qube", qube}};
    if (persistent) {
      params["persistent"] = true;
    }
    if (confirm) {
      params["confirm"] = true;
    }
    return ctx.call("mic attach " + qube, "mic_attach", params, r) ? kOk : kFailed;
  }
  if (*mic_detach) {
    return ctx.call("mic detach " + qube, "mic_detach", json{{"qube", qube}}, r) ? kOk : kFailed;
  }
  if (*output) {
    json params{{"device", device}};
    if (!qube.empty()) {
      params["qube"] = qube;
    }
    return ctx.call("output " + device, "set_output", params, r) ? kOk : kFailed;
  }
  if (*monitor) {
    if (!ctx.call("monitor", "subscribe", json::object(), r)) {
      return kFailed;
    }
    for (;;) {
      auto ev = ctx.client->read_message(std::chrono::milliseconds(-1));
      if (!ev) {
        return ctx.failed("monitor: " + ev.error().message);
      }
      if (!ev->contains("event")) {
        continue;
      }
      if (ctx.json_out) {
        ctx.out << ev->dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      } else {
        ctx.out << render_event(*ev);
      }
      ctx.out.flush();
    }
  }
  if (*bt) {
    if (!ctx.connect()) {
      return kFailed;
    }
    return run_bt(bt_args, *ctx.client, ctx.json_out, ctx.out, ctx.err);
  }
  if (*policy_check_cmd) {
    return policy_check(ctx, qube, service, policy_dir, policy_target, qubes_file);
  }
  err << "qvm-audio: missing command (see --help)\n";
  return kUsage;
}

}  // namespace qaudio::cli
