// qubes-audio-agent: presents "Qubes audio" and "Qubes microphone" in an app
// qube's sound system and carries their audio to and from the audio domain.
// docs/audio-agent.md has the full description.
//
//   qubes-audio-agent --backend pulse --channel xen               # on Qubes
//   qubes-audio-agent --backend pulse:unix:/tmp/pa/native --channel unix:/tmp/q
//       --domid 5 --audiovm-domid 1 --protocol auto -v            # tests (one line)
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "agent_session.hpp"
#include "domain_watcher.hpp"
#include "pulse_agent_backend.hpp"
#include "qaudio/config.h"
#include "qaudio/log.hpp"
#ifdef QAUDIO_AGENT_PIPEWIRE
#include "pipewire_agent_backend.hpp"
#endif

namespace {

qaudio::EventLoop* g_loop = nullptr;

void on_signal(int) {
  if (g_loop != nullptr) {
    g_loop->quit();
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace qaudio;
  using namespace qaudio::agent;
  CLI::App app{
      "qubes-audio-agent: \"Qubes audio\" output and \"Qubes microphone\" input in this qube, "
      "carried to the audio domain (native qaudio protocol, or the stock Qubes protocol)."};
#ifdef QAUDIO_AGENT_PIPEWIRE
  std::string backend = "pipewire";
#else
  std::string backend = "pulse";
#endif
  std::string channel = "xen";
  uint32_t domid = 0;
  int64_t audiovm = -1;
  std::string audiovm_file;
  std::string protocol = "auto";
  uint32_t latency_ms = 0;  // 0: the backend's default (below)
  uint32_t negotiation_ms = 500;
  bool keep_devices = false;
  bool verbose = false;
  app.add_option("--backend", backend,
                 "Local sound system: pipewire | pulse[:SERVER] (SERVER as in PULSE_SERVER)")
      ->capture_default_str();
  app.add_option("--channel", channel, "Transport to the audio domain: xen | unix:DIR | shm:DIR")
      ->capture_default_str();
  app.add_option("--domid", domid, "This qube's domain id (names the unix/shm endpoints)")
      ->capture_default_str();
  app.add_option("--audiovm-domid", audiovm,
                 "The audio domain's id (default: QubesDB /qubes-audio-domain-xid, watched)");
  app.add_option("--audiovm-domid-file", audiovm_file,
                 "Read the audio domain's id from this file and follow its changes");
  app.add_option("--protocol", protocol,
                 "auto (native if the daemon answers, else stock) | stock | native")
      ->check(CLI::IsMember({"auto", "stock", "native"}))
      ->capture_default_str();
  app.add_option("--latency-ms", latency_ms,
                 "Target for the agent's own buffering (default: 8 for pipewire, 10 for pulse)")
      ->check(CLI::Range(2u, 200u));
  app.add_option("--negotiation-timeout-ms", negotiation_ms,
                 "How long auto mode waits for a native answer")
      ->check(CLI::Range(10u, 10000u))
      ->capture_default_str();
  app.add_flag("--keep-devices", keep_devices,
               "Leave the devices in the sound server on exit (a restart apps do not notice)");
  app.add_flag("-v,--verbose", verbose, "Debug logging");
  CLI11_PARSE(app, argc, argv);

  set_log_tag("qubes-audio-agent");
  if (verbose) {
    set_log_level(LogLevel::Debug);
  }

  // The audio domain's id: fixed, from a file, or from QubesDB.
  std::unique_ptr<DomainWatcher> watcher;
  if (audiovm >= 0) {
    watcher = std::make_unique<StaticDomainWatcher>(static_cast<uint32_t>(audiovm));
  } else if (!audiovm_file.empty()) {
    watcher = std::make_unique<FileDomainWatcher>(audiovm_file);
  } else {
    auto w = make_qubesdb_watcher();
    if (!w) {
      std::fprintf(stderr, "qubes-audio-agent: %s\n", w.error().message.c_str());
      return 2;
    }
    watcher = std::move(*w);
  }

  // Defaults measured with qaudio-latency-probe (docs/benchmarks.md, 10
  // runs each): a PipeWire sink drives its graph on the audio domain's
  // clock; at 8 ms native mode adds 8.0 ms (median over runs; 10 ms: 9.4 ms
  // with fewer underruns; 6 ms: more underruns, no gain). A PulseAudio
  // monitor needs the margin of 10.
  if (latency_ms == 0) {
    latency_ms = backend == "pipewire" ? 8 : 10;
  }
  std::unique_ptr<AgentBackend> be;
  if (backend == "pulse" || backend.rfind("pulse:", 0) == 0) {
    PulseAgentOptions po;
    po.server = backend.size() > 6 ? backend.substr(6) : "";
    // The monitor fragment is what the agent adds before anything is sent:
    // 3 ms at the default (measured: 5 ms cost ~5 ms more end to end).
    po.fragment_ms = std::max<uint32_t>(latency_ms * 3 / 10, 2);
    po.keep_devices = keep_devices;
    be = make_pulse_agent_backend(po);
#ifdef QAUDIO_AGENT_PIPEWIRE
  } else if (backend == "pipewire") {
    PipeWireAgentOptions po;
    po.latency_ms = latency_ms;
    be = make_pipewire_agent_backend(po);
#endif
  } else {
    std::fprintf(stderr, "qubes-audio-agent: unknown --backend '%s' (pipewire | pulse[:SERVER])\n",
                 backend.c_str());
    return 2;
  }

  auto transport = make_transport(channel);
  if (!transport) {
    std::fprintf(stderr, "qubes-audio-agent: %s\n", transport.error().message.c_str());
    return 2;
  }

  EventLoop loop;
  g_loop = &loop;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  AgentOptions opts;
  opts.domid = domid;
  opts.protocol = *protocol_mode_from_string(protocol);
  opts.latency_ms = latency_ms;
  opts.negotiation_timeout = std::chrono::milliseconds(negotiation_ms);
  auto current = watcher->current();
  if (!current) {
    log_warn("the audio domain's id is not known yet; waiting for it");
  }
  opts.audiovm_domid = current.value_or(0);

  AgentSession session(loop, *be, std::move(*transport), opts);
  bool serving = false;
  auto begin = [&]() -> bool {
    if (auto r = session.start(); !r) {
      log_error("%s", r.error().message.c_str());
      return false;
    }
    serving = true;
    return true;
  };
  if (current && !begin()) {
    return 1;
  }
  if (auto r = watcher->start(loop,
                              [&](uint32_t id) {
                                if (!serving) {
                                  session.set_audiovm_domid(id);
                                  if (!begin()) {
                                    loop.quit();
                                  }
                                  return;
                                }
                                session.set_audiovm_domid(id);
                              });
      !r) {
    log_error("%s", r.error().message.c_str());
    return 1;
  }
  loop.run();
  watcher->stop();
  session.stop();
  g_loop = nullptr;
  if (!session.fatal_error().empty()) {
    return 1;
  }
  return 0;
}
