// Helpers for the policy tests: a temporary directory, an in-memory PolicyFs,
// and a qube table shared by the decision tests.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "qaudio/policy/loader.hpp"
#include "qaudio/policy/qube_info.hpp"

namespace qaudio::policy::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/qaudio-policy-test.XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& rel) const { return path_ + "/" + rel; }
  // Writes (replaces) rel with text, creating parent directories.
  std::string write(const std::string& rel, const std::string& text) const {
    std::string p = file(rel);
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << text;
    return p;
  }

 private:
  std::string path_;
};

// Files by absolute path; a directory lists the files directly under it.
class MapFs : public PolicyFs {
 public:
  std::map<std::string, std::string> files;
  std::map<std::string, int> dir_errors;  // path -> errno to fail list_dir with

  Result<std::string> read_file(const std::string& path, size_t) const override {
    auto it = files.find(path);
    if (it == files.end()) {
      return fail("open " + path + ": No such file or directory", ENOENT);
    }
    return it->second;
  }
  Result<std::vector<std::string>> list_dir(const std::string& path) const override {
    auto e = dir_errors.find(path);
    if (e != dir_errors.end()) {
      return fail_errno("opendir " + path, e->second);
    }
    std::vector<std::string> names;
    bool found = false;
    for (const auto& [p, text] : files) {
      if (p.size() > path.size() + 1 && p.compare(0, path.size() + 1, path + "/") == 0) {
        found = true;
        std::string rest = p.substr(path.size() + 1);
        if (rest.find('/') == std::string::npos) {
          names.push_back(rest);
        }
      }
    }
    if (!found) {
      return fail("opendir " + path + ": No such file or directory", ENOENT);
    }
    return names;
  }
};

// The qubes of the decision table.
inline StaticQubeInfo table_qubes() {
  StaticQubeInfo q;
  q.add("work", QubeRecord{"AppVM", {"audio", "trusted"}, "", false});
  q.add("personal", QubeRecord{"AppVM", {}, "", false});
  q.add("untrusted", QubeRecord{"AppVM", {"untrusted"}, "", false});
  q.add("fedora-dvm", QubeRecord{"AppVM", {}, "", true});
  q.add("other-dvm", QubeRecord{"AppVM", {"x"}, "", true});
  q.add("disp1", QubeRecord{"DispVM", {}, "fedora-dvm", false});
  q.add("disp2", QubeRecord{"DispVM", {}, "other-dvm", false});
  q.add("sys-audio", QubeRecord{"AppVM", {"audiovm"}, "", false});
  q.add("tpl", QubeRecord{"TemplateVM", {}, "", false});
  q.add("sa", QubeRecord{"StandaloneVM", {}, "", false});
  q.add("dom0", QubeRecord{"AdminVM", {}, "", false});
  return q;
}

inline PolicySnapshot parse_text(const std::string& text, const MapFs& fs = MapFs()) {
  return parse_policy_text(text, "/p/test.policy", "/p", fs);
}

}  // namespace qaudio::policy::testing
