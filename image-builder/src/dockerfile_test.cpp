#include <catch2/catch.hpp>
#include <chrono>

#include "builder/dockerfile.hpp"
#include "builder/ignore.hpp"
#include "builder/words.hpp"

using namespace tug::builder;

TEST_CASE("a Dockerfile with every supported instruction parses into stages") {
  const char* text =
      "# syntax comment\n"
      "ARG BASE=oci:/tmp/base:v1\n"
      "FROM --platform=linux/arm64 ${BASE} AS Build\n"
      "RUN echo one \\\n"
      "    && echo two\n"
      "RUN [\"/bin/sh\", \"-c\", \"echo exec\"]\n"
      "COPY --chown=1:2 a b /dst/\n"
      "FROM scratch\n"
      "COPY --from=build /x /y\n"
      "ADD layer.tar /\n"
      "ENV A=1 B=\"two words\"\n"
      "ENV C legacy value\n"
      "WORKDIR /app\n"
      "USER 1000:1000\n"
      "LABEL k=v\n"
      "EXPOSE 8080 53/udp\n"
      "HEALTHCHECK --interval=5s --timeout=1s --start-period=2s --retries=4 CMD test -e /ok\n"
      "ENTRYPOINT [\"/bin/app\"]\n"
      "CMD --serve\n";
  auto df = ParseDockerfile(text);
  INFO((df ? std::string() : df.error().context));
  REQUIRE(df);
  REQUIRE(df->global_args.size() == 1);
  REQUIRE(df->stages.size() == 2);
  CHECK(df->stages[0].name == "build");
  CHECK(df->stages[0].platform == "linux/arm64");
  CHECK(df->stages[0].base == "${BASE}");
  CHECK(df->stages[0].line == 3);
  const auto& s0 = df->stages[0].instructions;
  REQUIRE(s0.size() == 3);
  CHECK(s0[0].kind == InstrKind::kRun);
  CHECK(s0[0].line == 4);
  CHECK(s0[0].rest == "echo one    && echo two");
  CHECK(s0[1].json_form);
  CHECK(s0[1].json_args == std::vector<std::string>{"/bin/sh", "-c", "echo exec"});
  CHECK(s0[2].flags.at("chown") == "1:2");
  const auto& s1 = df->stages[1].instructions;
  REQUIRE(s1.size() == 11);
  CHECK(s1[0].flags.at("from") == "build");
  CHECK(s1[1].kind == InstrKind::kAdd);
  CHECK(s1[8].kind == InstrKind::kHealthcheck);
  CHECK(s1[8].flags.at("retries") == "4");
  CHECK(s1[8].rest == "test -e /ok");
  CHECK(s1[9].json_form);
  CHECK_FALSE(s1[10].json_form);
  CHECK(df->StepCount() == 16);
}

TEST_CASE("a syntax error names the file and the line") {
  auto df = ParseDockerfile("FROM scratch\n\n# c\nRUN a \\\n  b\nENV X=1\nFORM x\n", "Dockerfile");
  REQUIRE_FALSE(df);
  CHECK(df.error().context == "Dockerfile:7: unknown instruction FORM");
  auto df2 = ParseDockerfile("RUN x\n");
  REQUIRE_FALSE(df2);
  CHECK(df2.error().context.find("Dockerfile:1:") == 0);
  auto df3 = ParseDockerfile("FROM scratch\nRUN --mount=type=cache x\n");
  REQUIRE_FALSE(df3);
  CHECK(df3.error().context.find("Dockerfile:2: RUN flag --mount") == 0);
  auto df4 = ParseDockerfile("FROM scratch\nHEALTHCHECK --interval=5x CMD true\n");
  REQUIRE_FALSE(df4);
  CHECK(df4.error().context.find("Dockerfile:2:") == 0);
  CHECK_FALSE(ParseDockerfile("FROM scratch\nADD https://example.com/x /\n"));
}

TEST_CASE("HEALTHCHECK NONE and durations in Go syntax") {
  auto df = ParseDockerfile("FROM scratch\nHEALTHCHECK NONE\n");
  REQUIRE(df);
  CHECK(df->stages[0].instructions[0].healthcheck_none);
  CHECK(*ParseGoDuration("30s") == 30'000'000'000);
  CHECK(*ParseGoDuration("1m30s") == 90'000'000'000);
  CHECK(*ParseGoDuration("500ms") == 500'000'000);
  CHECK(*ParseGoDuration("1.5h") == 5400'000'000'000);
  CHECK_FALSE(ParseGoDuration("10"));
}

TEST_CASE("variable substitution handles defaults, quotes and escapes") {
  Vars v{{"A", "x"}, {"EMPTY", ""}, {"SP", "a b"}};
  CHECK(*Expand("$A-${A}_${B:-def}", v) == "x-x_def");
  CHECK(*Expand("${EMPTY:-d}|${EMPTY-d}|${A:+alt}|${B:+alt}", v) == "d||alt|");
  CHECK(*Expand("'$A' \"$A\" \\$A", v) == "$A x $A");
  auto w = SplitWords("k=\"$SP c\" j=$SP 'q r'", &v);
  REQUIRE(w);
  CHECK(*w == std::vector<std::string>{"k=a b c", "j=a b", "q r"});  // expansions are not re-split
  CHECK_FALSE(SplitWords("\"open", &v));
  CHECK_FALSE(SplitWords("${open", &v));
  auto raw = SplitWords("a $B", nullptr);
  CHECK(*raw == std::vector<std::string>{"a", "$B"});
}

TEST_CASE("dockerignore globs cannot backtrack exponentially (builder_fuzz hung on one)") {
  const auto t0 = std::chrono::steady_clock::now();
  // 2^30 ways to split the path among the stars for a backtracking matcher; each state is tried once now.
  const std::string stars = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
  CHECK_FALSE(GlobMatch(stars, std::string(60, 'a')));
  CHECK(GlobMatch(stars, std::string(60, 'a') + "b"));
  const std::string doubles = "**/**/**/**/**/**/**/**/**/**/**/**/x";
  CHECK_FALSE(GlobMatch(doubles, "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/y"));
  CHECK(GlobMatch(doubles, "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/x"));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
}

TEST_CASE("dockerignore globs support double star and exceptions") {
  CHECK(GlobMatch("*.log", "a.log"));
  CHECK_FALSE(GlobMatch("*.log", "d/a.log"));
  CHECK(GlobMatch("**/*.log", "d/e/a.log"));
  CHECK(GlobMatch("**/*.log", "a.log"));
  CHECK(GlobMatch("d/**", "d/e/f"));
  CHECK(GlobMatch("file[0-9].txt", "file3.txt"));
  CHECK_FALSE(GlobMatch("file[!0-9].txt", "file3.txt"));
  auto ig = DockerIgnore::FromText("# comment\n*.log\n!keep.log\nsecret/\n**/*.tmp\n./build\n");
  CHECK(ig.Excluded("a.log"));
  CHECK_FALSE(ig.Excluded("keep.log"));
  CHECK(ig.Excluded("secret"));
  CHECK(ig.Excluded("secret/key"));
  CHECK(ig.Excluded("x/y/z.tmp"));
  CHECK(ig.Excluded("build/out.o"));
  CHECK_FALSE(ig.Excluded("src/main.c"));
  auto ig2 = DockerIgnore::FromText("docs\n!docs/README.md\n");
  CHECK(ig2.Excluded("docs/a.md"));
  CHECK_FALSE(ig2.Excluded("docs/README.md"));
  CHECK(ig2.MayReinclude("docs"));
}

TEST_CASE("Go durations: a bare dot, two dots or a huge value are errors, not exceptions (builder_fuzz)") {
  CHECK_FALSE(ParseGoDuration("1h2ms.").has_value());
  CHECK_FALSE(ParseGoDuration(".s").has_value());
  CHECK_FALSE(ParseGoDuration("1.2.3s").has_value());
  CHECK_FALSE(ParseGoDuration("99999999999h").has_value());
  CHECK(*ParseGoDuration("1.5s") == 1'500'000'000);
}
