// Fuzz target for the policy parser and the qube-info parser. The input is a
// policy file; every !include / !include-dir resolves to an in-memory tree
// whose files hold the same input (so include cycles, nesting limits and
// service-format includes are exercised too). A first byte of 'Q' feeds the
// rest to the qube-info parser instead. Each parsed snapshot is evaluated.
//
//   ./policy_parser_fuzzer policy/fuzz/corpus
#include <cstddef>
#include <cstdint>
#include <string>

#include "qaudio/policy/loader.hpp"
#include "qaudio/policy/policy.hpp"
#include "qaudio/policy/qube_info.hpp"

using namespace qaudio::policy;

namespace {

class EchoFs : public PolicyFs {
 public:
  explicit EchoFs(const std::string& text) : text_(text) {}
  qaudio::Result<std::string> read_file(const std::string& path, size_t) const override {
    if (path.find("missing") != std::string::npos) {
      return qaudio::fail("no such file", 2);
    }
    return text_;
  }
  qaudio::Result<std::vector<std::string>> list_dir(const std::string& path) const override {
    if (path.find("missing") != std::string::npos) {
      return qaudio::fail("no such directory", 2);
    }
    return std::vector<std::string>{"b.policy", "a.policy", ".hidden.policy", "Bad.policy",
                                    "notes.txt"};
  }

 private:
  const std::string& text_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  StaticQubeInfo qubes;
  if (!text.empty() && text[0] == 'Q') {
    qubes = StaticQubeInfo::parse(text.substr(1), "qubes");
    text = "qaudio.Mic * @tag:audio @default ask\nqaudio.Play * @dispvm:@tag:x @anyvm allow\n";
  } else {
    qubes.add("work", QubeRecord{"AppVM", {"audio"}, "", false});
    qubes.add("disp1", QubeRecord{"DispVM", {}, "dvm", false});
    qubes.add("dvm", QubeRecord{"AppVM", {"x"}, "", true});
  }
  EchoFs fs(text);
  PolicyLimits lim;
  lim.max_rules = 2000;
  lim.max_include_depth = 4;
  lim.max_files = 16;
  PolicySnapshot snap = parse_policy_text(text, "/p/main.policy", "/p", fs, lim);
  for (const auto& e : snap.errors) {
    (void)e.to_string();
  }
  static const char* kSources[] = {"work", "disp1", "dvm", "dom0", "other", "@bad"};
  static const char* kTargets[] = {"@default", "sys-audio", "dom0", "@dispvm:dvm", ""};
  for (const char* s : kSources) {
    for (const char* t : kTargets) {
      Decision d = evaluate(snap, Request{"qaudio.Mic", "+", s, t}, qubes);
      (void)d.rule_location();
    }
  }
  return 0;
}
