package io.tugboat.examples;

import io.tugboat.scheduler.FrameworkInfo;
import io.tugboat.scheduler.Offer;
import io.tugboat.scheduler.Resources;
import io.tugboat.scheduler.Scheduler;
import io.tugboat.scheduler.SchedulerClient;
import io.tugboat.scheduler.SchedulerException;
import io.tugboat.scheduler.TaskInfo;
import io.tugboat.scheduler.TaskState;
import io.tugboat.scheduler.TaskStatus;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A framework that runs one command on the cluster and exits with its outcome:
 *
 * <pre>
 * java -cp tugboat-java.jar io.tugboat.examples.RunOnce --master http://127.0.0.1:5050 \
 *     --cmd "echo hello from java; sleep 1" [--cpus 0.1] [--mem 32] [--ports N] [--timeout 60] [--task-id ID]
 * </pre>
 *
 * It subscribes, launches the task on the first offer that fits (with --ports, that many of the offer's ports,
 * seen by the task as $PORT0..), acknowledges every update and prints one line per
 * state ({@code RunOnce: task ID TASK_RUNNING}) on stdout, then tears the framework down. Exit status: 0 when the
 * task ends TASK_FINISHED, 1 for any other end (FAILED, KILLED, ERROR, DROPPED, LOST) or after --timeout seconds,
 * 2 for a usage error. Diagnostics (reconnections, refused calls) go to stderr.
 */
public final class RunOnce {
  private RunOnce() {}

  public static void main(String[] args) {
    System.exit(run(args, System.out, System.err));
  }

  private static final String USAGE = "usage: RunOnce --master URL[,URL...] --cmd COMMAND [--cpus 0.1] [--mem 32] "
      + "[--ports N] [--timeout 60] [--task-id ID] [--name NAME] [--role ROLE]";

  /** The whole program, for tests: returns the exit status instead of exiting. */
  public static int run(String[] args, PrintStream out, PrintStream err) {
    List<String> masters = new ArrayList<>();
    String cmd = null;
    double cpus = 0.1;
    double mem = 32;
    double timeout = 60;
    int ports = 0;
    String taskId = null;
    String name = "runonce-java";
    String role = "java";
    try {
      for (int i = 0; i < args.length; i++) {
        String a = args[i];
        if (a.equals("-h") || a.equals("--help")) {
          out.println(USAGE);
          return 0;
        }
        if (i + 1 >= args.length) throw new IllegalArgumentException(a + " needs a value");
        String v = args[++i];
        switch (a) {
          case "--master":
            for (String m : v.split(",")) if (!m.isBlank()) masters.add(m.trim());
            break;
          case "--cmd": cmd = v; break;
          case "--cpus": cpus = positive(a, v); break;
          case "--mem": mem = positive(a, v); break;
          case "--timeout": timeout = positive(a, v); break;
          case "--ports": ports = count(a, v); break;
          case "--task-id": taskId = v; break;
          case "--name": name = v; break;
          case "--role": role = v; break;
          default: throw new IllegalArgumentException("unknown option " + a);
        }
      }
      if (masters.isEmpty()) throw new IllegalArgumentException("--master is required");
      if (cmd == null || cmd.isEmpty()) throw new IllegalArgumentException("--cmd is required");
    } catch (IllegalArgumentException e) {
      err.println("RunOnce: " + e.getMessage());
      err.println(USAGE);
      return 2;
    }
    if (taskId == null) taskId = String.format("runonce-%08x", ThreadLocalRandom.current().nextInt());

    Runner runner = new Runner(taskId, cmd, Resources.of(cpus, mem), ports, out, err);
    SchedulerClient client;
    try {
      client = new SchedulerClient(masters, new FrameworkInfo(name, role), runner)
          .logger(m -> err.println("SchedulerClient: " + m));
    } catch (IllegalArgumentException e) {
      err.println("RunOnce: " + e.getMessage());
      err.println(USAGE);
      return 2;
    }
    client.start();
    int status;
    try {
      TaskStatus end = runner.done.get((long) (timeout * 1000), TimeUnit.MILLISECONDS);
      status = end != null && end.state() == TaskState.TASK_FINISHED ? 0 : 1;
    } catch (TimeoutException e) {
      TaskStatus last = runner.last;
      out.println("RunOnce: timeout after " + fmt(timeout) + " s waiting for task " + taskId + " (last state: "
          + (last == null ? "none" : last.stateName()) + ")");
      status = 1;
    } catch (InterruptedException | ExecutionException e) {
      err.println("RunOnce: " + e);
      status = 1;
    }
    try {
      if (client.connected()) {
        client.teardown();
        out.println("RunOnce: framework " + client.frameworkId() + " torn down");
      } else {
        err.println("RunOnce: not subscribed at the end; no teardown (the master drops the framework after its "
            + "failover timeout)");
      }
    } catch (SchedulerException e) {
      err.println("RunOnce: teardown failed: " + e.getMessage());
    } finally {
      client.stop();
    }
    return status;
  }

  private static double positive(String flag, String v) {
    try {
      double d = Double.parseDouble(v);
      if (d > 0 && Double.isFinite(d)) return d;
    } catch (NumberFormatException ignored) {
      // fall through to the usage error
    }
    throw new IllegalArgumentException(flag + " must be a positive number, not '" + v + "'");
  }

  private static int count(String flag, String v) {
    try {
      int n = Integer.parseInt(v);
      if (n >= 0 && n <= 100) return n;
    } catch (NumberFormatException ignored) {
      // fall through to the usage error
    }
    throw new IllegalArgumentException(flag + " must be a count from 0 to 100, not '" + v + "'");
  }

  private static String fmt(double v) {
    return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
  }

  private static String oneLine(String s) {
    return s.replaceAll("[\\r\\n]+", " ").trim();
  }

  /** The framework's callbacks: all on the client's thread, so the plain fields need no locking among them. */
  private static final class Runner implements Scheduler {
    final String taskId;
    final String cmd;
    final Resources want;
    final int ports;
    final PrintStream out;
    final PrintStream err;
    final CompletableFuture<TaskStatus> done = new CompletableFuture<>();
    final Set<String> seenUuids = new HashSet<>();
    volatile TaskStatus last;
    boolean launched;
    String agentId;
    boolean subscribedBefore;
    boolean toldNoFit;
    boolean suppressed;

    Runner(String taskId, String cmd, Resources want, int ports, PrintStream out, PrintStream err) {
      this.taskId = taskId;
      this.cmd = cmd;
      this.want = want;
      this.ports = ports;
      this.out = out;
      this.err = err;
    }

    @Override
    public void subscribed(SchedulerClient c, String frameworkId) {
      out.println("RunOnce: " + (subscribedBefore ? "re-subscribed" : "subscribed") + " as framework " + frameworkId
          + " at " + c.leader());
      subscribedBefore = true;
      if (launched && !done.isDone()) {
        // Updates may have been missed while away (unacknowledged ones are re-sent; this covers a master failover).
        try {
          c.reconcile(Map.of(taskId, agentId));
        } catch (SchedulerException e) {
          err.println("RunOnce: reconcile failed: " + e.getMessage());
        }
      }
    }

    @Override
    public void offers(SchedulerClient c, List<Offer> offers) {
      List<String> rest = new ArrayList<>();
      for (Offer o : offers) {
        if (launched || done.isDone() || !o.resources().contains(want) || o.resources().portCount() < ports) {
          rest.add(o.id());
          continue;
        }
        Resources use = new Resources(want.cpus(), want.mem(), 0, o.resources().firstPorts(ports));
        TaskInfo task = TaskInfo.builder(taskId).name("runonce").agentId(o.agentId()).resources(use).shell(cmd)
            .label("framework", "runonce-java").build();
        try {
          c.accept(List.of(o.id()), List.of(task));
          launched = true;
          agentId = o.agentId();
          out.println("RunOnce: launching task " + taskId + " on " + o.hostname() + " (agent " + o.agentId() + ") "
              + use);
        } catch (SchedulerException e) {
          err.println("RunOnce: accept failed: " + e.getMessage());
          if (e.status() == 400) {  // our TaskInfo is wrong: retrying cannot help
            out.println("RunOnce: task " + taskId + " refused by the master: " + oneLine(e.getMessage()));
            done.complete(null);
          }
        }
      }
      if (!launched && !toldNoFit && !rest.isEmpty()) {
        toldNoFit = true;
        err.println("RunOnce: no offer fits " + want + (ports > 0 ? " and " + ports + " ports" : "") + " yet (offered: "
            + offers + ")");
      }
      if (launched && !suppressed) {
        suppressed = true;
        try {
          c.suppress();  // one task is all we want: no more offers
        } catch (SchedulerException e) {
          err.println("RunOnce: suppress failed: " + e.getMessage());
        }
      }
      if (!rest.isEmpty()) {
        try {
          c.decline(rest, launched ? 60 : 2);
        } catch (SchedulerException e) {
          err.println("RunOnce: decline failed: " + e.getMessage());
        }
      }
    }

    @Override
    public void update(SchedulerClient c, TaskStatus s) {
      boolean repeat = s.needsAcknowledge() && !seenUuids.add(s.uuid());
      boolean ours = taskId.equals(s.taskId());
      // After the end, a reconciliation may still answer TASK_LOST "unknown task" (the master forgets finished
      // tasks): the first terminal state is the outcome.
      if (ours && !repeat && !done.isDone()) {
        out.println("RunOnce: task " + taskId + " " + s.stateName()
            + (s.message().isEmpty() ? "" : ": " + oneLine(s.message())));
        last = s;
      }
      try {
        c.acknowledge(s);  // before finishing: the teardown must not race the last acknowledgement
      } catch (SchedulerException e) {
        err.println("RunOnce: acknowledge failed: " + e.getMessage());
      }
      if (ours && s.terminal()) done.complete(s);
    }

    @Override
    public void rescind(SchedulerClient c, String offerId) {}

    @Override
    public void error(SchedulerClient c, String message) {
      // Either another subscriber took the framework over or the framework is gone (its task with it).
      out.println("RunOnce: master error: " + oneLine(message));
      done.complete(null);
    }

    @Override
    public void disconnected(SchedulerClient c) {
      err.println("RunOnce: disconnected from the master; re-subscribing");
    }
  }
}
