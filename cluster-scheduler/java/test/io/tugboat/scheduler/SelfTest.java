package io.tugboat.scheduler;

import io.tugboat.examples.HelloService;
import io.tugboat.examples.RunOnce;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The Java side's unit and component tests, with no test framework: {@code java -cp tugboat-java.jar
 * io.tugboat.scheduler.SelfTest [name-substring]} runs them, prints one line per test and exits 1 if any failed.
 * The client, RunOnce and HelloService are tested against in-process fakes ({@link FakeMaster}); the run against a
 * real cluster-master and node is the end-to-end ctest.
 */
public final class SelfTest {
  private SelfTest() {}

  interface Body {
    void run() throws Exception;
  }

  private static final Map<String, Body> TESTS = new LinkedHashMap<>();

  static {
    // JSON
    TESTS.put("json parses nested objects and arrays in order", SelfTest::jsonNested);
    TESTS.put("json decodes every escape and unicode, surrogate pairs included", SelfTest::jsonEscapes);
    TESTS.put("json reads integers as Long and the rest as Double", SelfTest::jsonNumbers);
    TESTS.put("json rejects what RFC 8259 rejects", SelfTest::jsonRejects);
    TESTS.put("json writes what it reads back unchanged", SelfTest::jsonRoundTrip);
    // RecordIO
    TESTS.put("recordio decodes records split at every byte", SelfTest::recordIoSplits);
    TESTS.put("recordio reader handles a trickling stream and multi-byte UTF-8", SelfTest::recordIoReader);
    TESTS.put("recordio rejects bad lengths, oversize and truncated records", SelfTest::recordIoRejects);
    // model
    TESTS.put("offers parse resources, ports and attributes", SelfTest::offerParse);
    TESTS.put("task infos produce the documented Mesos JSON", SelfTest::taskInfoJson);
    TESTS.put("task statuses parse state, uuid and health", SelfTest::taskStatusParse);
    // client against the fake master
    TESTS.put("client follows a 307 from a follower to the leader", SelfTest::clientRedirect);
    TESTS.put("client takes host:port or http(s) URLs for masters", SelfTest::clientMasterUrls);
    TESTS.put("client rotates past 503 and refused masters", SelfTest::clientRotates);
    TESTS.put("client delivers events in order, parsed, and ends on ERROR", SelfTest::clientEvents);
    TESTS.put("client heartbeats keep the stream without callbacks", SelfTest::clientHeartbeatsAreQuiet);
    TESTS.put("client calls carry the stream id and framework id", SelfTest::clientCalls);
    TESTS.put("client reports refused calls with status and field", SelfTest::clientCallErrors);
    TESTS.put("client re-subscribes with its framework id after the stream ends", SelfTest::clientResubscribes);
    TESTS.put("client re-subscribes when the stream goes silent", SelfTest::clientIdleTimeout);
    TESTS.put("client does not mistake a slow callback for a silent master", SelfTest::clientSlowCallback);
    TESTS.put("client subscribes afresh when its framework is gone (403)", SelfTest::clientForgotten);
    TESTS.put("client teardown ends the subscription for good", SelfTest::clientTeardown);
    TESTS.put("client stop is prompt while no master answers", SelfTest::clientStopPrompt);
    // examples
    TESTS.put("RunOnce launches on the first fitting offer and exits 0 on TASK_FINISHED", SelfTest::runOnceFinished);
    TESTS.put("RunOnce exits 1 when the task fails", SelfTest::runOnceFailed);
    TESTS.put("RunOnce exits 1 on timeout and 2 on usage errors", SelfTest::runOnceTimeoutAndUsage);
    TESTS.put("HelloService answers hello, health and errors", SelfTest::helloService);
  }

  public static void main(String[] args) {
    String filter = args.length > 0 ? args[0] : "";
    int passed = 0;
    List<String> failed = new ArrayList<>();
    for (Map.Entry<String, Body> t : TESTS.entrySet()) {
      if (!t.getKey().contains(filter)) continue;
      long start = System.nanoTime();
      try {
        t.getValue().run();
        passed++;
        System.out.printf("ok    %s (%d ms)%n", t.getKey(), (System.nanoTime() - start) / 1_000_000);
      } catch (Throwable e) {
        failed.add(t.getKey());
        System.out.printf("FAIL  %s: %s%n", t.getKey(), e);
        for (StackTraceElement el : e.getStackTrace()) {
          if (el.getClassName().startsWith("io.tugboat")) System.out.println("        at " + el);
        }
      }
    }
    System.out.printf("SelfTest: %d passed, %d failed%n", passed, failed.size());
    System.exit(failed.isEmpty() && passed > 0 ? 0 : 1);
  }

  // ---------------------------------------------------------------- assertions

  static void check(boolean cond, String what) {
    if (!cond) throw new AssertionError(what);
  }

  static void eq(Object want, Object got) {
    if (!Objects.equals(want, got)) throw new AssertionError("expected <" + want + "> but got <" + got + ">");
  }

  static void throwsParse(String json) {
    try {
      Object v = Json.parse(json);
      throw new AssertionError("accepted invalid JSON " + json + " as " + v);
    } catch (Json.ParseException expected) {
      // good
    }
  }

  static <T> T poll(BlockingQueue<T> q, String what) throws InterruptedException {
    T v = q.poll(10, TimeUnit.SECONDS);
    if (v == null) throw new AssertionError("timed out waiting for " + what);
    return v;
  }

  // ---------------------------------------------------------------- JSON

  static void jsonNested() throws Exception {
    Object v = Json.parse(" {\"a\": {\"b\": [1, {\"c\": [true, false, null]}, []], \"d\": {}}, \"z\": \"y\"} ");
    eq(List.of("a", "z"), new ArrayList<>(Json.asObject(v).keySet()));
    eq(1L, Json.at(v, "a", "b", 0));
    eq(Boolean.TRUE, Json.at(v, "a", "b", 1, "c", 0));
    check(Json.asObject(Json.at(v, "a", "b", 1)).containsKey("c"), "c present");
    eq(null, Json.at(v, "a", "b", 1, "c", 2));
    eq(List.of(), Json.at(v, "a", "b", 2));
    eq(Map.of(), Json.at(v, "a", "d"));
    eq(null, Json.at(v, "a", "missing", "x"));
    eq(null, Json.at(v, "a", "b", 7));
    eq("y", Json.string(v, "z"));
    // A repeated key keeps the last value; deep nesting is fine up to the limit.
    eq(2L, Json.at(Json.parse("{\"k\":1,\"k\":2}"), "k"));
    String deep = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
    check(Json.parse(deep) instanceof List, "deep array parses");
    throwsParse("[".repeat(Json.MAX_DEPTH + 1) + "]".repeat(Json.MAX_DEPTH + 1));
  }

  static void jsonEscapes() throws Exception {
    eq("\" \\ / \b \f \n \r \t", Json.parse("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\""));
    eq("\u00e9\u4e2d", Json.parse("\"\\u00e9\\u4E2D\""));
    eq("\uD83D\uDE00", Json.parse("\"\\ud83d\\ude00\""));  // U+1F600 from a surrogate pair
    eq("caf\u00e9 \uD83D\uDE00", Json.parse("\"caf\u00e9 \uD83D\uDE00\""));  // raw non-ASCII passes through
    eq("\u0000", Json.parse("\"\\u0000\""));
    eq("k\u00e9y", new ArrayList<>(Json.asObject(Json.parse("{\"k\\u00e9y\":1}")).keySet()).get(0));
    // Writing escapes what must be escaped and keeps the rest readable.
    eq("\"a\\\"b\\\\c\\nd\\u0001\u00e9\uD83D\uDE00\"", Json.write("a\"b\\c\nd\u0001\u00e9\uD83D\uDE00"));
    eq("\"\\ud800x\"", Json.write("\uD800x"));  // a lone surrogate cannot go out as UTF-8: escaped
  }

  static void jsonNumbers() throws Exception {
    eq(0L, Json.parse("0"));
    eq(-12L, Json.parse("-12"));
    eq(Long.MAX_VALUE, Json.parse("9223372036854775807"));
    eq(Long.MIN_VALUE, Json.parse("-9223372036854775808"));
    eq(9.223372036854775808E18, Json.parse("9223372036854775808"));  // too big for a long
    eq(1.5, Json.parse("1.5"));
    eq(-0.25, Json.parse("-0.25"));
    eq(1000.0, Json.parse("1e3"));
    eq(0.01, Json.parse("1E-2"));
    eq(250.0, Json.parse("2.5e+2"));
    eq(-0.0, Json.parse("-0"));
    eq(List.of(1L, 2.0, -3L), Json.parse("[1,2.0,-3]"));
    eq("32", Json.write(32.0));
    eq("0.1", Json.write(0.1));
    eq("-3", Json.write(-3L));
    eq("1.0E-5", Json.write(1e-5));
    eq(1e-5, Json.parse(Json.write(1e-5)));
    eq(1e300, Json.parse(Json.write(1e300)));
    try {
      Json.write(Double.NaN);
      throw new AssertionError("wrote NaN");
    } catch (IllegalArgumentException expected) {
      // good
    }
  }

  static void jsonRejects() {
    for (String bad : new String[] {"", " ", "{", "}", "[1,]", "{\"a\":1,}", "{a:1}", "{'a':1}", "[1 2]",
        "{\"a\" 1}", "01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "Infinity", "tru", "nul", "\"abc",
        "\"a\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"tab\there\"", "\"nl\nhere\"", "[1]]", "{} {}", "[1] x",
        "\"\\\""}) {
      throwsParse(bad);
    }
  }

  static void jsonRoundTrip() throws Exception {
    String text = "{\"type\":\"ACCEPT\",\"accept\":{\"offer_ids\":[{\"value\":\"o-1\"}],\"operations\":[{\"type\":"
        + "\"LAUNCH\",\"launch\":{\"task_infos\":[{\"labels\":{\"app\":\"/w\\u00e9b\"},\"n\":null,\"t\":true,"
        + "\"x\":-1.5,\"y\":31000}]}}],\"filters\":{\"refuse_seconds\":5}}}";
    Object v = Json.parse(text);
    String written = Json.write(v);
    eq(v, Json.parse(written));
    eq(text.replace("\\u00e9", "\u00e9"), written);  // same bytes, key order kept
  }

  // ---------------------------------------------------------------- RecordIO

  static void recordIoSplits() throws Exception {
    List<String> records = List.of("{\"type\":\"HEARTBEAT\"}", "", "{\"k\":\"\u00e9\uD83D\uDE00\"}",
        "x".repeat(300));
    ByteArrayOutputStream all = new ByteArrayOutputStream();
    for (String r : records) all.writeBytes(RecordIo.encode(r));
    byte[] bytes = all.toByteArray();
    eq("20\n{\"type\":\"HEARTBEAT\"}", new String(RecordIo.encode("{\"type\":\"HEARTBEAT\"}"), StandardCharsets.UTF_8));
    // Every single split point, and every-byte feeding.
    for (int cut = 0; cut <= bytes.length; cut++) {
      RecordIo.Decoder d = new RecordIo.Decoder();
      List<byte[]> got = new ArrayList<>(d.feed(bytes, 0, cut));
      got.addAll(d.feed(bytes, cut, bytes.length - cut));
      eq(records, decode(got));
      check(!d.midRecord(), "nothing pending after the last record");
    }
    RecordIo.Decoder d = new RecordIo.Decoder();
    List<byte[]> got = new ArrayList<>();
    for (int i = 0; i < bytes.length; i++) {
      got.addAll(d.feed(bytes, i, 1));
      if (i < bytes.length - 1) check(d.midRecord() || !got.isEmpty(), "pending while mid-stream");
    }
    eq(records, decode(got));
  }

  private static List<String> decode(List<byte[]> raw) {
    List<String> out = new ArrayList<>();
    for (byte[] b : raw) out.add(new String(b, StandardCharsets.UTF_8));
    return out;
  }

  /** Returns at most `step` bytes per read, cycling 1..step, like a network delivering odd chunks. */
  static final class Trickle extends InputStream {
    private final byte[] data;
    private int pos;
    private int n;
    private final int step;

    Trickle(byte[] data, int step) {
      this.data = data;
      this.step = step;
    }

    @Override
    public int read() {
      return pos < data.length ? data[pos++] & 0xff : -1;
    }

    @Override
    public int read(byte[] b, int off, int len) {
      if (pos >= data.length) return -1;
      int k = Math.min(Math.min(len, 1 + (n++ % step)), data.length - pos);
      System.arraycopy(data, pos, b, off, k);
      pos += k;
      return k;
    }
  }

  static void recordIoReader() throws Exception {
    String a = "{\"type\":\"UPDATE\",\"m\":\"\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \u4e2d\u6587 \uD83D\uDE80\"}";
    String b = "{\"type\":\"HEARTBEAT\"}";
    ByteArrayOutputStream all = new ByteArrayOutputStream();
    for (int i = 0; i < 20; i++) all.writeBytes(RecordIo.encode(i % 2 == 0 ? a : b));
    for (int step = 1; step <= 7; step++) {
      RecordIo.Reader r = new RecordIo.Reader(new Trickle(all.toByteArray(), step));
      for (int i = 0; i < 20; i++) eq(i % 2 == 0 ? a : b, r.next());
      eq(null, r.next());
      eq(null, r.next());
    }
  }

  static void recordIoRejects() {
    for (String bad : new String[] {"\n", "x\n", "1 2\n", "-1\n", "99999999999\n", "2\r\nab"}) {
      try {
        new RecordIo.Decoder().feed(bad.getBytes(StandardCharsets.US_ASCII), 0, bad.length());
        throw new AssertionError("accepted " + bad.replace("\n", "\\n"));
      } catch (RecordIo.FormatException expected) {
        // good
      }
    }
    try {
      new RecordIo.Decoder(10).feed("11\n".getBytes(StandardCharsets.US_ASCII), 0, 3);
      throw new AssertionError("accepted an oversize record");
    } catch (RecordIo.FormatException expected) {
      // good
    }
    for (String truncated : new String[] {"5\nabc", "12"}) {
      try {
        new RecordIo.Reader(new ByteArrayInputStream(truncated.getBytes(StandardCharsets.US_ASCII))).next();
        throw new AssertionError("accepted truncated " + truncated);
      } catch (IOException expected) {
        // good
      }
    }
    try {
      byte[] badUtf8 = {'2', '\n', (byte) 0xc3, (byte) 0x28};
      new RecordIo.Reader(new ByteArrayInputStream(badUtf8)).next();
      throw new AssertionError("accepted invalid UTF-8");
    } catch (IOException expected) {
      // good
    }
  }

  // ---------------------------------------------------------------- model

  static final String OFFER_JSON = "{\"id\":{\"value\":\"o-1\"},\"framework_id\":{\"value\":\"f-1\"},"
      + "\"agent_id\":{\"value\":\"a-1\"},\"hostname\":\"n1\",\"resources\":["
      + "{\"name\":\"cpus\",\"type\":\"SCALAR\",\"scalar\":{\"value\":1.5}},"
      + "{\"name\":\"mem\",\"type\":\"SCALAR\",\"scalar\":{\"value\":512}},"
      + "{\"name\":\"disk\",\"type\":\"SCALAR\",\"scalar\":{\"value\":1024}},"
      + "{\"name\":\"gpus\",\"type\":\"SCALAR\",\"scalar\":{\"value\":1}},"
      + "{\"name\":\"ports\",\"type\":\"RANGES\",\"ranges\":{\"range\":[{\"begin\":31005,\"end\":31006},"
      + "{\"begin\":31000,\"end\":31001}]}}],"
      + "\"attributes\":[{\"name\":\"zone\",\"type\":\"TEXT\",\"text\":{\"value\":\"a\"}}]}";

  static void offerParse() throws Exception {
    Offer o = Offer.fromJson(Json.parse(OFFER_JSON));
    eq("o-1", o.id());
    eq("f-1", o.frameworkId());
    eq("a-1", o.agentId());
    eq("n1", o.hostname());
    eq(1.5, o.resources().cpus());
    eq(512.0, o.resources().mem());
    eq(1024.0, o.resources().disk());
    eq(List.of(new Resources.Range(31000, 31001), new Resources.Range(31005, 31006)), o.resources().ports());
    eq(4L, o.resources().portCount());
    eq(Map.of("zone", "a"), o.attributes());
    eq(List.of(new Resources.Range(31000, 31000), new Resources.Range(31001, 31001),
        new Resources.Range(31005, 31005)), o.resources().firstPorts(3));
    eq(null, o.resources().firstPorts(5));
    check(o.resources().contains(Resources.of(1.5, 512)), "exact fit");
    check(o.resources().contains(new Resources(0.1, 32, 0, o.resources().firstPorts(2))), "ports fit");
    check(!o.resources().contains(Resources.of(1.6, 32)), "too many cpus");
    check(!o.resources().contains(Resources.of(0.1, 513)), "too much mem");
    check(!o.resources().contains(new Resources(0.1, 32, 0, List.of(new Resources.Range(31002, 31002)))),
        "a port not offered");
    eq(null, Offer.fromJson(Json.parse("{\"hostname\":\"n1\"}")));
  }

  static void taskInfoJson() throws Exception {
    TaskInfo t = TaskInfo.builder("web.1").name("web").agentId("a-1").cpus(0.5).mem(128)
        .ports(List.of(new Resources.Range(31000, 31000))).shell("exec java -cp x Main").env("MODE", "prod")
        .image("127.0.0.1:5000/acme/web:2", true).httpHealthCheck(0, "/health").healthTimings(10, 2, 2, 3)
        .label("app", "/web").build();
    String want = "{\"task_id\":{\"value\":\"web.1\"},\"name\":\"web\",\"agent_id\":{\"value\":\"a-1\"},"
        + "\"resources\":[{\"name\":\"cpus\",\"type\":\"SCALAR\",\"scalar\":{\"value\":0.5}},"
        + "{\"name\":\"mem\",\"type\":\"SCALAR\",\"scalar\":{\"value\":128}},"
        + "{\"name\":\"ports\",\"type\":\"RANGES\",\"ranges\":{\"range\":[{\"begin\":31000,\"end\":31000}]}}],"
        + "\"command\":{\"value\":\"exec java -cp x Main\",\"shell\":true,"
        + "\"environment\":{\"variables\":[{\"name\":\"MODE\",\"value\":\"prod\"}]}},"
        + "\"container\":{\"type\":\"MESOS\",\"mesos\":{\"image\":{\"type\":\"DOCKER\",\"docker\":"
        + "{\"name\":\"127.0.0.1:5000/acme/web:2\"}}},\"insecure_registry\":true},"
        + "\"health_check\":{\"type\":\"HTTP\",\"http\":{\"port_index\":0,\"path\":\"/health\"},"
        + "\"grace_period_seconds\":10,\"interval_seconds\":2,\"timeout_seconds\":2,\"consecutive_failures\":3},"
        + "\"labels\":{\"app\":\"/web\"}}";
    eq(want, Json.write(t.toJson()));
    // argv form; no image, no health check, no labels.
    TaskInfo e = TaskInfo.builder("b.1").agentId("a-2").cpus(1).mem(64).exec(List.of("/bin/echo", "hi")).build();
    eq(false, Json.at(e.toJson(), "command", "shell"));
    eq("/bin/echo", Json.at(e.toJson(), "command", "value"));
    eq(List.of("/bin/echo", "hi"), Json.at(e.toJson(), "command", "arguments"));
    eq("b.1", Json.at(e.toJson(), "name"));
    check(!e.toJson().containsKey("container") && !e.toJson().containsKey("labels"), "optional parts left out");
    try {
      TaskInfo.builder("x").shell("true").build();
      throw new AssertionError("built a task without an agent");
    } catch (IllegalStateException expected) {
      // good
    }
  }

  static void taskStatusParse() throws Exception {
    TaskStatus s = TaskStatus.fromJson(Json.parse("{\"task_id\":{\"value\":\"t-1\"},\"agent_id\":{\"value\":\"a-1\"},"
        + "\"framework_id\":{\"value\":\"f-1\"},\"state\":\"TASK_FAILED\",\"message\":\"exit 3\",\"reason\":"
        + "\"REASON_COMMAND_EXECUTOR_FAILED\",\"healthy\":false,\"uuid\":\"u-1\",\"timestamp\":1795000000.5,"
        + "\"source\":\"SOURCE_AGENT\"}"));
    eq("t-1", s.taskId());
    eq("a-1", s.agentId());
    eq("f-1", s.frameworkId());
    eq(TaskState.TASK_FAILED, s.state());
    check(s.terminal(), "FAILED is terminal");
    eq("exit 3", s.message());
    eq("REASON_COMMAND_EXECUTOR_FAILED", s.reason());
    eq(Boolean.FALSE, s.healthy());
    check(s.needsAcknowledge(), "uuid: acknowledge");
    eq(1795000000.5, s.timestamp());
    TaskStatus r = TaskStatus.fromJson(Json.parse("{\"task_id\":{\"value\":\"t-1\"},\"state\":\"TASK_UNREACHABLE\"}"));
    check(!r.terminal() && !r.needsAcknowledge() && r.healthy() == null, "unreachable, no uuid, no health");
    eq(TaskState.UNKNOWN, TaskStatus.fromJson(Json.parse("{\"state\":\"TASK_NEW\"}")).state());
    for (TaskState st : List.of(TaskState.TASK_FINISHED, TaskState.TASK_KILLED, TaskState.TASK_ERROR,
        TaskState.TASK_DROPPED, TaskState.TASK_LOST)) {
      check(st.terminal(), st + " terminal");
    }
    for (TaskState st : List.of(TaskState.TASK_STAGING, TaskState.TASK_STARTING, TaskState.TASK_RUNNING,
        TaskState.TASK_KILLING)) {
      check(!st.terminal(), st + " not terminal");
    }
  }

  // ---------------------------------------------------------------- client

  /** Records every callback as a string ("subscribed f-1", "offers o-1,o-2", "update t-1 TASK_RUNNING", ...). */
  static class Recorder implements Scheduler {
    final BlockingQueue<String> events = new LinkedBlockingQueue<>();
    final BlockingQueue<Object> objects = new LinkedBlockingQueue<>();

    @Override
    public void subscribed(SchedulerClient c, String frameworkId) {
      events.add("subscribed " + frameworkId);
    }

    @Override
    public void offers(SchedulerClient c, List<Offer> offers) {
      List<String> ids = new ArrayList<>();
      for (Offer o : offers) ids.add(o.id());
      objects.addAll(offers);
      events.add("offers " + String.join(",", ids));
    }

    @Override
    public void rescind(SchedulerClient c, String offerId) {
      events.add("rescind " + offerId);
    }

    @Override
    public void update(SchedulerClient c, TaskStatus status) {
      objects.add(status);
      events.add("update " + status.taskId() + " " + status.stateName());
    }

    @Override
    public void error(SchedulerClient c, String message) {
      events.add("error " + message);
    }

    @Override
    public void disconnected(SchedulerClient c) {
      events.add("disconnected");
    }
  }

  static SchedulerClient client(List<String> masters, Recorder r) {
    return new SchedulerClient(masters, new FrameworkInfo("selftest", "java"), r)
        .callTimeout(Duration.ofSeconds(3))
        .backoff(Duration.ofMillis(50), Duration.ofMillis(300))
        .logger(m -> {});
  }

  static void clientRedirect() throws Exception {
    try (FakeMaster leader = new FakeMaster(); FakeMaster follower = new FakeMaster()) {
      follower.mode = FakeMaster.Mode.REDIRECT;
      follower.redirectTo = leader.url();
      Recorder r = new Recorder();
      try (SchedulerClient c = client(List.of(follower.url()), r)) {
        c.start();
        eq("subscribed f-1", poll(r.events, "SUBSCRIBED"));
        eq(leader.url(), c.leader());
        eq("f-1", c.frameworkId());
        check(c.connected(), "connected");
        Map<String, Object> info = poll(leader.subscribes, "SUBSCRIBE");
        eq("selftest", info.get("name"));
        eq(List.of("java"), info.get("roles"));
        check(!info.containsKey("id"), "a new framework has no id");
        eq(1, follower.requests.get());
      }
    }
  }

  static void clientMasterUrls() {
    eq("http://127.0.0.1:5050", SchedulerClient.normalize("127.0.0.1:5050"));
    eq("http://m1:5050", SchedulerClient.normalize(" http://m1:5050/ "));
    eq("https://[::1]:5050", SchedulerClient.normalize("https://[::1]:5050"));
    for (String bad : new String[] {"ftp://m1", "http://m1:5050/api/v1/scheduler", "http://", "http://a b"}) {
      try {
        SchedulerClient.normalize(bad);
        throw new AssertionError("accepted master URL " + bad);
      } catch (IllegalArgumentException expected) {
        // good
      }
    }
  }

  static void clientRotates() throws Exception {
    try (FakeMaster leader = new FakeMaster(); FakeMaster down = new FakeMaster()) {
      down.mode = FakeMaster.Mode.UNAVAILABLE;
      Recorder r = new Recorder();
      // 127.0.0.1:1 refuses connections.
      try (SchedulerClient c = client(List.of(down.url(), "http://127.0.0.1:1/", leader.url()), r)) {
        c.start();
        check(c.awaitSubscribed(Duration.ofSeconds(10)), "subscribed");
        eq(leader.url(), c.leader());
        check(down.requests.get() >= 1, "the 503 master was asked first");
      }
    }
  }

  static void clientEvents() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      Recorder r = new Recorder();
      try (SchedulerClient c = client(List.of(m.url()), r)) {
        c.start();
        eq("subscribed f-1", poll(r.events, "SUBSCRIBED"));
        m.send(Json.asObject(Json.parse("{\"type\":\"OFFERS\",\"offers\":{\"offers\":[" + OFFER_JSON
            + ",{\"id\":{\"value\":\"o-2\"},\"agent_id\":{\"value\":\"a-2\"},\"hostname\":\"n2\",\"resources\":[]}"
            + "]}}")));
        m.send(Json.object("type", "RESCIND", "rescind", Json.object("offer_id", Json.id("o-2"))));
        m.send(Json.object("type", "SOMETHING_NEW", "x", 1));
        m.send(Json.object("type", "UPDATE", "update", Json.object("status", Json.object("task_id", Json.id("t-1"),
            "agent_id", Json.id("a-1"), "state", "TASK_RUNNING", "uuid", "u-1", "healthy", true))));
        m.send(Json.object("type", "ERROR", "message", "bye"));
        eq("offers o-1,o-2", poll(r.events, "OFFERS"));
        eq("rescind o-2", poll(r.events, "RESCIND"));
        eq("update t-1 TASK_RUNNING", poll(r.events, "UPDATE"));
        eq("error bye", poll(r.events, "ERROR"));
        Offer o = (Offer) poll(r.objects, "offer");
        eq(512.0, o.resources().mem());
        eq(Map.of("zone", "a"), o.attributes());
        poll(r.objects, "offer 2");
        TaskStatus s = (TaskStatus) poll(r.objects, "status");
        eq("u-1", s.uuid());
        eq(Boolean.TRUE, s.healthy());
        // After an ERROR (another subscriber took over) the client ends instead of fighting back.
        c.join();
        check(!c.connected(), "not connected after ERROR");
        Thread.sleep(500);
        eq(null, r.events.poll());
        poll(m.subscribes, "SUBSCRIBE");
        eq(null, m.subscribes.poll());
      }
    }
  }

  static void clientHeartbeatsAreQuiet() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      m.heartbeatSeconds = 0.2;
      Recorder r = new Recorder();
      try (SchedulerClient c = client(List.of(m.url()), r)) {
        c.start();
        eq("subscribed f-1", poll(r.events, "SUBSCRIBED"));
        Thread.sleep(1000);  // heartbeats pass without a callback
        eq(null, r.events.poll());
        check(c.connected(), "connected");
      }
    }
  }

  static void clientCalls() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      Recorder r = new Recorder();
      try (SchedulerClient c = client(List.of(m.url()), r)) {
        c.start();
        check(c.awaitSubscribed(Duration.ofSeconds(10)), "subscribed");
        TaskInfo t = TaskInfo.builder("t-1").agentId("a-1").cpus(0.1).mem(32).shell("true").build();
        c.accept(List.of("o-1"), List.of(t), 7);
        Map<String, Object> call = poll(m.calls, "ACCEPT");
        eq("ACCEPT", call.get("type"));
        eq("f-1", Json.idAt(call, "framework_id"));
        check(String.valueOf(call.get("_stream_id")).startsWith("s-"), "stream id header sent");
        eq("o-1", Json.idAt(call, "accept", "offer_ids", 0));
        eq("LAUNCH", Json.at(call, "accept", "operations", 0, "type"));
        eq(Json.parse(Json.write(t.toJson())), Json.at(call, "accept", "operations", 0, "launch", "task_infos", 0));
        eq(7L, Json.at(call, "accept", "filters", "refuse_seconds"));

        c.decline(List.of("o-2", "o-3"), 30);
        call = poll(m.calls, "DECLINE");
        eq("o-3", Json.idAt(call, "decline", "offer_ids", 1));
        eq(30L, Json.at(call, "decline", "filters", "refuse_seconds"));

        c.kill("t-1", "a-1");
        call = poll(m.calls, "KILL");
        eq("t-1", Json.idAt(call, "kill", "task_id"));
        eq("a-1", Json.idAt(call, "kill", "agent_id"));

        TaskStatus withUuid = TaskStatus.fromJson(Json.parse(
            "{\"task_id\":{\"value\":\"t-1\"},\"agent_id\":{\"value\":\"a-1\"},\"state\":\"TASK_RUNNING\",\"uuid\":\"u-9\"}"));
        c.acknowledge(TaskStatus.fromJson(Json.parse("{\"task_id\":{\"value\":\"t-1\"},\"state\":\"TASK_RUNNING\"}")));
        c.acknowledge(withUuid);  // only this one goes out
        call = poll(m.calls, "ACKNOWLEDGE");
        eq("ACKNOWLEDGE", call.get("type"));
        eq("u-9", Json.at(call, "acknowledge", "uuid"));
        eq("a-1", Json.idAt(call, "acknowledge", "agent_id"));

        Map<String, String> rec = new LinkedHashMap<>();
        rec.put("t-1", "a-1");
        rec.put("t-2", null);
        c.reconcile(rec);
        call = poll(m.calls, "RECONCILE");
        eq("t-2", Json.idAt(call, "reconcile", "tasks", 1, "task_id"));
        eq(null, Json.at(call, "reconcile", "tasks", 1, "agent_id"));
        c.reconcile(Map.of());
        eq(List.of(), Json.at(poll(m.calls, "RECONCILE all"), "reconcile", "tasks"));

        c.revive();
        eq("REVIVE", poll(m.calls, "REVIVE").get("type"));
        c.suppress();
        eq("SUPPRESS", poll(m.calls, "SUPPRESS").get("type"));
      }
      // Not subscribed: status 0.
      try (SchedulerClient idle = client(List.of(m.url()), new Recorder())) {
        try {
          idle.revive();
          throw new AssertionError("a call without a subscription went out");
        } catch (SchedulerException e) {
          eq(0, e.status());
          check(e.unavailable(), "unavailable");
        }
      }
    }
  }

  static void clientCallErrors() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      m.script = (type, call) -> type.equals("ACCEPT")
          ? new FakeMaster.Reply(400, "{\"error\":\"cpus must be > 0\",\"field\":"
              + "\"accept.operations[0].launch.task_infos[0].resources[0].scalar.value\"}")
          : type.equals("KILL") ? new FakeMaster.Reply(503, "overloaded") : FakeMaster.Reply.ACCEPTED;
      try (SchedulerClient c = client(List.of(m.url()), new Recorder())) {
        c.start();
        check(c.awaitSubscribed(Duration.ofSeconds(10)), "subscribed");
        try {
          c.decline(List.of("o-1"));
          c.accept(List.of("o-1"), List.of());
          throw new AssertionError("ACCEPT succeeded");
        } catch (SchedulerException e) {
          eq(400, e.status());
          eq("accept.operations[0].launch.task_infos[0].resources[0].scalar.value", e.field());
          check(e.getMessage().contains("cpus must be > 0"), "message kept: " + e.getMessage());
          check(!e.unavailable(), "a 400 is final");
        }
        try {
          c.kill("t-1", null);
          throw new AssertionError("KILL succeeded");
        } catch (SchedulerException e) {
          eq(503, e.status());
          check(e.unavailable(), "a 503 is retryable");
          check(e.getMessage().contains("overloaded"), "raw body kept: " + e.getMessage());
        }
      }
    }
  }

  static void clientResubscribes() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      Recorder r = new Recorder();
      try (SchedulerClient c = client(List.of(m.url()), r)) {
        c.start();
        eq("subscribed f-1", poll(r.events, "SUBSCRIBED"));
        poll(m.subscribes, "first SUBSCRIBE");
        m.closeStream();
        eq("disconnected", poll(r.events, "disconnect"));
        eq("subscribed f-1", poll(r.events, "second SUBSCRIBED"));
        eq("f-1", Json.idAt(poll(m.subscribes, "second SUBSCRIBE"), "id"));
        c.revive();  // the new stream id is in use
        eq("REVIVE", poll(m.calls, "REVIVE").get("type"));
      }
    }
  }

  static void clientIdleTimeout() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      m.heartbeatSeconds = 0.3;
      Recorder r = new Recorder();
      try (SchedulerClient c = client(List.of(m.url()), r).idleTimeout(Duration.ofSeconds(1))) {
        c.start();
        eq("subscribed f-1", poll(r.events, "SUBSCRIBED"));
        Thread.sleep(1500);  // heartbeats keep it alive past the idle timeout
        eq(null, r.events.poll());
        long t0 = System.nanoTime();
        m.stallStream();
        eq("disconnected", poll(r.events, "disconnect after silence"));
        long ms = (System.nanoTime() - t0) / 1_000_000;
        check(ms >= 600 && ms < 4000, "noticed the silence after " + ms + " ms");
        eq("subscribed f-1", poll(r.events, "re-subscribed"));
      }
    }
  }

  static void clientSlowCallback() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      m.heartbeatSeconds = 0.3;
      Recorder r = new Recorder() {
        @Override
        public void offers(SchedulerClient c, List<Offer> offers) {
          super.offers(c, offers);
          try {
            Thread.sleep(2500);  // 2.5 idle timeouts
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
          }
        }
      };
      try (SchedulerClient c = client(List.of(m.url()), r).idleTimeout(Duration.ofSeconds(1))) {
        c.start();
        eq("subscribed f-1", poll(r.events, "SUBSCRIBED"));
        m.send(Json.asObject(Json.parse("{\"type\":\"OFFERS\",\"offers\":{\"offers\":[" + OFFER_JSON + "]}}")));
        eq("offers o-1", poll(r.events, "OFFERS"));
        eq(null, r.events.poll(3500, TimeUnit.MILLISECONDS));
        poll(m.subscribes, "SUBSCRIBE");
        eq(null, m.subscribes.poll());
        check(c.connected(), "still connected");
      }
    }
  }

  static void clientForgotten() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      Recorder r = new Recorder();
      try (SchedulerClient c = client(List.of(m.url()), r)) {
        c.start();
        eq("subscribed f-1", poll(r.events, "SUBSCRIBED"));
        m.frameworks.clear();
        m.closeStream();
        eq("disconnected", poll(r.events, "disconnect"));
        String err = poll(r.events, "error");
        check(err.startsWith("error framework f-1 is gone"), err);
        String again = poll(r.events, "new SUBSCRIBED");
        check(again.startsWith("subscribed f-") && !again.equals("subscribed f-1"), again);
      }
    }
  }

  static void clientTeardown() throws Exception {
    try (FakeMaster m = new FakeMaster()) {
      Recorder r = new Recorder();
      SchedulerClient c = client(List.of(m.url()), r);
      c.start();
      check(c.awaitSubscribed(Duration.ofSeconds(10)), "subscribed");
      poll(m.subscribes, "SUBSCRIBE");
      c.teardown();
      eq("TEARDOWN", poll(m.calls, "TEARDOWN").get("type"));
      c.join();  // the thread has ended
      Thread.sleep(500);
      eq(null, m.subscribes.poll());
      check(!c.connected(), "not connected");
      check(!r.events.contains("disconnected"), "a deliberate end is not reported as a disconnection");
    }
  }

  static void clientStopPrompt() throws Exception {
    SchedulerClient c = client(List.of("http://127.0.0.1:1"), new Recorder()).backoff(Duration.ofSeconds(3),
        Duration.ofSeconds(3));
    c.start();
    Thread.sleep(300);
    long t0 = System.nanoTime();
    c.stop();
    long ms = (System.nanoTime() - t0) / 1_000_000;
    check(ms < 1000, "stop took " + ms + " ms");
  }

  // ---------------------------------------------------------------- examples

  /** A fake master that offers a too-small and a fitting offer and plays the task through `states`. */
  static FakeMaster runOnceMaster(String... states) throws IOException {
    FakeMaster m = new FakeMaster();
    Map<String, Object> offers;
    try {
      offers = Json.asObject(Json.parse("{\"type\":\"OFFERS\",\"offers\":{\"offers\":[{\"id\":{\"value\":\"o-small\"},\"agent_id\":{\"value\":"
        + "\"a-0\"},\"hostname\":\"n0\",\"resources\":[{\"name\":\"cpus\",\"type\":\"SCALAR\",\"scalar\":"
        + "{\"value\":0.05}},{\"name\":\"mem\",\"type\":\"SCALAR\",\"scalar\":{\"value\":1024}}]},"
        + OFFER_JSON + "]}}"));
    } catch (Json.ParseException e) {
      throw new AssertionError(e);
    }
    m.onSubscribed = fid -> m.send(offers);
    m.script = (type, call) -> {
      if (type.equals("ACCEPT")) {
        String tid = Json.idAt(call, "accept", "operations", 0, "launch", "task_infos", 0, "task_id");
        int i = 0;
        for (String st : states) {
          m.send(Json.object("type", "UPDATE", "update", Json.object("status", Json.object("task_id", Json.id(tid),
              "agent_id", Json.id("a-1"), "state", st, "uuid", "u-" + (++i),
              "message", st.equals("TASK_FAILED") ? "exited with status 3\n(stderr tail)" : ""))));
          if (i == 1) {
            // A re-sent update (same uuid) is acknowledged again but not printed twice.
            m.send(Json.object("type", "UPDATE", "update", Json.object("status", Json.object("task_id",
                Json.id(tid), "agent_id", Json.id("a-1"), "state", st, "uuid", "u-1"))));
          }
        }
      }
      return FakeMaster.Reply.ACCEPTED;
    };
    return m;
  }

  static String[] runOnce(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int code = RunOnce.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8));
    return new String[] {Integer.toString(code), out.toString(StandardCharsets.UTF_8),
        err.toString(StandardCharsets.UTF_8)};
  }

  static List<String> callTypes(FakeMaster m) {
    List<String> types = new ArrayList<>();
    for (Map<String, Object> c : m.calls) types.add((String) c.get("type"));
    return types;
  }

  static void runOnceFinished() throws Exception {
    try (FakeMaster m = runOnceMaster("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED")) {
      String[] r = runOnce("--master", m.url(), "--cmd", "echo hello from java; sleep 1", "--cpus", "0.1",
          "--mem", "32", "--task-id", "t-1", "--timeout", "20");
      eq("0", r[0]);
      String out = r[1];
      check(out.contains("RunOnce: subscribed as framework f-1"), out);
      check(out.contains("RunOnce: launching task t-1 on n1 (agent a-1)"), out);
      check(out.contains("RunOnce: task t-1 TASK_STARTING\nRunOnce: task t-1 TASK_RUNNING\n"
          + "RunOnce: task t-1 TASK_FINISHED\n"), out);
      check(out.indexOf("TASK_STARTING") == out.lastIndexOf("TASK_STARTING"), "a re-sent update printed once");
      check(out.contains("RunOnce: framework f-1 torn down"), out);
      List<String> types = callTypes(m);
      check(types.indexOf("ACCEPT") >= 0 && types.indexOf("ACCEPT") < types.indexOf("TEARDOWN"), types.toString());
      check(types.contains("SUPPRESS") && types.contains("DECLINE"), types.toString());
      eq("TEARDOWN", types.get(types.size() - 1));
      List<String> acked = new ArrayList<>();
      for (Map<String, Object> c : m.calls) {
        if (c.get("type").equals("ACKNOWLEDGE")) acked.add(Json.string(c, "acknowledge", "uuid"));
        if (c.get("type").equals("DECLINE")) eq("o-small", Json.idAt(c, "decline", "offer_ids", 0));
        if (c.get("type").equals("ACCEPT")) {
          eq("o-1", Json.idAt(c, "accept", "offer_ids", 0));
          Object ti = Json.at(c, "accept", "operations", 0, "launch", "task_infos", 0);
          eq("echo hello from java; sleep 1", Json.at(ti, "command", "value"));
          eq(true, Json.at(ti, "command", "shell"));
          eq("a-1", Json.idAt(ti, "agent_id"));
          Resources res = Resources.fromJson(Json.at(ti, "resources"));
          eq(0.1, res.cpus());
          eq(32.0, res.mem());
        }
      }
      eq(List.of("u-1", "u-1", "u-2", "u-3"), acked);
    }
  }

  static void runOnceFailed() throws Exception {
    try (FakeMaster m = runOnceMaster("TASK_RUNNING", "TASK_FAILED")) {
      String[] r = runOnce("--master", m.url(), "--cmd", "exit 3", "--task-id", "t-2", "--timeout", "20",
          "--ports", "3");
      eq("1", r[0]);
      check(r[1].contains("RunOnce: task t-2 TASK_FAILED: exited with status 3 (stderr tail)\n"), r[1]);
      eq("TEARDOWN", callTypes(m).get(callTypes(m).size() - 1));
      for (Map<String, Object> c : m.calls) {
        if (!c.get("type").equals("ACCEPT")) continue;
        Resources res = Resources.fromJson(Json.at(c, "accept", "operations", 0, "launch", "task_infos", 0,
            "resources"));
        eq(List.of(new Resources.Range(31000, 31000), new Resources.Range(31001, 31001),
            new Resources.Range(31005, 31005)), res.ports());
      }
      check(r[1].contains("cpus:0.1;mem:32;ports:[31000, 31001, 31005]"), r[1]);
    }
  }

  static void runOnceTimeoutAndUsage() throws Exception {
    try (FakeMaster m = new FakeMaster()) {  // no offers ever
      long t0 = System.nanoTime();
      String[] r = runOnce("--master", m.url(), "--cmd", "true", "--task-id", "t-3", "--timeout", "1");
      eq("1", r[0]);
      check(r[1].contains("RunOnce: timeout after 1 s waiting for task t-3 (last state: none)"), r[1]);
      check((System.nanoTime() - t0) / 1_000_000 < 5000, "returned soon after the timeout");
      eq("TEARDOWN", callTypes(m).get(callTypes(m).size() - 1));
    }
    eq("2", runOnce("--master", "http://127.0.0.1:1")[0]);
    eq("2", runOnce("--cmd", "true")[0]);
    eq("2", runOnce("--master", "http://127.0.0.1:1", "--cmd", "true", "--cpus", "-1")[0]);
    eq("2", runOnce("--bogus", "1")[0]);
    eq("2", runOnce("--master", "m", "--cmd", "true", "--ports", "x")[0]);
    eq("2", runOnce("--master", "ftp://x", "--cmd", "true")[0]);
    eq("2", runOnce("--master", "http://127.0.0.1:5050/api", "--cmd", "true")[0]);
    eq("2", runOnce("--master", "m", "--cmd", "true", "--role", "")[0]);
  }

  static void helloService() throws Exception {
    ByteArrayOutputStream log = new ByteArrayOutputStream();
    PrintStream ps = new PrintStream(log, true, StandardCharsets.UTF_8);
    HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    HelloService.Server ok = HelloService.start("127.0.0.1", 0, "web.1", "7", false, ps);
    HelloService.Server sick = HelloService.start("127.0.0.1", 0, null, "8", true, ps);
    try {
      String base = "http://127.0.0.1:" + ok.port();
      HttpResponse<String> r = get(http, base + "/", "GET");
      eq(200, r.statusCode());
      eq("hello from web.1 version 7\n", r.body());
      r = get(http, base + "/health", "GET");
      eq(200, r.statusCode());
      eq("ok", r.body());
      eq(404, get(http, base + "/nope", "GET").statusCode());
      eq(405, get(http, base + "/", "POST").statusCode());
      r = get(http, base + "/health", "HEAD");
      eq(200, r.statusCode());
      eq("", r.body());
      String sickBase = "http://127.0.0.1:" + sick.port();
      eq(503, get(http, sickBase + "/health", "GET").statusCode());
      eq("hello from 127.0.0.1:" + sick.port() + " version 8\n", get(http, sickBase + "/", "GET").body());
    } finally {
      ok.stop(0);
      sick.stop(0);
    }
    String text = log.toString(StandardCharsets.UTF_8);
    check(text.contains("HelloService: listening on 127.0.0.1:" + ok.port() + " as web.1 version 7\n"), text);
    check(text.contains("HelloService: GET / 200 127.0.0.1:"), text);
    check(text.contains("HelloService: GET /health 503 "), text);
    check(text.contains("HelloService: POST / 405 "), text);
  }

  static HttpResponse<String> get(HttpClient http, String url, String method) throws Exception {
    HttpRequest req = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(5))
        .method(method, HttpRequest.BodyPublishers.noBody()).build();
    return http.send(req, HttpResponse.BodyHandlers.ofString());
  }
}
