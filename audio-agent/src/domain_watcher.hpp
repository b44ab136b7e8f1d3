// DomainWatcher: where the agent learns the audio domain's domid, and when it
// changes. On Qubes it is QubesDB's `/qubes-audio-domain-xid` (watched);
// elsewhere a fixed `--audiovm-domid`; tests use a file.
//
//   StaticDomainWatcher     fixed id (--audiovm-domid M)
//   FileDomainWatcher       a file holding the id as decimal text, re-read on
//                           change (polled; the fake for tests, also usable
//                           with a file a Qubes service keeps up to date)
//   make_qubesdb_watcher()  libqubesdb through dlopen (qdb_open/qdb_read/
//                           qdb_watch); an error when the library is absent
//
//   auto w = std::make_unique<FileDomainWatcher>("/run/qaudio/audiovm");
//   w->start(loop, [&](uint32_t id) { session.set_audiovm_domid(id); });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "qaudio/event_loop.hpp"
#include "qaudio/result.hpp"

namespace qaudio::agent {

class DomainWatcher {
 public:
  using Callback = std::function<void(uint32_t domid)>;
  virtual ~DomainWatcher() = default;
  // The id now, if known.
  virtual std::optional<uint32_t> current() = 0;
  // Calls `cb` on `loop`'s thread whenever the id changes to a new valid value.
  virtual Result<void> start(EventLoop& loop, Callback cb) = 0;
  virtual void stop() = 0;
};

class StaticDomainWatcher : public DomainWatcher {
 public:
  explicit StaticDomainWatcher(uint32_t id) : id_(id) {}
  std::optional<uint32_t> current() override { return id_; }
  Result<void> start(EventLoop&, Callback) override { return {}; }
  void stop() override {}

 private:
  uint32_t id_;
};

// Parses a domid as QubesDB stores it ("3", "3\n"); nullopt for anything else.
std::optional<uint32_t> parse_domid(const std::string& text);

class FileDomainWatcher : public DomainWatcher {
 public:
  explicit FileDomainWatcher(std::string path,
                             std::chrono::milliseconds interval = std::chrono::milliseconds(200))
      : path_(std::move(path)), interval_(interval) {}
  ~FileDomainWatcher() override { stop(); }
  std::optional<uint32_t> current() override;
  Result<void> start(EventLoop& loop, Callback cb) override;
  void stop() override;

 private:
  void check();

  std::string path_;
  std::chrono::milliseconds interval_;
  EventLoop* loop_ = nullptr;
  EventLoop::Id timer_ = 0;
  Callback cb_;
  std::optional<uint32_t> last_;
};

// QubesDB key `key` (normally /qubes-audio-domain-xid) via libqubesdb.so,
// loaded at run time so the agent builds and runs without it.
Result<std::unique_ptr<DomainWatcher>> make_qubesdb_watcher(
    std::string key = "/qubes-audio-domain-xid");

}  // namespace qaudio::agent
