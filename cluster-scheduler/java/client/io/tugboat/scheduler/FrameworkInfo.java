package io.tugboat.scheduler;

import java.util.List;
import java.util.Map;

/** What SUBSCRIBE sends as {@code framework_info}. Immutable; {@link #withId} makes the re-subscribing copy. */
public final class FrameworkInfo {
  private final String name;
  private final String role;
  private final String user;
  private final double failoverTimeoutSeconds;
  private final String id;  // null: a new framework

  public FrameworkInfo(String name, String role) {
    this(name, role, "", 60, null);
  }

  public FrameworkInfo(String name, String role, String user, double failoverTimeoutSeconds, String id) {
    if (name == null || name.isEmpty()) throw new IllegalArgumentException("framework name must not be empty");
    if (role == null || role.isEmpty()) throw new IllegalArgumentException("framework role must not be empty");
    this.name = name;
    this.role = role;
    this.user = user == null ? "" : user;
    this.failoverTimeoutSeconds = failoverTimeoutSeconds;
    this.id = id == null || id.isEmpty() ? null : id;
  }

  public String name() {
    return name;
  }

  public String role() {
    return role;
  }

  public String user() {
    return user;
  }

  public double failoverTimeoutSeconds() {
    return failoverTimeoutSeconds;
  }

  /** The framework id to re-subscribe as, or null. */
  public String id() {
    return id;
  }

  public FrameworkInfo withId(String newId) {
    return new FrameworkInfo(name, role, user, failoverTimeoutSeconds, newId);
  }

  public Map<String, Object> toJson() {
    Map<String, Object> j = Json.object("name", name, "roles", List.of(role), "user", user,
        "failover_timeout", failoverTimeoutSeconds);
    if (id != null) j.put("id", Json.id(id));
    return j;
  }
}
