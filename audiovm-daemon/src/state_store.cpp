// Per-qube persistent state (see state_store.hpp): one small JSON file per
// qube, written atomically; corrupt files are reported and ignored.
#include "state_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "qaudio/log.hpp"

namespace qaudio::daemon {
namespace {

constexpr std::string_view kPrefix = "qube-";
constexpr std::string_view kSuffix = ".json";
constexpr size_t kMaxFileBytes = 4096;
constexpr std::string_view kDefaultOutputFile = "default-output.json";
constexpr std::string_view kHeadsetOutputFile = "bluetooth-output.json";

Result<std::string> device_field(const nlohmann::json& j, const char* key = "output_device") {
  auto it = j.find(key);
  if (it == j.end()) {
    return std::string();
  }
  if (!it->is_string()) {
    return fail("\"" + std::string(key) + "\" is not a string");
  }
  std::string d = it->get<std::string>();
  if (!d.empty() && !valid_device_name(d)) {
    return fail("\"" + std::string(key) + "\" is not a valid device name");
  }
  return d;
}

Result<std::string> read_small_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return fail_errno("opening " + path);
  }
  std::string out;
  char buf[1024];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      int e = errno;
      ::close(fd);
      return fail_errno("reading " + path, e);
    }
    if (r == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(r));
    if (out.size() > kMaxFileBytes) {
      ::close(fd);
      return fail(path + " is larger than " + std::to_string(kMaxFileBytes) + " bytes");
    }
  }
  ::close(fd);
  return out;
}

}  // namespace

bool valid_qube_name(std::string_view name) {
  if (name.empty() || name.size() > 31 || name[0] == '.' || name[0] == '-') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

bool valid_device_name(std::string_view name) {
  return !name.empty() && name.size() < 256 &&
         std::all_of(name.begin(), name.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

StateStore::StateStore(std::string dir) : dir_(std::move(dir)) {}

std::string StateStore::to_json(const QubeState& s) {
  nlohmann::json j;
  j["volume"] = s.volume_percent;
  j["muted"] = s.muted;
  j["mic_persistent"] = s.mic_persistent;
  if (!s.output_device.empty()) {
    j["output_device"] = s.output_device;
  }
  return j.dump() + "\n";
}

Result<QubeState> StateStore::from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return fail("not a JSON object");
  }
  QubeState s;
  if (auto it = j.find("volume"); it != j.end()) {
    if (!it->is_number_integer() && !it->is_number_unsigned()) {
      return fail("\"volume\" is not an integer");
    }
    int64_t v = it->get<int64_t>();
    if (v < 0 || v > kMaxVolumePercent) {
      return fail("\"volume\" out of range 0..150");
    }
    s.volume_percent = static_cast<uint32_t>(v);
  }
  if (auto it = j.find("muted"); it != j.end()) {
    if (!it->is_boolean()) {
      return fail("\"muted\" is not a boolean");
    }
    s.muted = it->get<bool>();
  }
  if (auto it = j.find("mic_persistent"); it != j.end()) {
    if (!it->is_boolean()) {
      return fail("\"mic_persistent\" is not a boolean");
    }
    s.mic_persistent = it->get<bool>();
  }
  auto dev = device_field(j);
  if (!dev) {
    return fail(dev.error());
  }
  s.output_device = std::move(*dev);
  return s;
}

Result<void> StateStore::load() {
  states_.clear();
  warnings_.clear();
  default_output_.clear();
  headset_output_ = {};
  if (dir_.empty()) {
    return {};
  }
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return fail_errno("creating the state directory " + dir_);
  }
  DIR* d = ::opendir(dir_.c_str());
  if (!d) {
    return fail_errno("opening the state directory " + dir_);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n.size() > kPrefix.size() + kSuffix.size() && n.substr(0, kPrefix.size()) == kPrefix &&
        n.substr(n.size() - kSuffix.size()) == kSuffix) {
      names.emplace_back(n);
    }
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& file : names) {
    std::string qube = file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size());
    std::string path = dir_ + "/" + file;
    if (!valid_qube_name(qube)) {
      warnings_.push_back(path + ": not a valid qube name; ignored");
      continue;
    }
    auto text = read_small_file(path);
    if (!text) {
      warnings_.push_back(text.error().message + "; using defaults for " + qube);
      continue;
    }
    auto st = from_json(*text);
    if (!st) {
      warnings_.push_back(path + ": " + st.error().message + "; using defaults for " + qube);
      continue;
    }
    states_[qube] = *st;
  }
  const std::string def_path = dir_ + "/" + std::string(kDefaultOutputFile);
  if (::access(def_path.c_str(), F_OK) == 0) {
    auto text = read_small_file(def_path);
    auto j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    auto dev = j.is_object() ? device_field(j) : Result<std::string>(fail("not a JSON object"));
    if (!text) {
      warnings_.push_back(text.error().message + "; using the backend's default output");
    } else if (!dev) {
      warnings_.push_back(def_path + ": " + dev.error().message +
                          "; using the backend's default output");
    } else {
      default_output_ = *dev;
    }
  }
  const std::string bt_path = dir_ + "/" + std::string(kHeadsetOutputFile);
  if (::access(bt_path.c_str(), F_OK) == 0) {
    auto text = read_small_file(bt_path);
    auto j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    auto fallback = j.is_object() ? device_field(j, "fallback_output")
                                  : Result<std::string>(fail("not a JSON object"));
    auto it = j.is_object() ? j.find("auto_output") : j.end();
    if (!text) {
      warnings_.push_back(text.error().message + "; using the default Bluetooth output settings");
    } else if (!fallback) {
      warnings_.push_back(bt_path + ": " + fallback.error().message +
                          "; using the default Bluetooth output settings");
    } else if (it != j.end() && !it->is_boolean()) {
      warnings_.push_back(bt_path +
                          ": \"auto_output\" is not a boolean; using the default Bluetooth "
                          "output settings");
    } else {
      headset_output_.fallback_output = *fallback;
      headset_output_.auto_output = it == j.end() || it->get<bool>();
    }
  }
  for (const auto& w : warnings_) {
    log_warn("state: %s", w.c_str());
  }
  return {};
}

QubeState StateStore::get(std::string_view qube) const {
  if (auto it = states_.find(qube); it != states_.end()) {
    return it->second;
  }
  return QubeState{};
}

Result<void> StateStore::set(std::string_view qube, const QubeState& state) {
  if (!valid_qube_name(qube)) {
    return fail("cannot store state for '" + std::string(qube) + "': not a valid qube name");
  }
  QubeState s = state;
  s.volume_percent = std::min(s.volume_percent, kMaxVolumePercent);
  std::string name(qube);
  states_[name] = s;
  if (dir_.empty()) {
    return {};
  }
  return save(name, s);
}

Result<void> StateStore::set_default_output(const std::string& device) {
  if (!device.empty() && !valid_device_name(device)) {
    return fail("cannot store '" + device + "' as the default output: not a valid device name");
  }
  default_output_ = device;
  if (dir_.empty()) {
    return {};
  }
  nlohmann::json j;
  j["output_device"] = device;
  return write_atomic(dir_ + "/" + std::string(kDefaultOutputFile), j.dump() + "\n");
}

Result<void> StateStore::set_headset_output(const HeadsetOutputSettings& settings) {
  if (!settings.fallback_output.empty() && !valid_device_name(settings.fallback_output)) {
    return fail("cannot store '" + settings.fallback_output +
                "' as the Bluetooth fallback output: not a valid device name");
  }
  headset_output_ = settings;
  if (dir_.empty()) {
    return {};
  }
  nlohmann::json j;
  j["auto_output"] = settings.auto_output;
  j["fallback_output"] = settings.fallback_output;
  return write_atomic(dir_ + "/" + std::string(kHeadsetOutputFile), j.dump() + "\n");
}

Result<void> StateStore::save(const std::string& qube, const QubeState& s) const {
  return write_atomic(dir_ + "/" + std::string(kPrefix) + qube + std::string(kSuffix), to_json(s));
}

Result<void> StateStore::write_atomic(const std::string& final_path,
                                      const std::string& text) const {
  const std::string tmp_path = final_path + ".tmp";
  int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return fail_errno("saving state: opening " + tmp_path);
  }
  size_t off = 0;
  while (off < text.size()) {
    ssize_t w = ::write(fd, text.data() + off, text.size() - off);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w < 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp_path.c_str());
      return fail_errno("saving state: writing " + tmp_path, e);
    }
    off += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp_path.c_str());
    return fail_errno("saving state: fsync " + tmp_path, e);
  }
  ::close(fd);
  if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp_path.c_str());
    return fail_errno("saving state: renaming to " + final_path, e);
  }
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

}  // namespace qaudio::daemon
