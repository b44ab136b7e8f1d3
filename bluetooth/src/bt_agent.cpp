// BlueZ agent logic (see bt_agent.hpp).
#include "qaudio/bluetooth/bt_agent.hpp"

#include <cctype>

#include "qaudio/bluetooth/bluez.hpp"
#include "qaudio/log.hpp"

namespace qaudio::bt {

namespace {

std::optional<AgentKind> kind_of(const std::string& method) {
  if (method == bluez::kRequestConfirmation) {
    return AgentKind::Confirmation;
  }
  if (method == bluez::kRequestAuthorization) {
    return AgentKind::Authorization;
  }
  if (method == bluez::kAuthorizeService) {
    return AgentKind::Service;
  }
  if (method == bluez::kRequestPasskey) {
    return AgentKind::Passkey;
  }
  if (method == bluez::kRequestPinCode) {
    return AgentKind::PinCode;
  }
  if (method == bluez::kDisplayPasskey) {
    return AgentKind::DisplayPasskey;
  }
  if (method == bluez::kDisplayPinCode) {
    return AgentKind::DisplayPinCode;
  }
  return std::nullopt;
}

bool is_code_kind(AgentKind k) {
  return k == AgentKind::Passkey || k == AgentKind::PinCode;
}

AgentReply ok_reply() {
  AgentReply r;
  r.ok = true;
  r.error.clear();
  return r;
}

AgentReply error_reply(const char* name, std::string why) {
  AgentReply r;
  r.ok = false;
  r.error = name;
  r.message = std::move(why);
  return r;
}

}  // namespace

BtAgent::BtAgent(EventLoop& loop,
                 std::chrono::milliseconds timeout,
                 std::function<void(BtEvent)> emit)
    : loop_(loop), timeout_(timeout), emit_(std::move(emit)) {}

BtAgent::~BtAgent() {
  cancel_all("canceled");
}

void BtAgent::handle(const AgentCall& call,
                     const Device& device,
                     AgentReplyFn reply,
                     bool user_started) {
  if (call.method == bluez::kRelease) {
    reply(ok_reply());
    return;
  }
  if (call.method == bluez::kCancel) {
    // BlueZ gave up on the request in progress (the device cancelled or timed out).
    std::vector<uint64_t> ids;
    for (const auto& [id, p] : pending_) {
      ids.push_back(id);
    }
    for (auto id : ids) {
      done(id, error_reply(bluez::kErrorCanceled, "canceled by BlueZ"), "canceled");
    }
    reply(ok_reply());
    return;
  }
  auto kind = kind_of(call.method);
  if (!kind) {
    reply(error_reply(bluez::kErrorRejected, "unsupported agent call"));
    return;
  }
  AgentRequest req;
  req.id = next_id_++;
  req.kind = *kind;
  req.device_path = call.device_path;
  req.address = device.address;
  req.name = device.name.empty() ? device.address : device.name;
  if (*kind == AgentKind::Confirmation || *kind == AgentKind::DisplayPasskey) {
    req.passkey = call.passkey;
  }
  req.pin = call.pin;
  req.service = call.uuid;

  BtEvent ev{BtEvent::Type::AgentRequest};
  ev.request = req;
  ev.address = req.address;
  if (!needs_answer(*kind)) {
    emit_(ev);
    reply(ok_reply());
    return;
  }
  if (req.address.empty()) {
    log_warn("bluetooth agent: %s for unknown device %s: rejected", call.method.c_str(),
             call.device_path.c_str());
    reply(error_reply(bluez::kErrorRejected, "unknown device"));
    return;
  }
  if (*kind == AgentKind::Authorization && user_started) {
    // "Just works" pairing the user asked for: no second prompt.
    BtEvent d{BtEvent::Type::AgentRequestDone};
    d.request = req;
    d.address = req.address;
    d.outcome = "accepted";
    emit_(d);
    reply(ok_reply());
    return;
  }
  // One request per device: a newer one replaces (rejects) the older.
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->second.req.address == req.address) {
      done(it->first, error_reply(bluez::kErrorCanceled, "replaced by a newer request"),
           "canceled");
      break;
    }
  }
  uint64_t id = req.id;
  Pending p{req, std::move(reply), 0};
  p.timer = loop_.add_timer(timeout_, [this, id] {
    auto it = pending_.find(id);
    if (it != pending_.end()) {
      it->second.timer = 0;
      log_info("bluetooth agent: %s for %s not answered in time: rejected",
               to_string(it->second.req.kind), it->second.req.address.c_str());
      done(id, error_reply(bluez::kErrorRejected, "not answered in time"), "timeout");
    }
  });
  pending_.emplace(id, std::move(p));
  emit_(ev);
}

BtAgent::Pending* BtAgent::find(const std::string& address, bool code) {
  for (auto& [id, p] : pending_) {
    if (p.req.address == address && is_code_kind(p.req.kind) == code) {
      return &p;
    }
  }
  return nullptr;
}

Result<void> BtAgent::answer_yes_no(const std::string& address, bool accept) {
  Pending* p = find(address, false);
  if (p == nullptr) {
    return fail("no confirmation is pending for " + address +
                    (find(address, true) ? " (it asks for a code: use 'bt pin')" : ""),
                ENOENT);
  }
  done(p->req.id, accept ? ok_reply() : error_reply(bluez::kErrorRejected, "rejected by the user"),
       accept ? "accepted" : "rejected");
  return {};
}

Result<void> BtAgent::answer_code(const std::string& address, const std::string& code) {
  Pending* p = find(address, true);
  if (p == nullptr) {
    return fail("no passkey or PIN request is pending for " + address +
                    (find(address, false) ? " (it asks for yes/no: use 'bt confirm')" : ""),
                ENOENT);
  }
  AgentReply r = ok_reply();
  if (p->req.kind == AgentKind::Passkey) {
    bool digits = !code.empty() && code.size() <= 6;
    for (char c : code) {
      digits = digits && std::isdigit(static_cast<unsigned char>(c));
    }
    if (!digits) {
      return fail("the passkey for " + address + " is a number of up to 6 digits", EINVAL);
    }
    r.passkey = static_cast<uint32_t>(std::stoul(code));
  } else {
    bool ok = !code.empty() && code.size() <= 16;
    for (char c : code) {
      ok = ok && c > 0x20 && c < 0x7f;
    }
    if (!ok) {
      return fail("the PIN for " + address + " is 1 to 16 printable characters", EINVAL);
    }
    r.pin = code;
  }
  done(p->req.id, r, "accepted");
  return {};
}

void BtAgent::cancel_all(const char* outcome) {
  while (!pending_.empty()) {
    done(pending_.begin()->first, error_reply(bluez::kErrorCanceled, outcome), outcome);
  }
}

std::vector<AgentRequest> BtAgent::pending() const {
  std::vector<AgentRequest> out;
  for (const auto& [id, p] : pending_) {
    out.push_back(p.req);
  }
  return out;
}

void BtAgent::done(uint64_t id, const AgentReply& r, const char* outcome) {
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    return;
  }
  Pending p = std::move(it->second);
  pending_.erase(it);
  if (p.timer != 0) {
    loop_.remove(p.timer);
  }
  p.reply(r);
  BtEvent ev{BtEvent::Type::AgentRequestDone};
  ev.request = p.req;
  ev.address = p.req.address;
  ev.outcome = outcome;
  emit_(ev);
}

}  // namespace qaudio::bt
