// Resources of the cluster scheduler: scalar cpus, mem (MiB), disk (MiB) and port ranges, with the arithmetic the
// allocator needs (add, subtract, contains) and the two notations: the Mesos v1 JSON list
// ([{"name":"cpus","type":"SCALAR","scalar":{"value":1}}, {"name":"ports","type":"RANGES","ranges":{"range":
// [{"begin":31000,"end":31009}]}}]) on the wire, and "cpus:4;mem:4096;disk:10000;ports:[31000-32000]" on command
// lines (node --resources).
//
// Scalars are kept in fixed point (1/1000) so that repeated add/subtract never drifts (Mesos had that bug).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace tug::cluster {

struct PortRange {
  uint32_t begin = 0;
  uint32_t end = 0;  // inclusive
  bool operator==(const PortRange&) const = default;
};

class Resources {
 public:
  Resources() = default;
  static Resources Make(double cpus, double mem_mib, double disk_mib = 0, std::vector<PortRange> ports = {});

  double cpus() const { return cpus_m_ / 1000.0; }
  double mem() const { return mem_m_ / 1000.0; }
  double disk() const { return disk_m_ / 1000.0; }
  const std::vector<PortRange>& ports() const { return ports_; }  // sorted, merged, non-overlapping
  uint64_t port_count() const;

  bool empty() const;
  // Every scalar >= other's and every port of other included.
  bool Contains(const Resources& other) const;
  Resources& operator+=(const Resources& other);
  // Saturates at zero; ports removed. Callers check Contains first when exactness matters.
  Resources& operator-=(const Resources& other);
  friend Resources operator+(Resources a, const Resources& b) { return a += b; }
  friend Resources operator-(Resources a, const Resources& b) { return a -= b; }
  bool operator==(const Resources&) const = default;

  // The first `n` ports of this set (fewer if it has fewer).
  std::vector<uint32_t> FirstPorts(size_t n) const;
  // A Resources holding exactly these ports (merged).
  static Resources Ports(const std::vector<uint32_t>& ports);

  // "cpus:1;mem:128;disk:0;ports:[31000-31009]" (no ports part when empty).
  std::string ToString() const;

  // Raw fixed-point values (thousandths), for the allocator's hot loop.
  int64_t cpus_milli() const { return cpus_m_; }
  int64_t mem_milli() const { return mem_m_; }
  int64_t disk_milli() const { return disk_m_; }

 private:
  int64_t cpus_m_ = 0;
  int64_t mem_m_ = 0;
  int64_t disk_m_ = 0;
  std::vector<PortRange> ports_;
};

// Mesos v1 JSON list form.
nlohmann::json ResourcesToJson(const Resources& r);
// kInvalidArgument naming the offending element ("resources[2].scalar.value"); unknown names are refused.
Result<Resources> ResourcesFromJson(const nlohmann::json& j, const std::string& field = "resources");
// "cpus:4;mem:4096;disk:10000;ports:[31000-32000,33000-33010]"; kInvalidArgument naming the part.
Result<Resources> ParseResources(std::string_view text);

}  // namespace tug::cluster
