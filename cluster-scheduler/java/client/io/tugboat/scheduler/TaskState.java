package io.tugboat.scheduler;

/** Task states (docs/cluster-api.md "TaskStatus and states"). UNKNOWN stands for a name this client does not know. */
public enum TaskState {
  TASK_STAGING(false),
  TASK_STARTING(false),
  TASK_RUNNING(false),
  TASK_KILLING(false),
  TASK_FINISHED(true),
  TASK_FAILED(true),
  TASK_KILLED(true),
  TASK_ERROR(true),
  TASK_DROPPED(true),
  TASK_LOST(true),
  TASK_UNREACHABLE(false),  // the node stopped heartbeating; the task may come back to TASK_RUNNING
  UNKNOWN(false);

  private final boolean terminal;

  TaskState(boolean terminal) {
    this.terminal = terminal;
  }

  /** FINISHED, FAILED, KILLED, ERROR, DROPPED, LOST: no further updates follow. */
  public boolean terminal() {
    return terminal;
  }

  public static TaskState parse(String name) {
    if (name == null) return UNKNOWN;
    for (TaskState s : values())
      if (s != UNKNOWN && s.name().equals(name)) return s;
    return UNKNOWN;
  }
}
