#include "oci/runtime_spec.hpp"

namespace tug::oci {

const std::vector<std::string>& DefaultContainerCapabilities() {
  // Docker's default set without CAP_NET_RAW (raw sockets: spoofed packets, ARP/ICMP tricks on the host network the
  // tasks share) and CAP_MKNOD (device nodes), as Podman does. Nothing Tugboat runs needs either; a spec that ever
  // does must ask for it.
  static const std::vector<std::string> caps{"CAP_AUDIT_WRITE", "CAP_KILL",    "CAP_NET_BIND_SERVICE", "CAP_CHOWN",
                                             "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",           "CAP_SETGID",
                                             "CAP_SETUID",      "CAP_SETPCAP", "CAP_SYS_CHROOT"};
  return caps;
}

nlohmann::json DefaultContainerMounts() {
  return nlohmann::json::array(
      {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
       {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
        {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
       {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
        {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
       {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
        {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
       {{"destination", "/dev/mqueue"}, {"type", "mqueue"}, {"source", "mqueue"},
        {"options", {"nosuid", "noexec", "nodev"}}},
       {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"}, {"options", {"nosuid", "noexec", "nodev", "ro"}}},
       {{"destination", "/tmp"}, {"type", "tmpfs"}, {"source", "tmpfs"}, {"options", {"nosuid", "nodev", "mode=1777"}}},
       {{"destination", "/etc/resolv.conf"}, {"type", "bind"}, {"source", "/etc/resolv.conf"},
        {"options", {"rbind", "ro"}}}});
}

}  // namespace tug::oci
