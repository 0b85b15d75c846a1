// SPDX-License-Identifier: GPL-2.0-only
/*
 * prism-stagemon: how long the softnet backlog got while a load ran.
 *
 *   prism-stagemon [-i INTERVAL_US]
 *
 * Reads /proc/net/softnet_stat every INTERVAL_US microseconds (default
 * 5000) until SIGTERM or SIGINT, then prints one line per CPU:
 *
 *   cpu N samples S peak P mean M nonempty E
 *
 * where P is the longest backlog seen (softnet_stat's twelfth column,
 * input_pkt_queue plus process_queue), M the mean over the samples and E
 * how many samples found it non-empty. A shell loop doing the same under
 * TCG costs a fork and exec per sample and perturbed the very queue it
 * measured; this costs one read(2) per sample.
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

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct backlog {
	unsigned long long samples, sum, nonempty;
	unsigned int peak;
	int seen;
};

/* Add one reading of softnet_stat (one line per CPU, hex columns). */
static void account(char *text, struct backlog *cpus)
{
	char *line, *save = NULL;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned int col[13];
		int n = sscanf(line, "%x %x %x %x %x %x %x %x %x %x %x %x %x",
			       &col[0], &col[1], &col[2], &col[3], &col[4], &col[5], &col[6],
			       &col[7], &col[8], &col[9], &col[10], &col[11], &col[12]);
		struct backlog *b;

		if (n < 13 || col[12] >= MAX_CPUS)
			continue;
		b = &cpus[col[12]];
		b->seen = 1;
		b->samples++;
		b->sum += col[11];
		if (col[11])
			b->nonempty++;
		if (col[11] > b->peak)
			b->peak = col[11];
	}
}

int main(int argc, char **argv)
{
	static struct backlog cpus[MAX_CPUS];
	struct timespec next;
	long interval_us = 5000;
	char buf[16384];
	int fd, opt, i;

	while ((opt = getopt(argc, argv, "i:")) != -1) {
		if (opt != 'i') {
			fprintf(stderr, "usage: %s [-i INTERVAL_US]\n", argv[0]);
			return 2;
		}
		interval_us = atol(optarg);
	}
	if (interval_us < 100 || interval_us > 10000000) {
		fprintf(stderr, "%s: interval must be 100-10000000 us\n", argv[0]);
		return 2;
	}
	fd = open("/proc/net/softnet_stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror("/proc/net/softnet_stat");
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!stop) {
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

		if (n > 0) {
			buf[n] = '\0';
			account(buf, cpus);
		}
		next.tv_nsec += interval_us * 1000;
		while (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	for (i = 0; i < MAX_CPUS; i++)
		if (cpus[i].seen)
			printf("cpu %d samples %llu peak %u mean %.2f nonempty %llu\n", i,
			       cpus[i].samples, cpus[i].peak,
			       (double)cpus[i].sum / (double)cpus[i].samples, cpus[i].nonempty);
	return 0;
}
