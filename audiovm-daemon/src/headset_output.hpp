// Bluetooth headset output policy (docs/bluetooth.md, "Output"): when a
// headset connects, its sink appears in the sound server a moment later
// (PipeWire's bluez5 plugin: bluez_output.AA_BB_CC_DD_EE_FF.1, PulseAudio's
// module-bluetooth: bluez_sink.AA_BB_CC_DD_EE_FF.a2dp_sink); once it does,
// the headset becomes the default output of every qube without its own
// choice (when auto-output is on), and qubes whose own choice is that sink
// follow it back. When it disconnects, the default goes back to the device
// it replaced (or to another headset still connected), and qubes whose own
// choice it was play on the default until it returns. Qubes on other
// devices are never touched.
//
// Logic only: the daemon side is an OutputSwitch, the Bluetooth side calls
// connected()/disconnected(), and the owner calls poll() on a timer while
// pending() (a sink is being waited for).
//
//   HeadsetOutput h(daemon_switch, settings, [&](const HeadsetOutputEvent& e) { publish(e); });
//   h.connected("AA:BB:CC:DD:EE:01");
//   while (h.pending()) h.poll(Clock::now());   // on the loop's timer
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "qaudio/result.hpp"

namespace qaudio::daemon {

// What the policy needs from the daemon (Daemon implements it through
// DaemonOutputSwitch in main; tests fake it).
class OutputSwitch {
 public:
  virtual ~OutputSwitch() = default;
  virtual std::vector<DeviceInfo> devices() = 0;
  // The stored default output ("" = the backend's default device).
  virtual std::string default_output() const = 0;
  virtual Result<void> set_default_output(const std::string& device) = 0;
  // `device` appeared or went away: qubes whose own choice it is move to it,
  // or to the default meanwhile (their stored choice is kept).
  virtual void device_presence(const std::string& device, bool present) = 0;
};

// Persisted in the state dir (bluetooth-output.json).
struct HeadsetOutputSettings {
  bool auto_output = true;      // a connecting headset becomes the default output
  std::string fallback_output;  // the default a headset replaced ("" = backend default)
  friend bool operator==(const HeadsetOutputSettings&, const HeadsetOutputSettings&) = default;
};

struct HeadsetOutputEvent {
  enum class Kind {
    Selected,     // the headset's sink is now the default output
    Available,    // its sink appeared (auto-output off, or a qube's own choice)
    SinkMissing,  // connected, but no sink appeared in time
    FellBack,     // it disconnected; the default went back to `device`
  };
  Kind kind;
  std::string address;
  std::string device;
  std::string message;
};
const char* to_string(HeadsetOutputEvent::Kind k);

class HeadsetOutput {
 public:
  using Clock = std::chrono::steady_clock;
  using Listener = std::function<void(const HeadsetOutputEvent&)>;
  using SettingsSaver = std::function<Result<void>(const HeadsetOutputSettings&)>;

  HeadsetOutput(OutputSwitch& out,
                HeadsetOutputSettings settings,
                Listener listener,
                SettingsSaver saver = {},
                std::chrono::milliseconds sink_wait = std::chrono::seconds(15));

  // BlueZ side: an audio device connected / disconnected (or was removed).
  void connected(const std::string& address, Clock::time_point now = Clock::now());
  void disconnected(const std::string& address);
  // Looks for the sinks of headsets that connected; call while pending().
  void poll(Clock::time_point now = Clock::now());
  bool pending() const;

  const HeadsetOutputSettings& settings() const { return settings_; }
  Result<void> set_auto_output(bool on);
  // The sink of a connected headset, once it appeared.
  std::optional<std::string> sink_of(const std::string& address) const;

  // The output sink of the headset at `address` in `devices`: a name that
  // starts with "bluez_" and carries the address with '_' for ':'; an A2DP
  // one is preferred over a headset-profile one.
  static std::optional<std::string> find_sink(const std::vector<DeviceInfo>& devices,
                                              const std::string& address);

 private:
  struct Headset {
    Clock::time_point deadline;
    std::optional<std::string> sink;  // known once it appeared
    uint64_t order = 0;               // connection order, newest last
  };
  void sink_appeared(const std::string& address, Headset& h, const std::string& sink);
  void save();
  void emit(HeadsetOutputEvent::Kind k,
            const std::string& address,
            const std::string& device,
            std::string message = {});

  OutputSwitch& out_;
  HeadsetOutputSettings settings_;
  Listener listener_;
  SettingsSaver saver_;
  std::chrono::milliseconds sink_wait_;
  std::map<std::string, Headset> headsets_;  // connected, by address
  uint64_t next_order_ = 0;
};

}  // namespace qaudio::daemon
