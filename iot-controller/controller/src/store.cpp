#include "controller/store.hpp"

#include <sqlite3.h>

#include <limits>

#include <type_traits>
#include <unordered_map>

namespace tug::controller {

using nlohmann::json;

namespace {

}  // namespace

// Prepared statements are kept per SQL text and reused (reset after each use): preparing costs more than running
// most of the engine's one-row statements. A statement already in use (a nested query with the same text) gets a
// private one.
class StmtCache {
 public:
  explicit StmtCache(sqlite3* db) : db_(db) {}
  ~StmtCache() {
    for (auto& [sql, e] : cache_) sqlite3_finalize(e.st);
  }
  sqlite3_stmt* Acquire(const char* sql, bool* cached) {
    auto it = cache_.find(sql);
    if (it != cache_.end() && !it->second.in_use) {
      it->second.in_use = true;
      *cached = true;
      return it->second.st;
    }
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) {
      sqlite3_finalize(st);
      return nullptr;
    }
    if (it == cache_.end()) {
      cache_.emplace(sql, Entry{st, true});
      *cached = true;
    } else {
      *cached = false;
    }
    return st;
  }
  void Release(const char* sql, sqlite3_stmt* st, bool cached) {
    if (!cached) {
      sqlite3_finalize(st);
      return;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    auto it = cache_.find(sql);
    if (it != cache_.end()) it->second.in_use = false;
  }

 private:
  struct Entry {
    sqlite3_stmt* st;
    bool in_use;
  };
  sqlite3* db_;
  std::unordered_map<std::string, Entry> cache_;
};

namespace {

class Stmt;
template <typename T>
struct Unwrapped {
  using type = T;
};
template <typename T>
struct Unwrapped<Result<T>> {
  using type = T;
};
// What a row reader (Stmt::One, Stmt::All) gives per row: T for a reader returning T or Result<T>.
template <typename Read>
using RowOf = typename Unwrapped<std::invoke_result_t<Read&, const Stmt&>>::type;

// A prepared statement with positional binds, borrowed from the Store's cache and given back (reset) on scope
// exit so no error path leaks it.
class Stmt {
 public:
  Stmt(StmtCache& cache, sqlite3* db, const std::string& sql) : cache_(cache), db_(db), sql_(sql) {
    st_ = cache_.Acquire(sql_.c_str(), &cached_);
  }
  ~Stmt() {
    if (st_) cache_.Release(sql_.c_str(), st_, cached_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return st_ != nullptr; }
  Stmt& Bind(const std::string& s) {
    sqlite3_bind_text(st_, ++idx_, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int64_t v) {
    sqlite3_bind_int64(st_, ++idx_, v);
    return *this;
  }
  // SQLITE_ROW -> true, SQLITE_DONE -> false, else error.
  Result<bool> Step() {
    if (!st_) return MakeError(Errc::kIo, std::string("preparing statement: ") + sqlite3_errmsg(db_));
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return MakeError(Errc::kIo, std::string("sqlite: ") + sqlite3_errmsg(db_));
  }
  Status Run() {
    TUG_TRY(Step());
    return {};
  }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(st_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st_, col)))
             : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(st_, col); }
  // Rows changed by the last Run of an INSERT/UPDATE/DELETE.
  int Changes() const { return sqlite3_changes(db_); }

  // Reading rows. `read` maps the current row to a value: a Stmt -> T, or -> Result<T> when a row can be
  // unreadable (its error is returned as it is, naming what failed).
  // Calls f at each row, stopping at the first error (a step's or f's).
  template <typename F>
  Status Each(F f) {
    for (;;) {
      TUG_ASSIGN_OR_RETURN(bool row, Step());
      if (!row) return {};
      TUG_TRY(f());
    }
  }
  // The first row, or nullopt when there is none.
  template <typename Read>
  Result<std::optional<RowOf<Read>>> One(Read read) {
    TUG_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return std::optional<RowOf<Read>>();
    TUG_ASSIGN_OR_RETURN(auto v, Row(read));
    return std::optional<RowOf<Read>>(std::move(v));
  }
  // Every row, in the order the statement gives them.
  template <typename Read>
  Result<std::vector<RowOf<Read>>> All(Read read) {
    std::vector<RowOf<Read>> out;
    TUG_TRY(Each([&]() -> Status {
      TUG_ASSIGN_OR_RETURN(auto v, Row(read));
      out.push_back(std::move(v));
      return {};
    }));
    return out;
  }

 private:
  StmtCache& cache_;
  sqlite3* db_;
  std::string sql_;
  sqlite3_stmt* st_ = nullptr;
  bool cached_ = false;
  int idx_ = 0;

  // Both kinds of `read` as a Result (a plain T converts).
  template <typename Read>
  Result<RowOf<Read>> Row(Read& read) const {
    return read(*this);
  }
};

Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return MakeError(Errc::kIo, std::string(sql) + ": " + msg);
  }
  return {};
}

json ParseOr(const std::string& s, json def) {
  auto j = json::parse(s, nullptr, false);
  return j.is_discarded() ? def : j;
}

Labels LabelsOf(const std::string& s) {
  Labels l;
  auto j = ParseOr(s, json::object());
  if (j.is_object())
    for (const auto& [k, v] : j.items())
      if (v.is_string()) l[k] = v.get<std::string>();
  return l;
}

constexpr const char* kDeviceCols =
    "id, reported_labels, operator_labels, online, last_seen, boot_id, active, previous, job_id, job_phase, "
    "applied_v, arch, agent_version, state_seq, desired_v, desired, created_at";

Device ReadDevice(const Stmt& s) {
  Device d;
  d.id = s.Text(0);
  d.reported_labels = LabelsOf(s.Text(1));
  d.operator_labels = LabelsOf(s.Text(2));
  d.online = s.Int(3) != 0;
  d.last_seen = s.Int(4);
  d.boot_id = s.Text(5);
  d.active = ParseOr(s.Text(6), nullptr);
  d.previous = ParseOr(s.Text(7), nullptr);
  d.job_id = s.Text(8);
  d.job_phase = s.Text(9);
  d.applied_v = static_cast<uint64_t>(s.Int(10));
  d.arch = s.Text(11);
  d.agent_version = s.Text(12);
  d.state_seq = static_cast<uint64_t>(s.Int(13));
  d.desired_v = static_cast<uint64_t>(s.Int(14));
  d.desired = s.Text(15);
  d.created_at = s.Int(16);
  return d;
}

constexpr const char* kRolloutCols =
    "id, spec, state, created_at, current_phase, phase_state, soak_until, abort_reason, rolled_back";

Result<Rollout> ReadRollout(const Stmt& s) {
  Rollout r;
  r.id = s.Text(0);
  auto spec = ParseRolloutSpec(ParseOr(s.Text(1), json()));
  if (!spec) return MakeError(Errc::kIo, "rollout " + r.id + ": stored spec unreadable: " + spec.error().context);
  r.spec = *spec;
  TUG_ASSIGN_OR_RETURN(r.state, ParseRolloutState(s.Text(2)));
  r.created_at = s.Int(3);
  r.current_phase = static_cast<int>(s.Int(4));
  const std::string ps = s.Text(5);
  r.phase_state = ps == "soaking" ? PhaseState::kSoaking
                  : ps == "done"  ? PhaseState::kDone
                  : ps == "pending" ? PhaseState::kPending
                                    : PhaseState::kActive;
  r.soak_until = s.Int(6);
  r.abort_reason = s.Text(7);
  r.rolled_back = s.Int(8) != 0;
  return r;
}

constexpr const char* kRdCols =
    "rollout_id, device_id, phase, state, attempts, job, sent, sent_at, error, rollback_job, rollback_state";

Result<RolloutDevice> ReadRd(const Stmt& s) {
  RolloutDevice rd;
  rd.rollout_id = s.Text(0);
  rd.device_id = s.Text(1);
  rd.phase = static_cast<int>(s.Int(2));
  TUG_ASSIGN_OR_RETURN(rd.state, ParseDeviceJobState(s.Text(3)));
  rd.attempts = s.Int(4);
  rd.job = s.Text(5);
  rd.sent = s.Int(6) != 0;
  rd.sent_at = s.Int(7);
  rd.error = s.Text(8);
  rd.rollback_job = s.Text(9);
  rd.rollback_state = s.Text(10);
  return rd;
}

constexpr const char* kReleaseCols = "version, name, repository, digest, expires_at, envelope, created_at";

Release ReadRelease(const Stmt& s) {
  return Release{.version = static_cast<uint64_t>(s.Int(0)),
                 .name = s.Text(1),
                 .repository = s.Text(2),
                 .digest = s.Text(3),
                 .expires_at = s.Text(4),
                 .envelope = s.Text(5),
                 .created_at = s.Int(6)};
}

// The device's string value of the wanted label w.key in a label column, NULL without one. Text that is not JSON
// reads as no labels, as LabelsOf has it, where json_each would fail the whole query.
std::string LabelValueSql(const std::string& col) {
  return "(SELECT l.value FROM json_each(CASE WHEN json_valid(" + col + ") THEN " + col +
         " ELSE '{}' END) l WHERE l.key = w.key AND l.type = 'text')";
}

// The SELECT of ForEachDevice for one combination of the conditions given: at most 16 texts whatever the values,
// so the statement cache stays small (labels are one JSON parameter however many there are). Each condition says
// in SQL what its C++ counterpart says of a Device, so SQLite skips non-matching rows without building them.
std::string DeviceFilterSql(const Store::DeviceFilter& f, bool after) {
  std::string where;
  auto add = [&where](const std::string& cond) {
    where += where.empty() ? " WHERE " : " AND ";
    where += cond;
  };
  if (after) add("id > ?");
  if (f.online) add("online = ?");
  // d.active.is_object() && d.active.value("version", 0) == version; CASE keeps json_type off text that is not JSON.
  if (f.version)
    add("CASE WHEN NOT json_valid(active) THEN NULL WHEN json_type(active) = 'object' "
        "THEN COALESCE(json_extract(active, '$.version'), 0) END = ?");
  // Every wanted label equals the effective one: the operator's string value if it has the key, else the device's.
  static const std::string labels = "NOT EXISTS (SELECT 1 FROM json_each(?) w WHERE w.value IS NOT COALESCE(" +
                                    LabelValueSql("devices.operator_labels") + ", " +
                                    LabelValueSql("devices.reported_labels") + "))";
  if (!f.labels.empty()) add(labels);
  return std::string("SELECT ") + kDeviceCols + " FROM devices" + where + " ORDER BY id LIMIT ?";
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return MakeError(Errc::kIo, "opening database " + path + ": " + msg);
  }
  std::unique_ptr<Store> s(new Store(db));
  // WAL + NORMAL: commits append to the WAL without an fsync each; readers never block the writer.
  TUG_TRY(Exec(db, "PRAGMA journal_mode=WAL"));
  TUG_TRY(Exec(db, "PRAGMA synchronous=NORMAL"));
  TUG_TRY(Exec(db, "PRAGMA foreign_keys=ON"));
  sqlite3_busy_timeout(db, 5000);
  if (auto st = Migrate(db); !st) return tl::unexpected(Wrap(st.error(), "migrating " + path));
  return s;
}

Store::Store(sqlite3* db) : db_(db), cache_(std::make_unique<StmtCache>(db)) {}

Store::~Store() {
  cache_.reset();  // finalize the cached statements first: sqlite3_close refuses while any is alive
  sqlite3_close(db_);
}

Result<int> Store::SchemaVersion() {
  Stmt s(*cache_, db_, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
  TUG_ASSIGN_OR_RETURN(auto v, s.One([](const Stmt& row) { return static_cast<int>(row.Int(0)); }));
  return v.value_or(0);
}

Status Store::Begin() {
  if (tx_depth_++ == 0) {
    auto st = Exec(db_, "BEGIN IMMEDIATE");
    if (!st) tx_depth_ = 0;
    return st;
  }
  return {};
}

Status Store::Commit() {
  if (tx_depth_ == 0) return MakeError(Errc::kInternal, "commit without begin");
  if (--tx_depth_ == 0) return Exec(db_, "COMMIT");
  return {};
}

void Store::Rollback() {
  if (tx_depth_ == 0) return;
  tx_depth_ = 0;
  (void)Exec(db_, "ROLLBACK");
}

Result<std::optional<Device>> Store::GetDevice(const std::string& id) {
  Stmt s(*cache_, db_, (std::string("SELECT ") + kDeviceCols + " FROM devices WHERE id = ?"));
  return s.Bind(id).One(ReadDevice);
}

Result<std::vector<Device>> Store::ListDevices() {
  std::vector<Device> out;
  TUG_TRY(ForEachDevice([&](const Device& d) -> Status {
    out.push_back(d);
    return {};
  }));
  return out;
}

Status Store::ForEachDevice(const std::function<Status(const Device&)>& f) {
  return ForEachDevice(DeviceFilter{}, "", -1, f);
}

Status Store::ForEachDevice(const DeviceFilter& filter, const std::string& after, int64_t limit,
                            const std::function<Status(const Device&)>& f) {
  Stmt s(*cache_, db_, DeviceFilterSql(filter, !after.empty()));
  if (!after.empty()) s.Bind(after);
  if (filter.online) s.Bind(int64_t{*filter.online ? 1 : 0});
  if (filter.version) s.Bind(static_cast<int64_t>(*filter.version));
  if (!filter.labels.empty()) s.Bind(json(filter.labels).dump());
  s.Bind(limit);
  return s.Each([&] { return f(ReadDevice(s)); });
}

Status Store::PutDevice(const Device& d) {
  Stmt s(*cache_, db_, (std::string("INSERT OR REPLACE INTO devices (") + kDeviceCols +
               ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  s.Bind(d.id)
      .Bind(json(d.reported_labels).dump())
      .Bind(json(d.operator_labels).dump())
      .Bind(int64_t{d.online ? 1 : 0})
      .Bind(d.last_seen)
      .Bind(d.boot_id)
      .Bind(d.active.dump())
      .Bind(d.previous.dump())
      .Bind(d.job_id)
      .Bind(d.job_phase)
      .Bind(static_cast<int64_t>(d.applied_v))
      .Bind(d.arch)
      .Bind(d.agent_version)
      .Bind(static_cast<int64_t>(d.state_seq))
      .Bind(static_cast<int64_t>(d.desired_v))
      .Bind(d.desired)
      .Bind(d.created_at);
  return s.Run();
}

Status Store::AppendAudit(const AuditEntry& e) {
  Stmt s(*cache_, db_, "INSERT INTO audit (at, principal, method, target, status, detail) VALUES (?,?,?,?,?,?)");
  s.Bind(e.at).Bind(e.principal).Bind(e.method).Bind(e.target).Bind(static_cast<int64_t>(e.status)).Bind(e.detail);
  return s.Run();
}

Result<std::vector<Store::AuditEntry>> Store::ListAudit(int64_t before, int64_t limit) {
  Stmt s(*cache_, db_,
         "SELECT id, at, principal, method, target, status, detail FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?");
  s.Bind(before > 0 ? before : std::numeric_limits<int64_t>::max()).Bind(limit);
  return s.All([](const Stmt& row) {
    AuditEntry e;
    e.id = row.Int(0);
    e.at = row.Int(1);
    e.principal = row.Text(2);
    e.method = row.Text(3);
    e.target = row.Text(4);
    e.status = static_cast<int>(row.Int(5));
    e.detail = row.Text(6);
    return e;
  });
}

Result<Store::DeviceCounts> Store::CountDevices() {
  Stmt s(*cache_, db_, "SELECT COUNT(*), COALESCE(SUM(online != 0), 0) FROM devices");
  TUG_ASSIGN_OR_RETURN(auto row, s.One([](const Stmt& r) { return DeviceCounts{r.Int(0), r.Int(1)}; }));
  return row.value_or(DeviceCounts{});
}

Status Store::PutRevocation(const Revocation& r) {
  Stmt s(*cache_, db_, "INSERT OR IGNORE INTO revoked_devices (id, at, by, reason) VALUES (?,?,?,?)");
  s.Bind(r.id).Bind(r.at).Bind(r.by).Bind(r.reason);
  return s.Run();
}

namespace {
Store::Revocation ReadRevocation(const Stmt& row) {
  Store::Revocation r;
  r.id = row.Text(0);
  r.at = row.Int(1);
  r.by = row.Text(2);
  r.reason = row.Text(3);
  return r;
}
}  // namespace

Result<std::vector<Store::Revocation>> Store::ListRevocations() {
  Stmt s(*cache_, db_, "SELECT id, at, by, reason FROM revoked_devices ORDER BY id");
  return s.All(ReadRevocation);
}

Result<std::optional<Store::Revocation>> Store::GetRevocation(const std::string& id) {
  Stmt s(*cache_, db_, "SELECT id, at, by, reason FROM revoked_devices WHERE id = ?");
  return s.Bind(id).One(ReadRevocation);
}

Result<std::optional<Release>> Store::GetRelease(uint64_t version) {
  Stmt s(*cache_, db_, std::string("SELECT ") + kReleaseCols + " FROM releases WHERE version = ?");
  return s.Bind(static_cast<int64_t>(version)).One(ReadRelease);
}

Result<std::vector<Release>> Store::ListReleases() {
  Stmt s(*cache_, db_, std::string("SELECT ") + kReleaseCols + " FROM releases ORDER BY version");
  return s.All(ReadRelease);
}

Status Store::PutRelease(const Release& r) {
  Stmt s(*cache_, db_, std::string("INSERT OR REPLACE INTO releases (") + kReleaseCols + ") VALUES (?,?,?,?,?,?,?)");
  s.Bind(static_cast<int64_t>(r.version)).Bind(r.name).Bind(r.repository).Bind(r.digest).Bind(r.expires_at);
  s.Bind(r.envelope).Bind(r.created_at);
  return s.Run();
}

Result<std::string> Store::NextRolloutId() {
  // Rollouts are never deleted, so the highest existing number gives gapless ids that are never reused.
  // (sqlite_sequence is not usable here: every INSERT ... ON CONFLICT DO UPDATE of a rollout bumps it.)
  Stmt s(*cache_, db_, "SELECT COALESCE(MAX(CAST(SUBSTR(id, 3) AS INTEGER)), 0) FROM rollouts WHERE id LIKE 'r-%'");
  TUG_ASSIGN_OR_RETURN(auto max, s.One([](const Stmt& row) { return row.Int(0); }));
  return "r-" + std::to_string(max.value_or(0) + 1);
}

Result<std::optional<Rollout>> Store::GetRollout(const std::string& id) {
  Stmt s(*cache_, db_, (std::string("SELECT ") + kRolloutCols + " FROM rollouts WHERE id = ?"));
  return s.Bind(id).One(ReadRollout);
}

Result<std::vector<Rollout>> Store::ListRollouts() {
  Stmt s(*cache_, db_, (std::string("SELECT ") + kRolloutCols + " FROM rollouts ORDER BY seq"));
  return s.All(ReadRollout);
}

Status Store::PutRollout(const Rollout& r) {
  // UPSERT rather than REPLACE: REPLACE would delete the row and give it a new seq, reordering the list.
  Stmt s(*cache_, db_,
         "INSERT INTO rollouts (id, spec, state, created_at, current_phase, phase_state, soak_until, abort_reason, "
         "rolled_back) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET spec=excluded.spec, "
         "state=excluded.state, current_phase=excluded.current_phase, phase_state=excluded.phase_state, "
         "soak_until=excluded.soak_until, abort_reason=excluded.abort_reason, rolled_back=excluded.rolled_back");
  s.Bind(r.id).Bind(RolloutSpecToJson(r.spec).dump()).Bind(std::string(ToString(r.state))).Bind(r.created_at);
  s.Bind(int64_t{r.current_phase}).Bind(std::string(ToString(r.phase_state))).Bind(r.soak_until);
  s.Bind(r.abort_reason).Bind(int64_t{r.rolled_back ? 1 : 0});
  return s.Run();
}

Result<std::vector<RolloutDevice>> Store::ListRolloutDevices(const std::string& rollout_id) {
  Stmt s(*cache_, db_, (std::string("SELECT ") + kRdCols + " FROM rollout_devices WHERE rollout_id = ? ORDER BY device_id"));
  return s.Bind(rollout_id).All(ReadRd);
}

Result<std::optional<RolloutDevice>> Store::FindByJob(const std::string& device_id, const std::string& job) {
  Stmt s(*cache_, db_, (std::string("SELECT ") + kRdCols +
               " FROM rollout_devices WHERE device_id = ? AND (job = ? OR rollback_job = ?) LIMIT 1"));
  return s.Bind(device_id).Bind(job).Bind(job).One(ReadRd);
}

Status Store::PutRolloutDevice(const RolloutDevice& rd) {
  Stmt s(*cache_, db_, (std::string("INSERT OR REPLACE INTO rollout_devices (") + kRdCols + ") VALUES (?,?,?,?,?,?,?,?,?,?,?)"));
  s.Bind(rd.rollout_id).Bind(rd.device_id).Bind(int64_t{rd.phase}).Bind(std::string(ToString(rd.state)));
  s.Bind(rd.attempts).Bind(rd.job).Bind(int64_t{rd.sent ? 1 : 0}).Bind(rd.sent_at).Bind(rd.error);
  s.Bind(rd.rollback_job).Bind(rd.rollback_state);
  return s.Run();
}

Result<bool> Store::RecordReport(const std::string& device_id, const std::string& job, const std::string& boot_id,
                                 uint64_t seq) {
  // One statement: the row is written only when it is new or its seq goes up; no change = not fresh.
  Stmt u(*cache_, db_,
         "INSERT INTO job_reports (device_id, job, boot_id, seq) VALUES (?,?,?,?) "
         "ON CONFLICT(device_id, job, boot_id) DO UPDATE SET seq = excluded.seq WHERE excluded.seq > job_reports.seq");
  u.Bind(device_id).Bind(job).Bind(boot_id).Bind(static_cast<int64_t>(seq));
  TUG_TRY(u.Run());
  return u.Changes() > 0;
}

Result<std::optional<RolloutDevice>> Store::GetRolloutDevice(const std::string& rollout_id,
                                                              const std::string& device_id) {
  Stmt s(*cache_, db_, std::string("SELECT ") + kRdCols + " FROM rollout_devices WHERE rollout_id = ? AND device_id = ?");
  return s.Bind(rollout_id).Bind(device_id).One(ReadRd);
}

Result<std::vector<RolloutDevice>> Store::ListDeviceRollouts(const std::string& device_id) {
  Stmt s(*cache_, db_, std::string("SELECT ") + kRdCols + " FROM rollout_devices WHERE device_id = ? ORDER BY rollout_id");
  return s.Bind(device_id).All(ReadRd);
}

namespace {
std::string RdColsOf(const char* alias) {
  std::string out;
  std::string cols = kRdCols;
  size_t start = 0;
  while (start < cols.size()) {
    size_t comma = cols.find(',', start);
    if (comma == std::string::npos) comma = cols.size();
    std::string c = cols.substr(start, comma - start);
    while (!c.empty() && c.front() == ' ') c.erase(c.begin());
    if (!out.empty()) out += ", ";
    out += std::string(alias) + "." + c;
    start = comma + 1;
  }
  return out;
}
}  // namespace

Result<std::vector<RolloutDevice>> Store::ListRolloutDevicesIn(const std::string& rollout_id, DeviceJobState state,
                                                               std::optional<bool> online, int64_t limit) {
  // Served by the (rollout_id, state, device_id) index; the device's online flag is a primary-key lookup per row.
  static const std::string all = "SELECT " + RdColsOf("rd") +
                                 " FROM rollout_devices rd WHERE rd.rollout_id = ? AND rd.state = ? "
                                 "ORDER BY rd.device_id LIMIT ?";
  static const std::string by_online =
      "SELECT " + RdColsOf("rd") +
      " FROM rollout_devices rd WHERE rd.rollout_id = ? AND rd.state = ? AND "
      "COALESCE((SELECT d.online FROM devices d WHERE d.id = rd.device_id), 0) = ? ORDER BY rd.device_id LIMIT ?";
  Stmt s(*cache_, db_, online ? by_online : all);
  s.Bind(rollout_id).Bind(std::string(ToString(state)));
  if (online) s.Bind(int64_t{*online ? 1 : 0});
  return s.Bind(limit).All(ReadRd);
}

Result<std::vector<RolloutDevice>> Store::ListRolloutDevicesAfter(const std::string& rollout_id,
                                                                  std::optional<DeviceJobState> state,
                                                                  const std::string& after, int64_t limit) {
  static const std::string any = "SELECT " + RdColsOf("rd") +
                                 " FROM rollout_devices rd WHERE rd.rollout_id = ? AND rd.device_id > ? "
                                 "ORDER BY rd.device_id LIMIT ?";
  static const std::string in_state = "SELECT " + RdColsOf("rd") +
                                      " FROM rollout_devices rd WHERE rd.rollout_id = ? AND rd.state = ? AND "
                                      "rd.device_id > ? ORDER BY rd.device_id LIMIT ?";
  Stmt s(*cache_, db_, state ? in_state : any);
  s.Bind(rollout_id);
  if (state) s.Bind(std::string(ToString(*state)));
  return s.Bind(after).Bind(limit).All(ReadRd);
}

Result<std::vector<std::pair<RolloutDevice, bool>>> Store::ListInProgressSentBefore(const std::string& rollout_id,
                                                                                   Millis sent_at_or_before) {
  // Served by the (rollout_id, state, sent_at) index: a range scan that is empty while nothing is due.
  static const std::string sql =
      "SELECT " + RdColsOf("rd") +
      ", COALESCE((SELECT d.online FROM devices d WHERE d.id = rd.device_id), 0) FROM rollout_devices rd "
      "WHERE rd.rollout_id = ? AND rd.state = 'in_progress' AND rd.sent_at <= ? AND rd.sent = 1 "
      "ORDER BY rd.sent_at, rd.device_id";
  Stmt s(*cache_, db_, sql);
  s.Bind(rollout_id).Bind(sent_at_or_before);
  return s.All([](const Stmt& row) -> Result<std::pair<RolloutDevice, bool>> {
    TUG_ASSIGN_OR_RETURN(RolloutDevice rd, ReadRd(row));
    return std::pair{std::move(rd), row.Int(11) != 0};
  });
}

Result<std::vector<Store::RolloutDeviceCount>> Store::CountRolloutDevices(const std::string& rollout_id) {
  Stmt s(*cache_, db_, "SELECT phase, state, COUNT(*) FROM rollout_devices WHERE rollout_id = ? GROUP BY phase, state");
  return s.Bind(rollout_id).All([](const Stmt& row) -> Result<RolloutDeviceCount> {
    TUG_ASSIGN_OR_RETURN(auto state, ParseDeviceJobState(row.Text(1)));
    return RolloutDeviceCount{.phase = static_cast<int>(row.Int(0)), .state = state, .count = row.Int(2)};
  });
}

Result<std::optional<Store::DesiredVersions>> Store::GetDesiredVersions(const std::string& device_id) {
  Stmt s(*cache_, db_, "SELECT desired_v, applied_v, online FROM devices WHERE id = ?");
  return s.Bind(device_id).One([](const Stmt& row) {
    return DesiredVersions{.desired_v = static_cast<uint64_t>(row.Int(0)),
                           .applied_v = static_cast<uint64_t>(row.Int(1)),
                           .online = row.Int(2) != 0};
  });
}

Status Store::SetDesired(const std::string& device_id, uint64_t desired_v, const std::string& desired) {
  Stmt s(*cache_, db_, "UPDATE devices SET desired_v = ?, desired = ? WHERE id = ?");
  s.Bind(static_cast<int64_t>(desired_v)).Bind(desired).Bind(device_id);
  TUG_TRY(s.Run());
  if (s.Changes() == 0) return MakeError(Errc::kNotFound, "device " + device_id + " not found");
  return {};
}

Result<std::vector<std::pair<std::string, std::string>>> Store::ListUnappliedDesired() {
  Stmt s(*cache_, db_, "SELECT id, desired FROM devices WHERE desired != '' AND applied_v < desired_v ORDER BY id");
  return s.All([](const Stmt& row) { return std::pair{row.Text(0), row.Text(1)}; });
}

}  // namespace tug::controller
