// StaticQubeInfo: qube names, types, tags and disposable templates, from code
// or from the qube-info file (see qube_info.hpp for the format). Keys:
// type=TYPE, tags=a,b,c, template=NAME (a disposable's template),
// template_for_dispvms=yes|no. Any error fails the whole provider.
//
//   auto qubes = StaticQubeInfo::load_file("/etc/qaudio/qubes");
//   if (!qubes.failure().empty()) { /* the evaluator will deny everything */ }
#include <algorithm>

#include "qaudio/policy/loader.hpp"
#include "qaudio/policy/qube_info.hpp"

namespace qaudio::policy {
namespace {

bool name_ok(const std::string& s) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t b = 0;
  while (true) {
    size_t e = s.find(sep, b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) {
      return out;
    }
    b = e + 1;
  }
}

}  // namespace

StaticQubeInfo StaticQubeInfo::parse(const std::string& text, const std::string& filename) {
  StaticQubeInfo info;
  auto err = [&](int line, const std::string& msg) {
    if (info.errors_.size() < 100) {
      info.errors_.push_back(filename + ":" + std::to_string(line) + ": " + msg);
    }
  };
  if (text.size() > (1u << 20)) {
    info.errors_.push_back(filename + ": file is larger than 1048576 bytes");
  } else {
    int lineno = 0;
    for (const std::string& raw : split(text, '\n')) {
      ++lineno;
      if (raw.size() > 4096) {
        err(lineno, "line longer than 4096 bytes");
        continue;
      }
      std::vector<std::string> tok;
      for (std::string t : split(raw, ' ')) {
        for (std::string u : split(t, '\t')) {
          if (!u.empty() && u.back() == '\r') {
            u.pop_back();
          }
          if (!u.empty()) {
            tok.push_back(u);
          }
        }
      }
      if (tok.empty() || tok[0][0] == '#') {
        continue;
      }
      if (!name_ok(tok[0])) {
        err(lineno, "invalid qube name '" + tok[0].substr(0, 64) + "'");
        continue;
      }
      if (info.qubes_.count(tok[0])) {
        err(lineno, "qube '" + tok[0] + "' listed twice");
        continue;
      }
      QubeRecord rec;
      bool ok = true;
      for (size_t i = 1; i < tok.size() && ok; ++i) {
        size_t eq = tok[i].find('=');
        std::string key = tok[i].substr(0, eq);
        std::string val = eq == std::string::npos ? std::string() : tok[i].substr(eq + 1);
        if (eq == std::string::npos || val.empty()) {
          err(lineno, "expected KEY=VALUE, got '" + tok[i].substr(0, 64) + "'");
          ok = false;
        } else if (key == "type") {
          static const char* kTypes[] = {"AppVM",        "DispVM",  "TemplateVM",
                                         "StandaloneVM", "AdminVM", "RemoteVM"};
          ok = std::any_of(std::begin(kTypes), std::end(kTypes),
                           [&](const char* t) { return val == t; });
          if (!ok) {
            err(lineno, "unknown type '" + val.substr(0, 64) +
                            "' (AppVM, DispVM, TemplateVM, StandaloneVM, AdminVM, RemoteVM)");
          }
          rec.type = val;
        } else if (key == "tags") {
          for (const auto& t : split(val, ',')) {
            if (!name_ok(t)) {
              err(lineno, "invalid tag '" + t.substr(0, 64) + "'");
              ok = false;
              break;
            }
            rec.tags.push_back(t);
          }
        } else if (key == "template") {
          ok = name_ok(val);
          if (!ok) {
            err(lineno, "invalid template name '" + val.substr(0, 64) + "'");
          }
          rec.dispvm_template = val;
        } else if (key == "template_for_dispvms") {
          ok = val == "yes" || val == "no";
          if (!ok) {
            err(lineno, "template_for_dispvms must be yes or no");
          }
          rec.template_for_dispvms = val == "yes";
        } else {
          err(lineno, "unknown key '" + key.substr(0, 64) +
                          "' (type, tags, template, template_for_dispvms)");
          ok = false;
        }
      }
      if (ok && rec.type.empty()) {
        err(lineno, "missing type= for qube '" + tok[0] + "'");
        ok = false;
      }
      if (ok && rec.type == "DispVM" && rec.dispvm_template.empty()) {
        err(lineno, "disposable '" + tok[0] + "' needs template=NAME");
        ok = false;
      }
      if (ok) {
        info.qubes_[tok[0]] = std::move(rec);
      }
    }
  }
  if (!info.errors_.empty()) {
    info.failure_ = info.errors_.front();
    info.qubes_.clear();
  }
  return info;
}

StaticQubeInfo StaticQubeInfo::load_file(const std::string& path) {
  RealPolicyFs fs;
  auto text = fs.read_file(path, 1u << 20);
  if (!text) {
    StaticQubeInfo info;
    info.errors_.push_back(path + ": " + text.error().message);
    info.failure_ = info.errors_.front();
    return info;
  }
  return parse(*text, path);
}

bool StaticQubeInfo::exists(const std::string& name) const {
  return qubes_.count(name) != 0;
}

std::string StaticQubeInfo::type(const std::string& name) const {
  auto it = qubes_.find(name);
  return it == qubes_.end() ? std::string() : it->second.type;
}

std::vector<std::string> StaticQubeInfo::tags(const std::string& name) const {
  auto it = qubes_.find(name);
  return it == qubes_.end() ? std::vector<std::string>() : it->second.tags;
}

std::string StaticQubeInfo::dispvm_template(const std::string& name) const {
  auto it = qubes_.find(name);
  return it == qubes_.end() ? std::string() : it->second.dispvm_template;
}

}  // namespace qaudio::policy
