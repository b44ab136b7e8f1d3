// Our BlueZ agent's logic (Agent1 calls, bt_bus.hpp): each request that
// needs the user (numeric comparison, passkey, PIN, authorisation) is kept
// with its reply until the user answers through the API or the timeout
// rejects it; display-only calls and Cancel are reported and answered at
// once. "Just works" authorisation is accepted without a prompt only for a
// device whose pairing the user started (`user_started`).
//
//   BtAgent agent(loop, 30s, [](const BtEvent& e) { ... });
//   agent.handle(call, device, reply, /*user_started=*/false);  // -> AgentRequest event
//   agent.answer_yes_no("AA:..", true);                          // -> reply ok, AgentRequestDone
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qaudio/bluetooth/bt_bus.hpp"
#include "qaudio/bluetooth/bt_types.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/result.hpp"

namespace qaudio::bt {

class BtAgent {
 public:
  BtAgent(EventLoop& loop, std::chrono::milliseconds timeout, std::function<void(BtEvent)> emit);
  ~BtAgent();
  BtAgent(const BtAgent&) = delete;
  BtAgent& operator=(const BtAgent&) = delete;

  // `device`: what we know of call.device_path (address may be empty).
  void handle(const AgentCall& call, const Device& device, AgentReplyFn reply, bool user_started);
  // ENOENT when no yes/no request is pending for the address.
  Result<void> answer_yes_no(const std::string& address, bool accept);
  // A passkey (0-999999) or a PIN (1-16 printable ASCII), as pending.
  Result<void> answer_code(const std::string& address, const std::string& code);
  // Rejects everything pending (BlueZ left, shutdown).
  void cancel_all(const char* outcome);
  std::vector<AgentRequest> pending() const;

 private:
  struct Pending {
    AgentRequest req;
    AgentReplyFn reply;
    EventLoop::Id timer = 0;
  };
  void done(uint64_t id, const AgentReply& r, const char* outcome);
  Pending* find(const std::string& address, bool code);

  EventLoop& loop_;
  std::chrono::milliseconds timeout_;
  std::function<void(BtEvent)> emit_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Pending> pending_;
};

}  // namespace qaudio::bt
