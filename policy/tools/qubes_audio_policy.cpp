// qubes-audio-policy: check qaudio's qrexec policy files.
//
//   qubes-audio-policy lint DIR
//       exit 0 when DIR parses cleanly; exit 1 printing "file:line: message"
//       for every error (a policy with errors denies every request).
//   qubes-audio-policy check DIR SERVICE[+ARG] QUBE [--target NAME] [--qubes FILE]
//                            [--argument +ARG]
//       prints the decision and the rule (or reason) that made it; exit 0.
//
// Usage errors exit 2.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "qaudio/policy/loader.hpp"
#include "qaudio/policy/policy.hpp"
#include "qaudio/policy/qube_info.hpp"

using namespace qaudio::policy;

namespace {

const char kUsage[] =
    "usage: qubes-audio-policy lint DIR\n"
    "       qubes-audio-policy check DIR SERVICE[+ARG] QUBE [--target NAME] [--qubes FILE]\n"
    "                                [--argument +ARG]\n"
    "\n"
    "lint   parse DIR/*.policy (and what they include) as Qubes 4.1+ qrexec policy;\n"
    "       exit 0 when valid, exit 1 printing file:line: message for every error.\n"
    "check  evaluate a request from QUBE for SERVICE (qaudio.Play, qaudio.Mic) and print\n"
    "       the decision and the rule that made it (exit 0).\n"
    "       --target NAME   the requested target (default @default)\n"
    "       --qubes FILE    qube types/tags, lines 'NAME type=AppVM tags=a,b template=T'\n"
    "       --argument ARG  the service argument (default '+', none)\n"
    "\n"
    "A policy with any error denies every request. Exit 2 on usage errors.\n";

int usage_error(const char* msg) {
  std::fprintf(stderr, "qubes-audio-policy: %s\n%s", msg, kUsage);
  return 2;
}

int lint(const std::string& dir) {
  auto snap = load_policy_dir(dir);
  if (snap->valid()) {
    std::printf("%s: OK (%zu rules in %zu files)\n", dir.c_str(), snap->rules.size(),
                snap->files.size());
    return 0;
  }
  for (const auto& e : snap->errors) {
    std::printf("%s\n", e.to_string().c_str());
  }
  std::fprintf(stderr, "%zu error(s): every request is denied until they are fixed\n",
               snap->errors.size());
  return 1;
}

int check(const std::vector<std::string>& args) {
  std::string target = "@default";
  std::string qubes_file;
  std::string argument;
  std::vector<std::string> pos;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--target" || a == "--qubes" || a == "--argument") {
      if (i + 1 >= args.size()) {
        return usage_error((a + " needs a value").c_str());
      }
      (a == "--target" ? target : a == "--qubes" ? qubes_file : argument) = args[++i];
    } else if (a.size() > 1 && a[0] == '-' && a[1] == '-') {
      return usage_error(("unknown option " + a).c_str());
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 3) {
    return usage_error("check needs DIR SERVICE QUBE");
  }
  Request req;
  req.service = pos[1];
  size_t plus = req.service.find('+');
  if (plus != std::string::npos) {
    if (!argument.empty()) {
      return usage_error("give the argument either as SERVICE+ARG or --argument, not both");
    }
    argument = req.service.substr(plus);
    req.service.resize(plus);
  }
  req.argument = argument.empty() ? "+" : argument;
  req.source = pos[2];
  req.target = target;

  StaticQubeInfo qubes;
  if (!qubes_file.empty()) {
    qubes = StaticQubeInfo::load_file(qubes_file);
    for (const auto& e : qubes.errors()) {
      std::fprintf(stderr, "%s\n", e.c_str());
    }
  }
  auto snap = load_policy_dir(pos[0]);
  for (const auto& e : snap->errors) {
    std::fprintf(stderr, "%s\n", e.to_string().c_str());
  }
  Decision d = evaluate(*snap, req, qubes);
  std::printf("decision: %s\n", action_name(d.action));
  if (d.rule) {
    std::printf("rule: %s: %s\n", d.rule->location().c_str(), d.rule->text.c_str());
  }
  if (d.action != Action::Deny && !d.target.empty() && d.target != "@default") {
    std::printf("target: %s\n", d.target.c_str());
  }
  if (!d.default_target.empty()) {
    std::printf("default_target: %s\n", d.default_target.c_str());
  }
  std::printf("reason: %s\n", d.reason.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  if (args.empty()) {
    return usage_error("missing command");
  }
  if (args[0] == "lint") {
    if (args.size() != 2) {
      return usage_error("lint needs exactly one DIR");
    }
    return lint(args[1]);
  }
  if (args[0] == "check") {
    return check(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  return usage_error(("unknown command '" + args[0] + "'").c_str());
}
