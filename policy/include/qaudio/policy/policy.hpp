// Qubes 4.1+ qrexec policy for qaudio: the parsed snapshot, a request, and
// the pure evaluator (first matching rule wins; no rule means deny). The
// evaluator does no I/O: qube tags and types come from a QubeInfoProvider.
// A snapshot with any error is "invalid" and denies every request.
//
//   auto snap = qaudio::policy::load_policy_dir("/etc/qubes/policy.d");
//   qaudio::policy::Request req{"qaudio.Mic", "+", "work", "@default"};
//   auto d = qaudio::policy::evaluate(*snap, req, qubes);
//   if (d.action == Action::Allow) { ... }   // d.rule_location(), d.reason
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "qaudio/policy/qube_info.hpp"

namespace qaudio::policy {

enum class Action { Deny, Allow, Ask };
const char* action_name(Action a);

// A qube specification in the source or target column, or in target= /
// default_target=. `value` is the part after the prefix (tag, type, name).
struct QubeSpec {
  enum class Kind {
    Name,            // work
    Wildcard,        // *           (every qube, dom0 included)
    AnyVm,           // @anyvm      (every qube but dom0)
    AdminVm,         // @adminvm, dom0
    Default,         // @default    (target only: caller named no target)
    Tag,             // @tag:NAME
    Type,            // @type:TYPE
    DispVm,          // @dispvm
    DispVmTemplate,  // @dispvm:NAME
    DispVmTag,       // @dispvm:@tag:NAME
  };
  Kind kind = Kind::Name;
  std::string value;
  std::string text;  // as written in the file
};

struct Rule {
  std::string file;
  int line = 0;
  std::string text;                     // the line, trimmed
  std::optional<std::string> service;   // nullopt: '*'
  std::optional<std::string> argument;  // nullopt: '*'; else starts with '+'
  QubeSpec source;
  QubeSpec target;
  Action action = Action::Deny;
  std::optional<QubeSpec> redirect;        // target=
  std::optional<QubeSpec> default_target;  // default_target= (ask)
  std::optional<std::string> user;         // user=
  std::optional<bool> notify;              // notify=yes|no
  std::optional<bool> autostart;           // autostart=yes|no

  std::string location() const { return file + ":" + std::to_string(line); }
};

struct PolicyError {
  std::string file;  // empty when not tied to a file
  int line = 0;      // 0: the whole file/directory
  std::string message;

  std::string to_string() const;  // "file:line: message"
};

// Limits on what the parser accepts; exceeding one is an error (deny).
struct PolicyLimits {
  size_t max_file_bytes = 1 << 20;
  size_t max_line_bytes = 4096;
  size_t max_rules = 20000;
  size_t max_files = 512;
  size_t max_total_bytes = 16 << 20;
  int max_include_depth = 16;
};

struct PolicySnapshot {
  std::string root;                 // directory it was loaded from
  std::vector<Rule> rules;          // in evaluation order
  std::vector<PolicyError> errors;  // non-empty: the snapshot denies everything
  std::vector<std::string> files;   // every file read, in order
  std::vector<std::string> dirs;    // every directory read (for the watcher)

  bool valid() const { return errors.empty(); }
};

struct Request {
  std::string service;              // e.g. "qaudio.Mic"
  std::string argument = "+";       // "+" = no argument; "" is read as "+"
  std::string source;               // the calling qube's name (from the channel)
  std::string target = "@default";  // "@default" or the audio qube's name
};

struct Decision {
  Action action = Action::Deny;
  const Rule* rule = nullptr;  // the rule that decided; null for a default/invalid deny
  std::string reason;          // why (always set)
  std::string target;          // allow: where the call goes (target= or the request's)
  std::string default_target;  // ask: the preselected target, if any
  bool notify = false;

  std::string rule_location() const { return rule ? rule->location() : std::string(); }
};

// Pure: no I/O, no allocation beyond the result strings.
Decision evaluate(const PolicySnapshot& policy,
                  const Request& request,
                  const QubeInfoProvider& qubes);

// True when an allow/ask decision sends the call to a qube other than
// `audio_qube` (a target= redirect): the caller must then treat it as deny.
bool redirected_elsewhere(const Decision& d, const std::string& audio_qube);

bool spec_matches_source(const QubeSpec& spec,
                         const std::string& source,
                         const QubeInfoProvider& qubes);
bool spec_matches_target(const QubeSpec& spec,
                         const std::string& target,
                         const QubeInfoProvider& qubes);

}  // namespace qaudio::policy
