#include "builder/build.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ostream>
#include <sstream>

#include "builder/cache.hpp"
#include "oci/user.hpp"
#include "builder/dockerfile.hpp"
#include "builder/executor.hpp"
#include "builder/ignore.hpp"
#include "builder/snapshot.hpp"
#include "builder/words.hpp"
#include "core/clock.hpp"
#include "core/env.hpp"
#include "crypto/sha256.hpp"
#include "fsutil.hpp"

namespace tug::builder {
namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

class StringSource : public oci::ByteSource {
 public:
  explicit StringSource(std::string_view s) : s_(s) {}
  Result<size_t> Read(char* buf, size_t n) override {
    size_t k = std::min(n, s_.size() - pos_);
    std::copy_n(s_.data() + pos_, k, buf);
    pos_ += k;
    return k;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

std::string HumanSize(size_t n) {
  std::ostringstream o;
  if (n < 1024) o << n << " B";
  else if (n < 1024 * 1024) o << (n * 10 / 1024) / 10.0 << " KiB";
  else o << (n * 10 / (1024 * 1024)) / 10.0 << " MiB";
  return o.str();
}

std::string Tail(const std::string& s, size_t max_lines = 15, size_t max_bytes = 2000) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  if (t.size() > max_bytes) t = t.substr(t.size() - max_bytes);
  size_t lines = 0;
  for (size_t i = t.size(); i-- > 0;) {
    if (t[i] == '\n' && ++lines == max_lines) return t.substr(i + 1);
  }
  return t;
}

std::string Join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

void SetEnv(std::vector<std::string>* env, const std::string& key, const std::string& value) {
  for (auto& e : *env) {
    if (e.compare(0, key.size() + 1, key + "=") == 0) {
      e = key + "=" + value;
      return;
    }
  }
  env->push_back(key + "=" + value);
}

// What a stage has built so far.
struct StageState {
  std::string name;
  oci::Platform platform;
  std::string rootfs;
  PlatformImage image;
  Snapshot snap;
  Vars args;                    // ARGs in scope with a value
  bool entrypoint_set = false;  // in this stage, so an inherited CMD is dropped (Docker's rule)
  bool cmd_set = false;
};

class Engine {
 public:
  Engine(const BuildOptions& opts, Dockerfile df, DockerIgnore ignore, std::string work)
      : opts_(opts), df_(std::move(df)), ignore_(std::move(ignore)), cache_(opts.cache_dir), work_(std::move(work)) {}

  Result<PlatformImage> BuildPlatform(const oci::Platform& target_in, size_t platform_index) {
    const oci::Platform target = NormalizePlatform(target_in);
    std::vector<StageState> stages;
    step_ = 0;
    Vars global = Predefined(target);
    for (const auto& a : df_.global_args) TUG_TRY(DeclareArgs(a, global, &global));
    const int last = LastStage();
    for (const auto& stage : df_.stages) {
      if (stage.index > last) break;
      StageState st;
      st.name = stage.name;
      TUG_TRY(StartStage(stage, target, global, stages,
                         work_ + "/p" + std::to_string(platform_index) + "-s" + std::to_string(stage.index), &st));
      for (const auto& ins : stage.instructions) {
        auto s = Step(ins, &st, stages, global);
        if (!s) {
          const std::string prefix = df_.filename + ":" + std::to_string(ins.line) + ": ";
          Error e = s.error();
          if (e.context.rfind(prefix, 0) != 0) e.context = prefix + e.context;
          return tl::unexpected(e);
        }
      }
      stages.push_back(std::move(st));
    }
    StageState& final = stages.back();
    final.image.config.created = core::FormatRfc3339(Epoch());
    final.image.platform = final.platform;
    return final.image;
  }

  BuildStats stats() const { return stats_; }

 private:
  core::TimePoint Epoch() const {
    return core::TimePoint(std::chrono::seconds(opts_.source_date_epoch));
  }

  int LastStage() const {
    if (opts_.target.empty()) return static_cast<int>(df_.stages.size()) - 1;
    for (const auto& s : df_.stages)
      if (s.name == opts_.target) return s.index;
    return static_cast<int>(df_.stages.size()) - 1;
  }

  static Vars Predefined(const oci::Platform& target) {
    const oci::Platform host = oci::HostPlatform();
    return {{"TARGETPLATFORM", PlatformKey(target)}, {"TARGETOS", target.os},
            {"TARGETARCH", target.architecture},      {"TARGETVARIANT", target.variant},
            {"BUILDPLATFORM", PlatformKey(host)},     {"BUILDOS", host.os},
            {"BUILDARCH", host.architecture},         {"BUILDVARIANT", host.variant}};
  }

  // ARG name[=default] ...: the value is --build-arg, else the default (substituted), else the value from
  // `outer` (a global ARG or a predefined platform ARG); declared without any value means unset.
  Status DeclareArgs(const Instruction& ins, const Vars& outer, Vars* into) {
    TUG_ASSIGN_OR_RETURN(auto words, SplitWords(ins.rest, nullptr));
    for (const auto& w : words) {
      const auto eq = w.find('=');
      const std::string name = w.substr(0, eq);
      if (name.empty()) return MakeError(Errc::kInvalidArgument, "ARG needs a name");
      if (auto it = opts_.build_args.find(name); it != opts_.build_args.end()) {
        (*into)[name] = it->second;
      } else if (eq != std::string::npos) {
        Vars scope = *into;
        TUG_ASSIGN_OR_RETURN(auto v, Expand(w.substr(eq + 1), scope));
        (*into)[name] = v;
      } else if (auto o = outer.find(name); o != outer.end()) {
        (*into)[name] = o->second;
      }
    }
    return {};
  }

  void Progress(const std::string& text, const oci::Platform& p) {
    ++step_;
    if (opts_.progress)
      *opts_.progress << "[" << step_ << "/" << df_.StepCount() << "] " << text << " (" << PlatformKey(p) << ")\n";
  }
  void Note(const std::string& text) {
    if (opts_.progress) *opts_.progress << "  -> " << text << "\n" << std::flush;
  }

  Status StartStage(const Stage& stage, const oci::Platform& target, const Vars& global,
                    const std::vector<StageState>& done, const std::string& dir, StageState* st) {
    auto fail = [&](const Error& e) {
      Error out = e;
      out.context = df_.filename + ":" + std::to_string(stage.line) + ": " + e.context;
      return tl::unexpected(out);
    };
    auto base = Expand(stage.base, global);
    if (!base) return fail(base.error());
    st->platform = target;
    if (!stage.platform.empty()) {
      auto ps = Expand(stage.platform, global);
      if (!ps) return fail(ps.error());
      auto p = oci::Platform::Parse(*ps);
      if (!p) return fail(p.error());
      st->platform = NormalizePlatform(*p);
    }
    Progress("FROM " + *base + (stage.name.empty() ? "" : " AS " + stage.name), st->platform);
    st->rootfs = dir + "/rootfs";
    auto* env = core::DefaultEnv();
    TUG_TRY(env->RemoveAll(dir));
    TUG_TRY(env->CreateDirs(st->rootfs));
    const StageState* from_stage = nullptr;
    for (const auto& d : done) {
      std::string lower = *base;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      if (!d.name.empty() && d.name == lower) from_stage = &d;
    }
    if (from_stage != nullptr) {
      st->image = from_stage->image;
    } else {
      auto img = LoadImage(*base, st->platform, opts_.client);
      if (!img) return fail(img.error());
      st->image = std::move(*img);
    }
    st->image.platform = st->platform;
    st->image.config.architecture = st->platform.architecture;
    st->image.config.variant = st->platform.variant;
    st->image.config.os = st->platform.os;
    size_t bytes = 0;
    for (const auto& l : st->image.layers) {
      TUG_TRY(ApplyLayer(l, st->rootfs));
      bytes += l.data.size();
    }
    Note(std::to_string(st->image.layers.size()) + " base layer(s), " + HumanSize(bytes));
    TUG_ASSIGN_OR_RETURN(st->snap, TakeSnapshot(st->rootfs));
    return {};
  }

  static Status ApplyLayer(const oci::LayerBlob& l, const std::string& rootfs) {
    StringSource src(l.data);
    oci::ExtractOptions eo;
    TUG_ASSIGN_OR_RETURN(eo.compression, oci::LayerCompression(l.media_type));
    eo.allow_device_nodes = true;
    eo.expected_digest = l.digest;
    eo.expected_diff_id = l.diff_id;
    auto r = oci::ExtractLayer(src, rootfs, eo);
    if (!r) return tl::unexpected(Wrap(r.error(), "extracting layer " + l.digest));
    return {};
  }

  Vars Scope(const StageState& st) const {
    Vars v = st.args;
    for (const auto& e : st.image.config.config.env) {
      auto eq = e.find('=');
      if (eq != std::string::npos) v[e.substr(0, eq)] = e.substr(eq + 1);
    }
    return v;
  }

  void History(StageState* st, const std::string& created_by, bool empty) {
    oci::HistoryEntry h;
    h.created = core::FormatRfc3339(Epoch());
    h.created_by = created_by;
    h.comment = "image-builder";
    h.empty_layer = empty;
    st->image.config.history.push_back(h);
  }

  std::string ChainKey(const StageState& st) const {
    std::string chain;
    for (const auto& l : st.image.layers) chain += l.digest + ",";
    return chain;
  }

  // Runs a filesystem-changing step through the cache: `key_text` identifies it, `execute` changes the rootfs.
  // Adds the resulting layer (or nothing when the step changed nothing) and the history entry.
  template <typename Exec>
  Status LayerStep(StageState* st, const std::string& created_by, const std::vector<std::string>& key_parts,
                   bool cacheable, Exec execute) {
    std::vector<std::string> parts{"image-builder/v1", ChainKey(*st), PlatformKey(st->platform), created_by};
    parts.insert(parts.end(), key_parts.begin(), key_parts.end());
    const std::string key = LayerCache::Key(parts);
    if (cacheable) {
      if (auto hit = cache_.Lookup(key)) {
        ++stats_.cache_hits;
        if (hit->empty) {
          Note("cached, no changes");
          History(st, created_by, true);
          return {};
        }
        TUG_TRY(ApplyLayer(hit->blob, st->rootfs));
        TUG_ASSIGN_OR_RETURN(st->snap, TakeSnapshot(st->rootfs));
        Note("cached layer " + hit->blob.digest.substr(7, 12) + " " + HumanSize(hit->blob.data.size()));
        AddLayer(st, std::move(hit->blob), created_by);
        return {};
      }
    }
    TUG_TRY(execute());
    TUG_ASSIGN_OR_RETURN(auto after, TakeSnapshot(st->rootfs));
    TUG_ASSIGN_OR_RETURN(auto diff, Diff(st->rootfs, st->snap, after, opts_.source_date_epoch));
    st->snap = std::move(after);
    if (diff.empty()) {
      if (cacheable) TUG_TRY(cache_.Store(key, nullptr));
      Note("no changes");
      History(st, created_by, true);
      return {};
    }
    oci::LayerBlob blob = oci::LayerFromEntries(diff.entries);
    if (cacheable) TUG_TRY(cache_.Store(key, &blob));
    Note("layer " + blob.digest.substr(7, 12) + " " + HumanSize(blob.data.size()) + " (" +
         std::to_string(diff.changed) + " changed, " + std::to_string(diff.deleted) + " deleted)");
    AddLayer(st, std::move(blob), created_by);
    return {};
  }

  void AddLayer(StageState* st, oci::LayerBlob blob, const std::string& created_by) {
    st->image.config.diff_ids.push_back(blob.diff_id);
    st->image.layers.push_back(std::move(blob));
    ++stats_.layers;
    History(st, created_by, false);
  }

  Status Step(const Instruction& ins, StageState* st, const std::vector<StageState>& done, const Vars& global) {
    auto& cfg = st->image.config.config;
    const Vars vars = Scope(*st);
    switch (ins.kind) {
      case InstrKind::kFrom:
        return MakeError(Errc::kInternal, "FROM inside a stage");
      case InstrKind::kArg: {
        Progress("ARG " + ins.rest, st->platform);
        return DeclareArgs(ins, global, &st->args);
      }
      case InstrKind::kEnv: {
        TUG_ASSIGN_OR_RETURN(auto words, SplitWords(ins.rest, &vars));
        if (words.empty()) return MakeError(Errc::kInvalidArgument, "ENV needs a name");
        std::vector<std::pair<std::string, std::string>> kvs;
        if (words[0].find('=') == std::string::npos) {
          // Legacy "ENV NAME value with spaces".
          std::vector<std::string> rest(words.begin() + 1, words.end());
          kvs.emplace_back(words[0], Join(rest, " "));
        } else {
          for (const auto& w : words) {
            auto eq = w.find('=');
            if (eq == std::string::npos || eq == 0)
              return MakeError(Errc::kInvalidArgument, "ENV expects NAME=VALUE, got \"" + w + "\"");
            kvs.emplace_back(w.substr(0, eq), w.substr(eq + 1));
          }
        }
        std::string text;
        for (const auto& [k, v] : kvs) {
          SetEnv(&cfg.env, k, v);
          text += (text.empty() ? "" : " ") + k + "=" + v;
        }
        Progress("ENV " + text, st->platform);
        History(st, "ENV " + text, true);
        return {};
      }
      case InstrKind::kLabel: {
        TUG_ASSIGN_OR_RETURN(auto words, SplitWords(ins.rest, &vars));
        for (const auto& w : words) {
          auto eq = w.find('=');
          if (eq == std::string::npos || eq == 0)
            return MakeError(Errc::kInvalidArgument, "LABEL expects KEY=VALUE, got \"" + w + "\"");
          cfg.labels[w.substr(0, eq)] = w.substr(eq + 1);
        }
        Progress("LABEL " + Join(words, " "), st->platform);
        History(st, "LABEL " + Join(words, " "), true);
        return {};
      }
      case InstrKind::kExpose: {
        TUG_ASSIGN_OR_RETURN(auto words, SplitWords(ins.rest, &vars));
        for (auto w : words) {
          if (w.find('/') == std::string::npos) w += "/tcp";
          if (std::find(cfg.exposed_ports.begin(), cfg.exposed_ports.end(), w) == cfg.exposed_ports.end())
            cfg.exposed_ports.push_back(w);
        }
        std::sort(cfg.exposed_ports.begin(), cfg.exposed_ports.end());
        Progress("EXPOSE " + Join(words, " "), st->platform);
        History(st, "EXPOSE " + Join(words, " "), true);
        return {};
      }
      case InstrKind::kUser: {
        TUG_ASSIGN_OR_RETURN(cfg.user, Expand(ins.rest, vars));
        Progress("USER " + cfg.user, st->platform);
        History(st, "USER " + cfg.user, true);
        return {};
      }
      case InstrKind::kStopSignal: {
        TUG_ASSIGN_OR_RETURN(cfg.stop_signal, Expand(ins.rest, vars));
        Progress("STOPSIGNAL " + cfg.stop_signal, st->platform);
        History(st, "STOPSIGNAL " + cfg.stop_signal, true);
        return {};
      }
      case InstrKind::kEntrypoint:
      case InstrKind::kCmd: {
        std::vector<std::string> argv =
            ins.json_form ? ins.json_args : std::vector<std::string>{"/bin/sh", "-c", ins.rest};
        const std::string text = std::string(ToString(ins.kind)) + " " +
                                 (ins.json_form ? "[\"" + Join(argv, "\", \"") + "\"]" : ins.rest);
        if (ins.kind == InstrKind::kEntrypoint) {
          cfg.entrypoint = argv;
          st->entrypoint_set = true;
          if (!st->cmd_set) cfg.cmd.clear();
        } else {
          cfg.cmd = argv;
          st->cmd_set = true;
        }
        Progress(text, st->platform);
        History(st, text, true);
        return {};
      }
      case InstrKind::kHealthcheck: {
        oci::HealthCheck hc;
        if (ins.healthcheck_none) {
          hc.test = {"NONE"};
        } else {
          if (ins.json_form) {
            hc.test = {"CMD"};
            hc.test.insert(hc.test.end(), ins.json_args.begin(), ins.json_args.end());
          } else {
            hc.test = {"CMD-SHELL", ins.rest};
          }
          auto dur = [&](const char* f, int64_t* out) -> Status {
            auto it = ins.flags.find(f);
            if (it == ins.flags.end()) return {};
            TUG_ASSIGN_OR_RETURN(*out, ParseGoDuration(it->second));
            return {};
          };
          TUG_TRY(dur("interval", &hc.interval_ns));
          TUG_TRY(dur("timeout", &hc.timeout_ns));
          TUG_TRY(dur("start-period", &hc.start_period_ns));
          if (auto it = ins.flags.find("retries"); it != ins.flags.end()) hc.retries = std::stoi(it->second);
        }
        cfg.healthcheck = hc;
        Progress("HEALTHCHECK " + Join(hc.test, " "), st->platform);
        History(st, "HEALTHCHECK " + Join(hc.test, " "), true);
        return {};
      }
      case InstrKind::kWorkdir: {
        TUG_ASSIGN_OR_RETURN(auto path, Expand(ins.rest, vars));
        if (path.empty() || path[0] != '/') path = (cfg.working_dir.empty() ? "/" : cfg.working_dir) + "/" + path;
        path = internal::CleanAbs(path);
        cfg.working_dir = path;
        Progress("WORKDIR " + path, st->platform);
        return LayerStep(st, "WORKDIR " + path, {}, /*cacheable=*/false, [&]() -> Status {
          TUG_ASSIGN_OR_RETURN(auto host, internal::ResolveInRoot(st->rootfs, path));
          return internal::MakeDirs(host);
        });
      }
      case InstrKind::kRun:
        return Run(ins, st, vars);
      case InstrKind::kCopy:
      case InstrKind::kAdd:
        return Copy(ins, st, done, vars);
    }
    return {};
  }

  Status Run(const Instruction& ins, StageState* st, const Vars& vars) {
    (void)vars;
    auto& cfg = st->image.config.config;
    RunSpec spec;
    spec.argv = ins.json_form ? ins.json_args : std::vector<std::string>{"/bin/sh", "-c", ins.rest};
    spec.env = cfg.env;
    // Build args reach RUN as environment (not persisted in the image); ENV wins over an ARG of the same name.
    for (const auto& [k, v] : st->args) {
      const std::string prefix = k + "=";  // not `k` in the lambda: clang 14 (the fuzz build) cannot capture bindings
      bool in_env = std::any_of(cfg.env.begin(), cfg.env.end(),
                                [&](const std::string& e) { return e.rfind(prefix, 0) == 0; });
      if (!in_env) spec.env.push_back(k + "=" + v);
    }
    if (std::none_of(spec.env.begin(), spec.env.end(), [](const std::string& e) { return e.rfind("PATH=", 0) == 0; }))
      spec.env.push_back(std::string("PATH=") + kDefaultPath);
    spec.cwd = cfg.working_dir.empty() ? "/" : cfg.working_dir;
    spec.user = cfg.user;
    spec.platform = st->platform;
    const std::string text =
        "RUN " + (ins.json_form ? "[\"" + Join(spec.argv, "\", \"") + "\"]" : ins.rest);
    Progress(text, st->platform);
    std::vector<std::string> env_sorted = spec.env;
    std::sort(env_sorted.begin(), env_sorted.end());
    return LayerStep(st, text, {Join(env_sorted, "\n"), spec.cwd, spec.user}, true, [&]() -> Status {
      TUG_TRY(CheckEmulation(st->platform));
      ++stats_.runs_executed;
      const auto t0 = std::chrono::steady_clock::now();
      TUG_ASSIGN_OR_RETURN(auto r, RunInRootfs(st->rootfs, work_ + "/run", spec));
      const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!r.ok()) {
        std::string why = r.timed_out ? "RUN timed out"
                          : r.signal  ? "RUN killed by signal " + std::to_string(r.signal)
                                      : "RUN exited with code " + std::to_string(r.exit_code);
        return MakeError(Errc::kRuntime, why + ": " + Tail(r.out));
      }
      if (opts_.progress) {
        std::string out = Tail(r.out, 40, 8000);
        if (!out.empty()) {
          std::istringstream in(out);
          std::string line;
          while (std::getline(in, line)) *opts_.progress << "  | " << line << "\n";
        }
      }
      std::ostringstream took;
      took.precision(2);
      took << std::fixed << secs;
      Note("ran in " + took.str() + " s");
      return {};
    });
  }

  Status Copy(const Instruction& ins, StageState* st, const std::vector<StageState>& done, const Vars& vars) {
    const bool is_add = ins.kind == InstrKind::kAdd;
    const char* kw = ToString(ins.kind);
    std::vector<std::string> words;
    if (ins.json_form) {
      for (const auto& a : ins.json_args) {
        TUG_ASSIGN_OR_RETURN(auto w, Expand(a, vars));
        words.push_back(w);
      }
    } else {
      TUG_ASSIGN_OR_RETURN(words, SplitWords(ins.rest, &vars));
    }
    if (words.size() < 2) return MakeError(Errc::kInvalidArgument, std::string(kw) + " needs a source and a destination");
    std::string dest = words.back();
    std::vector<std::string> srcs(words.begin(), words.end() - 1);

    // Where sources come from: another stage's rootfs (no .dockerignore) or the context.
    std::string src_root = opts_.context;
    bool from_stage = false;
    std::string from_name;
    if (auto it = ins.flags.find("from"); it != ins.flags.end()) {
      TUG_ASSIGN_OR_RETURN(from_name, Expand(it->second, vars));
      std::string lower = from_name;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      const StageState* found = nullptr;
      for (size_t i = 0; i < done.size(); ++i) {
        if (done[i].name == lower || std::to_string(i) == lower) found = &done[i];
      }
      if (found == nullptr)
        return MakeError(Errc::kInvalidArgument, "COPY --from=" + from_name + ": no earlier stage with that name");
      src_root = found->rootfs;
      from_stage = true;
    }
    internal::SkipFn skip;
    if (!from_stage && !ignore_.empty()) {
      skip = [this](const std::string& rel, bool is_dir) {
        return ignore_.Excluded(rel) && !(is_dir && ignore_.MayReinclude(rel));
      };
    }

    // Expand sources to (host path, context-relative path) pairs.
    struct Source {
      std::string host, rel;
    };
    std::vector<Source> sources;
    bool wildcard = false;
    for (const auto& s : srcs) {
      std::string clean = internal::CleanAbs("/" + s).substr(1);  // relative, no ".."
      const auto slash = clean.rfind('/');
      const std::string dir = slash == std::string::npos ? "" : clean.substr(0, slash);
      const std::string base = slash == std::string::npos ? clean : clean.substr(slash + 1);
      if (base.find_first_of("*?[") != std::string::npos) {
        wildcard = true;
        TUG_ASSIGN_OR_RETURN(auto host_dir, internal::ResolveInRoot(src_root, dir));
        TUG_ASSIGN_OR_RETURN(auto names, core::DefaultEnv()->ListDir(host_dir));
        size_t before = sources.size();
        for (const auto& n : names) {
          const std::string rel = dir.empty() ? n : dir + "/" + n;
          if (!GlobMatch(base, n) || (skip && skip(rel, internal::IsDir(host_dir + "/" + n)))) continue;
          sources.push_back({host_dir + "/" + n, rel});
        }
        if (sources.size() == before)
          return MakeError(Errc::kNotFound, std::string(kw) + " " + s + ": no source files match");
        continue;
      }
      TUG_ASSIGN_OR_RETURN(auto host, internal::ResolveInRoot(src_root, clean));
      if (!internal::Exists(host))
        return MakeError(Errc::kNotFound, std::string(kw) + " " + s + ": not found in " +
                                              (from_stage ? "stage " + from_name : "the build context"));
      if (!clean.empty() && skip && skip(clean, internal::IsDir(host)))
        return MakeError(Errc::kNotFound, std::string(kw) + " " + s + ": excluded by .dockerignore");
      sources.push_back({host, clean});
    }

    // Ownership and mode.
    internal::CopyOptions copts;
    std::string chown;
    if (auto it = ins.flags.find("chown"); it != ins.flags.end()) {
      TUG_ASSIGN_OR_RETURN(chown, Expand(it->second, vars));
      auto ids = oci::ResolveImageUser(st->rootfs, chown);
      if (!ids) return tl::unexpected(Wrap(ids.error(), "--chown"));
      copts.uid = ids->first;
      copts.gid = ids->second;
    }
    if (auto it = ins.flags.find("chmod"); it != ins.flags.end()) {
      try {
        copts.mode = static_cast<uint32_t>(std::stoul(it->second, nullptr, 8));
      } catch (...) {
        return MakeError(Errc::kInvalidArgument, "--chmod needs an octal mode");
      }
    }

    const auto& cfg = st->image.config.config;
    const bool dest_dir_syntax = dest.size() > 1 && dest.back() == '/';
    if (dest.empty() || dest[0] != '/') dest = (cfg.working_dir.empty() ? "/" : cfg.working_dir) + "/" + dest;
    dest = internal::CleanAbs(dest);

    // Cache inputs: the content of every source (paths, modes, bytes, link targets).
    std::vector<std::string> key_parts{chown, copts.mode ? std::to_string(*copts.mode) : "", dest,
                                       dest_dir_syntax ? "dir" : ""};
    for (const auto& s : sources) {
      TUG_ASSIGN_OR_RETURN(auto h, internal::HashTree(s.host, skip, s.rel));
      key_parts.push_back(s.rel + "=" + h);
    }
    std::string text = std::string(kw);
    for (const auto& [k, v] : ins.flags) text += " --" + k + "=" + v;
    text += " " + Join(srcs, " ") + " " + dest;
    Progress(text, st->platform);

    return LayerStep(st, text, key_parts, true, [&]() -> Status {
      TUG_ASSIGN_OR_RETURN(auto dest_host, internal::ResolveInRoot(st->rootfs, dest));
      const bool into_dir =
          dest_dir_syntax || sources.size() > 1 || wildcard || internal::IsDir(dest_host);
      for (const auto& s : sources) {
        internal::CopyOptions o = copts;
        o.skip = skip;
        o.rel_base = s.rel;
        if (is_add && !internal::IsDir(s.host) && IsTarArchive(s.host)) {
          TUG_TRY(internal::MakeDirs(dest_host));
          TUG_TRY(ExtractLocalTar(s.host, dest_host));
          continue;
        }
        if (internal::IsDir(s.host)) {
          TUG_TRY(internal::MakeDirs(dest_host));
          TUG_TRY(internal::CopyTree(s.host, dest_host, o));
        } else {
          const std::string target = into_dir ? dest_host + "/" + core::Basename(s.host) : dest_host;
          TUG_TRY(internal::MakeDirs(core::Dirname(target)));
          TUG_TRY(internal::CopyTree(s.host, target, o));
        }
      }
      return {};
    });
  }

  // ADD auto-extracts local tar archives (plain, gzip, zstd), detected by content as Docker does.
  static bool IsTarArchive(const std::string& path) {
    auto data = core::DefaultEnv()->ReadFile(path);
    if (!data) return false;
    const std::string& d = *data;
    if (d.size() > 2 && static_cast<unsigned char>(d[0]) == 0x1f && static_cast<unsigned char>(d[1]) == 0x8b)
      return true;
    if (d.size() > 4 && d.compare(0, 4, "\x28\xb5\x2f\xfd") == 0) return true;
    return d.size() > 262 && d.compare(257, 5, "ustar") == 0;
  }

  static Status ExtractLocalTar(const std::string& path, const std::string& dest) {
    TUG_ASSIGN_OR_RETURN(auto data, core::DefaultEnv()->ReadFile(path));
    oci::ExtractOptions eo;
    eo.compression = oci::Compression::kNone;
    if (data.size() > 2 && static_cast<unsigned char>(data[0]) == 0x1f) eo.compression = oci::Compression::kGzip;
    if (data.size() > 4 && data.compare(0, 4, "\x28\xb5\x2f\xfd") == 0) eo.compression = oci::Compression::kZstd;
    StringSource src(data);
    auto r = oci::ExtractLayer(src, dest, eo);
    if (!r) return tl::unexpected(Wrap(r.error(), "ADD extracting " + core::Basename(path)));
    return {};
  }

  const BuildOptions& opts_;
  Dockerfile df_;
  DockerIgnore ignore_;
  LayerCache cache_;
  std::string work_;
  BuildStats stats_;
  int step_ = 0;
};

}  // namespace

Result<BuildResult> Build(const BuildOptions& opts) {
  auto* env = core::DefaultEnv();
  auto text = env->ReadFile(opts.dockerfile);
  if (!text) return tl::unexpected(Wrap(text.error(), "reading Dockerfile"));
  TUG_ASSIGN_OR_RETURN(auto df, ParseDockerfile(*text, core::Basename(opts.dockerfile)));
  if (!internal::IsDir(opts.context))
    return MakeError(Errc::kNotFound, "build context " + opts.context + " is not a directory");
  TUG_ASSIGN_OR_RETURN(auto ignore, DockerIgnore::Load(opts.context));
  if (opts.platforms.empty()) return MakeError(Errc::kInvalidArgument, "no platform to build for");

  std::string root = opts.work_dir;
  if (root.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    root = tmp != nullptr && *tmp != '\0' ? tmp : "/var/tmp";
  }
  TUG_TRY(env->CreateDirs(root));
  std::string tmpl = root + "/tug-build-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return ErrnoError(errno, "mkdtemp in " + root);
  const std::string work = tmpl;

  Engine engine(opts, std::move(df), std::move(ignore), work);
  BuildResult result;
  Status status;
  for (size_t i = 0; i < opts.platforms.size(); ++i) {
    auto img = engine.BuildPlatform(opts.platforms[i], i);
    if (!img) {
      status = tl::unexpected(img.error());
      break;
    }
    result.images.push_back(std::move(*img));
  }
  if (!opts.keep_work_dir) (void)env->RemoveAll(work);
  TUG_TRY(status);
  result.stats = engine.stats();
  return result;
}

}  // namespace tug::builder
