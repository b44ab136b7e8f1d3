// Per-qube persistent state of the daemon: volume (0-150 %), mute, and the
// persistent microphone assignment flag. One JSON file per qube
// (`<dir>/qube-<name>.json`, e.g. {"volume":80,"muted":false,"mic_persistent":true}),
// written atomically (temp file, fsync, rename, fsync of the directory).
// Files that are corrupt or unreadable are reported (warnings()) and
// ignored: that qube gets the defaults; nothing throws. Qube names are
// checked (Qubes rules: letters, digits, '-', '_', '.', at most 31
// characters, not starting with '.' or '-') before they touch a path.
//
//   StateStore store("/var/lib/qubes-audio");   // "" = memory only
//   store.load();                                // at start
//   auto st = store.get("work");                 // defaults if unknown
//   st.volume_percent = 80; store.set("work", st);   // saves now
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "gain.hpp"
#include "headset_output.hpp"
#include "qaudio/result.hpp"

namespace qaudio::daemon {

struct QubeState {
  uint32_t volume_percent = kDefaultVolumePercent;
  bool muted = false;
  bool mic_persistent = false;  // user attached the mic "persistently"
  std::string output_device;    // the qube's own output choice; empty = the default
  friend bool operator==(const QubeState&, const QubeState&) = default;
};

bool valid_qube_name(std::string_view name);
// A device name as sound servers spell them: 1-255 printable ASCII bytes.
bool valid_device_name(std::string_view name);

class StateStore {
 public:
  explicit StateStore(std::string dir);

  // Creates the directory if needed (mode 0700) and reads every qube file.
  // Corrupt files are skipped and listed in warnings(); the result is an
  // error only when the directory itself cannot be used.
  Result<void> load();
  // State of a qube (defaults when unknown).
  QubeState get(std::string_view qube) const;
  // Stores and persists; the value is clamped (volume <= 150). A failed
  // write keeps the in-memory value and returns the error.
  Result<void> set(std::string_view qube, const QubeState& state);
  const std::map<std::string, QubeState, std::less<>>& all() const { return states_; }
  // The output device for every qube without its own choice (empty = the
  // backend's default), kept in default-output.json.
  const std::string& default_output() const { return default_output_; }
  Result<void> set_default_output(const std::string& device);
  // The Bluetooth headset output settings (headset_output.hpp), kept in
  // bluetooth-output.json.
  const HeadsetOutputSettings& headset_output() const { return headset_output_; }
  Result<void> set_headset_output(const HeadsetOutputSettings& settings);
  const std::vector<std::string>& warnings() const { return warnings_; }
  const std::string& dir() const { return dir_; }

  // Serialisation, exposed for tests and tools.
  static std::string to_json(const QubeState& s);
  static Result<QubeState> from_json(std::string_view text);

 private:
  Result<void> save(const std::string& qube, const QubeState& s) const;
  Result<void> write_atomic(const std::string& final_path, const std::string& text) const;

  std::string dir_;
  std::map<std::string, QubeState, std::less<>> states_;
  std::string default_output_;
  HeadsetOutputSettings headset_output_;
  std::vector<std::string> warnings_;
};

}  // namespace qaudio::daemon
