// Bluetooth headset output policy (see headset_output.hpp).
#include "headset_output.hpp"

#include <algorithm>
#include <cctype>

#include "qaudio/log.hpp"

namespace qaudio::daemon {

namespace {

std::string upper(std::string s) {
  for (auto& c : s) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return s;
}

}  // namespace

const char* to_string(HeadsetOutputEvent::Kind k) {
  switch (k) {
    case HeadsetOutputEvent::Kind::Selected:
      return "selected";
    case HeadsetOutputEvent::Kind::Available:
      return "available";
    case HeadsetOutputEvent::Kind::SinkMissing:
      return "sink_missing";
    case HeadsetOutputEvent::Kind::FellBack:
      return "fell_back";
  }
  return "?";
}

HeadsetOutput::HeadsetOutput(OutputSwitch& out,
                             HeadsetOutputSettings settings,
                             Listener listener,
                             SettingsSaver saver,
                             std::chrono::milliseconds sink_wait)
    : out_(out),
      settings_(std::move(settings)),
      listener_(std::move(listener)),
      saver_(std::move(saver)),
      sink_wait_(sink_wait) {}

std::optional<std::string> HeadsetOutput::find_sink(const std::vector<DeviceInfo>& devices,
                                                    const std::string& address) {
  std::string key = upper(address);
  std::replace(key.begin(), key.end(), ':', '_');
  if (key.size() != 17) {
    return std::nullopt;
  }
  std::optional<std::string> found;
  for (const auto& d : devices) {
    if (!d.is_output || d.name.rfind("bluez_", 0) != 0 ||
        upper(d.name).find(key) == std::string::npos) {
      continue;
    }
    if (d.name.find("a2dp") != std::string::npos) {
      return d.name;
    }
    if (!found) {
      found = d.name;
    }
  }
  return found;
}

void HeadsetOutput::connected(const std::string& address, Clock::time_point now) {
  const std::string addr = upper(address);
  auto [it, inserted] = headsets_.try_emplace(addr);
  if (!inserted && (it->second.sink || now < it->second.deadline)) {
    return;  // already known (BlueZ repeats Connected), or still being waited for
  }
  it->second.deadline = now + sink_wait_;
  it->second.sink.reset();
  it->second.order = ++next_order_;
  poll(now);
}

bool HeadsetOutput::pending() const {
  return std::any_of(headsets_.begin(), headsets_.end(), [](const auto& kv) {
    return !kv.second.sink && kv.second.deadline != HeadsetOutput::Clock::time_point::max();
  });
}

void HeadsetOutput::poll(Clock::time_point now) {
  if (!pending()) {
    return;
  }
  const std::vector<DeviceInfo> devices = out_.devices();
  for (auto& [addr, h] : headsets_) {
    if (h.sink || h.deadline == Clock::time_point::max()) {
      continue;
    }
    if (auto sink = find_sink(devices, addr)) {
      sink_appeared(addr, h, *sink);
    } else if (now >= h.deadline) {
      h.deadline = Clock::time_point::max();  // stop looking until it reconnects
      emit(HeadsetOutputEvent::Kind::SinkMissing, addr, {},
           "headset " + addr +
               " connected but the sound server shows no sink for it (is its Bluetooth "
               "support loaded: PipeWire's bluez5 plugin or PulseAudio's module-bluetooth?)");
    }
  }
}

void HeadsetOutput::sink_appeared(const std::string& address, Headset& h, const std::string& sink) {
  h.sink = sink;
  out_.device_presence(sink, true);  // qubes whose own choice it is go back to it
  if (!settings_.auto_output) {
    emit(HeadsetOutputEvent::Kind::Available, address, sink);
    return;
  }
  const std::string current = out_.default_output();
  if (current == sink) {
    emit(HeadsetOutputEvent::Kind::Selected, address, sink);
    return;
  }
  // Remember what the headset replaces, unless that is another headset.
  const bool current_is_headset = std::any_of(headsets_.begin(), headsets_.end(), [&](auto& kv) {
    return kv.second.sink && *kv.second.sink == current;
  });
  if (!current_is_headset && settings_.fallback_output != current) {
    settings_.fallback_output = current;
    save();
  }
  if (auto r = out_.set_default_output(sink); !r) {
    emit(HeadsetOutputEvent::Kind::Available, address, sink,
         "cannot make it the default output: " + r.error().message);
    return;
  }
  emit(HeadsetOutputEvent::Kind::Selected, address, sink);
}

void HeadsetOutput::disconnected(const std::string& address) {
  auto it = headsets_.find(upper(address));
  if (it == headsets_.end()) {
    return;
  }
  const std::optional<std::string> sink = it->second.sink;
  const std::string addr = it->first;
  headsets_.erase(it);
  if (!sink) {
    return;
  }
  if (out_.default_output() == *sink) {
    // Back to the newest headset still connected, else to what it replaced
    // (if the sound server still has it).
    const Headset* newest = nullptr;
    for (const auto& [a, h] : headsets_) {
      if (h.sink && (newest == nullptr || h.order > newest->order)) {
        newest = &h;
      }
    }
    std::string target = newest != nullptr ? *newest->sink : settings_.fallback_output;
    if (!target.empty()) {
      auto devices = out_.devices();
      const bool exists = std::any_of(devices.begin(), devices.end(), [&](const DeviceInfo& d) {
        return d.is_output && d.name == target;
      });
      if (!exists) {
        target.clear();
      }
    }
    if (newest == nullptr && !settings_.fallback_output.empty()) {
      settings_.fallback_output.clear();
      save();
    }
    if (auto r = out_.set_default_output(target); !r) {
      log_warn("bluetooth: falling back from %s: %s", sink->c_str(), r.error().message.c_str());
    }
    emit(HeadsetOutputEvent::Kind::FellBack, addr, target);
  }
  out_.device_presence(*sink, false);
}

Result<void> HeadsetOutput::set_auto_output(bool on) {
  settings_.auto_output = on;
  if (saver_) {
    return saver_(settings_);
  }
  return {};
}

std::optional<std::string> HeadsetOutput::sink_of(const std::string& address) const {
  auto it = headsets_.find(upper(address));
  return it == headsets_.end() ? std::nullopt : it->second.sink;
}

void HeadsetOutput::save() {
  if (!saver_) {
    return;
  }
  if (auto r = saver_(settings_); !r) {
    log_warn("bluetooth: saving the output settings: %s", r.error().message.c_str());
  }
}

void HeadsetOutput::emit(HeadsetOutputEvent::Kind k,
                         const std::string& address,
                         const std::string& device,
                         std::string message) {
  if (k == HeadsetOutputEvent::Kind::SinkMissing) {
    log_warn("bluetooth: %s", message.c_str());
  } else {
    log_info("bluetooth: headset %s: %s %s%s%s", address.c_str(), to_string(k),
             device.empty() ? "(default device)" : device.c_str(), message.empty() ? "" : ": ",
             message.c_str());
  }
  if (listener_) {
    listener_(HeadsetOutputEvent{k, address, device, std::move(message)});
  }
}

}  // namespace qaudio::daemon
