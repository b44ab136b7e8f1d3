// `make demo` end to end: tools/demo.sh runs the daemon on the wav backend
// with qubes work (440 Hz, 100 %) and personal (660 Hz, 50 %) played by
// aplay through the ALSA plugin (the real agent core), or by fake agents; the test checks
// demo-out.wav: a valid WAV at the device rate, both tones present (Goertzel), 440:660 at 2:1 (-6
// dB +- 1 dB), and no gap after the start-up (10 ms block RMS).
#include <gtest/gtest.h>

#include "e2e_support.hpp"

namespace qaudio::e2e {
namespace {

void check_demo_output(const std::string& protocol, const std::string& agents) {
#ifndef QAUDIO_DEMO_HAS_ALSA_PLUGIN
  if (agents == "alsa") {
    GTEST_SKIP() << "built without the ALSA plugin";
  }
#endif
  if (agents == "alsa" && (!test::have_program("aplay") || !test::have_program("sox"))) {
    GTEST_SKIP() << "aplay or sox missing";
  }
  test::TempDir dir("demo");
  std::string out = dir.path() + "/demo-out.wav";
  auto r = test::run_command({QAUDIO_DEMO_SCRIPT, "--build", QAUDIO_BUILD_DIR, "--out", out,
                              "--seconds", "4", "--protocol", protocol, "--agents", agents},
                             {}, 60s);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("work: state=running protocol=" + protocol), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("personal: state=running protocol=" + protocol), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("volume=50"), std::string::npos);
  EXPECT_NE(r.out.find(agents + " agents"), std::string::npos) << r.out;

  auto w = read_wav(out);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->rate, 48000u);
  EXPECT_EQ(w->channels, 2u);
  ASSERT_GT(w->frames(), 48000u * 3);

  auto rms = block_rms(*w, 480);
  size_t start = 0;
  while (start < rms.size() && rms[start] < 0.05) {
    ++start;
  }
  ASSERT_LT(start + 200, rms.size());
  // Both qubes start within a few periods of each other; after 300 ms, until
  // 100 ms before the end, no 10 ms block may drop out.
  for (size_t i = start + 30; i + 10 < rms.size(); ++i) {
    ASSERT_GT(rms[i], 0.1) << "gap at block " << i << " (" << i * 10 << " ms)";
  }
  auto mid = mono(*w, (start + 30) * 480, w->frames() - 4800);
  // Goertzel over 100 ms blocks, averaged: stock qubes are rate-matched
  // adaptively, which may pitch a tone by a few hundred ppm — too much for a
  // 3-second Goertzel bin, nothing for a 100 ms one.
  auto level = [&](double freq) {
    double sum = 0;
    size_t n = 0;
    for (size_t b = 0; b + 4800 <= mid.size(); b += 4800) {
      sum += test::tone_amplitude(std::span(mid).subspan(b, 4800), 1, 0, 48000, freq);
      ++n;
    }
    return n ? sum / n : 0.0;
  };
  double a440 = level(440.0);
  double a660 = level(660.0);
  EXPECT_NEAR(a440, 0.3, 0.03);
  EXPECT_NEAR(a660, 0.15, 0.015);
  EXPECT_NEAR(test::amplitude_to_db(a660 / a440), -6.02, 1.0);
}

// make demo's default: aplay through the qaudio ALSA plugin in each "qube".
TEST(Demo, alsa_plugin_qubes_in_stock_mode_mix_440_and_660_at_two_to_one_without_gaps) {
  check_demo_output("stock", "alsa");
}

TEST(Demo, alsa_plugin_qubes_in_native_mode_mix_440_and_660_at_two_to_one_without_gaps) {
  check_demo_output("native", "alsa");
}

TEST(Demo, fake_agents_mix_440_and_660_at_two_to_one_without_gaps) {
  check_demo_output("stock", "fake");
}

}  // namespace
}  // namespace qaudio::e2e
