// Parser tests: every token type, comments, directives, wildcards, options,
// and the syntax errors that make a snapshot invalid (with file and line).
#include <gtest/gtest.h>

#include "policy_test_util.hpp"

namespace qaudio::policy {
namespace {

using testing::MapFs;
using testing::parse_text;
using K = QubeSpec::Kind;

const Rule& only_rule(const PolicySnapshot& s) {
  EXPECT_TRUE(s.valid()) << (s.errors.empty() ? "" : s.errors[0].to_string());
  EXPECT_EQ(s.rules.size(), 1u);
  static Rule empty;
  return s.rules.empty() ? empty : s.rules[0];
}

std::string first_error(const PolicySnapshot& s) {
  return s.errors.empty() ? std::string("(no error)") : s.errors[0].to_string();
}

TEST(PolicyParser, ParsesAllFiveFields) {
  auto s = parse_text("qaudio.Mic + work sys-audio allow\n");
  const Rule& r = only_rule(s);
  EXPECT_EQ(r.service, std::optional<std::string>("qaudio.Mic"));
  EXPECT_EQ(r.argument, std::optional<std::string>("+"));
  EXPECT_EQ(r.source.kind, K::Name);
  EXPECT_EQ(r.source.value, "work");
  EXPECT_EQ(r.target.kind, K::Name);
  EXPECT_EQ(r.target.value, "sys-audio");
  EXPECT_EQ(r.action, Action::Allow);
  EXPECT_EQ(r.location(), "/p/test.policy:1");
  EXPECT_EQ(r.text, "qaudio.Mic + work sys-audio allow");
}

TEST(PolicyParser, StarServiceAndArgumentAreWildcards) {
  auto s = parse_text("* * work sys-audio deny\nqaudio.Play * work sys-audio deny\n");
  ASSERT_TRUE(s.valid()) << first_error(s);
  ASSERT_EQ(s.rules.size(), 2u);
  EXPECT_FALSE(s.rules[0].service.has_value());
  EXPECT_FALSE(s.rules[0].argument.has_value());
  EXPECT_EQ(s.rules[1].service, std::optional<std::string>("qaudio.Play"));
  EXPECT_FALSE(s.rules[1].argument.has_value());
}

TEST(PolicyParser, ArgumentWithValueIsKept) {
  auto s = parse_text("qaudio.Mic +default-source work sys-audio deny\n");
  EXPECT_EQ(only_rule(s).argument, std::optional<std::string>("+default-source"));
}

struct TokenCase {
  const char* token;
  K kind;
  const char* value;
};

TEST(PolicyParser, EverySourceTokenType) {
  const TokenCase cases[] = {
      {"work", K::Name, "work"},
      {"*", K::Wildcard, ""},
      {"@anyvm", K::AnyVm, ""},
      {"@adminvm", K::AdminVm, ""},
      {"dom0", K::AdminVm, ""},
      {"@tag:audio", K::Tag, "audio"},
      {"@type:AppVM", K::Type, "AppVM"},
      {"@dispvm", K::DispVm, ""},
      {"@dispvm:fedora-dvm", K::DispVmTemplate, "fedora-dvm"},
      {"@dispvm:@tag:x", K::DispVmTag, "x"},
  };
  for (const auto& c : cases) {
    auto s = parse_text(std::string("qaudio.Mic * ") + c.token + " sys-audio deny\n");
    const Rule& r = only_rule(s);
    EXPECT_EQ(r.source.kind, c.kind) << c.token;
    EXPECT_EQ(r.source.value, c.value) << c.token;
    EXPECT_EQ(r.source.text, c.token);
  }
}

TEST(PolicyParser, EveryTargetTokenType) {
  const TokenCase cases[] = {
      {"sys-audio", K::Name, "sys-audio"},
      {"*", K::Wildcard, ""},
      {"@anyvm", K::AnyVm, ""},
      {"@adminvm", K::AdminVm, ""},
      {"dom0", K::AdminVm, ""},
      {"@default", K::Default, ""},
      {"@tag:audiovm", K::Tag, "audiovm"},
      {"@type:AppVM", K::Type, "AppVM"},
      {"@dispvm", K::DispVm, ""},
      {"@dispvm:fedora-dvm", K::DispVmTemplate, "fedora-dvm"},
      {"@dispvm:@tag:x", K::DispVmTag, "x"},
  };
  for (const auto& c : cases) {
    auto s = parse_text(std::string("qaudio.Mic * work ") + c.token + " deny\n");
    const Rule& r = only_rule(s);
    EXPECT_EQ(r.target.kind, c.kind) << c.token;
    EXPECT_EQ(r.target.value, c.value) << c.token;
  }
}

TEST(PolicyParser, CommentsBlankLinesCrlfAndTabsAreSkippedButCounted) {
  auto s = parse_text(
      "# header\n\n   # indented comment\r\n\tqaudio.Play\t*\t@anyvm\t@anyvm\tallow \r\n");
  const Rule& r = only_rule(s);
  EXPECT_EQ(r.line, 4);
  EXPECT_EQ(r.action, Action::Allow);
  EXPECT_EQ(r.target.kind, K::AnyVm);
}

TEST(PolicyParser, AllActionsAndTheirOptions) {
  auto s = parse_text(
      "qaudio.Mic * work sys-audio allow target=sys-audio user=root notify=yes autostart=no\n"
      "qaudio.Mic * work @default ask target=sys-audio default_target=sys-audio notify=no\n"
      "qaudio.Mic * work sys-audio deny notify=no\n"
      "qaudio.Play * work sys-audio allow target=@dispvm:fedora-dvm\n"
      "qaudio.Play * work sys-audio ask default_target=@adminvm\n");
  ASSERT_TRUE(s.valid()) << first_error(s);
  ASSERT_EQ(s.rules.size(), 5u);
  const Rule& a = s.rules[0];
  EXPECT_EQ(a.action, Action::Allow);
  ASSERT_TRUE(a.redirect);
  EXPECT_EQ(a.redirect->value, "sys-audio");
  EXPECT_EQ(a.user, std::optional<std::string>("root"));
  EXPECT_EQ(a.notify, std::optional<bool>(true));
  EXPECT_EQ(a.autostart, std::optional<bool>(false));
  const Rule& k = s.rules[1];
  EXPECT_EQ(k.action, Action::Ask);
  ASSERT_TRUE(k.default_target);
  EXPECT_EQ(k.default_target->text, "sys-audio");
  EXPECT_EQ(k.notify, std::optional<bool>(false));
  EXPECT_EQ(s.rules[2].action, Action::Deny);
  EXPECT_EQ(s.rules[2].notify, std::optional<bool>(false));
  EXPECT_EQ(s.rules[3].redirect->kind, K::DispVmTemplate);
  EXPECT_EQ(s.rules[4].default_target->kind, K::AdminVm);
}

struct ErrorCase {
  const char* line;
  const char* message_part;
};

TEST(PolicyParser, SyntaxErrorsNameFileLineAndCause) {
  const ErrorCase cases[] = {
      {"qaudio.Mic * work", "wrong number of fields"},
      {"qaudio.Mic work sys-audio allow", "wrong number of fields"},
      {"qaudio.Mic * work sys-audio maybe", "invalid action 'maybe'"},
      {"qaudio.Mic * work sys-audio Allow", "invalid action"},
      {"qaudio.Mic * @default sys-audio deny", "'@default' is not allowed as source"},
      {"qaudio.Mic * work @default allow", "must specify target="},
      {"qaudio.Mic * work @bogus deny", "invalid target token '@bogus'"},
      {"qaudio.Mic * @anyVM sys-audio deny", "invalid source token"},
      {"qaudio.Mic * @tag: sys-audio deny", "empty @tag: token"},
      {"qaudio.Mic * @type: sys-audio deny", "empty @type: token"},
      {"qaudio.Mic * @dispvm: sys-audio deny", "empty @dispvm: token"},
      {"qaudio.Mic * @dispvm:@foo sys-audio deny", "invalid source token"},
      {"qaudio.Mic * $anyvm sys-audio deny", "old 4.0 syntax"},
      {"qaudio.Mic * wo!rk sys-audio deny", "invalid qube name"},
      {"* +arg work sys-audio deny", "only '*' argument allowed for '*' service"},
      {"qaudio.Mic arg work sys-audio deny", "does not start with '+'"},
      {"qaudio+Mic * work sys-audio deny", "service 'qaudio+Mic' contains invalid characters"},
      {"qaudio.Mic +a/b work sys-audio deny", "contains invalid characters"},
      {"qaudio.Mic * work sys-audio allow notify=maybe", "can be only 'yes' or 'no'"},
      {"qaudio.Mic * work sys-audio deny target=sys-audio", "invalid parameter 'target'"},
      {"qaudio.Mic * work sys-audio allow default_target=x", "invalid parameter"},
      {"qaudio.Mic * work sys-audio allow colour=red", "invalid parameter 'colour'"},
      {"qaudio.Mic * work sys-audio allow target=a target=b", "parameter given twice"},
      {"qaudio.Mic * work sys-audio allow target=", "empty value"},
      {"qaudio.Mic * work sys-audio allow target=@anyvm", "not allowed as redirect"},
      {"qaudio.Mic * work sys-audio allow notify", "expected KEY=VALUE"},
      {"qaudio.Mic * work sys-audio allow # ok?", "only at the beginning of a line"},
      {"!include", "invalid number of params"},
      {"!include-dir a b", "invalid number of params"},
      {"!include-service qaudio.Mic +", "invalid number of params"},
      {"!compat-4.0 x", "invalid number of params"},
      {"!frobnicate x", "invalid directive"},
  };
  for (const auto& c : cases) {
    auto s = parse_text(std::string("# ok\n") + c.line + "\n");
    ASSERT_EQ(s.errors.size(), 1u) << c.line;
    EXPECT_FALSE(s.valid());
    EXPECT_EQ(s.errors[0].file, "/p/test.policy") << c.line;
    EXPECT_EQ(s.errors[0].line, 2) << c.line;
    EXPECT_NE(s.errors[0].message.find(c.message_part), std::string::npos)
        << c.line << " -> " << s.errors[0].message;
    EXPECT_EQ(s.errors[0].to_string().rfind("/p/test.policy:2: ", 0), 0u);
  }
}

TEST(PolicyParser, EveryErrorIsReportedNotOnlyTheFirst) {
  auto s = parse_text("bad\nqaudio.Mic * work sys-audio allow\nalso bad line\n* * * * nope\n");
  ASSERT_EQ(s.errors.size(), 3u);
  EXPECT_EQ(s.errors[0].line, 1);
  EXPECT_EQ(s.errors[1].line, 3);
  EXPECT_EQ(s.errors[2].line, 4);
}

TEST(PolicyParser, IncludeReadsFileRelativeToPolicyDirectory) {
  MapFs fs;
  fs.files["/p/include/audio"] = "# included\nqaudio.Mic * work sys-audio allow\n";
  auto s = parse_text(
      "qaudio.Play * @anyvm @anyvm allow\n!include include/audio\n"
      "qaudio.Mic * @anyvm @anyvm deny\n",
      fs);
  ASSERT_TRUE(s.valid()) << first_error(s);
  ASSERT_EQ(s.rules.size(), 3u);
  EXPECT_EQ(s.rules[1].location(), "/p/include/audio:2");
  EXPECT_EQ(s.rules[2].location(), "/p/test.policy:3");
}

TEST(PolicyParser, ErrorInIncludedFileNamesThatFileAndLine) {
  MapFs fs;
  fs.files["/p/include/audio"] = "qaudio.Mic * work sys-audio allow\nqaudio.Mic * work\n";
  auto s = parse_text("!include include/audio\n", fs);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].to_string(),
            "/p/include/audio:2: wrong number of fields (expected "
            "SERVICE ARGUMENT SOURCE TARGET ACTION [OPTIONS])");
}

TEST(PolicyParser, IncludeOfMissingFileIsAnErrorAtTheIncludeLine) {
  auto s = parse_text("\n!include include/nope\n");
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].line, 2);
  EXPECT_NE(s.errors[0].message.find("/p/include/nope"), std::string::npos);
}

TEST(PolicyParser, IncludeDirReadsPolicyFilesInLexicalOrder) {
  MapFs fs;
  fs.files["/p/extra/20-b.policy"] = "qaudio.Mic * b sys-audio allow\n";
  fs.files["/p/extra/10-a.policy"] = "qaudio.Mic * a sys-audio allow\n";
  fs.files["/p/extra/100-c.policy"] = "qaudio.Mic * c sys-audio allow\n";
  fs.files["/p/extra/.hidden.policy"] = "garbage\n";
  fs.files["/p/extra/README"] = "garbage\n";
  fs.files["/p/extra/x.policy.rpmsave"] = "garbage\n";
  auto s = parse_text("!include-dir extra\n", fs);
  ASSERT_TRUE(s.valid()) << first_error(s);
  ASSERT_EQ(s.rules.size(), 3u);
  EXPECT_EQ(s.rules[0].source.value, "a");  // "10-a" < "100-c" ('-' < '0') < "20-b"
  EXPECT_EQ(s.rules[1].source.value, "c");
  EXPECT_EQ(s.rules[2].source.value, "b");
}

TEST(PolicyParser, IncludeDirRejectsBadFileNames) {
  MapFs fs;
  fs.files["/p/extra/Audio.policy"] = "qaudio.Mic * a sys-audio allow\n";
  auto s = parse_text("!include-dir extra\n", fs);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].file, "/p/extra/Audio.policy");
  EXPECT_NE(s.errors[0].message.find("invalid file name"), std::string::npos);
}

TEST(PolicyParser, IncludeDirOfMissingDirectoryIsAnError) {
  auto s = parse_text("!include-dir nope\n");
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].line, 1);
  EXPECT_NE(s.errors[0].message.find("cannot include directory"), std::string::npos);
}

TEST(PolicyParser, IncludeServiceReadsTheOldFormatForOneService) {
  MapFs fs;
  fs.files["/p/include/mic"] =
      "# 4.0 style\n$tag:audio $default ask,default_target=sys-audio\n"
      "$anyvm $anyvm deny\n";
  auto s = parse_text("!include-service qaudio.Mic + include/mic\n", fs);
  ASSERT_TRUE(s.valid()) << first_error(s);
  ASSERT_EQ(s.rules.size(), 2u);
  EXPECT_EQ(s.rules[0].service, std::optional<std::string>("qaudio.Mic"));
  EXPECT_EQ(s.rules[0].argument, std::optional<std::string>("+"));
  EXPECT_EQ(s.rules[0].source.kind, K::Tag);
  EXPECT_EQ(s.rules[0].target.kind, K::Default);
  EXPECT_EQ(s.rules[0].action, Action::Ask);
  EXPECT_EQ(s.rules[0].default_target->value, "sys-audio");
  EXPECT_EQ(s.rules[1].location(), "/p/include/mic:3");
}

TEST(PolicyParser, IncludeServiceValidatesItsServiceAndDirectives) {
  MapFs fs;
  fs.files["/p/include/mic"] = "!include-dir x\n";
  auto bad_service = parse_text("!include-service qaudio.Mic noplus include/mic\n", fs);
  ASSERT_EQ(bad_service.errors.size(), 1u);
  EXPECT_NE(bad_service.errors[0].message.find("does not start with '+'"), std::string::npos);
  auto bad_directive = parse_text("!include-service qaudio.Mic + include/mic\n", fs);
  ASSERT_EQ(bad_directive.errors.size(), 1u);
  EXPECT_EQ(bad_directive.errors[0].file, "/p/include/mic");
}

TEST(PolicyParser, Compat40DirectiveIsAccepted) {
  auto s = parse_text("!compat-4.0\nqaudio.Mic * work sys-audio allow\n");
  EXPECT_TRUE(s.valid()) << first_error(s);
  EXPECT_EQ(s.rules.size(), 1u);
}

TEST(PolicyParser, IncludeCycleIsAnError) {
  MapFs fs;
  fs.files["/p/a"] = "!include b\n";
  fs.files["/p/b"] = "qaudio.Mic * work sys-audio allow\n!include a\n";
  auto s = parse_text("!include a\n", fs);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].file, "/p/b");
  EXPECT_EQ(s.errors[0].line, 2);
  EXPECT_NE(s.errors[0].message.find("include cycle: "), std::string::npos);
}

TEST(PolicyParser, SelfIncludeIsACycle) {
  MapFs fs;
  fs.files["/p/test.policy"] = "!include test.policy\n";
  auto s = parse_text("!include test.policy\n", fs);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_NE(s.errors[0].message.find("include cycle"), std::string::npos);
}

TEST(PolicyParser, TooDeepNestingIsAnError) {
  MapFs fs;
  for (int i = 0; i < 30; ++i) {
    fs.files["/p/f" + std::to_string(i)] = "!include f" + std::to_string(i + 1) + "\n";
  }
  auto s = parse_text("!include f0\n", fs);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_NE(s.errors[0].message.find("nested too deeply"), std::string::npos);
}

TEST(PolicyParser, InputIsBounded) {
  MapFs fs;
  PolicyLimits lim;
  lim.max_file_bytes = 100;
  lim.max_line_bytes = 40;
  lim.max_rules = 2;
  auto big = parse_policy_text(std::string(101, '#'), "/p/x.policy", "/p", fs, lim);
  ASSERT_EQ(big.errors.size(), 1u);
  EXPECT_NE(big.errors[0].message.find("larger than 100 bytes"), std::string::npos);
  auto longline =
      parse_policy_text("# " + std::string(50, 'x') + "\n", "/p/x.policy", "/p", fs, lim);
  ASSERT_EQ(longline.errors.size(), 1u);
  EXPECT_NE(longline.errors[0].message.find("longer than 40 bytes"), std::string::npos);
  auto many =
      parse_policy_text("* * a b deny\n* * a b deny\n* * a b deny\n", "/p/x.policy", "/p", fs, lim);
  ASSERT_EQ(many.errors.size(), 1u);
  EXPECT_EQ(many.errors[0].line, 3);
  EXPECT_NE(many.errors[0].message.find("too many rules"), std::string::npos);
}

TEST(PolicyParser, NumberOfFilesAndTotalSizeAreBounded) {
  MapFs fs;
  for (int i = 0; i < 10; ++i) {
    fs.files["/p/d/" + std::to_string(i) + ".policy"] = "# " + std::string(50, 'x') + "\n";
  }
  PolicyLimits lim;
  lim.max_files = 4;
  auto files = parse_policy_text("!include-dir d\n", "/p/x.policy", "/p", fs, lim);
  ASSERT_FALSE(files.valid());
  EXPECT_NE(files.errors[0].message.find("too many policy files"), std::string::npos);
  lim = PolicyLimits();
  lim.max_total_bytes = 200;
  auto bytes = parse_policy_text("!include-dir d\n", "/p/x.policy", "/p", fs, lim);
  ASSERT_FALSE(bytes.valid());
  EXPECT_NE(bytes.errors[0].message.find("bytes in total"), std::string::npos);
}

TEST(PolicyParser, NulAndBinaryBytesAreErrorsNotCrashes) {
  auto s = parse_text(std::string("qaudio.Mic * work sys-audio allow\0\n", 35) +
                      "\xff\xfe @anyvm x y z\n");
  EXPECT_EQ(s.errors.size(), 2u);
  EXPECT_NE(s.errors[0].message.find("NUL"), std::string::npos);
  EXPECT_NE(s.errors[1].to_string().find("\\xff"), std::string::npos);
}

TEST(PolicyParser, FileNameRule) {
  EXPECT_TRUE(is_policy_file_name("30-audio.policy"));
  EXPECT_TRUE(is_policy_file_name("a_b.c-d.policy"));
  EXPECT_FALSE(is_policy_file_name("Audio.policy"));
  EXPECT_FALSE(is_policy_file_name(".hidden.policy"));
  EXPECT_FALSE(is_policy_file_name("a b.policy"));
}

}  // namespace
}  // namespace qaudio::policy
