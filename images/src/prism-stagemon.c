// SPDX-License-Identifier: GPL-2.0-only
/*
 * prism-stagemon: how long the softnet backlog got while a load ran, and
 * whether it stood through the window a measurement counts.
 *
 *   prism-stagemon [-i INTERVAL_US] [-t THRESHOLD] [-b BIN_MS]
 *
 * Reads /proc/net/softnet_stat every INTERVAL_US microseconds (default
 * 5000) until SIGTERM or SIGINT. SIGUSR1 opens the window (the part of the
 * load that is measured: after it settled, while probes are sent) and a
 * second SIGUSR1 closes it. At exit it prints one line per CPU over the
 * whole run:
 *
 *   cpu N samples S peak P mean M nonempty E
 *
 * then, if a window was opened, one line per CPU over the window:
 *
 *   window cpu N samples S peak P mean M above A dropped D squeeze Q processed X usec U
 *
 * and one line per CPU and BIN_MS-long bin of the window (default 250):
 *
 *   bin I cpu N samples S mean M above A dropped D
 *
 * P is the longest backlog seen (softnet_stat's twelfth column,
 * input_pkt_queue plus process_queue), M the mean, A how many samples
 * found it at THRESHOLD packets or more (default 100), D, Q and X what
 * softnet_stat's dropped, time_squeeze and processed counters moved by. A
 * sampled peak says a burst came; A over S says a queue stood, which is
 * what a regime check needs. A shell loop doing the same under TCG costs a
 * fork and exec per sample and perturbed the very queue it measured; this
 * costs one read(2) per sample.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CPUS 64
#define MAX_BINS 1024

static volatile sig_atomic_t stop, window_signals;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_window(int sig)
{
	(void)sig;
	window_signals++;
}

struct backlog {
	unsigned long long samples, sum, nonempty, above;
	unsigned int peak;
	int seen;
};

struct counters {
	unsigned int processed, dropped, squeeze, backlog;
	int seen;
};

struct bin {
	unsigned long long samples, sum, above;
	unsigned int dropped;
};

/* One reading of softnet_stat (one line per CPU, hex columns) into now[]. */
static void parse(char *text, struct counters *now)
{
	char *line, *save = NULL;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned int col[13];
		int n = sscanf(line, "%x %x %x %x %x %x %x %x %x %x %x %x %x",
			       &col[0], &col[1], &col[2], &col[3], &col[4], &col[5], &col[6],
			       &col[7], &col[8], &col[9], &col[10], &col[11], &col[12]);

		if (n < 13 || col[12] >= MAX_CPUS)
			continue;
		now[col[12]] = (struct counters){ .processed = col[0], .dropped = col[1],
						  .squeeze = col[2], .backlog = col[11], .seen = 1 };
	}
}

static void account(struct backlog *b, unsigned int len, unsigned int threshold)
{
	b->seen = 1;
	b->samples++;
	b->sum += len;
	if (len)
		b->nonempty++;
	if (len >= threshold)
		b->above++;
	if (len > b->peak)
		b->peak = len;
}

static long long usec_between(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000LL + (b->tv_nsec - a->tv_nsec) / 1000;
}

int main(int argc, char **argv)
{
	static struct backlog run[MAX_CPUS], win[MAX_CPUS];
	static struct counters now[MAX_CPUS], opened[MAX_CPUS], closed[MAX_CPUS], last[MAX_CPUS];
	static struct bin bins[MAX_BINS][MAX_CPUS];
	struct timespec next, t_open = { 0 }, t_close = { 0 }, t;
	long interval_us = 5000, bin_ms = 250;
	unsigned int threshold = 100;
	int nbins = 0, state = 0; /* 0: before the window, 1: in it, 2: after it */
	char buf[16384];
	int fd, opt, i, k;

	while ((opt = getopt(argc, argv, "i:t:b:")) != -1) {
		switch (opt) {
		case 'i':
			interval_us = atol(optarg);
			break;
		case 't':
			threshold = (unsigned int)atol(optarg);
			break;
		case 'b':
			bin_ms = atol(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-i INTERVAL_US] [-t THRESHOLD] [-b BIN_MS]\n", argv[0]);
			return 2;
		}
	}
	if (interval_us < 100 || interval_us > 10000000 || threshold < 1 || bin_ms < 10 || bin_ms > 60000) {
		fprintf(stderr, "%s: interval must be 100-10000000 us, threshold >= 1, bin 10-60000 ms\n",
			argv[0]);
		return 2;
	}
	fd = open("/proc/net/softnet_stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror("/proc/net/softnet_stat");
		return 1;
	}
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	signal(SIGUSR1, on_window);
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!stop) {
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

		clock_gettime(CLOCK_MONOTONIC, &t);
		if (n > 0) {
			buf[n] = '\0';
			parse(buf, now);
			if (state == 0 && window_signals >= 1) {
				memcpy(opened, now, sizeof(now));
				memcpy(last, now, sizeof(now));
				t_open = t;
				state = 1;
			}
			if (state == 1 && window_signals >= 2) {
				memcpy(closed, now, sizeof(now));
				t_close = t;
				state = 2;
			}
			for (i = 0; i < MAX_CPUS; i++) {
				if (!now[i].seen)
					continue;
				account(&run[i], now[i].backlog, threshold);
				if (state != 1)
					continue;
				account(&win[i], now[i].backlog, threshold);
				k = (int)(usec_between(&t_open, &t) / (bin_ms * 1000));
				if (k >= MAX_BINS)
					continue;
				if (k >= nbins)
					nbins = k + 1;
				bins[k][i].samples++;
				bins[k][i].sum += now[i].backlog;
				if (now[i].backlog >= threshold)
					bins[k][i].above++;
				bins[k][i].dropped += now[i].dropped - last[i].dropped;
				last[i] = now[i];
			}
		}
		next.tv_nsec += interval_us * 1000;
		while (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	if (state == 1) {	/* stopped inside the window: it ends here */
		memcpy(closed, now, sizeof(now));
		clock_gettime(CLOCK_MONOTONIC, &t_close);
	}
	for (i = 0; i < MAX_CPUS; i++)
		if (run[i].seen)
			printf("cpu %d samples %llu peak %u mean %.2f nonempty %llu\n", i,
			       run[i].samples, run[i].peak,
			       (double)run[i].sum / (double)run[i].samples, run[i].nonempty);
	for (i = 0; i < MAX_CPUS; i++)
		if (win[i].seen)
			printf("window cpu %d samples %llu peak %u mean %.2f above %llu dropped %u squeeze %u processed %u usec %lld\n",
			       i, win[i].samples, win[i].peak,
			       (double)win[i].sum / (double)win[i].samples, win[i].above,
			       closed[i].dropped - opened[i].dropped, closed[i].squeeze - opened[i].squeeze,
			       closed[i].processed - opened[i].processed, usec_between(&t_open, &t_close));
	for (k = 0; k < nbins; k++)
		for (i = 0; i < MAX_CPUS; i++)
			if (bins[k][i].samples)
				printf("bin %d cpu %d samples %llu mean %.2f above %llu dropped %u\n", k, i,
				       bins[k][i].samples, (double)bins[k][i].sum / (double)bins[k][i].samples,
				       bins[k][i].above, bins[k][i].dropped);
	return 0;
}
