// DomainWatcher implementations: file-backed (tests) and QubesDB (dlopen).
#include "domain_watcher.hpp"

#include <dlfcn.h>
#include <poll.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "qaudio/log.hpp"

namespace qaudio::agent {

std::optional<uint32_t> parse_domid(const std::string& text) {
  size_t end = text.size();
  while (end > 0 && std::isspace(static_cast<unsigned char>(text[end - 1]))) {
    --end;
  }
  if (end == 0 || end > 5) {
    return std::nullopt;
  }
  uint32_t v = 0;
  for (size_t i = 0; i < end; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      return std::nullopt;
    }
    v = v * 10 + static_cast<uint32_t>(text[i] - '0');
  }
  if (v >= 0x7FF0) {  // DOMID_FIRST_RESERVED
    return std::nullopt;
  }
  return v;
}

std::optional<uint32_t> FileDomainWatcher::current() {
  std::ifstream f(path_);
  if (!f) {
    return std::nullopt;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_domid(ss.str());
}

Result<void> FileDomainWatcher::start(EventLoop& loop, Callback cb) {
  loop_ = &loop;
  cb_ = std::move(cb);
  last_ = current();
  timer_ = loop.add_timer(
      interval_, [this] { check(); }, true);
  return {};
}

void FileDomainWatcher::stop() {
  if (loop_ != nullptr && timer_ != 0) {
    loop_->remove(timer_);
  }
  timer_ = 0;
  loop_ = nullptr;
}

void FileDomainWatcher::check() {
  auto now = current();
  if (now && now != last_) {
    last_ = now;
    log_info("audio domain id is now %u (from %s)", *now, path_.c_str());
    cb_(*now);
  }
}

namespace {

// The subset of libqubesdb's client API (qubesdb-client.h) the agent needs.
using qdb_handle_t = void*;
struct QdbApi {
  void* lib = nullptr;
  qdb_handle_t (*open)(char*) = nullptr;
  void (*close)(qdb_handle_t) = nullptr;
  char* (*read)(qdb_handle_t, char*, unsigned int*) = nullptr;
  int (*watch)(qdb_handle_t, char*) = nullptr;
  int (*watch_fd)(qdb_handle_t) = nullptr;
  char* (*read_watch)(qdb_handle_t) = nullptr;
};

class QubesDbWatcher : public DomainWatcher {
 public:
  QubesDbWatcher(QdbApi api, qdb_handle_t h, std::string key)
      : api_(api), h_(h), key_(std::move(key)) {}
  ~QubesDbWatcher() override {
    stop();
    api_.close(h_);
    dlclose(api_.lib);
  }
  std::optional<uint32_t> current() override {
    unsigned int len = 0;
    char* v = api_.read(h_, key_.data(), &len);
    if (v == nullptr) {
      return std::nullopt;
    }
    std::string s(v, len);
    free(v);
    return parse_domid(s);
  }
  Result<void> start(EventLoop& loop, Callback cb) override {
    if (api_.watch(h_, key_.data()) != 1) {
      return fail("qubesdb: cannot watch " + key_);
    }
    loop_ = &loop;
    cb_ = std::move(cb);
    last_ = current();
    watch_ = loop.add_fd(api_.watch_fd(h_), POLLIN, [this](short) {
      char* p = api_.read_watch(h_);
      free(p);
      auto now = current();
      if (now && now != last_) {
        last_ = now;
        log_info("audio domain id is now %u (QubesDB %s)", *now, key_.c_str());
        cb_(*now);
      }
    });
    return {};
  }
  void stop() override {
    if (loop_ != nullptr) {
      loop_->remove(watch_);
      loop_ = nullptr;
    }
  }

 private:
  QdbApi api_;
  qdb_handle_t h_;
  std::string key_;
  EventLoop* loop_ = nullptr;
  EventLoop::Id watch_ = 0;
  Callback cb_;
  std::optional<uint32_t> last_;
};

}  // namespace

Result<std::unique_ptr<DomainWatcher>> make_qubesdb_watcher(std::string key) {
  QdbApi api;
  api.lib = dlopen("libqubesdb.so.0", RTLD_NOW | RTLD_LOCAL);
  if (api.lib == nullptr) {
    api.lib = dlopen("libqubesdb.so", RTLD_NOW | RTLD_LOCAL);
  }
  if (api.lib == nullptr) {
    return fail("qubesdb: libqubesdb is not installed (not a Qubes qube?); pass --audiovm-domid");
  }
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(api.lib, name));
    return fn != nullptr;
  };
  if (!sym(api.open, "qdb_open") || !sym(api.close, "qdb_close") || !sym(api.read, "qdb_read") ||
      !sym(api.watch, "qdb_watch") || !sym(api.watch_fd, "qdb_watch_fd") ||
      !sym(api.read_watch, "qdb_read_watch")) {
    dlclose(api.lib);
    return fail("qubesdb: libqubesdb lacks the client API (qdb_open, qdb_watch, ...)");
  }
  qdb_handle_t h = api.open(nullptr);
  if (h == nullptr) {
    dlclose(api.lib);
    return fail("qubesdb: cannot connect to the QubesDB daemon");
  }
  return std::unique_ptr<DomainWatcher>(new QubesDbWatcher(api, h, std::move(key)));
}

}  // namespace qaudio::agent
