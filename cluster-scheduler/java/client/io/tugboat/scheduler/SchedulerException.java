package io.tugboat.scheduler;

/**
 * A call the master refused or that got no answer. {@link #status()} is the HTTP status, 0 when there was no answer
 * (not subscribed, connection refused, timeout); {@link #field()} names the offending field of a 400.
 */
public final class SchedulerException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final int status;
  private final String field;

  public SchedulerException(int status, String message, String field, Throwable cause) {
    super(message, cause);
    this.status = status;
    this.field = field == null ? "" : field;
  }

  public int status() {
    return status;
  }

  public String field() {
    return field;
  }

  /** No answer, 5xx or a redirect (the leader moved): worth retrying after the client re-subscribes. */
  public boolean unavailable() {
    return status == 0 || status >= 500 || status == 307;
  }
}
