package io.tugboat.examples;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A tiny HTTP service for the services framework to host behind HAProxy:
 *
 * <pre>
 * PORT0=8080 VERSION=2 java -cp tugboat-java.jar io.tugboat.examples.HelloService [--port N] [--host 127.0.0.1]
 *     [--instance NAME] [--version V]
 * </pre>
 *
 * {@code GET /} answers {@code hello from <instance> version <version>\n}; {@code GET /health} answers 200 "ok", or
 * 503 "unhealthy" when started with UNHEALTHY=1 (for tests of health checks). The port is --port, else $PORT0, else
 * $PORT; the instance is --instance, else $TASK_ID, else host:port; the version is --version, else $VERSION. Every
 * request is logged on stdout as one line ({@code HelloService: GET /health 200 127.0.0.1:40312}). SIGTERM stops it
 * gracefully: no new connections, requests in flight get up to 2 s to finish.
 */
public final class HelloService {
  private HelloService() {}

  private static final String USAGE =
      "usage: HelloService [--port N] [--host 127.0.0.1] [--instance NAME] [--version V]  (port default: $PORT0)";

  public static void main(String[] args) {
    Map<String, String> env = System.getenv();
    String host = "127.0.0.1";
    String port = env.getOrDefault("PORT0", env.get("PORT"));
    String instance = env.get("TASK_ID");
    String version = env.getOrDefault("VERSION", "unknown");
    int p;
    try {
      for (int i = 0; i < args.length; i++) {
        String a = args[i];
        if (a.equals("-h") || a.equals("--help")) {
          System.out.println(USAGE);
          return;
        }
        if (i + 1 >= args.length) throw new IllegalArgumentException(a + " needs a value");
        String v = args[++i];
        switch (a) {
          case "--port": port = v; break;
          case "--host": host = v; break;
          case "--instance": instance = v; break;
          case "--version": version = v; break;
          default: throw new IllegalArgumentException("unknown option " + a);
        }
      }
      if (port == null || port.isEmpty()) throw new IllegalArgumentException("no port: give --port or set PORT0");
      try {
        p = Integer.parseInt(port);
      } catch (NumberFormatException e) {
        p = -1;
      }
      if (p < 0 || p > 65535) throw new IllegalArgumentException("bad port '" + port + "'");
    } catch (IllegalArgumentException e) {
      System.err.println("HelloService: " + e.getMessage());
      System.err.println(USAGE);
      System.exit(2);
      return;
    }
    boolean unhealthy = "1".equals(env.get("UNHEALTHY"));
    HelloService.Server server;
    try {
      server = start(host, p, instance, version, unhealthy, System.out);
    } catch (IOException e) {
      System.err.println("HelloService: cannot listen on " + host + ":" + p + ": " + e.getMessage());
      System.exit(1);
      return;
    }
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      System.out.println("HelloService: stopping");
      server.stop(2);
      System.out.println("HelloService: stopped");
    }, "hello-service-shutdown"));
  }

  /** A running service; {@link #port()} is the bound port (useful with port 0). */
  public static final class Server {
    private final HttpServer http;
    private final ExecutorService pool;
    private final AtomicInteger inFlight;

    private Server(HttpServer http, ExecutorService pool, AtomicInteger inFlight) {
      this.http = http;
      this.pool = pool;
      this.inFlight = inFlight;
    }

    public int port() {
      return http.getAddress().getPort();
    }

    /** Waits up to {@code graceSeconds} for requests in flight, then closes the listener and connections. */
    public void stop(int graceSeconds) {
      // HttpServer.stop(delay) of JDK 17 always sleeps the whole delay (JDK-8304065): wait for the
      // requests in flight ourselves and then stop at once.
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(graceSeconds);
      try {
        while (inFlight.get() > 0 && System.nanoTime() < deadline) Thread.sleep(20);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      http.stop(0);
      pool.shutdownNow();
    }
  }

  /** Starts the service (for tests and main); {@code instance} null means host:port. */
  public static Server start(String host, int port, String instance, String version, boolean unhealthy,
                             PrintStream log) throws IOException {
    HttpServer http = HttpServer.create(new InetSocketAddress(InetAddress.getByName(host), port), 64);
    ExecutorService pool = Executors.newFixedThreadPool(4, r -> {
      Thread t = new Thread(r, "hello-service");
      t.setDaemon(true);
      return t;
    });
    int bound = http.getAddress().getPort();
    String name = instance == null || instance.isEmpty() ? host + ":" + bound : instance;
    String hello = "hello from " + name + " version " + version + "\n";
    AtomicInteger inFlight = new AtomicInteger();
    http.createContext("/", ex -> {
      inFlight.incrementAndGet();
      try {
        handle(ex, hello, unhealthy, log);
      } finally {
        inFlight.decrementAndGet();
      }
    });
    http.setExecutor(pool);
    http.start();
    log.println("HelloService: listening on " + host + ":" + bound + " as " + name + " version " + version
        + (unhealthy ? " (reporting unhealthy)" : ""));
    return new Server(http, pool, inFlight);
  }

  private static void handle(HttpExchange ex, String hello, boolean unhealthy, PrintStream log) throws IOException {
    try (ex) {
      String method = ex.getRequestMethod();
      String path = ex.getRequestURI().getPath();
      int code;
      String body;
      if (!method.equals("GET") && !method.equals("HEAD")) {
        code = 405;
        body = "method not allowed\n";
        ex.getResponseHeaders().set("Allow", "GET, HEAD");
      } else if (path.equals("/")) {
        code = 200;
        body = hello;
      } else if (path.equals("/health")) {
        code = unhealthy ? 503 : 200;
        body = unhealthy ? "unhealthy" : "ok";
      } else {
        code = 404;
        body = "not found\n";
      }
      byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
      ex.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
      if (method.equals("HEAD")) {
        ex.getResponseHeaders().set("Content-Length", Integer.toString(bytes.length));
        ex.sendResponseHeaders(code, -1);
      } else {
        ex.sendResponseHeaders(code, bytes.length);
        try (OutputStream os = ex.getResponseBody()) {
          os.write(bytes);
        }
      }
      InetSocketAddress peer = ex.getRemoteAddress();
      log.println("HelloService: " + method + " " + path + " " + code + " "
          + (peer == null ? "-" : peer.getAddress().getHostAddress() + ":" + peer.getPort()));
    }
  }
}
