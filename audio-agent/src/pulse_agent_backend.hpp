// PulseAgentBackend: "Qubes audio" and "Qubes microphone" in a qube whose
// sound server is PulseAudio, built from stock modules on the client side:
//   output: module-null-sink sink_name=qubes_audio (device.description
//           "Qubes audio"); a record stream on qubes_audio.monitor with a
//           small fragment (30 % of --latency-ms, 3 ms by default) feeds the agent;
//   mic:    module-null-sink sink_name=qubes_mic_feed plus module-remap-source
//           master=qubes_mic_feed.monitor source_name=qubes_microphone
//           (device.description "Qubes microphone"); the agent plays mic PCM
//           into qubes_mic_feed (silence when there is none, so the source
//           always delivers valid audio).
// Activity: a subscription counts uncorked sink inputs on qubes_audio
// (output active) and uncorked source outputs on qubes_microphone (mic in use).
// Modules left by a crashed agent are adopted, not duplicated; stop()
// unloads them (unless keep_devices, for a restart that apps do not notice).
// Latency: a null sink has no ports, so pa_context_set_port_latency_offset
// cannot add the remote latency; PulseAudio apps see the null sink's own
// latency only (documented in docs/audio-agent.md).
//
//   auto be = make_pulse_agent_backend({.server = "unix:/run/user/1000/pulse/native"});
#pragma once

#include <memory>
#include <string>

#include "agent_backend.hpp"

namespace qaudio::agent {

struct PulseAgentOptions {
  std::string server;         // empty: libpulse's default (PULSE_SERVER, per-user socket)
  uint32_t fragment_ms = 3;   // monitor fragment (the mic feed uses at least 5 ms)
  bool set_default = true;    // make "Qubes audio"/"Qubes microphone" the defaults
  bool keep_devices = false;  // leave the modules loaded on stop()
};

std::unique_ptr<AgentBackend> make_pulse_agent_backend(const PulseAgentOptions& opts);

}  // namespace qaudio::agent
