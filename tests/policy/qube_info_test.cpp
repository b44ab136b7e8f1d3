// Qube-info file tests: the format, and fail-safe parsing (any error fails
// the provider, which then makes the evaluator deny).
#include <gtest/gtest.h>

#include "policy_test_util.hpp"

namespace qaudio::policy {
namespace {

TEST(QubeInfo, ParsesTypesTagsAndTemplates) {
  auto q = StaticQubeInfo::parse(
      "# qubes\n"
      "work        type=AppVM tags=audio,trusted\n"
      "\n"
      "fedora-dvm\ttype=AppVM template_for_dispvms=yes\r\n"
      "disp1234    type=DispVM template=fedora-dvm\n"
      "dom0        type=AdminVM\n",
      "qubes.txt");
  ASSERT_EQ(q.failure(), "");
  EXPECT_TRUE(q.exists("work"));
  EXPECT_FALSE(q.exists("nope"));
  EXPECT_EQ(q.type("work"), "AppVM");
  EXPECT_EQ(q.tags("work"), (std::vector<std::string>{"audio", "trusted"}));
  EXPECT_EQ(q.type("fedora-dvm"), "AppVM");
  EXPECT_EQ(q.type("disp1234"), "DispVM");
  EXPECT_EQ(q.dispvm_template("disp1234"), "fedora-dvm");
  EXPECT_EQ(q.type("dom0"), "AdminVM");
  EXPECT_EQ(q.type("nope"), "");
  EXPECT_TRUE(q.tags("nope").empty());
}

TEST(QubeInfo, AnyErrorFailsTheWholeProviderWithFileAndLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"work type=AppVm\n", "qubes.txt:1: unknown type 'AppVm'"},
      {"work\n", "qubes.txt:1: missing type= for qube 'work'"},
      {"work type=AppVM colour=red\n", "qubes.txt:1: unknown key 'colour'"},
      {"work type=AppVM tags=a,,b\n", "qubes.txt:1: invalid tag ''"},
      {"work type\n", "qubes.txt:1: expected KEY=VALUE"},
      {"# c\nwork type=AppVM\nwork type=AppVM\n", "qubes.txt:3: qube 'work' listed twice"},
      {"disp1 type=DispVM\n", "qubes.txt:1: disposable 'disp1' needs template=NAME"},
      {"bad!name type=AppVM\n", "qubes.txt:1: invalid qube name"},
      {"x type=AppVM template_for_dispvms=maybe\n", "qubes.txt:1: template_for_dispvms"},
  };
  for (const auto& [text, expect] : cases) {
    auto q = StaticQubeInfo::parse(std::string("ok type=AppVM tags=t\n") + text, "qubes.txt");
    // Line numbers shift by the leading good line.
    std::string want = expect;
    size_t colon = want.find(':');
    int line = std::stoi(want.substr(colon + 1));
    want = want.substr(0, colon + 1) + std::to_string(line + 1) +
           want.substr(want.find(':', colon + 1));
    EXPECT_EQ(q.failure().rfind(want, 0), 0u) << text << " -> " << q.failure();
    EXPECT_FALSE(q.exists("ok")) << "a failed provider knows no qubes";
  }
}

TEST(QubeInfo, MissingFileFails) {
  auto q = StaticQubeInfo::load_file("/nonexistent/qaudio-qubes");
  EXPECT_NE(q.failure().find("/nonexistent/qaudio-qubes"), std::string::npos);
}

TEST(QubeInfo, LoadsFromFile) {
  testing::TempDir d;
  auto q = StaticQubeInfo::load_file(d.write("qubes", "work type=AppVM tags=audio\n"));
  EXPECT_EQ(q.failure(), "");
  EXPECT_EQ(q.tags("work"), std::vector<std::string>{"audio"});
}

}  // namespace
}  // namespace qaudio::policy
