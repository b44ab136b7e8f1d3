// The ALSA plugin (libasound_module_pcm_qubes.so) driven by aplay/arecord,
// with a daemon written in the test (stock and native) on the unix channel.
#include <gtest/gtest.h>

#include <filesystem>

#include "session_harness.hpp"

#ifndef QAUDIO_ALSA_PLUGIN_PATH
#error "QAUDIO_ALSA_PLUGIN_PATH must name the built plugin"
#endif

namespace qaudio::agent::test {
namespace {

class AlsaPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!qaudio::test::have_program("aplay") || !qaudio::test::have_program("sox")) {
      GTEST_SKIP() << "alsa-utils or sox missing";
    }
    qaudio::test::prepare_private_dirs(dir_.path());
    qaudio::test::make_dir(dir_.path() + "/vchan");
    env_ = qaudio::test::private_client_env(dir_.path());
  }
  void write_asoundrc(const std::string& protocol) {
    qaudio::test::write_file(dir_.path() + "/home/.asoundrc",
                             "pcm_type.qubes { lib \"" QAUDIO_ALSA_PLUGIN_PATH
                             "\" }\n"
                             "pcm.qubes {\n  type qubes\n  channel \"unix:" +
                                 dir_.path() + "/vchan\"\n  domid " + std::to_string(kQube) +
                                 "\n  audiovm_domid " + std::to_string(kAudioVm) +
                                 "\n  protocol \"" + protocol + "\"\n}\n");
  }
  std::string tone_wav(double freq, double seconds) {
    std::string path = dir_.path() + "/tone.wav";
    auto r = qaudio::test::run_command(
        {"sox", "-n", "-r", "44100", "-c", "2", "-b", "16", path, "synth", std::to_string(seconds),
         "sine", std::to_string(freq), "vol", "0.5"},
        {}, std::chrono::seconds(20));
    EXPECT_EQ(r.status, 0);
    return path;
  }
  DaemonPeer connect() {
    DaemonPeer p;
    auto t = make_transport("unix:" + dir_.path() + "/vchan");
    auto play = (*t)->connect({kQube, kAudioVm, 4713}, std::chrono::seconds(10));
    EXPECT_TRUE(play) << play.error().message;
    auto ctl = (*t)->connect({kQube, kAudioVm, 4714}, std::chrono::seconds(10));
    EXPECT_TRUE(ctl) << ctl.error().message;
    if (play && ctl) {
      p.play = std::move(*play);
      p.ctl = std::move(*ctl);
    }
    return p;
  }
  // Reads 4713 until `want` bytes of non-silence (from the first loud sample).
  static std::vector<std::byte> read_loud(Channel& ch, size_t want) {
    std::vector<std::byte> got;
    std::vector<std::byte> buf;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
      buf.clear();
      read_some(ch, buf, 4096);
      if (got.empty()) {
        // Skip leading silence (whole S16 stereo frames).
        size_t i = 0;
        for (; i + 4 <= buf.size(); i += 4) {
          int16_t v;
          std::memcpy(&v, buf.data() + i, 2);
          if (std::abs(v) > 3000) {
            break;
          }
        }
        got.insert(got.end(), buf.begin() + static_cast<ptrdiff_t>(i), buf.end());
      } else {
        got.insert(got.end(), buf.begin(), buf.end());
      }
    }
    return got;
  }

  qaudio::test::TempDir dir_{"agent-alsa"};
  qaudio::test::EnvVars env_;
};

TEST_F(AlsaPluginTest, aplay_stock_tone_arrives_with_frequency_and_level) {
  write_asoundrc("stock");
  auto wav = tone_wav(1000, 4);
  auto aplay = qaudio::test::Child::spawn({"aplay", "-q", "-D", "qubes", wav}, env_,
                                          dir_.path() + "/aplay.log");
  ASSERT_TRUE(aplay);
  auto d = connect();
  ASSERT_TRUE(d.play);
  auto got = read_loud(*d.play, 44100 * 4);
  ASSERT_GE(got.size(), 44100u * 4);
  auto f = to_float(got, kStockFormat);
  EXPECT_NEAR(tone_peak(f, 2, 0, 44100, 1000.0, 441, 22050), 0.5, 0.01);
  EXPECT_NEAR(zero_cross_freq(f, 2, 1, 44100, 441), 1000.0, 2.0);
  auto st = aplay->wait_exit(std::chrono::seconds(20));
  ASSERT_TRUE(st);
  EXPECT_EQ(WEXITSTATUS(*st), 0);
}

TEST_F(AlsaPluginTest, aplay_native_offers_the_wav_format_unchanged) {
  write_asoundrc("native");
  auto wav = tone_wav(440, 3);
  auto aplay = qaudio::test::Child::spawn({"aplay", "-q", "-D", "qubes", wav}, env_,
                                          dir_.path() + "/aplay.log");
  ASSERT_TRUE(aplay);
  auto d = connect();
  NativeDaemon nd(d);
  ASSERT_TRUE(nd.negotiate());
  auto pf = nd.expect<protocol::PlaybackFormat>();
  ASSERT_TRUE(pf);
  EXPECT_EQ(pf->format, kStockFormat);  // the WAV's own S16LE 44.1 kHz stereo
  nd.send(protocol::FormatAccepted{protocol::StreamDirection::Playback, pf->format});
  auto got = read_loud(*d.play, 44100 * 4);
  ASSERT_GE(got.size(), 44100u * 4);
  auto f = to_float(got, kStockFormat);
  EXPECT_NEAR(tone_peak(f, 2, 0, 44100, 440.0, 441, 22050), 0.5, 0.01);
}

TEST_F(AlsaPluginTest, arecord_gets_mic_pcm_after_mic_start_and_silence_before) {
  write_asoundrc("stock");
  std::string out = dir_.path() + "/mic.raw";
  auto arec = qaudio::test::Child::spawn({"arecord", "-q", "-D", "qubes", "-t", "raw", "-f",
                                          "FLOAT_LE", "-r", "48000", "-c", "1", "-d", "3", out},
                                         env_, dir_.path() + "/arecord.log");
  ASSERT_TRUE(arec);
  auto d = connect();
  ASSERT_TRUE(d.ctl);
  auto words = d.read_words(1, std::chrono::seconds(5));
  ASSERT_EQ(words.size(), 1u);
  // Output idle (cork) may come first; the mic start must follow.
  if (words[0] == static_cast<uint32_t>(protocol::StockWord::Cork)) {
    words = d.read_words(1, std::chrono::seconds(5));
  }
  ASSERT_EQ(words, (std::vector<uint32_t>{static_cast<uint32_t>(protocol::StockWord::MicStart)}));
  // Hold the mic PCM back until arecord has stored its first 50 ms: those
  // frames were captured before any mic audio existed and must be silence.
  ASSERT_TRUE(qaudio::test::wait_until(
      [&] {
        std::error_code ec;
        auto n = std::filesystem::file_size(out, ec);
        return !ec && n >= 2400 * 4;
      },
      std::chrono::seconds(5), std::chrono::milliseconds(2)));
  // The stock daemon sends mic PCM paced like a device (kept 60 ms ahead of
  // the wall clock).
  auto tone = make_tone(kStockFormat, 440.0, 0.3, 44100 * 4);
  const size_t chunk = 441 * 4;
  const auto t0 = std::chrono::steady_clock::now();
  size_t off = 0;
  while (off + chunk <= tone.size() && arec->running()) {
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    size_t target = std::min(tone.size(), static_cast<size_t>(ms + 60) * 441 / 10 * 4);
    while (off + chunk <= target) {
      if (write_all(*d.ctl, std::span(tone).subspan(off, chunk), std::chrono::seconds(1)) !=
          chunk) {
        break;
      }
      off += chunk;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // device pacing, not a sync
  }
  auto st = arec->wait_exit(std::chrono::seconds(20));
  ASSERT_TRUE(st);
  std::ifstream fin(out, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(fin)), std::istreambuf_iterator<char>());
  std::vector<float> f(raw.size() / 4);
  std::memcpy(f.data(), raw.data(), f.size() * 4);
  ASSERT_GE(f.size(), 48000u * 2);
  // The last 1.5 s hold the tone (after the connection and MicStart).
  size_t first = f.size() - 72000;
  EXPECT_NEAR(best_tone_level(f, 1, 0, 48000, 440.0, first, 4800), 0.3, 0.01);
  EXPECT_GT(tone_level(f, 1, 0, 48000, 440.0, first, 4800), 0.15);  // mostly present
  // Before the daemon connected and the mic started: valid silence.
  EXPECT_LT(rms_of(std::vector<float>(f.begin(), f.begin() + 2400), 1, 0), 1e-6);
}

}  // namespace
}  // namespace qaudio::agent::test
