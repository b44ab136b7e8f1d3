// The policy evaluator: a pure function from (snapshot, request, qube info)
// to a Decision. First matching rule wins; no match denies; an invalid
// snapshot or failed qube information denies everything.
//
//   Decision d = evaluate(*snap, Request{"qaudio.Play", "+", "work", "sys-audio"}, qubes);
#include <algorithm>

#include "qaudio/policy/policy.hpp"

namespace qaudio::policy {
namespace {

const std::string kAdminVm = "@adminvm";

// dom0 is spelled "@adminvm" in matching, as Qubes does.
std::string normalise_qube(const std::string& q) {
  return q == "dom0" ? kAdminVm : q;
}

bool has_tag(const QubeInfoProvider& qubes, const std::string& name, const std::string& tag) {
  auto t = qubes.tags(name);
  return std::find(t.begin(), t.end(), tag) != t.end();
}

bool is_real_qube(const QubeInfoProvider& qubes, const std::string& name) {
  return !name.empty() && name[0] != '@' && qubes.exists(name);
}

bool is_disposable(const QubeInfoProvider& qubes, const std::string& name) {
  return is_real_qube(qubes, name) && qubes.type(name) == "DispVM";
}

bool valid_name_chars(const std::string& s, const char* extra) {
  if (s.empty() || s.size() > 256) {
    return false;
  }
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    for (const char* p = extra; !ok && *p; ++p) {
      ok = c == *p;
    }
    if (!ok) {
      return false;
    }
  }
  return true;
}

Decision deny(std::string reason) {
  Decision d;
  d.action = Action::Deny;
  d.reason = std::move(reason);
  return d;
}

}  // namespace

bool spec_matches_source(const QubeSpec& spec,
                         const std::string& source_in,
                         const QubeInfoProvider& qubes) {
  using K = QubeSpec::Kind;
  const std::string source = normalise_qube(source_in);
  switch (spec.kind) {
    case K::Name:
      return source == spec.value;
    case K::Wildcard:
      return true;
    case K::AnyVm:
      return source != kAdminVm;
    case K::AdminVm:
      return source == kAdminVm;
    case K::Default:
      return false;
    case K::Tag:
      return is_real_qube(qubes, source) && has_tag(qubes, source, spec.value);
    case K::Type:
      return is_real_qube(qubes, source) && qubes.type(source) == spec.value;
    case K::DispVm:
      return is_disposable(qubes, source);
    case K::DispVmTemplate:
      return is_disposable(qubes, source) && qubes.dispvm_template(source) == spec.value;
    case K::DispVmTag: {
      if (!is_disposable(qubes, source)) {
        return false;
      }
      std::string tpl = qubes.dispvm_template(source);
      return is_real_qube(qubes, tpl) && has_tag(qubes, tpl, spec.value);
    }
  }
  return false;
}

bool spec_matches_target(const QubeSpec& spec,
                         const std::string& target_in,
                         const QubeInfoProvider& qubes) {
  using K = QubeSpec::Kind;
  const std::string target = normalise_qube(target_in.empty() ? "@default" : target_in);
  switch (spec.kind) {
    case K::Name:
      return target == spec.value;
    case K::Wildcard:
      return true;
    case K::AnyVm:
      return target != kAdminVm;
    case K::AdminVm:
      return target == kAdminVm;
    case K::Default:
      return target == "@default";
    case K::Tag:
      return is_real_qube(qubes, target) && has_tag(qubes, target, spec.value);
    case K::Type:
      return is_real_qube(qubes, target) && qubes.type(target) == spec.value;
    case K::DispVm:
      return target == "@dispvm";
    case K::DispVmTemplate:
      return target == "@dispvm:" + spec.value;
    case K::DispVmTag: {
      const std::string prefix = "@dispvm:";
      if (target.compare(0, prefix.size(), prefix) != 0) {
        return false;
      }
      std::string tpl = target.substr(prefix.size());
      return is_real_qube(qubes, tpl) && has_tag(qubes, tpl, spec.value);
    }
  }
  return false;
}

bool redirected_elsewhere(const Decision& d, const std::string& audio_qube) {
  if (d.action == Action::Deny || d.target.empty() || d.target == "@default") {
    return false;
  }
  return normalise_qube(d.target) != normalise_qube(audio_qube);
}

Decision evaluate(const PolicySnapshot& policy,
                  const Request& request,
                  const QubeInfoProvider& qubes) {
  if (!policy.valid()) {
    std::string r = "policy invalid: " + policy.errors.front().to_string();
    if (policy.errors.size() > 1) {
      r += " (and " + std::to_string(policy.errors.size() - 1) + " more)";
    }
    return deny(r);
  }
  std::string failure = qubes.failure();
  if (!failure.empty()) {
    return deny("qube information invalid: " + failure);
  }
  const std::string argument = request.argument.empty() ? "+" : request.argument;
  const std::string target = request.target.empty() ? "@default" : request.target;
  if (!valid_name_chars(request.service, "_.-")) {
    return deny("invalid request: bad service name");
  }
  if (argument[0] != '+' || !valid_name_chars(argument, "_.-+")) {
    return deny("invalid request: bad argument");
  }
  if (!valid_name_chars(request.source, "_.-")) {
    return deny("invalid request: bad source qube name");
  }
  if (!valid_name_chars(target, "_.-@:")) {
    return deny("invalid request: bad target");
  }
  for (const Rule& rule : policy.rules) {
    if (rule.service && *rule.service != request.service) {
      continue;
    }
    if (rule.argument && *rule.argument != argument) {
      continue;
    }
    if (!spec_matches_source(rule.source, request.source, qubes) ||
        !spec_matches_target(rule.target, target, qubes)) {
      continue;
    }
    Decision d;
    d.rule = &rule;
    d.action = rule.action;
    switch (rule.action) {
      case Action::Deny:
        d.notify = rule.notify.value_or(true);
        d.reason = "denied by policy " + rule.location();
        return d;
      case Action::Allow:
        d.target = rule.redirect ? rule.redirect->text : target;
        d.notify = rule.notify.value_or(false);
        if (d.target == "@default") {
          d.action = Action::Deny;
          d.reason = "policy says allow at " + rule.location() +
                     " but no target is specified by caller or policy";
          return d;
        }
        d.reason = "allowed by policy " + rule.location();
        return d;
      case Action::Ask:
        d.target = rule.redirect ? rule.redirect->text : target;
        d.default_target = rule.default_target ? rule.default_target->text : std::string();
        d.notify = rule.notify.value_or(false);
        d.reason = "ask the user, by policy " + rule.location();
        return d;
    }
  }
  return deny("no rule matched: default deny");
}

}  // namespace qaudio::policy
