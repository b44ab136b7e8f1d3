// Channel: a non-blocking, pollable, bidirectional byte stream between an app
// qube and the audio domain — the shape of libvchan. Implementations:
//   unix:DIR  Unix stream sockets at DIR/vchan.<server_dom>.<client_dom>.<port>.sock
//   shm:DIR   rings in a memfd granted over a Unix socket in DIR, eventfd wake-ups
//   xen       libxenvchan (the qube is the server, the audio domain the client)
//
//   auto t = make_transport("unix:/run/qaudio");            // Result<unique_ptr<Transport>>
//   auto srv = (*t)->serve({.server_dom=5, .client_dom=0, .port=4713}, {8192, 8192});
//   auto cli = (*t)->connect({5, 0, 4713}, std::chrono::seconds(2));
//   poll((*cli)->fd(), POLLIN) ... (*cli)->handle_events(); (*cli)->read(buf);
//
// Usage contract (as with libvchan): poll fd() for POLLIN; when it is readable
// call handle_events() (acknowledges the wake-up, accepts a waiting peer,
// notices a peer that left), then read()/write() as much as data_ready() and
// buffer_space() allow. read() and write() never block and may transfer less
// than asked. A peer that misbehaves can make the channel Closed; it can never
// make this side read or write outside its own buffers.
//
// Wake-ups are edge-like (as with libvchan's event channel): fd() becomes
// readable when something CHANGES. Before sleeping on fd(), drain what is
// there: read until read() returns less than asked or data_ready() is 0, and
// a writer waiting for room calls buffer_space() (which, like libvchan, also
// asks the peer for a wake-up when it frees space).
//
// fd() stays the same from serve()/connect() until close() in every current
// transport (unix and shm hand out an epoll fd; xen the event-channel fd);
// callers that re-read fd() after handle_events() stay correct should a
// future transport swap it (e.g. once a server accepted its peer). After
// close() fd() is -1. A Channel object is not thread-safe: use each one from
// one thread at a time (the two ends of a pair may live in different threads).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "qaudio/result.hpp"

namespace qaudio {

enum class ChannelState {
  Waiting,  // server: created, no peer yet; shm client (zero connect timeout):
            // connected, the server's grant not received yet
  Open,     // peer connected
  Closed,   // peer left, error, or close() was called; terminal
};

std::string_view to_string(ChannelState s);

class Channel {
 public:
  virtual ~Channel() = default;
  Channel() = default;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Readable when there is data, space was freed, a peer arrived or left.
  virtual int fd() const = 0;
  // Call after fd() polled readable (calling it spuriously is harmless).
  virtual void handle_events() = 0;
  virtual ChannelState state() const = 0;
  bool is_open() const { return state() == ChannelState::Open; }
  // Bytes that read() can return now without blocking.
  virtual size_t data_ready() = 0;
  // Bytes that write() can accept now without blocking.
  virtual size_t buffer_space() = 0;
  // Non-blocking. Returns bytes transferred (0 when nothing could be); an
  // error or a vanished peer moves the channel to Closed and returns 0.
  virtual size_t read(std::span<std::byte> out) = 0;
  virtual size_t write(std::span<const std::byte> in) = 0;
  virtual void close() = 0;
  // Human-readable name for logs, e.g. "unix:/run/q/vchan.5.0.4713.sock".
  virtual std::string describe() const = 0;
};

// Where a channel lives: as libvchan names it.
struct ChannelAddress {
  uint32_t server_dom = 0;  // the app qube
  uint32_t client_dom = 0;  // the audio domain
  uint32_t port = 0;        // 4713 playback, 4714 control + microphone
};

// Ring sizes the server asks for (libxenvchan_server_init's left/right mins).
// The client learns the real sizes from the server; code never assumes them.
struct RingSizes {
  size_t server_to_client = 8192;  // bytes the server can have in flight to the client
  size_t client_to_server = 8192;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Server role: creates the endpoint and returns at once in state Waiting.
  virtual Result<std::unique_ptr<Channel>> serve(const ChannelAddress& addr,
                                                 const RingSizes& sizes) = 0;
  // Client role: connects, retrying until the server's endpoint appears or
  // `timeout` passes, and returns an Open channel. A zero timeout makes
  // exactly one attempt (for callers that retry with their own backoff from
  // an event loop); then the channel may still be Waiting for the server's
  // side of the handshake (shm), which handle_events() completes.
  virtual Result<std::unique_ptr<Channel>> connect(const ChannelAddress& addr,
                                                   std::chrono::milliseconds timeout) = 0;
  virtual std::string name() const = 0;  // "unix", "shm", "xen"
};

// "unix:DIR", "shm:DIR" or "xen". Unknown or malformed specs are an error
// naming the spec and the accepted forms.
Result<std::unique_ptr<Transport>> make_transport(std::string_view spec);

// Blocking helpers for tools and tests (not for the audio thread): poll fd()
// and handle_events() until the whole buffer moved, the channel closed, or the
// deadline passed. Return the bytes moved.
size_t read_all(Channel& ch, std::span<std::byte> out, std::chrono::milliseconds timeout);
size_t write_all(Channel& ch, std::span<const std::byte> in, std::chrono::milliseconds timeout);
// Waits until a Waiting server channel is Open (or Closed, or the deadline).
bool wait_open(Channel& ch, std::chrono::milliseconds timeout);

}  // namespace qaudio
