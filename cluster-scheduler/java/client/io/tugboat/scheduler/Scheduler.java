package io.tugboat.scheduler;

import java.util.List;

/**
 * The framework's side of the event stream. {@link SchedulerClient} calls these on its own thread, one at a time, in
 * stream order; they may call back into the client (accept, acknowledge, ...), each such call blocking for at most
 * the client's call timeout. An exception thrown here is logged and the stream goes on.
 */
public interface Scheduler {
  /** SUBSCRIBED: first event of every stream, also after a re-subscription (same id) or a master failover. */
  void subscribed(SchedulerClient client, String frameworkId);

  /** OFFERS: accept, decline, or let them time out (they are rescinded then). */
  void offers(SchedulerClient client, List<Offer> offers);

  /** RESCIND: the offer is no longer valid. */
  default void rescind(SchedulerClient client, String offerId) {}

  /** UPDATE: acknowledge it ({@link SchedulerClient#acknowledge}) when {@link TaskStatus#needsAcknowledge()}. */
  void update(SchedulerClient client, TaskStatus status);

  /**
   * ERROR event: the master ends the stream (another subscriber took this framework over), and the client stops
   * for good after this call. Also called, without stopping, when a re-subscription finds the framework gone (403):
   * the client then carries on as a new framework.
   */
  default void error(SchedulerClient client, String message) {}

  /** The stream ended; the client re-subscribes by itself (unless stopped, torn down or ended by an ERROR). */
  default void disconnected(SchedulerClient client) {}
}
