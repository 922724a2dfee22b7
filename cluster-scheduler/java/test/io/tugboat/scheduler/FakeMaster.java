package io.tugboat.scheduler;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiFunction;
import java.util.function.Consumer;

/**
 * An in-process stand-in for cluster-master's scheduler endpoint (docs/cluster-api.md), for the self-test: it can
 * lead, redirect (307) or be unavailable (503); it streams RecordIO events with heartbeats, checks Mesos-Stream-Id
 * and framework_id on calls, records every call, and lets a test script answers and events.
 */
final class FakeMaster implements AutoCloseable {
  enum Mode { LEADER, REDIRECT, UNAVAILABLE }

  /** A call's answer: HTTP status and body (202 and "" by default). */
  record Reply(int status, String body) {
    static final Reply ACCEPTED = new Reply(202, "");
  }

  private static final Object CLOSE = new Object();
  private static final Object STALL = new Object();

  private final HttpServer http;
  private final ExecutorService pool = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "fake-master");
    t.setDaemon(true);
    return t;
  });
  volatile Mode mode = Mode.LEADER;
  volatile String redirectTo;
  volatile double heartbeatSeconds = 1;
  /** Every call but SUBSCRIBE, as received, plus "_stream_id" (the header). */
  final BlockingQueue<Map<String, Object>> calls = new LinkedBlockingQueue<>();
  /** The framework_info of every SUBSCRIBE that reached the leader. */
  final BlockingQueue<Map<String, Object>> subscribes = new LinkedBlockingQueue<>();
  final AtomicInteger requests = new AtomicInteger();
  final Set<String> frameworks = ConcurrentHashMap.newKeySet();
  /** Called on each new stream with its framework id (e.g. to send offers). */
  volatile Consumer<String> onSubscribed = fid -> {};
  /** Answers calls; may send events. Default: 202. */
  volatile BiFunction<String, Map<String, Object>, Reply> script = (type, call) -> Reply.ACCEPTED;

  private final AtomicInteger ids = new AtomicInteger();
  private volatile BlockingQueue<Object> stream;  // events for the open stream
  private volatile String streamId;

  FakeMaster() throws IOException {
    http = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 16);
    http.createContext("/api/v1/scheduler", this::handle);
    http.setExecutor(pool);
    http.start();
  }

  String url() {
    return "http://127.0.0.1:" + http.getAddress().getPort();
  }

  /** Queues an event on the open stream. */
  void send(Map<String, Object> event) {
    BlockingQueue<Object> s = stream;
    if (s == null) throw new IllegalStateException("no open stream");
    s.add(event);
  }

  /** Ends the open stream (as a master going away does). */
  void closeStream() {
    BlockingQueue<Object> s = stream;
    if (s != null) s.add(CLOSE);
  }

  /** Keeps the stream open but silent: no events, no heartbeats. */
  void stallStream() {
    BlockingQueue<Object> s = stream;
    if (s != null) s.add(STALL);
  }

  boolean streamOpen() {
    return stream != null;
  }

  @Override
  public void close() {
    closeStream();
    http.stop(0);
    pool.shutdownNow();
  }

  private void handle(HttpExchange ex) throws IOException {
    requests.incrementAndGet();
    try (ex) {
      if (mode == Mode.REDIRECT) {
        ex.getResponseHeaders().set("Location", redirectTo + "/api/v1/scheduler");
        reply(ex, 307, "");
        return;
      }
      if (mode == Mode.UNAVAILABLE) {
        reply(ex, 503, "{\"error\":\"no leading master elected yet; retry\"}");
        return;
      }
      Map<String, Object> call;
      try {
        call = Json.parseObject(new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8));
      } catch (Json.ParseException e) {
        reply(ex, 400, Json.write(Json.object("error", e.getMessage(), "field", "")));
        return;
      }
      String type = Json.string(call, "type");
      if ("SUBSCRIBE".equals(type)) {
        subscribe(ex, call);
        return;
      }
      String fid = Json.idAt(call, "framework_id");
      String sid = ex.getRequestHeaders().getFirst("Mesos-Stream-Id");
      if (fid == null || !frameworks.contains(fid)) {
        reply(ex, 404, Json.write(Json.object("error", "unknown framework " + fid, "field", "framework_id")));
        return;
      }
      if (sid == null || !sid.equals(streamId)) {
        reply(ex, 400, Json.write(Json.object("error", "stale or missing Mesos-Stream-Id", "field",
            "Mesos-Stream-Id")));
        return;
      }
      call.put("_stream_id", sid);
      calls.add(call);
      Reply r = script.apply(type, call);
      if ("TEARDOWN".equals(type)) {
        frameworks.remove(fid);
        closeStream();
      }
      reply(ex, r.status(), r.body());
    }
  }

  private void subscribe(HttpExchange ex, Map<String, Object> call) throws IOException {
    Map<String, Object> info = Json.asObject(Json.at(call, "subscribe", "framework_info"));
    if (info == null) {
      reply(ex, 400, "{\"error\":\"framework_info missing\",\"field\":\"subscribe.framework_info\"}");
      return;
    }
    subscribes.add(info);
    String fid = Json.idAt(info, "id");
    if (fid != null && !frameworks.contains(fid)) {
      reply(ex, 403, Json.write(Json.object("error", "framework " + fid + " is not known", "field",
          "subscribe.framework_info.id")));
      return;
    }
    if (fid == null) {
      fid = "f-" + ids.incrementAndGet();
      frameworks.add(fid);
    }
    BlockingQueue<Object> old = stream;
    if (old != null) {
      old.add(Json.object("type", "ERROR", "message", "framework re-subscribed elsewhere"));
      old.add(CLOSE);
    }
    BlockingQueue<Object> q = new LinkedBlockingQueue<>();
    String sid = "s-" + ids.incrementAndGet();
    ex.getResponseHeaders().set("Content-Type", "application/recordio");
    ex.getResponseHeaders().set("Mesos-Stream-Id", sid);
    ex.sendResponseHeaders(200, 0);  // chunked
    OutputStream os = ex.getResponseBody();
    write(os, Json.object("type", "SUBSCRIBED", "subscribed", Json.object("framework_id", Json.id(fid),
        "heartbeat_interval_seconds", heartbeatSeconds)));
    streamId = sid;
    stream = q;
    onSubscribed.accept(fid);
    boolean stalled = false;
    try {
      while (true) {
        Object ev = q.poll((long) (heartbeatSeconds * 1000), TimeUnit.MILLISECONDS);
        if (ev == CLOSE) break;
        if (ev == STALL) stalled = true;
        if (stalled) continue;
        write(os, ev == null ? Json.object("type", "HEARTBEAT") : ev);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException e) {
      // the client went away
    } finally {
      if (stream == q) {
        stream = null;
        streamId = null;
      }
      try {
        os.close();
      } catch (IOException ignored) {
        // the client went away
      }
    }
  }

  private static void write(OutputStream os, Object event) throws IOException {
    os.write(RecordIo.encode(Json.write(event)));
    os.flush();
  }

  private static void reply(HttpExchange ex, int code, String body) throws IOException {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    if (!body.isEmpty()) ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.sendResponseHeaders(code, b.length == 0 ? -1 : b.length);
    if (b.length > 0) {
      try (OutputStream os = ex.getResponseBody()) {
        os.write(b);
      }
    }
  }
}
