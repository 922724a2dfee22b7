/* The sensor app from the field: every second it prints a reading to stdout and writes it to /tmp/reading;
 * once it has started it creates /tmp/ready, which the image's HEALTHCHECK tests for.
 *
 * One source, three releases (examples/sensor/build.sh passes the macros):
 *   -DSENSOR_VERSION=1                  temperature
 *   -DSENSOR_VERSION=2                  temperature and humidity
 *   -DSENSOR_VERSION=3 -DSENSOR_BROKEN  starts and reports, but never creates /tmp/ready: its health check fails
 *
 * It runs as PID 1 in its container, where SIGTERM is ignored unless handled: the handler makes `runc kill`
 * (the device agent stopping it for an update) end it at once. Built statically, so the image needs no libc. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef SENSOR_VERSION
#define SENSOR_VERSION 1
#endif
#if SENSOR_VERSION >= 2
#define SENSOR_HUMIDITY 1
#endif

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* Writes the line to PATH atomically (temp file + rename), so a reader never sees half a reading. */
static int write_file(const char* path, const char* text) {
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE* f = fopen(tmp, "w");
  if (!f) return -1;
  int bad = fputs(text, f) < 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1) { /* `sensor --version`: the image build runs it (under QEMU) as a smoke test */
    if (strcmp(argv[1], "--version") != 0) {
      fprintf(stderr, "usage: sensor [--version]\n");
      return 2;
    }
    printf("sensor v%d\n", SENSOR_VERSION);
    return 0;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  setvbuf(stdout, NULL, _IOLBF, 0); /* stdout is a log file on the device: one line at a time */

  printf("sensor v%d starting\n", SENSOR_VERSION);
#ifndef SENSOR_BROKEN
  if (write_file("/tmp/ready", "ready\n") != 0) {
    perror("sensor: /tmp/ready");
    return 1;
  }
#endif

  for (unsigned long n = 0; !stop; ++n) {
    char line[128];
    /* A made-up but plausible signal: slow drift, repeating every minute. */
    int t = 215 + (int)(n % 60) / 6;        /* tenths of a degree: 21.5 .. 22.4 */
    int h = 400 + (int)((n * 7) % 50);      /* tenths of a percent: 40.0 .. 44.9 */
    (void)h;
#ifdef SENSOR_HUMIDITY
    snprintf(line, sizeof line, "sensor v%d reading %lu: temperature=%d.%dC humidity=%d.%d%%\n", SENSOR_VERSION, n,
             t / 10, t % 10, h / 10, h % 10);
#else
    snprintf(line, sizeof line, "sensor v%d reading %lu: temperature=%d.%dC\n", SENSOR_VERSION, n, t / 10, t % 10);
#endif
    fputs(line, stdout);
    if (write_file("/tmp/reading", line) != 0) perror("sensor: /tmp/reading");
    struct timespec one = {1, 0};
    while (!stop && nanosleep(&one, &one) != 0) {
    }
  }
  printf("sensor v%d stopping\n", SENSOR_VERSION);
  return 0;
}
