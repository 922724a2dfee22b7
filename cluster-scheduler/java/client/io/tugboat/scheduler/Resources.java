package io.tugboat.scheduler;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

/**
 * cpus, mem and disk (MiB) and port ranges, read from and written to the Mesos resource list
 * ({@code [{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}, {"name":"ports","type":"RANGES",...}]}).
 * Other resource names are ignored on reading. Immutable.
 */
public final class Resources {
  /** An inclusive port range. */
  public record Range(long begin, long end) {
    public Range {
      if (begin < 0 || end < begin) throw new IllegalArgumentException("bad range [" + begin + "-" + end + "]");
    }

    public long size() {
      return end - begin + 1;
    }

    public boolean contains(Range o) {
      return o.begin >= begin && o.end <= end;
    }

    @Override
    public String toString() {
      return begin == end ? Long.toString(begin) : begin + "-" + end;
    }
  }

  // Scalars are compared with this slack: the master keeps them in fixed point (thousandths).
  private static final double EPSILON = 1e-6;

  private final double cpus;
  private final double mem;
  private final double disk;
  private final List<Range> ports;

  public Resources(double cpus, double mem, double disk, List<Range> ports) {
    this.cpus = cpus;
    this.mem = mem;
    this.disk = disk;
    List<Range> p = new ArrayList<>(ports == null ? List.of() : ports);
    p.sort(Comparator.comparingLong(Range::begin));
    this.ports = Collections.unmodifiableList(p);
  }

  public static Resources of(double cpus, double mem) {
    return new Resources(cpus, mem, 0, List.of());
  }

  public double cpus() {
    return cpus;
  }

  public double mem() {
    return mem;
  }

  public double disk() {
    return disk;
  }

  public List<Range> ports() {
    return ports;
  }

  public long portCount() {
    long n = 0;
    for (Range r : ports) n += r.size();
    return n;
  }

  /** The first {@code n} ports as single-port ranges, or null when there are fewer. */
  public List<Range> firstPorts(int n) {
    List<Range> out = new ArrayList<>();
    for (Range r : ports)
      for (long p = r.begin(); p <= r.end() && out.size() < n; p++) out.add(new Range(p, p));
    return out.size() == n ? out : null;
  }

  /** True when every scalar and every port of {@code need} is inside this. */
  public boolean contains(Resources need) {
    if (need.cpus > cpus + EPSILON || need.mem > mem + EPSILON || need.disk > disk + EPSILON) return false;
    for (Range want : need.ports) {
      boolean inside = false;
      for (Range have : ports) inside |= have.contains(want);
      if (!inside) return false;
    }
    return true;
  }

  public static Resources fromJson(Object list) {
    double cpus = 0, mem = 0, disk = 0;
    List<Range> ports = new ArrayList<>();
    for (Object e : Json.asArray(list)) {
      String name = Json.string(e, "name");
      if (name == null) continue;
      switch (name) {
        case "cpus": cpus += Json.number(e, 0, "scalar", "value"); break;
        case "mem": mem += Json.number(e, 0, "scalar", "value"); break;
        case "disk": disk += Json.number(e, 0, "scalar", "value"); break;
        case "ports":
          for (Object r : Json.asArray(Json.at(e, "ranges", "range"))) {
            Object b = Json.at(r, "begin");
            Object en = Json.at(r, "end");
            if (b instanceof Number && en instanceof Number)
              ports.add(new Range(((Number) b).longValue(), ((Number) en).longValue()));
          }
          break;
        default:
          break;
      }
    }
    return new Resources(cpus, mem, disk, ports);
  }

  public List<Object> toJson() {
    List<Object> out = new ArrayList<>();
    if (cpus > 0) out.add(scalar("cpus", cpus));
    if (mem > 0) out.add(scalar("mem", mem));
    if (disk > 0) out.add(scalar("disk", disk));
    if (!ports.isEmpty()) {
      List<Object> ranges = new ArrayList<>();
      for (Range r : ports) ranges.add(Json.object("begin", r.begin(), "end", r.end()));
      out.add(Json.object("name", "ports", "type", "RANGES", "ranges", Json.object("range", ranges)));
    }
    return out;
  }

  private static Map<String, Object> scalar(String name, double v) {
    return Json.object("name", name, "type", "SCALAR", "scalar", Json.object("value", v));
  }

  @Override
  public String toString() {
    StringBuilder b = new StringBuilder();
    b.append("cpus:").append(fmt(cpus)).append(";mem:").append(fmt(mem));
    if (disk > 0) b.append(";disk:").append(fmt(disk));
    if (!ports.isEmpty()) b.append(";ports:").append(ports);
    return b.toString();
  }

  private static String fmt(double v) {
    return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
  }
}
