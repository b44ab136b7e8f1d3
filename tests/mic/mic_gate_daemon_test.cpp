// The mic gate end to end: an in-process Daemon on the unix channel with the
// wav backend whose microphone is a 1 kHz tone (in=tone.wav), and fake agents
// (qaudio-fake-agent, stock protocol) that start the mic and record every mic
// byte they receive. Checks that not one non-zero sample reaches a qube
// before attach, while policy denies it, or (after the in-flight queue) after
// detach and after a policy syntax error; and that the tone does arrive when
// allowed and attached.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "daemon.hpp"
#include "sound_servers.hpp"
#include "tone.hpp"

namespace qaudio::daemon {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::TempDir;

// Stock mic format: S16LE 44.1 kHz stereo.
constexpr size_t kBytesPerSecond = 44100 * 4;

void write_tone_wav(const std::string& path) {
  const uint32_t rate = 48000, frames = rate;  // 1 s, looped by the backend
  std::vector<int16_t> pcm(frames * 2);
  for (uint32_t i = 0; i < frames; ++i) {
    auto v = static_cast<int16_t>(16000 * std::sin(2 * test::kPi * 1000.0 * i / rate));
    pcm[2 * i] = pcm[2 * i + 1] = v;
  }
  auto u32 = [](std::ofstream& o, uint32_t v) { o.write(reinterpret_cast<char*>(&v), 4); };
  auto u16 = [](std::ofstream& o, uint16_t v) { o.write(reinterpret_cast<char*>(&v), 2); };
  std::ofstream o(path, std::ios::binary);
  uint32_t data = static_cast<uint32_t>(pcm.size() * 2);
  o.write("RIFF", 4);
  u32(o, 36 + data);
  o.write("WAVEfmt ", 8);
  u32(o, 16);
  u16(o, 1);
  u16(o, 2);
  u32(o, rate);
  u32(o, rate * 4);
  u16(o, 4);
  u16(o, 16);
  o.write("data", 4);
  u32(o, data);
  o.write(reinterpret_cast<char*>(pcm.data()), data);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Index one past the last non-zero byte (0: all silent).
size_t end_of_sound(const std::string& bytes, size_t from = 0) {
  for (size_t i = bytes.size(); i > from; --i) {
    if (bytes[i - 1] != 0) {
      return i;
    }
  }
  return 0;
}

int peak(const std::string& bytes, size_t from) {
  int p = 0;
  for (size_t i = from; i + 1 < bytes.size(); i += 2) {
    int16_t v;
    std::memcpy(&v, bytes.data() + i, 2);
    p = std::max(p, std::abs(static_cast<int>(v)));
  }
  return p;
}

class MicGateDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("micgate");
    root_ = dir_->path();
    test::make_dir(root_ + "/ch");
    test::make_dir(root_ + "/policy");
    write_policy(
        "qaudio.Play  *  @anyvm    @anyvm     allow\n"
        "qaudio.Mic   *  work      sys-audio  allow\n"
        "qaudio.Mic   *  @anyvm    @anyvm     deny\n");
    write_tone_wav(root_ + "/tone.wav");
  }

  void TearDown() override {
    if (HasFailure()) {  // the agents' logs explain most failures
      for (const char* q : {"work", "personal"}) {
        std::printf("---- agent %s ----\n%s\n", q,
                    read_all(root_ + "/agent-" + q + ".log").c_str());
      }
    }
  }

  void write_policy(const std::string& text) {
    std::string tmp = root_ + "/policy/.30-qaudio.tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, root_ + "/policy/30-qaudio.policy");
  }

  Child agent(const std::string& name, uint32_t domid) {
    auto c = Child::spawn(
        {QAUDIO_FAKE_AGENT, "--channel", "unix:" + root_ + "/ch", "--domid", std::to_string(domid),
         "--name", name, "--protocol", "stock", "--mic", "--record", rec(name), "--seconds", "0"},
        {{"HOME", root_}, {"XDG_RUNTIME_DIR", root_}}, root_ + "/agent-" + name + ".log");
    EXPECT_TRUE(c.has_value());
    return std::move(*c);
  }
  std::string rec(const std::string& name) const { return root_ + "/rec-" + name + ".raw"; }

  // Runs the daemon's loop in slices until `cond` holds (deadline 20 s).
  bool run_until(Daemon& d, const std::function<bool()>& cond) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      d.loop().run_once(5ms);
      if (cond()) {
        return true;
      }
    }
    return false;
  }
  bool run_until_received(Daemon& d, const std::string& name, size_t bytes) {
    return run_until(d, [&] { return read_all(rec(name)).size() >= bytes; });
  }

  std::unique_ptr<TempDir> dir_;
  std::string root_;
};

TEST_F(MicGateDaemonTest, no_mic_sample_reaches_a_qube_unless_allowed_and_attached) {
  DaemonOptions o;
  o.channel = "unix:" + root_ + "/ch";
  o.qubes = {{"work", 5, "", std::nullopt}, {"personal", 6, "", std::nullopt}};
  o.backend = "wav:" + root_ + "/out.wav,in=" + root_ + "/tone.wav";
  o.policy_dir = root_ + "/policy";
  o.audio_qube = "sys-audio";
  auto created = Daemon::create(o);
  ASSERT_TRUE(created) << created.error().message;
  Daemon& d = **created;
  ASSERT_TRUE(d.start());
  Child work = agent("work", 5);
  Child personal = agent("personal", 6);

  // Before attach: a valid, silent source (bytes flow, all zero), and the
  // request is pending for the user.
  ASSERT_TRUE(run_until_received(d, "work", kBytesPerSecond));
  EXPECT_EQ(end_of_sound(read_all(rec("work"))), 0u);
  auto pending = d.mic_gate().pending_requests(std::chrono::steady_clock::now());
  ASSERT_FALSE(pending.empty());
  EXPECT_EQ(pending[0].qube, "work");

  // Deny: attach refused with the rule; personal stays silent all along.
  auto refused = d.set_mic_attached("personal", true, false, true);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("30-qaudio.policy:3"), std::string::npos)
      << refused.error().message;

  // Attach: the tone arrives.
  size_t before_attach = read_all(rec("work")).size();
  ASSERT_TRUE(d.set_mic_attached("work", true));
  ASSERT_TRUE(run_until(d, [&] { return end_of_sound(read_all(rec("work")), before_attach) > 0; }));
  ASSERT_TRUE(run_until_received(d, "work", read_all(rec("work")).size() + kBytesPerSecond / 2));
  std::string got = read_all(rec("work"));
  EXPECT_EQ(end_of_sound(got.substr(0, before_attach)), 0u);  // nothing before attach
  EXPECT_GT(peak(got, before_attach), 8000);

  // Detach: after what was already queued, only zeros.
  size_t at_detach = read_all(rec("work")).size();
  ASSERT_TRUE(d.set_mic_attached("work", false));
  ASSERT_TRUE(run_until_received(d, "work", at_detach + 2 * kBytesPerSecond));
  got = read_all(rec("work"));
  size_t tail = end_of_sound(got) > at_detach ? end_of_sound(got) - at_detach : 0;
  std::printf("[ figure ] mic bytes with sound after detach (queued before it): %zu (%.0f ms)\n",
              tail, tail * 1000.0 / kBytesPerSecond);
  EXPECT_LT(tail, kBytesPerSecond);                                // bounded by the capture queue
  EXPECT_EQ(end_of_sound(got, got.size() - kBytesPerSecond), 0u);  // the last second is silent

  // Attach again, then a policy syntax error: detached, silent.
  ASSERT_TRUE(d.set_mic_attached("work", true));
  size_t reattach = read_all(rec("work")).size();
  ASSERT_TRUE(
      run_until(d, [&] { return end_of_sound(read_all(rec("work")), reattach) > reattach; }));
  write_policy("qaudio.Mic * work sys-audio alow\n");
  ASSERT_TRUE(run_until(d, [&] { return !d.mic_gate().attached("work"); }));
  size_t at_error = read_all(rec("work")).size();
  ASSERT_TRUE(run_until_received(d, "work", at_error + 2 * kBytesPerSecond));
  got = read_all(rec("work"));
  EXPECT_EQ(end_of_sound(got, got.size() - kBytesPerSecond), 0u);
  EXPECT_FALSE(d.set_mic_attached("work", true));  // refused while invalid

  // The other qube never heard anything.
  ASSERT_GT(read_all(rec("personal")).size(), kBytesPerSecond);
  EXPECT_EQ(end_of_sound(read_all(rec("personal"))), 0u);
  d.stop();
}

}  // namespace
}  // namespace qaudio::daemon
