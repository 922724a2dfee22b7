#include "model/resources.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace tug::cluster {

namespace {

int64_t ToMilli(double v) { return static_cast<int64_t>(std::llround(v * 1000.0)); }

std::vector<PortRange> Normalize(std::vector<PortRange> r) {
  std::sort(r.begin(), r.end(), [](const PortRange& a, const PortRange& b) { return a.begin < b.begin; });
  std::vector<PortRange> out;
  for (const auto& x : r) {
    if (x.end < x.begin) continue;
    if (!out.empty() && x.begin <= out.back().end + 1) {
      out.back().end = std::max(out.back().end, x.end);
    } else {
      out.push_back(x);
    }
  }
  return out;
}

bool RangesContain(const std::vector<PortRange>& outer, const PortRange& r) {
  // outer is normalized: r must sit inside one range.
  auto it = std::upper_bound(outer.begin(), outer.end(), r.begin,
                             [](uint32_t v, const PortRange& x) { return v < x.begin; });
  if (it == outer.begin()) return false;
  --it;
  return it->begin <= r.begin && r.end <= it->end;
}

std::vector<PortRange> Subtract(const std::vector<PortRange>& a, const std::vector<PortRange>& b) {
  std::vector<PortRange> out;
  size_t j = 0;
  for (PortRange cur : a) {
    while (j < b.size() && b[j].end < cur.begin) ++j;
    size_t k = j;
    bool alive = true;
    while (k < b.size() && b[k].begin <= cur.end) {
      if (b[k].begin > cur.begin) out.push_back({cur.begin, b[k].begin - 1});
      if (b[k].end >= cur.end) {
        alive = false;
        break;
      }
      cur.begin = b[k].end + 1;
      ++k;
    }
    if (alive) out.push_back(cur);
  }
  return out;
}

std::string Num(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, p) : std::to_string(v);
}

}  // namespace

Resources Resources::Make(double cpus, double mem_mib, double disk_mib, std::vector<PortRange> ports) {
  Resources r;
  r.cpus_m_ = ToMilli(cpus);
  r.mem_m_ = ToMilli(mem_mib);
  r.disk_m_ = ToMilli(disk_mib);
  r.ports_ = Normalize(std::move(ports));
  return r;
}

uint64_t Resources::port_count() const {
  uint64_t n = 0;
  for (const auto& r : ports_) n += uint64_t{r.end} - r.begin + 1;
  return n;
}

bool Resources::empty() const { return cpus_m_ <= 0 && mem_m_ <= 0 && disk_m_ <= 0 && ports_.empty(); }

bool Resources::Contains(const Resources& o) const {
  if (cpus_m_ < o.cpus_m_ || mem_m_ < o.mem_m_ || disk_m_ < o.disk_m_) return false;
  for (const auto& r : o.ports_)
    if (!RangesContain(ports_, r)) return false;
  return true;
}

Resources& Resources::operator+=(const Resources& o) {
  cpus_m_ += o.cpus_m_;
  mem_m_ += o.mem_m_;
  disk_m_ += o.disk_m_;
  if (!o.ports_.empty()) {
    auto all = ports_;
    all.insert(all.end(), o.ports_.begin(), o.ports_.end());
    ports_ = Normalize(std::move(all));
  }
  return *this;
}

Resources& Resources::operator-=(const Resources& o) {
  cpus_m_ = std::max<int64_t>(0, cpus_m_ - o.cpus_m_);
  mem_m_ = std::max<int64_t>(0, mem_m_ - o.mem_m_);
  disk_m_ = std::max<int64_t>(0, disk_m_ - o.disk_m_);
  if (!o.ports_.empty()) ports_ = Subtract(ports_, o.ports_);
  return *this;
}

std::vector<uint32_t> Resources::FirstPorts(size_t n) const {
  std::vector<uint32_t> out;
  for (const auto& r : ports_)
    for (uint64_t p = r.begin; p <= r.end && out.size() < n; ++p) out.push_back(static_cast<uint32_t>(p));
  return out;
}

Resources Resources::Ports(const std::vector<uint32_t>& ports) {
  std::vector<PortRange> r;
  for (uint32_t p : ports) r.push_back({p, p});
  Resources out;
  out.ports_ = Normalize(std::move(r));
  return out;
}

std::string Resources::ToString() const {
  std::string s = "cpus:" + Num(cpus()) + ";mem:" + Num(mem()) + ";disk:" + Num(disk());
  if (!ports_.empty()) {
    s += ";ports:[";
    for (size_t i = 0; i < ports_.size(); ++i) {
      if (i) s += ',';
      s += std::to_string(ports_[i].begin) + "-" + std::to_string(ports_[i].end);
    }
    s += ']';
  }
  return s;
}

nlohmann::json ResourcesToJson(const Resources& r) {
  auto scalar = [](const char* name, double v) {
    return nlohmann::json{{"name", name}, {"type", "SCALAR"}, {"scalar", {{"value", v}}}};
  };
  nlohmann::json out = nlohmann::json::array();
  if (r.cpus_milli() > 0) out.push_back(scalar("cpus", r.cpus()));
  if (r.mem_milli() > 0) out.push_back(scalar("mem", r.mem()));
  if (r.disk_milli() > 0) out.push_back(scalar("disk", r.disk()));
  if (!r.ports().empty()) {
    nlohmann::json ranges = nlohmann::json::array();
    for (const auto& p : r.ports()) ranges.push_back({{"begin", p.begin}, {"end", p.end}});
    out.push_back({{"name", "ports"}, {"type", "RANGES"}, {"ranges", {{"range", ranges}}}});
  }
  return out;
}

Result<Resources> ResourcesFromJson(const nlohmann::json& j, const std::string& field) {
  if (!j.is_array()) return MakeError(Errc::kInvalidArgument, field + ": must be an array of resources");
  double cpus = 0, mem = 0, disk = 0;
  std::vector<PortRange> ports;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string f = field + "[" + std::to_string(i) + "]";
    const auto& e = j[i];
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string())
      return MakeError(Errc::kInvalidArgument, f + ".name: missing");
    const std::string name = e["name"];
    if (name == "cpus" || name == "mem" || name == "disk") {
      const auto* v = e.contains("scalar") && e["scalar"].is_object() && e["scalar"].contains("value")
                          ? &e["scalar"]["value"]
                          : nullptr;
      if (!v || !v->is_number() || v->get<double>() < 0 || !std::isfinite(v->get<double>()))
        return MakeError(Errc::kInvalidArgument, f + ".scalar.value: must be a number >= 0");
      (name == "cpus" ? cpus : name == "mem" ? mem : disk) += v->get<double>();
    } else if (name == "ports") {
      const auto* rs = e.contains("ranges") && e["ranges"].is_object() && e["ranges"].contains("range")
                           ? &e["ranges"]["range"]
                           : nullptr;
      if (!rs || !rs->is_array()) return MakeError(Errc::kInvalidArgument, f + ".ranges.range: must be an array");
      for (size_t k = 0; k < rs->size(); ++k) {
        const auto& r = (*rs)[k];
        const std::string rf = f + ".ranges.range[" + std::to_string(k) + "]";
        if (!r.is_object() || !r.contains("begin") || !r.contains("end") || !r["begin"].is_number_unsigned() ||
            !r["end"].is_number_unsigned() || r["begin"].get<uint64_t>() > r["end"].get<uint64_t>() ||
            r["end"].get<uint64_t>() > 65535)
          return MakeError(Errc::kInvalidArgument, rf + ": needs begin <= end <= 65535");
        ports.push_back({r["begin"].get<uint32_t>(), r["end"].get<uint32_t>()});
      }
    } else {
      return MakeError(Errc::kInvalidArgument, f + ".name: unknown resource '" + name + "'");
    }
  }
  return Resources::Make(cpus, mem, disk, std::move(ports));
}

Result<Resources> ParseResources(std::string_view text) {
  double cpus = 0, mem = 0, disk = 0;
  std::vector<PortRange> ports;
  while (!text.empty()) {
    size_t semi = text.find(';');
    std::string_view part = text.substr(0, semi);
    text = semi == std::string_view::npos ? std::string_view{} : text.substr(semi + 1);
    if (part.empty()) continue;
    size_t colon = part.find(':');
    if (colon == std::string_view::npos)
      return MakeError(Errc::kInvalidArgument, "resources: '" + std::string(part) + "' is not name:value");
    std::string_view name = part.substr(0, colon), value = part.substr(colon + 1);
    if (name == "ports") {
      if (value.size() < 2 || value.front() != '[' || value.back() != ']')
        return MakeError(Errc::kInvalidArgument, "resources: ports must look like [31000-32000,33000-33010]");
      value = value.substr(1, value.size() - 2);
      while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view r = value.substr(0, comma);
        value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
        size_t dash = r.find('-');
        uint32_t b = 0, e = 0;
        auto r1 = std::from_chars(r.data(), r.data() + (dash == std::string_view::npos ? r.size() : dash), b);
        e = b;
        bool ok = r1.ec == std::errc();
        if (ok && dash != std::string_view::npos) ok = std::from_chars(r.data() + dash + 1, r.data() + r.size(), e).ec == std::errc();
        if (!ok || b > e || e > 65535)
          return MakeError(Errc::kInvalidArgument, "resources: bad port range '" + std::string(r) + "'");
        ports.push_back({b, e});
      }
    } else if (name == "cpus" || name == "mem" || name == "disk") {
      double v = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || p != value.data() + value.size() || v < 0)
        return MakeError(Errc::kInvalidArgument, "resources: bad value for " + std::string(name) + ": '" +
                                                     std::string(value) + "'");
      (name == "cpus" ? cpus : name == "mem" ? mem : disk) = v;
    } else {
      return MakeError(Errc::kInvalidArgument, "resources: unknown resource '" + std::string(name) + "'");
    }
  }
  return Resources::Make(cpus, mem, disk, std::move(ports));
}

}  // namespace tug::cluster
