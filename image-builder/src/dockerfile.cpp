#include "builder/dockerfile.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

namespace tug::builder {

const char* ToString(InstrKind kind) {
  switch (kind) {
    case InstrKind::kFrom: return "FROM";
    case InstrKind::kRun: return "RUN";
    case InstrKind::kCopy: return "COPY";
    case InstrKind::kAdd: return "ADD";
    case InstrKind::kEnv: return "ENV";
    case InstrKind::kArg: return "ARG";
    case InstrKind::kWorkdir: return "WORKDIR";
    case InstrKind::kUser: return "USER";
    case InstrKind::kEntrypoint: return "ENTRYPOINT";
    case InstrKind::kCmd: return "CMD";
    case InstrKind::kLabel: return "LABEL";
    case InstrKind::kExpose: return "EXPOSE";
    case InstrKind::kHealthcheck: return "HEALTHCHECK";
    case InstrKind::kStopSignal: return "STOPSIGNAL";
  }
  return "?";
}

int Dockerfile::StepCount() const {
  int n = 0;
  for (const auto& s : stages) n += 1 + static_cast<int>(s.instructions.size());
  return n;
}

namespace {

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool KindFromKeyword(const std::string& kw, InstrKind* out) {
  static const std::map<std::string, InstrKind> kKinds{
      {"FROM", InstrKind::kFrom},       {"RUN", InstrKind::kRun},         {"COPY", InstrKind::kCopy},
      {"ADD", InstrKind::kAdd},         {"ENV", InstrKind::kEnv},         {"ARG", InstrKind::kArg},
      {"WORKDIR", InstrKind::kWorkdir}, {"USER", InstrKind::kUser},       {"ENTRYPOINT", InstrKind::kEntrypoint},
      {"CMD", InstrKind::kCmd},         {"LABEL", InstrKind::kLabel},     {"EXPOSE", InstrKind::kExpose},
      {"HEALTHCHECK", InstrKind::kHealthcheck}, {"STOPSIGNAL", InstrKind::kStopSignal}};
  auto it = kKinds.find(kw);
  if (it == kKinds.end()) return false;
  *out = it->second;
  return true;
}

// Flags each instruction accepts; anything else is an error rather than silently ignored (e.g. RUN --mount, whose
// absence would change what the build does).
const std::vector<std::string>& AllowedFlags(InstrKind k) {
  static const std::vector<std::string> kNone, kFrom{"platform"}, kCopy{"chown", "from", "chmod"},
      kAdd{"chown", "chmod"}, kHealth{"interval", "timeout", "start-period", "retries"};
  switch (k) {
    case InstrKind::kFrom: return kFrom;
    case InstrKind::kCopy: return kCopy;
    case InstrKind::kAdd: return kAdd;
    case InstrKind::kHealthcheck: return kHealth;
    default: return kNone;
  }
}

struct Logical {
  int line;
  std::string text;
};

// Joins continuation lines. As in Docker, comment lines inside a continuation are dropped, and a trailing
// backslash continues onto the next non-comment line.
std::vector<Logical> LogicalLines(std::string_view text) {
  std::vector<Logical> out;
  std::string cur;
  int cur_line = 0;
  int lineno = 0;
  size_t pos = 0;
  bool continuing = false;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view raw = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++lineno;
    std::string line(raw);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string trimmed = Trim(line);
    // Comments and blank lines are skipped, also inside a continuation (Docker joins across them).
    if (trimmed.empty() || trimmed[0] == '#') continue;
    if (!continuing) cur_line = lineno;
    // Right-trim, then look for the continuation backslash.
    std::string rt = line;
    while (!rt.empty() && std::isspace(static_cast<unsigned char>(rt.back()))) rt.pop_back();
    bool cont = !rt.empty() && rt.back() == '\\';
    if (cont) rt.pop_back();
    if (continuing) {
      cur += rt;
    } else {
      cur = Trim(rt);
    }
    continuing = cont;
    if (!cont) {
      out.push_back({cur_line, Trim(cur)});
      cur.clear();
    }
  }
  if (continuing && !Trim(cur).empty()) out.push_back({cur_line, Trim(cur)});
  return out;
}

bool ParseJsonArray(const std::string& s, std::vector<std::string>* out) {
  if (s.empty() || s[0] != '[') return false;
  auto j = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) return false;
  std::vector<std::string> v;
  for (const auto& e : j) {
    if (!e.is_string()) return false;
    v.push_back(e.get<std::string>());
  }
  *out = std::move(v);
  return true;
}

}  // namespace

Result<int64_t> ParseGoDuration(std::string_view s) {
  if (s.empty()) return MakeError(Errc::kInvalidArgument, "empty duration");
  static const std::vector<std::pair<std::string, double>> kUnits{
      {"ns", 1.0}, {"us", 1e3}, {"µs", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
  double total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (start == i) return MakeError(Errc::kInvalidArgument, "bad duration \"" + std::string(s) + "\"");
    // strtod on exactly the digits: "." or "1.2.3" is an error, never an exception (found by builder_fuzz).
    const std::string num(s.substr(start, i - start));
    char* end = nullptr;
    double value = std::strtod(num.c_str(), &end);
    if (end != num.c_str() + num.size() || !std::isfinite(value))
      return MakeError(Errc::kInvalidArgument, "bad duration \"" + std::string(s) + "\"");
    size_t ustart = i;
    while (i < s.size() && !std::isdigit(static_cast<unsigned char>(s[i])) && s[i] != '.') ++i;
    std::string unit(s.substr(ustart, i - ustart));
    double mult = -1;
    for (const auto& [name, m] : kUnits)
      if (unit == name) mult = m;
    if (mult < 0)
      return MakeError(Errc::kInvalidArgument, "bad duration \"" + std::string(s) + "\" (units: ms, s, m, h)");
    total += value * mult;
  }
  // Beyond ~292 years the nanoseconds do not fit an int64_t (llround would be undefined).
  if (!(total < 9.2e18)) return MakeError(Errc::kInvalidArgument, "duration too long \"" + std::string(s) + "\"");
  return static_cast<int64_t>(std::llround(total));
}

Result<Dockerfile> ParseDockerfile(std::string_view text, const std::string& filename) {
  Dockerfile df;
  df.filename = filename;
  auto fail = [&](int line, const std::string& what) {
    return MakeError(Errc::kInvalidArgument, filename + ":" + std::to_string(line) + ": " + what);
  };
  for (const auto& ll : LogicalLines(text)) {
    size_t sp = 0;
    while (sp < ll.text.size() && !std::isspace(static_cast<unsigned char>(ll.text[sp]))) ++sp;
    const std::string keyword = Upper(ll.text.substr(0, sp));
    std::string rest = Trim(std::string_view(ll.text).substr(sp));
    Instruction ins;
    ins.line = ll.line;
    if (keyword == "ONBUILD" || keyword == "VOLUME" || keyword == "SHELL" || keyword == "MAINTAINER")
      return fail(ll.line, keyword + " is not supported");
    if (!KindFromKeyword(keyword, &ins.kind)) return fail(ll.line, "unknown instruction " + keyword);

    // Flags come first: --name=value, each one word.
    const bool takes_flags = ins.kind == InstrKind::kFrom || ins.kind == InstrKind::kRun ||
                             ins.kind == InstrKind::kCopy || ins.kind == InstrKind::kAdd ||
                             ins.kind == InstrKind::kHealthcheck;
    while (takes_flags && rest.rfind("--", 0) == 0) {
      size_t end = 0;
      while (end < rest.size() && !std::isspace(static_cast<unsigned char>(rest[end]))) ++end;
      std::string flag = rest.substr(2, end - 2);
      std::string value;
      if (auto eq = flag.find('='); eq != std::string::npos) {
        value = flag.substr(eq + 1);
        flag = flag.substr(0, eq);
      }
      const auto& allowed = AllowedFlags(ins.kind);
      if (std::find(allowed.begin(), allowed.end(), flag) == allowed.end())
        return fail(ll.line, std::string(ToString(ins.kind)) + " flag --" + flag + " is not supported");
      ins.flags[flag] = value;
      rest = Trim(std::string_view(rest).substr(end));
    }

    if (ins.kind == InstrKind::kHealthcheck) {
      size_t e = 0;
      while (e < rest.size() && !std::isspace(static_cast<unsigned char>(rest[e]))) ++e;
      const std::string sub = Upper(rest.substr(0, e));
      if (sub == "NONE") {
        ins.healthcheck_none = true;
        rest.clear();
      } else if (sub == "CMD") {
        rest = Trim(std::string_view(rest).substr(e));
        if (rest.empty()) return fail(ll.line, "HEALTHCHECK CMD needs a command");
      } else {
        return fail(ll.line, "HEALTHCHECK takes CMD <command> or NONE");
      }
      for (const char* d : {"interval", "timeout", "start-period"}) {
        if (auto it = ins.flags.find(d); it != ins.flags.end()) {
          auto dur = ParseGoDuration(it->second);
          if (!dur) return fail(ll.line, "HEALTHCHECK --" + std::string(d) + ": " + dur.error().context);
        }
      }
      if (auto it = ins.flags.find("retries"); it != ins.flags.end()) {
        if (it->second.empty() || !std::all_of(it->second.begin(), it->second.end(),
                                               [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
          return fail(ll.line, "HEALTHCHECK --retries needs a number");
      }
    }
    ins.rest = rest;
    if (ins.kind == InstrKind::kRun || ins.kind == InstrKind::kCmd || ins.kind == InstrKind::kEntrypoint ||
        ins.kind == InstrKind::kCopy || ins.kind == InstrKind::kAdd || ins.kind == InstrKind::kHealthcheck) {
      ins.json_form = ParseJsonArray(rest, &ins.json_args);
    }

    switch (ins.kind) {
      case InstrKind::kFrom: {
        if (rest.empty()) return fail(ll.line, "FROM needs an image");
        std::vector<std::string> w;
        size_t i = 0;
        while (i < rest.size()) {
          while (i < rest.size() && std::isspace(static_cast<unsigned char>(rest[i]))) ++i;
          size_t b = i;
          while (i < rest.size() && !std::isspace(static_cast<unsigned char>(rest[i]))) ++i;
          if (b < i) w.push_back(rest.substr(b, i - b));
        }
        Stage st;
        st.index = static_cast<int>(df.stages.size());
        st.line = ll.line;
        st.base = w[0];
        if (w.size() == 3 && Upper(w[1]) == "AS") {
          st.name = Lower(w[2]);
        } else if (w.size() != 1) {
          return fail(ll.line, "FROM takes IMAGE [AS NAME]");
        }
        if (auto it = ins.flags.find("platform"); it != ins.flags.end()) st.platform = it->second;
        df.stages.push_back(std::move(st));
        continue;
      }
      case InstrKind::kArg:
      case InstrKind::kEnv:
      case InstrKind::kLabel:
      case InstrKind::kExpose:
      case InstrKind::kUser:
      case InstrKind::kWorkdir:
      case InstrKind::kStopSignal:
      case InstrKind::kRun:
      case InstrKind::kCmd:
      case InstrKind::kEntrypoint:
        if (rest.empty()) return fail(ll.line, std::string(ToString(ins.kind)) + " needs an argument");
        break;
      case InstrKind::kCopy:
      case InstrKind::kAdd:
        if (ins.json_form ? ins.json_args.size() < 2 : rest.find_first_of(" \t") == std::string::npos)
          return fail(ll.line, std::string(ToString(ins.kind)) + " needs a source and a destination");
        if (ins.kind == InstrKind::kAdd && (rest.find("http://") != std::string::npos ||
                                            rest.find("https://") != std::string::npos))
          return fail(ll.line, "ADD from a URL is not supported (download in a RUN step or into the context)");
        break;
      case InstrKind::kHealthcheck:
        break;
    }
    if (df.stages.empty()) {
      if (ins.kind != InstrKind::kArg)
        return fail(ll.line, std::string(ToString(ins.kind)) + " before the first FROM (only ARG may come first)");
      df.global_args.push_back(std::move(ins));
    } else {
      df.stages.back().instructions.push_back(std::move(ins));
    }
  }
  if (df.stages.empty()) return MakeError(Errc::kInvalidArgument, filename + ": no FROM instruction");
  return df;
}

}  // namespace tug::builder
