// PipeWire device backend: one pw_stream per qube (playback, and capture for
// qubes with a microphone sink); the graph mixes, WirePlumber links.
//
// Spec: `pipewire` (the default remote: $PIPEWIRE_REMOTE or pipewire-0 in
// $PIPEWIRE_RUNTIME_DIR / $XDG_RUNTIME_DIR) or `pipewire:REMOTE` (a socket
// name or absolute path).
// Options: format (F32 interleaved at the device rate, channels), period (the
// node latency we ask for: node.latency = <period frames>/<rate>, default
// 10 ms), reconnect_interval (retry while PipeWire is gone, default 500 ms).
// Node properties: media.type Audio, media.category Playback/Capture,
// media.role, application.name = qube, node.name = qaudio.<qube>,
// node.description, qaudio.label.color, qaudio.qube, node.latency, and
// target.object when a device was chosen.
//
//   auto be = make_pipewire_backend("", options, events);
//   (*be)->start();
//   auto h = (*be)->add_playback({"work", "red", ""}, &source);
//   (*be)->set_device(h, "alsa_output.pci-0000_00_1f.3.analog-stereo");
//
// Threading: a pw_thread_loop runs the core, registry, metadata and stream
// control events plus the reconnect timer; the streams' process callbacks run
// on PipeWire's data loop (RT_PROCESS) and only pull/push the qubes' sources
// and sinks.
#pragma once

// make_pipewire_backend() is declared in backends.hpp.
#include "backends.hpp"
