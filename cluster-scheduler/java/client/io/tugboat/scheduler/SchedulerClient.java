package io.tugboat.scheduler;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The framework side of the cluster master's scheduler API (docs/cluster-api.md), with nothing but the JDK.
 *
 * <p>{@link #start()} runs the subscription on a thread of its own: SUBSCRIBE to a master of the list, follow a
 * 307 to the leader, rotate through the list on 503 or connection errors with a bounded, jittered backoff, read the
 * RecordIO event stream and hand each event to the {@link Scheduler} (on that thread, in stream order). When the
 * stream ends (master gone, leader changed, no heartbeat for about three intervals) the client re-subscribes with its
 * framework id, so the framework keeps its tasks. A 403 on re-subscribe (the id is gone: torn down, or its failover
 * timeout passed) makes it subscribe as a new framework, reported through {@link Scheduler#error}. An ERROR event
 * (another subscriber took the framework over) ends the client after {@link Scheduler#error}: it does not fight
 * back.
 *
 * <p>The calls ({@link #accept}, {@link #decline}, ...) may be made from any thread, the scheduler callbacks
 * included; each is one blocking POST carrying the Mesos-Stream-Id header, bounded by the call timeout. They throw
 * {@link SchedulerException}: status 0 when not subscribed or no answer, the HTTP status otherwise.
 *
 * <p>Threads are daemons: a program keeps itself alive (e.g. {@link #join()}) and ends the client with
 * {@link #stop()} (the framework stays registered until its failover timeout) or {@link #teardown()}.
 */
public final class SchedulerClient implements AutoCloseable {
  private static final String PATH = "/api/v1/scheduler";
  private static final int MAX_REDIRECTS = 5;
  private static final int MAX_ERROR_BODY = 4096;

  private final List<String> masters;
  private final Scheduler scheduler;
  private final FrameworkInfo baseInfo;
  private Duration callTimeout = Duration.ofSeconds(5);
  private Duration idleTimeout;  // null: 3 heartbeat intervals + 2 s, from SUBSCRIBED
  private Duration initialBackoff = Duration.ofMillis(200);
  private Duration maxBackoff = Duration.ofSeconds(3);
  private Consumer<String> log = m -> System.err.println("SchedulerClient: " + m);

  private HttpClient http;
  private Thread thread;
  private ScheduledExecutorService watchdog;
  private volatile boolean stopping;

  // Guarded by `lock`; waiters on `lock` are woken on every change.
  private final Object lock = new Object();
  private String frameworkId;
  private String streamId;
  private String leader;
  private boolean connected;

  // The subscription in flight, for stop() and the idle watchdog.
  private volatile CompletableFuture<HttpResponse<InputStream>> pending;
  private volatile InputStream stream;
  private volatile long lastEventNanos;
  private volatile long idleNanos;
  private volatile boolean idleExpired;
  private volatile boolean dispatching;  // a scheduler callback is running on the stream's thread

  /**
   * @param masters master base URLs ("http://127.0.0.1:5050"; "127.0.0.1:5050" means http), tried in order
   * @throws IllegalArgumentException for an empty list or a URL that is not http(s)://HOST[:PORT]
   * @param info the framework; with an id, the client re-subscribes as that framework
   */
  public SchedulerClient(List<String> masters, FrameworkInfo info, Scheduler scheduler) {
    if (masters.isEmpty()) throw new IllegalArgumentException("no master URL");
    List<String> m = new ArrayList<>();
    for (String s : masters) m.add(normalize(s));
    this.masters = List.copyOf(m);
    this.baseInfo = info;
    this.scheduler = scheduler;
    this.frameworkId = info.id();
  }

  /** Bound on each call (and on SUBSCRIBE's response head). Default 5 s. Set before start(). */
  public SchedulerClient callTimeout(Duration d) {
    callTimeout = d;
    return this;
  }

  /** Re-subscribe after this long without any event. Default: 3 heartbeat intervals + 2 s. Set before start(). */
  public SchedulerClient idleTimeout(Duration d) {
    idleTimeout = d;
    return this;
  }

  /** Reconnection backoff: doubles from {@code initial} up to {@code max}, plus up to 200 ms of jitter. */
  public SchedulerClient backoff(Duration initial, Duration max) {
    initialBackoff = initial;
    maxBackoff = max;
    return this;
  }

  /** Where connection events are logged (default: stderr, prefixed "SchedulerClient: "). */
  public SchedulerClient logger(Consumer<String> l) {
    log = l;
    return this;
  }

  public synchronized void start() {
    if (thread != null) throw new IllegalStateException("already started");
    http = HttpClient.newBuilder()
        .version(HttpClient.Version.HTTP_1_1)  // HTTP/2 would try an h2c upgrade on every request
        .connectTimeout(callTimeout)
        .followRedirects(HttpClient.Redirect.NEVER)  // 307s are followed by hand, re-sending the POST body
        .build();
    watchdog = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "tugboat-scheduler-watchdog");
      t.setDaemon(true);
      return t;
    });
    watchdog.scheduleWithFixedDelay(this::checkIdle, 200, 200, TimeUnit.MILLISECONDS);
    thread = new Thread(this::loop, "tugboat-scheduler-client");
    thread.setDaemon(true);
    thread.start();
  }

  /**
   * Ends the subscription and waits for the client's thread (unless called from it, i.e. from a callback). The
   * framework stays registered with the master until its failover timeout; see {@link #teardown()}.
   */
  public void stop() {
    stopping = true;
    CompletableFuture<?> p = pending;
    if (p != null) p.cancel(true);
    closeQuietly(stream);
    synchronized (lock) {
      lock.notifyAll();
    }
    Thread t;
    synchronized (this) {
      t = thread;
    }
    if (t != null && t != Thread.currentThread()) {
      boolean interrupted = false;
      while (t.isAlive()) {
        try {
          t.join();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
      if (interrupted) Thread.currentThread().interrupt();
    }
    if (watchdog != null) watchdog.shutdownNow();
  }

  @Override
  public void close() {
    stop();
  }

  /** Waits until the client's thread has ended (after stop() or teardown()). */
  public void join() throws InterruptedException {
    Thread t;
    synchronized (this) {
      t = thread;
    }
    if (t != null) t.join();
  }

  /** Waits up to {@code timeout} for a live subscription; true if subscribed. */
  public boolean awaitSubscribed(Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    synchronized (lock) {
      while (!connected) {
        long left = deadline - System.nanoTime();
        if (left <= 0 || stopping) return connected;
        TimeUnit.NANOSECONDS.timedWait(lock, left);
      }
      return true;
    }
  }

  public String frameworkId() {
    synchronized (lock) {
      return frameworkId;
    }
  }

  public boolean connected() {
    synchronized (lock) {
      return connected;
    }
  }

  /** The master URL of the current (or last) subscription. */
  public String leader() {
    synchronized (lock) {
      return leader;
    }
  }

  // ---------------------------------------------------------------- calls

  /** Launches {@code tasks} on the offers (all of one agent); the unused rest is refused for refuseSeconds. */
  public void accept(List<String> offerIds, List<TaskInfo> tasks, double refuseSeconds) {
    List<Object> infos = new ArrayList<>();
    for (TaskInfo t : tasks) infos.add(t.toJson());
    List<Object> ops = new ArrayList<>();
    if (!infos.isEmpty()) ops.add(Json.object("type", "LAUNCH", "launch", Json.object("task_infos", infos)));
    call("ACCEPT", "accept", Json.object("offer_ids", ids(offerIds), "operations", ops,
        "filters", Json.object("refuse_seconds", refuseSeconds)));
  }

  public void accept(List<String> offerIds, List<TaskInfo> tasks) {
    accept(offerIds, tasks, 5);
  }

  public void decline(List<String> offerIds, double refuseSeconds) {
    call("DECLINE", "decline", Json.object("offer_ids", ids(offerIds),
        "filters", Json.object("refuse_seconds", refuseSeconds)));
  }

  public void decline(List<String> offerIds) {
    decline(offerIds, 5);
  }

  /** Kills a task; agentId may be null. The outcome arrives as an UPDATE (TASK_KILLED, or TASK_LOST if unknown). */
  public void kill(String taskId, String agentId) {
    Map<String, Object> k = Json.object("task_id", Json.id(taskId));
    if (agentId != null) k.put("agent_id", Json.id(agentId));
    call("KILL", "kill", k);
  }

  /** Acknowledges an UPDATE; does nothing for one without a uuid (nothing to acknowledge). */
  public void acknowledge(TaskStatus status) {
    if (!status.needsAcknowledge()) return;
    Map<String, Object> a = Json.object("task_id", Json.id(status.taskId()), "uuid", status.uuid());
    if (status.agentId() != null) a.put("agent_id", Json.id(status.agentId()));
    call("ACKNOWLEDGE", "acknowledge", a);
  }

  /**
   * Asks for the state of the given tasks (task id -> agent id, the agent may be null); an empty map asks for all
   * of this framework's tasks. The answers arrive as UPDATEs without uuid.
   */
  public void reconcile(Map<String, String> taskToAgent) {
    List<Object> tasks = new ArrayList<>();
    taskToAgent.forEach((t, a) -> {
      Map<String, Object> e = Json.object("task_id", Json.id(t));
      if (a != null) e.put("agent_id", Json.id(a));
      tasks.add(e);
    });
    call("RECONCILE", "reconcile", Json.object("tasks", tasks));
  }

  public void revive() {
    call("REVIVE", null, null);
  }

  public void suppress() {
    call("SUPPRESS", null, null);
  }

  /**
   * Kills all of the framework's tasks and removes it, then stops the client (also when the call fails: a client
   * being torn down must not re-subscribe).
   */
  public void teardown() {
    stopping = true;  // the master closes the stream: do not come back
    try {
      call("TEARDOWN", null, null);
    } finally {
      stop();
    }
  }

  private static List<Object> ids(List<String> values) {
    List<Object> out = new ArrayList<>();
    for (String v : values) out.add(Json.id(v));
    return out;
  }

  private void call(String type, String key, Object body) {
    String master;
    String sid;
    String fid;
    synchronized (lock) {
      master = leader;
      sid = streamId;
      fid = frameworkId;
      if (!connected || sid == null) throw new SchedulerException(0, type + ": not subscribed to a master", null, null);
    }
    Map<String, Object> c = Json.object("type", type, "framework_id", Json.id(fid));
    if (key != null) c.put(key, body);
    HttpRequest req = HttpRequest.newBuilder(URI.create(master + PATH))
        .timeout(callTimeout)
        .header("Content-Type", "application/json")
        .header("Mesos-Stream-Id", sid)
        .POST(HttpRequest.BodyPublishers.ofString(Json.write(c), StandardCharsets.UTF_8))
        .build();
    HttpResponse<String> r;
    try {
      r = http.send(req, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new SchedulerException(0, type + ": " + master + ": " + describe(e), null, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new SchedulerException(0, type + ": interrupted", null, e);
    }
    int code = r.statusCode();
    if (code == 200 || code == 202) return;
    String msg = r.body();
    String field = null;
    try {
      Map<String, Object> err = Json.parseObject(r.body());
      if (Json.string(err, "error") != null) msg = Json.string(err, "error");
      field = Json.string(err, "field");
    } catch (Json.ParseException ignored) {
      // not a JSON error body: keep the raw text
    }
    throw new SchedulerException(code, type + ": HTTP " + code + ": " + msg, field, null);
  }

  // ---------------------------------------------------------------- the subscription loop

  private void loop() {
    int next = 0;
    int redirects = 0;
    String redirect = null;
    long backoff = initialBackoff.toMillis();
    while (!stopping) {
      String master = redirect != null ? redirect : masters.get(next % masters.size());
      redirect = null;
      Outcome o;
      try {
        o = subscribeOnce(master);
      } catch (RuntimeException e) {
        o = Outcome.failed("unexpected " + e);
      }
      if (stopping) break;
      if (o.redirect != null && redirects < MAX_REDIRECTS) {
        redirects++;
        log.accept(master + " is not the leader; following the redirect to " + o.redirect);
        redirect = o.redirect;
        continue;
      }
      redirects = 0;
      if (o.subscribed) {
        backoff = initialBackoff.toMillis();  // it worked: come back quickly
        log.accept("disconnected from " + master + ": " + o.reason + "; re-subscribing");
      } else {
        log.accept(master + ": " + (o.redirect != null ? "too many redirects" : o.reason));
        next++;
      }
      sleep(backoff + ThreadLocalRandom.current().nextLong(200));
      backoff = Math.min(backoff * 2, maxBackoff.toMillis());
    }
  }

  private static final class Outcome {
    final boolean subscribed;  // a stream was open (so the master was the leader)
    final String redirect;     // leader origin from a 307
    final String reason;

    private Outcome(boolean subscribed, String redirect, String reason) {
      this.subscribed = subscribed;
      this.redirect = redirect;
      this.reason = reason;
    }

    static Outcome failed(String reason) {
      return new Outcome(false, null, reason);
    }
  }

  private Outcome subscribeOnce(String master) {
    FrameworkInfo info = baseInfo.withId(frameworkId());
    String body = Json.write(Json.object("type", "SUBSCRIBE", "subscribe", Json.object("framework_info",
        info.toJson())));
    HttpRequest req;
    try {
      req = HttpRequest.newBuilder(URI.create(master + PATH))
          .timeout(callTimeout)  // until the response head; the body is watched by checkIdle
          .header("Content-Type", "application/json")
          .header("Accept", "application/recordio")
          .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8))
          .build();
    } catch (IllegalArgumentException e) {
      return Outcome.failed("bad master URL: " + e.getMessage());
    }
    CompletableFuture<HttpResponse<InputStream>> f = http.sendAsync(req, HttpResponse.BodyHandlers.ofInputStream());
    pending = f;
    if (stopping) f.cancel(true);
    HttpResponse<InputStream> resp;
    try {
      resp = f.get();
    } catch (ExecutionException e) {
      return Outcome.failed(describe(e.getCause()));
    } catch (CancellationException e) {
      return Outcome.failed("cancelled");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      stopping = true;
      return Outcome.failed("interrupted");
    } finally {
      pending = null;
    }
    try (InputStream in = resp.body()) {
      int code = resp.statusCode();
      if (code == 307) {
        String loc = resp.headers().firstValue("Location").orElse("");
        if (loc.isEmpty()) return Outcome.failed("307 without Location");
        try {
          URI u = URI.create(master + PATH).resolve(loc);
          return new Outcome(false, u.getScheme() + "://" + u.getRawAuthority(), "redirect");
        } catch (IllegalArgumentException e) {
          return Outcome.failed("307 with a bad Location '" + loc + "'");
        }
      }
      if (code != 200) {
        String text = new String(in.readNBytes(MAX_ERROR_BODY), StandardCharsets.UTF_8).trim();
        if (code == 403 && frameworkId() != null) {
          // Our framework is gone: carry on as a new one (its old tasks were killed with it).
          String old;
          synchronized (lock) {
            old = frameworkId;
            frameworkId = null;
          }
          log.accept("framework " + old + " is unknown to " + master + " (" + text + "); subscribing as a new one");
          safely(() -> scheduler.error(this, "framework " + old + " is gone: " + text));
        }
        return Outcome.failed("SUBSCRIBE: HTTP " + code + (text.isEmpty() ? "" : ": " + text));
      }
      String sid = resp.headers().firstValue("Mesos-Stream-Id").orElse("");
      if (sid.isEmpty()) return Outcome.failed("SUBSCRIBE answered without a Mesos-Stream-Id");
      return readStream(master, sid, in);
    } catch (IOException e) {
      return Outcome.failed(describe(e));
    }
  }

  private Outcome readStream(String master, String sid, InputStream in) {
    idleExpired = false;
    lastEventNanos = System.nanoTime();
    idleNanos = (idleTimeout != null ? idleTimeout : callTimeout.multipliedBy(2)).toNanos();  // until SUBSCRIBED
    stream = in;
    if (stopping) closeQuietly(in);
    boolean subscribed = false;
    String reason = "the master closed the stream";
    try {
      RecordIo.Reader reader = new RecordIo.Reader(in);
      String rec;
      while ((rec = reader.next()) != null) {
        lastEventNanos = System.nanoTime();
        if (rec.isEmpty()) continue;
        Map<String, Object> ev;
        try {
          ev = Json.parseObject(rec);
        } catch (Json.ParseException e) {
          reason = "event is not JSON (" + e.getMessage() + ")";
          break;
        }
        String type = Json.string(ev, "type");
        if (!subscribed) {
          if (!"SUBSCRIBED".equals(type)) {
            reason = "first event is " + type + ", not SUBSCRIBED";
            break;
          }
          String fid = Json.idAt(ev, "subscribed", "framework_id");
          if (fid == null) {
            reason = "SUBSCRIBED without framework_id";
            break;
          }
          double hb = Json.number(ev, 0, "subscribed", "heartbeat_interval_seconds");
          idleNanos = idleTimeout != null ? idleTimeout.toNanos()
              : (long) ((hb > 0 ? 3 * hb + 2 : 15) * 1e9);
          synchronized (lock) {
            frameworkId = fid;
            streamId = sid;
            leader = master;
            connected = true;
            lock.notifyAll();
          }
          subscribed = true;
          log.accept("subscribed to " + master + " as framework " + fid);
          dispatching = true;
          try {
            safely(() -> scheduler.subscribed(this, fid));
          } finally {
            lastEventNanos = System.nanoTime();
            dispatching = false;
          }
          continue;
        }
        // The silence is measured while waiting for the master, not while a callback works (a slow callback
        // leaves events queued in the socket, it does not mean the master is gone).
        dispatching = true;
        try {
          dispatch(type, ev);
        } finally {
          lastEventNanos = System.nanoTime();
          dispatching = false;
        }
        if ("ERROR".equals(type)) {
          // Another subscriber took this framework over (or the master refuses it): coming back would make the
          // two evict each other, so this client ends here.
          stopping = true;
          reason = "master error";
          break;
        }
      }
    } catch (IOException e) {
      reason = idleExpired ? "no event for " + idleNanos / 1_000_000_000.0 + " s" : describe(e);
    } finally {
      stream = null;
      closeQuietly(in);
      if (subscribed) {
        synchronized (lock) {
          connected = false;
          streamId = null;
          lock.notifyAll();
        }
        if (!stopping) safely(() -> scheduler.disconnected(this));
      }
    }
    if (idleExpired) reason = "no event for " + idleNanos / 1_000_000_000.0 + " s";
    return new Outcome(subscribed, null, reason);
  }

  private void dispatch(String type, Map<String, Object> ev) {
    if (type == null) return;
    switch (type) {
      case "HEARTBEAT":
        break;
      case "OFFERS": {
        List<Offer> offers = new ArrayList<>();
        for (Object o : Json.asArray(Json.at(ev, "offers", "offers"))) {
          Offer offer = Offer.fromJson(o);
          if (offer != null) offers.add(offer);
        }
        if (!offers.isEmpty()) safely(() -> scheduler.offers(this, offers));
        break;
      }
      case "RESCIND": {
        String id = Json.idAt(ev, "rescind", "offer_id");
        if (id != null) safely(() -> scheduler.rescind(this, id));
        break;
      }
      case "UPDATE": {
        Object st = Json.at(ev, "update", "status");
        if (st instanceof Map) {
          TaskStatus status = TaskStatus.fromJson(st);
          safely(() -> scheduler.update(this, status));
        }
        break;
      }
      case "ERROR": {
        String msg = Json.string(ev, "message");
        if (msg == null) msg = Json.string(ev, "error", "message");
        String m = msg == null ? "" : msg;
        log.accept("master error: " + m);
        safely(() -> scheduler.error(this, m));
        break;
      }
      default:
        break;  // newer event types: ignore
    }
  }

  private void checkIdle() {
    InputStream s = stream;
    if (s != null && !dispatching && System.nanoTime() - lastEventNanos > idleNanos) {
      idleExpired = true;
      closeQuietly(s);  // unblocks the reader with an IOException (or a clean end)
    }
  }

  private void safely(Runnable r) {
    try {
      r.run();
    } catch (RuntimeException e) {
      log.accept("scheduler callback threw " + e);
    }
  }

  private void sleep(long millis) {
    long deadline = System.nanoTime() + millis * 1_000_000;
    synchronized (lock) {
      while (!stopping) {
        long left = deadline - System.nanoTime();
        if (left <= 0) return;
        try {
          TimeUnit.NANOSECONDS.timedWait(lock, left);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          stopping = true;
        }
      }
    }
  }

  private static void closeQuietly(InputStream in) {
    if (in == null) return;
    try {
      in.close();
    } catch (IOException ignored) {
      // closing to unblock a reader: nothing to report
    }
  }

  private static String describe(Throwable e) {
    if (e instanceof java.net.ConnectException) return "connection refused";
    if (e instanceof java.net.http.HttpTimeoutException) return "timed out";
    String m = e.getMessage();
    return e.getClass().getSimpleName() + (m == null ? "" : ": " + m);
  }

  /** "127.0.0.1:5050" -> "http://127.0.0.1:5050"; trailing slashes go; anything but http(s)://host[:port] throws. */
  static String normalize(String url) {
    String s = url.trim();
    if (!s.contains("://")) s = "http://" + s;
    while (s.endsWith("/")) s = s.substring(0, s.length() - 1);
    URI u;
    try {
      u = new URI(s);
    } catch (java.net.URISyntaxException e) {
      throw new IllegalArgumentException("bad master URL '" + url + "': " + e.getMessage());
    }
    if (!("http".equals(u.getScheme()) || "https".equals(u.getScheme())) || u.getHost() == null
        || (u.getRawPath() != null && !u.getRawPath().isEmpty()))
      throw new IllegalArgumentException("bad master URL '" + url + "': want http://HOST:PORT");
    return s;
  }
}
