package io.tugboat.scheduler;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A task to launch (docs/cluster-api.md "TaskInfo"): built with {@link #builder}, sent by
 * {@link SchedulerClient#accept}. Without an image the task is a plain process ({@code /bin/sh -c command}, or
 * {@code arguments} as argv); with one, a runc container of that OCI image.
 *
 * <pre>
 * TaskInfo t = TaskInfo.builder("web.1").agentId(offer.agentId()).cpus(0.1).mem(64)
 *     .ports(offer.resources().firstPorts(1)).shell("exec java -cp app.jar Main")
 *     .env("MODE", "prod").httpHealthCheck(0, "/health").label("app", "/web").build();
 * </pre>
 */
public final class TaskInfo {
  private final Map<String, Object> json;
  private final String taskId;
  private final Resources resources;

  private TaskInfo(Builder b) {
    this.taskId = b.taskId;
    this.resources = new Resources(b.cpus, b.mem, b.disk, b.ports);
    Map<String, Object> command = Json.object("value", b.command, "shell", b.shell);
    if (!b.arguments.isEmpty()) command.put("arguments", new ArrayList<>(b.arguments));
    List<Object> vars = new ArrayList<>();
    b.env.forEach((k, v) -> vars.add(Json.object("name", k, "value", v)));
    command.put("environment", Json.object("variables", vars));

    Map<String, Object> j = Json.object("task_id", Json.id(b.taskId), "name", b.name == null ? b.taskId : b.name,
        "agent_id", Json.id(b.agentId), "resources", resources.toJson(), "command", command);
    if (b.image != null) {
      Map<String, Object> container = Json.object("type", "MESOS", "mesos",
          Json.object("image", Json.object("type", "DOCKER", "docker", Json.object("name", b.image))));
      if (b.insecureRegistry) container.put("insecure_registry", true);
      j.put("container", container);
    }
    if (b.healthCheck != null) j.put("health_check", new LinkedHashMap<>(b.healthCheck));
    if (!b.labels.isEmpty()) j.put("labels", new LinkedHashMap<>(b.labels));
    this.json = Collections.unmodifiableMap(j);
  }

  public static Builder builder(String taskId) {
    return new Builder(taskId);
  }

  public String taskId() {
    return taskId;
  }

  public Resources resources() {
    return resources;
  }

  /** The Mesos-style JSON object sent in {@code launch.task_infos}. */
  public Map<String, Object> toJson() {
    return json;
  }

  @Override
  public String toString() {
    return Json.write(json);
  }

  public static final class Builder {
    private final String taskId;
    private String name;
    private String agentId;
    private double cpus;
    private double mem;
    private double disk;
    private List<Resources.Range> ports = List.of();
    private String command = "";
    private boolean shell = true;
    private final List<String> arguments = new ArrayList<>();
    private final Map<String, String> env = new LinkedHashMap<>();
    private String image;
    private boolean insecureRegistry;
    private Map<String, Object> healthCheck;
    private final Map<String, String> labels = new LinkedHashMap<>();

    private Builder(String taskId) {
      if (taskId == null || taskId.isEmpty()) throw new IllegalArgumentException("task id must not be empty");
      this.taskId = taskId;
    }

    public Builder name(String n) {
      name = n;
      return this;
    }

    /** The agent of the offer the task is launched with (required by the master). */
    public Builder agentId(String id) {
      agentId = id;
      return this;
    }

    public Builder cpus(double v) {
      cpus = v;
      return this;
    }

    /** Memory in MiB. */
    public Builder mem(double mib) {
      mem = mib;
      return this;
    }

    public Builder disk(double mib) {
      disk = mib;
      return this;
    }

    /** Ports taken from the offer (see {@link Resources#firstPorts}); the task sees them as $PORT0..$PORTn. */
    public Builder ports(List<Resources.Range> p) {
      ports = p == null ? List.of() : List.copyOf(p);
      return this;
    }

    public Builder resources(Resources r) {
      cpus = r.cpus();
      mem = r.mem();
      disk = r.disk();
      ports = r.ports();
      return this;
    }

    /** A shell command line: run as {@code /bin/sh -c line}. */
    public Builder shell(String line) {
      command = line;
      shell = true;
      arguments.clear();
      return this;
    }

    /** An argv, run without a shell ({@code argv[0]} is the program). */
    public Builder exec(List<String> argv) {
      if (argv.isEmpty()) throw new IllegalArgumentException("argv must not be empty");
      command = argv.get(0);
      shell = false;
      arguments.clear();
      arguments.addAll(argv);
      return this;
    }

    public Builder env(String name, String value) {
      env.put(name, value);
      return this;
    }

    /** Runs the task in a runc container of this OCI image ("host:port/repo:tag"). */
    public Builder image(String ref, boolean insecure) {
      image = ref;
      insecureRegistry = insecure;
      return this;
    }

    public Builder label(String key, String value) {
      labels.put(key, value);
      return this;
    }

    /** HTTP health check on the task's port {@code portIndex}: 2xx/3xx is healthy. Defaults as in the docs. */
    public Builder httpHealthCheck(int portIndex, String path) {
      return healthCheck(Json.object("type", "HTTP", "http", Json.object("port_index", portIndex, "path", path)));
    }

    public Builder tcpHealthCheck(int portIndex) {
      return healthCheck(Json.object("type", "TCP", "tcp", Json.object("port_index", portIndex)));
    }

    public Builder commandHealthCheck(String line) {
      return healthCheck(Json.object("type", "COMMAND", "command", Json.object("value", line)));
    }

    /** Timings of the health check set before (seconds; failures before the task is killed). */
    public Builder healthTimings(double graceSeconds, double intervalSeconds, double timeoutSeconds,
                                 int consecutiveFailures) {
      if (healthCheck == null) throw new IllegalStateException("set a health check first");
      healthCheck.put("grace_period_seconds", graceSeconds);
      healthCheck.put("interval_seconds", intervalSeconds);
      healthCheck.put("timeout_seconds", timeoutSeconds);
      healthCheck.put("consecutive_failures", consecutiveFailures);
      return this;
    }

    private Builder healthCheck(Map<String, Object> h) {
      healthCheck = h;
      return this;
    }

    public TaskInfo build() {
      if (agentId == null || agentId.isEmpty()) throw new IllegalStateException("task " + taskId + ": agentId unset");
      if (image == null && command.isEmpty())
        throw new IllegalStateException("task " + taskId + ": a task without an image needs a command");
      return new TaskInfo(this);
    }
  }
}
