// Parsing policy text and loading a policy directory into a snapshot.
//
// load_policy_dir(DIR) reads DIR/*.policy (names of [a-z0-9_.-], not starting
// with '.', in lexical order), following !include FILE, !include-dir DIR and
// !include-service SERVICE ARG FILE (paths relative to DIR). Every error is
// recorded with file and line; a snapshot with errors denies everything.
//
//   auto snap = load_policy_dir("/etc/qubes/policy.d");
//   for (auto& e : snap->errors) fprintf(stderr, "%s\n", e.to_string().c_str());
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qaudio/policy/policy.hpp"
#include "qaudio/result.hpp"

namespace qaudio::policy {

// Where the parser reads included files from (the real filesystem, or an
// in-memory map for the fuzzer and tests).
class PolicyFs {
 public:
  virtual ~PolicyFs() = default;
  // Reads at most max_bytes+1 bytes (so the caller can tell "too big").
  virtual Result<std::string> read_file(const std::string& path, size_t max_bytes) const = 0;
  // Names (not paths) of the regular files in the directory.
  virtual Result<std::vector<std::string>> list_dir(const std::string& path) const = 0;
  // A stable identity for cycle detection (e.g. the canonical path).
  virtual std::string identity(const std::string& path) const { return path; }
};

class RealPolicyFs : public PolicyFs {
 public:
  Result<std::string> read_file(const std::string& path, size_t max_bytes) const override;
  Result<std::vector<std::string>> list_dir(const std::string& path) const override;
  std::string identity(const std::string& path) const override;
};

// Loads a directory as Qubes does with /etc/qubes/policy.d.
std::shared_ptr<const PolicySnapshot> load_policy_dir(const std::string& dir,
                                                      const PolicyLimits& limits = {});
std::shared_ptr<const PolicySnapshot> load_policy_dir(const std::string& dir,
                                                      const PolicyFs& fs,
                                                      const PolicyLimits& limits = {});

// Parses one file's text (its includes go through `fs`, relative to `root`).
PolicySnapshot parse_policy_text(const std::string& text,
                                 const std::string& filename,
                                 const std::string& root,
                                 const PolicyFs& fs,
                                 const PolicyLimits& limits = {});

// Whether a policy.d file name is considered, and whether it is acceptable.
bool is_policy_file_name(const std::string& name);

}  // namespace qaudio::policy
