// An X session for the mixer UI tests: Xvfb on a free display (-displayfd)
// and optionally trayer as an XEmbed tray host; both direct children,
// stopped by pid.
//
//   XSession x;  ASSERT_TRUE(x.start(dir, /*tray_host=*/true));
//   qputenv("DISPLAY", x.display().c_str());
#pragma once

#include <fstream>

#include "sound_servers.hpp"

namespace qaudio::mixer::test {

using namespace std::chrono_literals;
using qaudio::test::Child;

// Xvfb on a free display (-displayfd) and, if asked, trayer as the tray host.
class XSession {
 public:
  bool start(const std::string& dir, bool tray_host = true) {
    std::string dfile = dir + "/display";
    auto x = Child::spawn(
        {"sh", "-c", "exec Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3>" + dfile}, {},
        dir + "/xvfb.log");
    if (!x) {
      return false;
    }
    xvfb_ = std::move(*x);
    if (!qaudio::test::wait_until(
            [&] {
              std::ifstream in(dfile);
              int n = -1;
              in >> n;
              if (n >= 0) {
                display_ = ":" + std::to_string(n);
              }
              return n >= 0 || !xvfb_.running();
            },
            20s) ||
        display_.empty()) {
      return false;
    }
    if (!tray_host) {
      return true;
    }
    auto t = Child::spawn(
        {"trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", "32",
         "--SetDockType", "true", "--tint", "0x203040", "--transparent", "true", "--alpha", "0"},
        {{"DISPLAY", display_}}, dir + "/trayer.log");
    if (!t) {
      return false;
    }
    trayer_ = std::move(*t);
    return true;
  }
  const std::string& display() const { return display_; }
  ~XSession() {
    trayer_.stop();
    xvfb_.stop();
  }

 private:
  Child xvfb_, trayer_;
  std::string display_;
};

}  // namespace qaudio::mixer::test
