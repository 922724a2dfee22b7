// tug devices list|get|label: the fleet as the controller last heard from it.
#include <algorithm>
#include <cctype>
#include <memory>
#include <string_view>

#include "fleet.hpp"

namespace tug::cli {
namespace {

struct ListFlags {
  std::vector<std::string> labels;
  bool online = false;
  bool offline = false;
  uint64_t version = 0;
  int64_t limit = 0;  // 0: every device
  std::string after;
};

std::string Version(const Json& release) {
  if (!release.is_object()) return "-";
  return Num(release, "version");
}

std::string Job(const Json& d) {
  // The controller sends {"id":"","phase":""} for "no job" as well as null.
  if (!d.contains("job") || !d["job"].is_object() || Str(d["job"], "id", "").empty()) return "-";
  return Str(d["job"], "id") + " (" + Str(d["job"], "phase") + ")";
}

std::string ReleaseLine(const Json& r) {
  if (!r.is_object()) return "-";
  return "v" + Num(r, "version") + "  " + Str(r, "name") + "  " + Str(r, "digest");
}

void RenderDeviceList(const Io& io, const Json& j) {
  Table t({"ID", "ONLINE", "LAST SEEN", "VERSION", "JOB", "ARCH", "LABELS"});
  const Json devices = j.value("devices", Json::array());
  for (const Json& d : devices) {
    const bool online = d.value("online", false);
    t.Add({Str(d, "id"), online ? "yes" : "no", HumanTime(Str(d, "last_seen", ""), io.clock.Now()),
           Version(d.value("active", Json())), Job(d), Str(d, "arch"), LabelList(d.value("labels", Json()))});
  }
  t.Print(io.out);
  if (devices.empty()) io.out << "(no devices match)\n";
}

// A word as a POSIX shell reads it back: as it is when it has nothing the shell would interpret, else single-quoted.
// Label values and device ids are free text, and the next-page command is meant to be pasted.
std::string ShellWord(const std::string& w) {
  constexpr std::string_view kSafe = "_-.,/:=@%+";
  const bool plain = !w.empty() && std::all_of(w.begin(), w.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || kSafe.find(c) != std::string_view::npos;
  });
  if (plain) return w;
  std::string out = "'";
  for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The command that lists the page after this one: the same filters, the same limit, after the last device shown.
std::string NextPageCommand(const ListFlags& f, const std::string& next_after) {
  std::string cmd = "tug devices list";
  for (const auto& l : f.labels) cmd += " --label " + ShellWord(l);
  if (f.online) cmd += " --online";
  if (f.offline) cmd += " --offline";
  if (f.version) cmd += " --version " + std::to_string(f.version);
  return cmd + " --limit " + std::to_string(f.limit) + " --after " + ShellWord(next_after);
}

void RenderPage(const Io& io, const Json& j, const ListFlags& f) {
  RenderDeviceList(io, j);
  const std::string next = Str(j, "next_after", "");
  if (!next.empty()) io.out << "\nmore devices: " << NextPageCommand(f, next) << "\n";
}

void RenderDevice(const Io& io, const Json& d) {
  Table t({"id:", Str(d, "id")});
  const std::string seen = HumanTime(Str(d, "last_seen", ""), io.clock.Now());
  t.Add({"online:", std::string(d.value("online", false) ? "yes" : "no") + " (last seen " + seen + ")"});
  t.Add({"labels:", LabelList(d.value("labels", Json()))});
  t.Add({"arch:", Str(d, "arch")});
  t.Add({"agent:", Str(d, "agent_version")});
  t.Add({"active:", ReleaseLine(d.value("active", Json()))});
  t.Add({"previous:", ReleaseLine(d.value("previous", Json()))});
  t.Add({"job:", Job(d)});
  t.Print(io.out);
}

Status List(const Context& ctx, const ListFlags& f) {
  std::string query;
  auto add = [&query](const std::string& kv) { query += (query.empty() ? "?" : "&") + kv; };
  for (const auto& l : f.labels) add("label=" + EscapeQueryValue(l));
  if (f.online) add("online=true");
  if (f.offline) add("online=false");
  if (f.version) add("version=" + std::to_string(f.version));
  if (f.limit > 0) add("limit=" + std::to_string(f.limit));
  if (!f.after.empty()) add("after=" + EscapeQueryValue(f.after));
  return CallAndRender(ctx, "GET", "/devices" + query, "", [&ctx, &f](const Json& j) { RenderPage(ctx.io, j, f); });
}

// "KEY-" removes a label (as kubectl does); anything else must be KEY=VALUE.
bool IsRemoval(const std::string& a) {
  return a.size() > 1 && a.back() == '-' && a.find('=') == std::string::npos;
}

Status Label(const Context& ctx, const std::string& id, const std::vector<std::string>& assignments, bool replace) {
  const std::string path = "/devices/" + EscapePathSegment(id);
  // PUT replaces the device's whole operator label set, so start from the current one: `label pi-1 tier=a` must
  // not silently drop site=berlin set last week.
  Json labels = Json::object();
  if (!replace) {
    TUG_ASSIGN_OR_RETURN(ApiClient client, Connect(ctx));
    TUG_ASSIGN_OR_RETURN(std::string answer, client.Get(path));
    TUG_ASSIGN_OR_RETURN(Json device, ParseBody(answer, "GET " + path));
    if (device.contains("operator_labels") && device["operator_labels"].is_object())
      labels = device["operator_labels"];
  }
  for (const auto& a : assignments) {
    if (IsRemoval(a)) {
      labels.erase(a.substr(0, a.size() - 1));
      continue;
    }
    auto [k, v] = ParseLabelArg("label", a);
    labels[k] = v;
  }
  const Json body = {{"labels", labels}};
  return CallAndRender(ctx, "PUT", path + "/labels", body.dump(),
                       [&](const Json& j) {
                         // The answer is the device with its effective labels; older controllers may send nothing.
                         const Json shown = j.is_object() && j.contains("labels") ? j["labels"] : labels;
                         ctx.io.out << "labels of " << id << ": " << LabelList(shown) << "\n";
                       });
}

}  // namespace

void AddDevicesCommands(CLI::App& app, Context& ctx) {
  CLI::App* devices = app.add_subcommand("devices", "List and inspect devices; set operator labels.");
  devices->require_subcommand(1);

  auto lf = std::make_shared<ListFlags>();
  CLI::App* list = devices->add_subcommand("list", "List devices, optionally filtered.");
  list->add_option("--label", lf->labels, "Only devices with this label (repeat: all must match)")
      ->allow_extra_args(false)
      ->type_name("KEY=VALUE");
  auto* on = list->add_flag("--online", lf->online, "Only devices connected now");
  list->add_flag("--offline", lf->offline, "Only devices not connected now")->excludes(on);
  list->add_option("--version", lf->version, "Only devices running this release version")
      ->check(AtLeastOne())
      ->type_name("N");
  list->add_option("--limit", lf->limit, "List at most N devices; prints how to get the next page")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->type_name("N");
  list->add_option("--after", lf->after, "List devices whose id sorts after this one (the next page's start)")
      ->type_name("ID");
  list->footer(
      "Without --limit every matching device is listed in one answer (~5 MB at 10,000 devices); --limit pages\n"
      "through them in device id order and each page ends with the command for the next one.\n\n"
      "Examples:\n"
      "  tug devices list --label site=berlin --online\n"
      "  tug devices list --version 42 --json\n"
      "  tug devices list --label site=berlin --limit 500 --after pi-0500");
  list->callback([&ctx, lf] {
    for (const auto& l : lf->labels) ParseLabelArg("--label", l);
    ctx.action = [&ctx, lf] { return List(ctx, *lf); };
  });

  auto id = std::make_shared<std::string>();
  CLI::App* get = devices->add_subcommand("get", "Show one device: labels, versions, current job.");
  get->add_option("id", *id, "Device id")->required()->type_name("ID");
  get->footer("Example:\n  tug devices get pi-0042");
  get->callback([&ctx, id] {
    ctx.action = [&ctx, id] {
      return CallAndRender(ctx, "GET", "/devices/" + EscapePathSegment(*id), "",
                           [&ctx](const Json& j) { RenderDevice(ctx.io, j); });
    };
  });

  auto lid = std::make_shared<std::string>();
  auto assignments = std::make_shared<std::vector<std::string>>();
  auto replace = std::make_shared<bool>(false);
  CLI::App* label = devices->add_subcommand("label", "Set operator labels on a device (they win over reported ones).");
  label->add_option("id", *lid, "Device id")->required()->type_name("ID");
  label->add_option("labels", *assignments, "Labels to set, or KEY- to remove one")
      ->required()
      ->type_name("KEY=VALUE|KEY- ...");
  label->add_flag("--replace", *replace, "Make these the device's only operator labels instead of merging");
  label->footer(
      "Merges into the device's current operator labels unless --replace is given.\n\n"
      "Example:\n  tug devices label pi-0042 tier=canary site=berlin\n  tug devices label pi-0042 tier-");
  label->callback([&ctx, lid, assignments, replace] {
    for (const auto& a : *assignments)
      if (!IsRemoval(a)) ParseLabelArg("label", a);
    ctx.action = [&ctx, lid, assignments, replace] { return Label(ctx, *lid, *assignments, *replace); };
  });

  auto rid = std::make_shared<std::string>();
  auto reason = std::make_shared<std::string>();
  CLI::App* revoke = devices->add_subcommand("revoke", "Revoke a device (stolen, decommissioned): the controller "
                                                       "ignores everything it reports from now on.");
  revoke->add_option("id", *rid, "Device id")->required()->type_name("ID");
  revoke->add_option("--reason", *reason, "Why, for the audit log and `tug devices get`")->type_name("TEXT");
  revoke->footer(
      "Also revoke its certificate at the broker so it cannot connect at all:\n"
      "  tug-broker-config --out /etc/tugboat/broker --revoke pi-0042   # then restart mosquitto\n\n"
      "Example:\n  tug devices revoke pi-0042 --reason \"reported stolen\"");
  revoke->callback([&ctx, rid, reason] {
    ctx.action = [&ctx, rid, reason] {
      Json body = Json::object();
      if (!reason->empty()) body["reason"] = *reason;
      return CallAndRender(ctx, "POST", "/devices/" + EscapePathSegment(*rid) + "/revoke", body.dump(),
                           [&ctx, rid](const Json&) {
                             ctx.io.out << "revoked " << *rid
                                        << ": its reports are ignored; revoke its certificate at the broker too "
                                           "(tug-broker-config --revoke)\n";
                           });
    };
  });
}

}  // namespace tug::cli
