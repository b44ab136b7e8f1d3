// PipeWireAgentBackend: "Qubes audio" (node qubes_audio, media.class
// Audio/Sink) and "Qubes microphone" (node qubes_microphone, Audio/Source) as
// virtual nodes made of two pw_streams on a pw_thread_loop, F32 stereo /
// mono at 48 kHz. They show up in pw-cli, pw-dump, and (through
// pipewire-pulse) pactl and desktop mixers.
//   sink:   an input stream; its process callback (PipeWire's data thread)
//           copies what apps played into the playback ring;
//   source: an output stream; its process callback copies mic PCM from the
//           capture ring, silence when there is none.
// Activity: the sink stream STREAMING = output active; the source stream
// STREAMING = an app records. Latency: set_remote_latency() becomes the
// sink input port's Latency param (direction Input), shown by pw-dump and
// added by PipeWire to what linked apps see. Clock: the sink is a driver
// node (PW_STREAM_FLAG_DRIVER): a timer on the thread loop triggers one graph
// cycle per quantum at the speed ClockFollower asks for (native: the audio
// domain's ClockTicks + a PI loop on the queue; stock: the PI loop alone),
// and the ratio is written as the clock's rate_diff.
//
//   auto be = make_pipewire_agent_backend({.latency_ms = 8});
#pragma once

#include <memory>

#include "agent_backend.hpp"

namespace qaudio::agent {

struct PipeWireAgentOptions {
  uint32_t latency_ms = 8;  // node.latency asked for (quantum at 48 kHz)
  uint32_t rate = 48000;
};

std::unique_ptr<AgentBackend> make_pipewire_agent_backend(const PipeWireAgentOptions& opts);

}  // namespace qaudio::agent
