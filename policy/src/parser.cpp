// The policy parser: Qubes 4.1+ multi-file qrexec policy text into Rules.
//
// Accepted (as Qubes defines it): one rule per line,
//   SERVICE ARGUMENT SOURCE TARGET ACTION [KEY=VALUE ...]
// whole-line '#' comments, and the directives !include FILE, !include-dir DIR,
// !include-service SERVICE ARGUMENT FILE (a file in the old 4.0 format:
// SOURCE TARGET ACTION[,KEY=VALUE...]) and !compat-4.0 (accepted, no effect:
// qaudio's services have no 4.0 policy files). Every error is recorded with
// file and line and parsing goes on, so `lint` can show them all.
#include <algorithm>

#include "qaudio/policy/loader.hpp"

namespace qaudio::policy {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) {
      ++i;
    }
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) {
      ++j;
    }
    if (j > i) {
      out.push_back(s.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

std::string trim(const std::string& s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && is_space(s[b])) {
    ++b;
  }
  while (e > b && is_space(s[e - 1])) {
    --e;
  }
  return s.substr(b, e - b);
}

bool all_of_charset(const std::string& s, const char* extra) {
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    for (const char* p = extra; !ok && *p; ++p) {
      ok = (c == *p);
    }
    if (!ok) {
      return false;
    }
  }
  return true;
}

// Printable form of untrusted text in a message (bounded, no control chars).
std::string quote(const std::string& s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 64; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > 64) {
    out += "...";
  }
  return out + "'";
}

enum class Ctx { Source, Target, Redirect };

// Parses one qube specification; returns an error message or "".
std::string parse_spec(const std::string& tok, Ctx ctx, QubeSpec& out) {
  using K = QubeSpec::Kind;
  out = QubeSpec{};
  out.text = tok;
  const char* where = ctx == Ctx::Source ? "source" : ctx == Ctx::Target ? "target" : "redirect";
  auto value_ok = [](const std::string& v) { return !v.empty() && all_of_charset(v, "_.-"); };
  if (tok.empty()) {
    return std::string("empty ") + where;
  }
  if (tok == "*" && ctx != Ctx::Redirect) {
    out.kind = K::Wildcard;
    return "";
  }
  if (tok == "dom0" || tok == "@adminvm") {
    out.kind = K::AdminVm;
    return "";
  }
  if (tok.empty() || tok[0] != '@') {
    if (tok[0] == '$') {
      return "invalid " + std::string(where) + " " + quote(tok) +
             ": the '$' tokens are the old 4.0 syntax, write '@' instead";
    }
    if (!value_ok(tok) || tok.size() > 64) {
      return "invalid qube name " + quote(tok) + " in " + where +
             " (letters, digits, '_', '.', '-')";
    }
    out.kind = K::Name;
    out.value = tok;
    return "";
  }
  struct Prefix {
    const char* p;
    K kind;
    bool source, target, redirect;
  };
  static const Prefix kExact[] = {
      {"@anyvm", K::AnyVm, true, true, false},
      {"@default", K::Default, false, true, false},
      {"@dispvm", K::DispVm, true, true, true},
  };
  for (const auto& e : kExact) {
    if (tok == e.p) {
      bool ok = ctx == Ctx::Source ? e.source : ctx == Ctx::Target ? e.target : e.redirect;
      if (!ok) {
        return quote(tok) + " is not allowed as " + where;
      }
      out.kind = e.kind;
      return "";
    }
  }
  static const Prefix kPrefixes[] = {
      {"@dispvm:@tag:", K::DispVmTag, true, true, false},
      {"@dispvm:", K::DispVmTemplate, true, true, true},
      {"@tag:", K::Tag, true, true, false},
      {"@type:", K::Type, true, true, false},
  };
  for (const auto& e : kPrefixes) {
    std::string p = e.p;
    if (tok.compare(0, p.size(), p) != 0) {
      continue;
    }
    std::string v = tok.substr(p.size());
    if (!v.empty() && v[0] == '@' && e.kind == K::DispVmTemplate) {
      break;  // "@dispvm:@something" other than @tag: is invalid
    }
    bool ok = ctx == Ctx::Source ? e.source : ctx == Ctx::Target ? e.target : e.redirect;
    if (!ok) {
      return quote(tok) + " is not allowed as " + where;
    }
    if (v.empty()) {
      return "empty " + p + " token";
    }
    if (!value_ok(v) || v.size() > 64) {
      return "invalid value in " + quote(tok) + " (letters, digits, '_', '.', '-')";
    }
    out.kind = e.kind;
    out.value = v;
    return "";
  }
  return "invalid " + std::string(where) + " token " + quote(tok);
}

// "*" -> nullopt. Returns an error message or "".
std::string parse_service_arg(const std::string& svc,
                              const std::string& arg,
                              std::optional<std::string>& service,
                              std::optional<std::string>& argument) {
  service.reset();
  argument.reset();
  if (svc != "*") {
    if (svc.empty() || !all_of_charset(svc, "_.-")) {
      return "service " + quote(svc) + " contains invalid characters";
    }
    service = svc;
  }
  if (arg != "*") {
    if (arg.empty() || arg[0] != '+') {
      return "argument " + quote(arg) + " does not start with '+' (use '+' for no argument)";
    }
    if (!all_of_charset(arg, "_.-+")) {
      return "argument " + quote(arg) + " contains invalid characters";
    }
    if (!service) {
      return "only '*' argument allowed for '*' service";
    }
    argument = arg;
  }
  return "";
}

std::string parse_yes_no(const std::string& key, const std::string& v, std::optional<bool>& out) {
  if (v == "yes") {
    out = true;
  } else if (v == "no") {
    out = false;
  } else {
    return "'" + key + "' is " + quote(v) + ", but can be only 'yes' or 'no'";
  }
  return "";
}

// Fills rule fields from tokens: source target action params...
std::string parse_rule_tail(const std::vector<std::string>& t, size_t first, Rule& r) {
  if (t.size() < first + 3) {
    return "wrong number of fields (expected SERVICE ARGUMENT SOURCE TARGET ACTION [OPTIONS])";
  }
  std::string err = parse_spec(t[first], Ctx::Source, r.source);
  if (err.empty()) {
    err = parse_spec(t[first + 1], Ctx::Target, r.target);
  }
  if (!err.empty()) {
    return err;
  }
  const std::string& act = t[first + 2];
  if (act == "allow") {
    r.action = Action::Allow;
  } else if (act == "deny") {
    r.action = Action::Deny;
  } else if (act == "ask") {
    r.action = Action::Ask;
  } else {
    return "invalid action " + quote(act) + " (allow, deny or ask)";
  }
  std::vector<std::string> seen;
  for (size_t i = first + 3; i < t.size(); ++i) {
    const std::string& p = t[i];
    if (p[0] == '#') {
      return "'#' starts a comment only at the beginning of a line";
    }
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      return "invalid action parameter syntax " + quote(p) + " (expected KEY=VALUE)";
    }
    std::string key = p.substr(0, eq);
    std::string val = p.substr(eq + 1);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      return "parameter given twice: " + quote(key);
    }
    seen.push_back(key);
    bool allowed =
        key == "notify" ||
        (r.action != Action::Deny && (key == "target" || key == "user" || key == "autostart")) ||
        (r.action == Action::Ask && key == "default_target");
    if (!allowed) {
      return "invalid parameter " + quote(key) + " for action " + action_name(r.action);
    }
    if (val.empty()) {
      return "empty value for " + quote(key);
    }
    if (key == "notify") {
      err = parse_yes_no(key, val, r.notify);
    } else if (key == "autostart") {
      err = parse_yes_no(key, val, r.autostart);
    } else if (key == "user") {
      if (!all_of_charset(val, "_.-")) {
        err = "invalid user " + quote(val);
      }
      r.user = val;
    } else {
      QubeSpec spec;
      err = parse_spec(val, Ctx::Redirect, spec);
      (key == "target" ? r.redirect : r.default_target) = spec;
    }
    if (!err.empty()) {
      return err;
    }
  }
  if (r.target.kind == QubeSpec::Kind::Default && r.action == Action::Allow && !r.redirect) {
    return "allow action for @default rule must specify target= option";
  }
  return "";
}

struct ServiceCtx {
  std::string service;
  std::string argument;
};

class Parser {
 public:
  Parser(const PolicyFs& fs, const PolicyLimits& lim, std::string root, PolicySnapshot& out)
      : fs_(fs), lim_(lim), root_(std::move(root)), out_(out) {}

  void parse_text(const std::string& text,
                  const std::string& file,
                  int depth,
                  const ServiceCtx* svc) {
    if (text.size() > lim_.max_file_bytes) {
      error(file, 0, "file is larger than " + std::to_string(lim_.max_file_bytes) + " bytes");
      return;
    }
    size_t pos = 0;
    int lineno = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      size_t end = nl == std::string::npos ? text.size() : nl;
      ++lineno;
      std::string raw = text.substr(pos, end - pos);
      pos = end + 1;
      if (raw.size() > lim_.max_line_bytes) {
        error(file, lineno, "line longer than " + std::to_string(lim_.max_line_bytes) + " bytes");
        continue;
      }
      if (raw.find('\0') != std::string::npos) {
        error(file, lineno, "NUL byte in line");
        continue;
      }
      parse_line(trim(raw), file, lineno, depth, svc);
    }
  }

  void parse_file(const std::string& path,
                  const std::string& from,
                  int from_line,
                  int depth,
                  const ServiceCtx* svc) {
    if (depth > lim_.max_include_depth) {
      error(from, from_line,
            "includes nested too deeply (more than " + std::to_string(lim_.max_include_depth) +
                " levels)");
      return;
    }
    std::string id = fs_.identity(path);
    if (std::find(stack_.begin(), stack_.end(), id) != stack_.end()) {
      std::string chain;
      for (const auto& s : stack_) {
        chain += s + " -> ";
      }
      error(from, from_line, "include cycle: " + chain + id);
      return;
    }
    if (out_.files.size() >= lim_.max_files) {
      error(from, from_line,
            "too many policy files (more than " + std::to_string(lim_.max_files) + ")");
      return;
    }
    auto text = fs_.read_file(path, lim_.max_file_bytes);
    if (!text) {
      if (from.empty()) {
        error(path, 0, "cannot read: " + text.error().message);
      } else {
        error(from, from_line, "cannot include: " + text.error().message);
      }
      return;
    }
    total_bytes_ += text->size();
    if (total_bytes_ > lim_.max_total_bytes) {
      error(path, 0,
            "policy larger than " + std::to_string(lim_.max_total_bytes) + " bytes in total");
      return;
    }
    out_.files.push_back(path);
    note_dir(parent_of(path));
    stack_.push_back(id);
    parse_text(*text, path, depth, svc);
    stack_.pop_back();
  }

  // Reads DIR/*.policy in lexical order, as Qubes does for policy.d.
  void parse_dir(const std::string& dir, const std::string& from, int from_line, int depth) {
    auto names = fs_.list_dir(dir);
    if (!names) {
      if (from.empty()) {
        error(dir, 0, "cannot read policy directory: " + names.error().message);
      } else {
        error(from, from_line, "cannot include directory: " + names.error().message);
      }
      return;
    }
    note_dir(dir);
    std::vector<std::string> files;
    for (const auto& n : *names) {
      if (n.empty() || n[0] == '.' || n.size() < 7 || n.compare(n.size() - 7, 7, ".policy") != 0) {
        continue;
      }
      if (!is_policy_file_name(n)) {
        error(dir + "/" + n, 0, "invalid file name (only a-z, 0-9, '_', '.', '-' are allowed)");
        continue;
      }
      files.push_back(n);
    }
    std::sort(files.begin(), files.end());
    for (const auto& n : files) {
      parse_file(dir + "/" + n, from, from_line, depth + (from.empty() ? 0 : 1), nullptr);
    }
  }

  // Parses text as the named file, which counts for cycle detection.
  void parse_root_text(const std::string& text, const std::string& file) {
    stack_.push_back(fs_.identity(file));
    parse_text(text, file, 0, nullptr);
    stack_.pop_back();
  }

  std::string resolve(const std::string& p) const {
    if (!p.empty() && p[0] == '/') {
      return p;
    }
    return root_ + "/" + p;
  }

 private:
  static std::string parent_of(const std::string& path) {
    size_t s = path.rfind('/');
    if (s == std::string::npos) {
      return ".";
    }
    return s == 0 ? "/" : path.substr(0, s);
  }

  void note_dir(const std::string& d) {
    if (std::find(out_.dirs.begin(), out_.dirs.end(), d) == out_.dirs.end()) {
      out_.dirs.push_back(d);
    }
  }

  void error(const std::string& file, int line, std::string msg) {
    if (out_.errors.size() < 1000) {
      out_.errors.push_back(PolicyError{file, line, std::move(msg)});
    }
  }

  void add_rule(Rule r) {
    if (out_.rules.size() >= lim_.max_rules) {
      if (!too_many_reported_) {
        error(r.file, r.line, "too many rules (more than " + std::to_string(lim_.max_rules) + ")");
        too_many_reported_ = true;
      }
      return;
    }
    out_.rules.push_back(std::move(r));
  }

  void parse_directive(const std::vector<std::string>& t,
                       const std::string& file,
                       int lineno,
                       int depth,
                       const ServiceCtx* svc) {
    const std::string& d = t[0];
    if (svc) {  // inside an !include-service file only !include is allowed
      if (d != "!include") {
        error(file, lineno, "invalid directive " + quote(d) + " in an !include-service file");
      } else if (t.size() != 2) {
        error(file, lineno, "invalid number of params for !include");
      } else {
        parse_file(resolve(t[1]), file, lineno, depth + 1, svc);
      }
      return;
    }
    if (d == "!include" || d == "!include-dir") {
      if (t.size() != 2) {
        error(file, lineno, "invalid number of params for " + d + " (expected one path)");
      } else if (d == "!include") {
        parse_file(resolve(t[1]), file, lineno, depth + 1, nullptr);
      } else {
        parse_dir(resolve(t[1]), file, lineno, depth);
      }
    } else if (d == "!include-service") {
      if (t.size() != 4) {
        error(file, lineno,
              "invalid number of params for !include-service "
              "(expected SERVICE ARGUMENT FILE)");
        return;
      }
      ServiceCtx ctx{t[1], t[2]};
      std::optional<std::string> s, a;
      std::string err = parse_service_arg(t[1], t[2], s, a);
      if (!err.empty()) {
        error(file, lineno, err);
        return;
      }
      parse_file(resolve(t[3]), file, lineno, depth + 1, &ctx);
    } else if (d == "!compat-4.0") {
      if (t.size() != 1) {
        error(file, lineno, "invalid number of params for !compat-4.0");
      }
    } else {
      error(file, lineno, "invalid directive " + quote(d));
    }
  }

  void parse_line(const std::string& line,
                  const std::string& file,
                  int lineno,
                  int depth,
                  const ServiceCtx* svc) {
    if (line.empty() || line[0] == '#') {
      return;
    }
    std::string l = line;
    if (svc) {  // the 4.0 compatibility substitutions Qubes applies
      auto replace_all = [&l](const std::string& from, const std::string& to) {
        for (size_t p = l.find(from); p != std::string::npos; p = l.find(from, p + to.size())) {
          l.replace(p, from.size(), to);
        }
      };
      replace_all("$include:", "!include ");
      replace_all("$", "@");
      replace_all(",", " ");
    }
    std::vector<std::string> t = split_ws(l);
    if (t.empty()) {
      return;
    }
    if (t[0][0] == '!') {
      parse_directive(t, file, lineno, depth, svc);
      return;
    }
    Rule r;
    r.file = file;
    r.line = lineno;
    r.text = line;
    std::string err;
    if (svc) {
      err = parse_service_arg(svc->service, svc->argument, r.service, r.argument);
      if (err.empty()) {
        err = parse_rule_tail(t, 0, r);
      }
    } else if (t.size() < 5) {
      err = "wrong number of fields (expected SERVICE ARGUMENT SOURCE TARGET ACTION [OPTIONS])";
    } else {
      err = parse_service_arg(t[0], t[1], r.service, r.argument);
      if (err.empty()) {
        err = parse_rule_tail(t, 2, r);
      }
    }
    if (!err.empty()) {
      error(file, lineno, err);
      return;
    }
    add_rule(std::move(r));
  }

  const PolicyFs& fs_;
  const PolicyLimits& lim_;
  std::string root_;
  PolicySnapshot& out_;
  std::vector<std::string> stack_;
  bool too_many_reported_ = false;
  size_t total_bytes_ = 0;
};

}  // namespace

const char* action_name(Action a) {
  switch (a) {
    case Action::Allow:
      return "allow";
    case Action::Ask:
      return "ask";
    case Action::Deny:
      break;
  }
  return "deny";
}

std::string PolicyError::to_string() const {
  std::string s;
  if (!file.empty()) {
    s = file;
    if (line > 0) {
      s += ":" + std::to_string(line);
    }
    s += ": ";
  }
  return s + message;
}

bool is_policy_file_name(const std::string& name) {
  if (name.empty() || name[0] == '.') {
    return false;
  }
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

PolicySnapshot parse_policy_text(const std::string& text,
                                 const std::string& filename,
                                 const std::string& root,
                                 const PolicyFs& fs,
                                 const PolicyLimits& limits) {
  PolicySnapshot snap;
  snap.root = root;
  snap.files.push_back(filename);
  Parser p(fs, limits, root, snap);
  p.parse_root_text(text, filename);
  return snap;
}

std::shared_ptr<const PolicySnapshot> load_policy_dir(const std::string& dir,
                                                      const PolicyFs& fs,
                                                      const PolicyLimits& limits) {
  auto snap = std::make_shared<PolicySnapshot>();
  std::string root = dir;
  while (root.size() > 1 && root.back() == '/') {
    root.pop_back();
  }
  snap->root = root;
  Parser p(fs, limits, root, *snap);
  p.parse_dir(root, "", 0, 0);
  return snap;
}

}  // namespace qaudio::policy
