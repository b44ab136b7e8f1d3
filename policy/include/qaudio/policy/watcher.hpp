// PolicyWatcher: tells the daemon's event loop when the policy files changed
// (inotify on the policy directory, the directories it includes, and the
// parent of a missing policy directory). The caller reloads and swaps the
// snapshot atomically through PolicyHolder.
//
//   PolicyWatcher w("/etc/qubes/policy.d");
//   w.start();
//   PolicyHolder holder(load_policy_dir(dir));
//   loop.add_fd(w.fd(), POLLIN, [&](short) {
//     if (w.check()) { auto s = load_policy_dir(dir); w.watch(*s); holder.set(s); }
//   });
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "qaudio/policy/policy.hpp"
#include "qaudio/result.hpp"

namespace qaudio::policy {

class PolicyWatcher {
 public:
  explicit PolicyWatcher(std::string dir);
  ~PolicyWatcher();
  PolicyWatcher(const PolicyWatcher&) = delete;
  PolicyWatcher& operator=(const PolicyWatcher&) = delete;

  // Starts watching; also watches the parent when `dir` is missing.
  Result<void> start();
  // Adds the directories a freshly loaded snapshot read (included dirs).
  void watch(const PolicySnapshot& snapshot);
  // Pollable fd: readable when something changed.
  int fd() const { return fd_; }
  // Drains pending events; true when a reload is due. Never blocks.
  bool check();

 private:
  void add_dir(const std::string& path);

  std::string dir_;
  int fd_ = -1;
  std::vector<std::pair<int, std::string>> watches_;
};

// Holds the current snapshot; readers take a reference-counted copy, so a
// swap never changes a snapshot someone is evaluating.
class PolicyHolder {
 public:
  explicit PolicyHolder(std::shared_ptr<const PolicySnapshot> s) : snap_(std::move(s)) {}
  std::shared_ptr<const PolicySnapshot> get() const {
    std::lock_guard<std::mutex> g(mu_);
    return snap_;
  }
  void set(std::shared_ptr<const PolicySnapshot> s) {
    std::lock_guard<std::mutex> g(mu_);
    snap_.swap(s);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const PolicySnapshot> snap_;
};

}  // namespace qaudio::policy
