// PulseAudio device backend: one playback stream (and, when a qube has a
// microphone sink, one record stream) per qube in a PulseAudio server, so the
// server mixes and users see each qube by name in pavucontrol.
//
// Spec: `pulse` (default server: $PULSE_SERVER or the user's) or
// `pulse:SERVER` (e.g. `pulse:unix:/run/user/1000/pulse/native`).
// Options: format (float32 at the device rate, channels), buffer (target
// latency, tlength; default 20 ms), period (minreq / fragsize; default 10 ms),
// reconnect_interval (retry while the server is gone; default 500 ms).
// Stream properties: application.name = qube, application.id = qaudio.<qube>,
// media.name, application.icon_name = appvm-<colour>, qaudio.label.color,
// qaudio.qube.
//
//   auto be = make_pulse_backend("unix:/tmp/pa/native", options, events);
//   (*be)->start();                       // connects (or retries) in background
//   auto h = (*be)->add_playback({"work", "red", ""}, &source);
//
// Threading: a pa_threaded_mainloop runs the context, the stream callbacks
// (the real-time side: they pull/push the qubes' sources and sinks without
// allocating) and the reconnect timer. Public methods take the mainloop lock
// and must not be called from the event callback.
#pragma once

// make_pulse_backend() is declared in backends.hpp.
#include "backends.hpp"
