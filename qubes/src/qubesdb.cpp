// QubesDB implementations (qubesdb.hpp): libqubesdb via dlopen, a directory
// of files watched with inotify, and an in-memory one with an eventfd.
#include "qubesdb.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace qaudio::qubes {

bool is_valid_qubesdb_key(const std::string& key) {
  // QubesDB paths: '/' first, not last, at most 63 characters.
  if (key.size() < 2 || key.size() > 63 || key.front() != '/' || key.back() == '/') {
    return false;
  }
  for (size_t i = 0; i < key.size(); ++i) {
    char c = key[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '/' || (c == '.' && i > 0 && key[i - 1] != '/');
    if (!ok || (c == '/' && i > 0 && key[i - 1] == '/')) {
      return false;
    }
  }
  return true;
}

namespace {

Result<void> check_key(const std::string& key) {
  if (!is_valid_qubesdb_key(key)) {
    return fail("QubesDB key '" + key + "' is not valid (an absolute path of [A-Za-z0-9_.-])");
  }
  return {};
}

// ------------------------------------------------------------ memory ----

class MemoryQubesDb : public QubesDb {
 public:
  MemoryQubesDb() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~MemoryQubesDb() override { ::close(fd_); }
  std::optional<std::string> read(const std::string& key) override {
    auto it = values_.find(key);
    return it == values_.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
  Result<void> write(const std::string& key, const std::string& value) override {
    if (auto r = check_key(key); !r) {
      return r;
    }
    values_[key] = value;
    if (watched_.count(key) != 0) {
      pending_.push_back(key);
      uint64_t one = 1;
      (void)!::write(fd_, &one, sizeof one);
    }
    return {};
  }
  Result<void> watch(const std::string& key) override {
    if (auto r = check_key(key); !r) {
      return r;
    }
    watched_.insert(key);
    return {};
  }
  int fd() const override { return fd_; }
  std::vector<std::string> take_changes() override {
    uint64_t v;
    (void)!::read(fd_, &v, sizeof v);
    return std::exchange(pending_, {});
  }
  std::string describe() const override { return "in-memory QubesDB"; }

 private:
  int fd_;
  std::map<std::string, std::string> values_;
  std::set<std::string> watched_;
  std::vector<std::string> pending_;
};

// -------------------------------------------------------------- file ----

Result<void> make_dirs(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') {
    cur = "/";
  }
  while (std::getline(ss, part, '/')) {
    if (part.empty()) {
      continue;
    }
    cur += part + "/";
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return fail_errno("cannot create directory " + cur);
    }
  }
  return {};
}

class FileQubesDb : public QubesDb {
 public:
  FileQubesDb(std::string dir, int ifd) : dir_(std::move(dir)), ifd_(ifd) {}
  ~FileQubesDb() override { ::close(ifd_); }
  std::optional<std::string> read(const std::string& key) override {
    if (!is_valid_qubesdb_key(key)) {
      return std::nullopt;
    }
    std::ifstream in(dir_ + key, std::ios::binary);
    if (!in) {
      return std::nullopt;
    }
    std::string v((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return v;
  }
  Result<void> write(const std::string& key, const std::string& value) override {
    if (auto r = check_key(key); !r) {
      return r;
    }
    std::string path = dir_ + key;
    if (auto r = make_dirs(path.substr(0, path.rfind('/'))); !r) {
      return r;
    }
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << value;
      if (!out.flush()) {
        return fail("cannot write " + tmp);
      }
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      return fail_errno("cannot rename " + tmp + " to " + path);
    }
    return {};
  }
  Result<void> watch(const std::string& key) override {
    if (auto r = check_key(key); !r) {
      return r;
    }
    std::string path = dir_ + key;
    std::string parent = path.substr(0, path.rfind('/'));
    if (auto r = make_dirs(parent); !r) {
      return r;
    }
    int wd = inotify_add_watch(ifd_, parent.c_str(),
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_CREATE);
    if (wd < 0) {
      return fail_errno("inotify on " + parent);
    }
    watches_[wd].insert(key.substr(key.rfind('/') + 1));
    prefix_[wd] = key.substr(0, key.rfind('/') + 1);
    return {};
  }
  int fd() const override { return ifd_; }
  std::vector<std::string> take_changes() override {
    std::vector<std::string> out;
    alignas(inotify_event) char buf[4096];
    for (;;) {
      ssize_t n = ::read(ifd_, buf, sizeof buf);
      if (n <= 0) {
        break;
      }
      for (ssize_t off = 0; off < n;) {
        auto* ev = reinterpret_cast<inotify_event*>(buf + off);
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        if (ev->len == 0) {
          continue;
        }
        std::string name(ev->name);
        auto it = watches_.find(ev->wd);
        if (it != watches_.end() && it->second.count(name) != 0) {
          out.push_back(prefix_[ev->wd] + name);
        }
      }
    }
    return out;
  }
  std::string describe() const override { return "QubesDB files in " + dir_; }

 private:
  std::string dir_;
  int ifd_;
  std::map<int, std::set<std::string>> watches_;
  std::map<int, std::string> prefix_;
};

// ------------------------------------------------------- libqubesdb ----

using qdb_handle_t = void*;
struct QdbApi {
  void* lib = nullptr;
  qdb_handle_t (*open)(char*) = nullptr;
  void (*close)(qdb_handle_t) = nullptr;
  char* (*read)(qdb_handle_t, char*, unsigned int*) = nullptr;
  int (*write)(qdb_handle_t, char*, char*, unsigned int) = nullptr;
  int (*watch)(qdb_handle_t, char*) = nullptr;
  int (*watch_fd)(qdb_handle_t) = nullptr;
  char* (*read_watch)(qdb_handle_t) = nullptr;
};

class LibQubesDb : public QubesDb {
 public:
  LibQubesDb(QdbApi api, qdb_handle_t h) : api_(api), h_(h) {}
  ~LibQubesDb() override {
    api_.close(h_);
    dlclose(api_.lib);
  }
  std::optional<std::string> read(const std::string& key) override {
    if (!is_valid_qubesdb_key(key)) {
      return std::nullopt;
    }
    std::string k = key;
    unsigned int len = 0;
    char* v = api_.read(h_, k.data(), &len);
    if (v == nullptr) {
      return std::nullopt;
    }
    std::string out(v, len);
    std::free(v);
    return out;
  }
  Result<void> write(const std::string& key, const std::string& value) override {
    if (auto r = check_key(key); !r) {
      return r;
    }
    std::string k = key, v = value;
    if (api_.write(h_, k.data(), v.data(), static_cast<unsigned int>(v.size())) == 0) {
      return fail("QubesDB: cannot write " + key + " (is qubesdb-daemon running?)");
    }
    return {};
  }
  Result<void> watch(const std::string& key) override {
    if (auto r = check_key(key); !r) {
      return r;
    }
    std::string k = key;
    if (api_.watch(h_, k.data()) == 0) {
      return fail("QubesDB: cannot watch " + key);
    }
    return {};
  }
  int fd() const override { return api_.watch_fd(h_); }
  std::vector<std::string> take_changes() override {
    std::vector<std::string> out;
    // qdb_read_watch blocks until an event: call it once per readable fd.
    if (char* k = api_.read_watch(h_)) {
      out.emplace_back(k);
      std::free(k);
    }
    return out;
  }
  std::string describe() const override { return "QubesDB (libqubesdb)"; }

 private:
  QdbApi api_;
  qdb_handle_t h_;
};

}  // namespace

std::unique_ptr<QubesDb> make_memory_qubesdb() {
  return std::make_unique<MemoryQubesDb>();
}

Result<std::unique_ptr<QubesDb>> open_file_qubesdb(const std::string& dir) {
  if (dir.empty() || dir[0] != '/') {
    return fail("QubesDB directory '" + dir + "' must be an absolute path");
  }
  if (auto r = make_dirs(dir); !r) {
    return fail(r.error());
  }
  int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (ifd < 0) {
    return fail_errno("inotify_init1");
  }
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') {
    d.pop_back();
  }
  return std::unique_ptr<QubesDb>(std::make_unique<FileQubesDb>(d, ifd));
}

Result<std::unique_ptr<QubesDb>> open_libqubesdb() {
  QdbApi api;
  api.lib = dlopen("libqubesdb.so.0", RTLD_NOW | RTLD_LOCAL);
  if (api.lib == nullptr) {
    api.lib = dlopen("libqubesdb.so", RTLD_NOW | RTLD_LOCAL);
  }
  if (api.lib == nullptr) {
    return fail("QubesDB: libqubesdb is not installed (qubesdb package); not on Qubes?");
  }
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(api.lib, name));
    return fn != nullptr;
  };
  if (!sym(api.open, "qdb_open") || !sym(api.close, "qdb_close") || !sym(api.read, "qdb_read") ||
      !sym(api.write, "qdb_write") || !sym(api.watch, "qdb_watch") ||
      !sym(api.watch_fd, "qdb_watch_fd") || !sym(api.read_watch, "qdb_read_watch")) {
    dlclose(api.lib);
    return fail("QubesDB: libqubesdb lacks the client API (qdb_open, qdb_write, qdb_watch, ...)");
  }
  qdb_handle_t h = api.open(nullptr);
  if (h == nullptr) {
    dlclose(api.lib);
    return fail("QubesDB: cannot connect to the local qubesdb-daemon");
  }
  return std::unique_ptr<QubesDb>(std::make_unique<LibQubesDb>(api, h));
}

Result<std::unique_ptr<QubesDb>> open_qubesdb(const std::string& spec) {
  if (spec == "qubesdb") {
    return open_libqubesdb();
  }
  if (spec == "memory") {
    return make_memory_qubesdb();
  }
  if (spec.rfind("file:", 0) == 0) {
    return open_file_qubesdb(spec.substr(5));
  }
  return fail("QubesDB '" + spec + "': expected qubesdb, file:DIR or memory");
}

}  // namespace qaudio::qubes
