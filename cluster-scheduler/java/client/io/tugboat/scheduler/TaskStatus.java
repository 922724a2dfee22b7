package io.tugboat.scheduler;

import java.util.Map;

/**
 * A task's status from an UPDATE event. {@code uuid} is set when the update must be acknowledged; {@code healthy}
 * is null when the task has no health check (or no verdict yet).
 */
public record TaskStatus(String taskId, String agentId, String frameworkId, TaskState state, String stateName,
                         String message, String reason, Boolean healthy, String uuid, double timestamp,
                         String source, Map<String, Object> json) {

  public static TaskStatus fromJson(Object j) {
    String stateName = Json.string(j, "state");
    Object healthy = Json.at(j, "healthy");
    return new TaskStatus(Json.idAt(j, "task_id"), Json.idAt(j, "agent_id"), Json.idAt(j, "framework_id"),
        TaskState.parse(stateName), stateName == null ? "" : stateName, orEmpty(Json.string(j, "message")),
        orEmpty(Json.string(j, "reason")), healthy instanceof Boolean ? (Boolean) healthy : null,
        Json.string(j, "uuid"), Json.number(j, 0, "timestamp"), orEmpty(Json.string(j, "source")),
        Json.asObject(j));
  }

  public boolean terminal() {
    return state.terminal();
  }

  /** True when the update carries a uuid, i.e. the master waits for an ACKNOWLEDGE. */
  public boolean needsAcknowledge() {
    return uuid != null && !uuid.isEmpty();
  }

  private static String orEmpty(String s) {
    return s == null ? "" : s;
  }

  @Override
  public String toString() {
    return "task " + taskId + " " + stateName + (message.isEmpty() ? "" : " (" + message + ")");
  }
}
