// SPDX-License-Identifier: GPL-2.0-only
/*
 * prism-reflector: echo every UDP datagram, and every TCP request, back to
 * its sender, so the sender can time and check each probe.
 *
 *   prism-reflector [-p PORT] [-u] [-t] [-s] [-r] [-b BATCH]
 *
 * -u serves UDP (the default when neither -u nor -t is given), -t serves
 * TCP: each read's bytes are written straight back, so a client that sends
 * fixed-size requests gets fixed-size responses. -s makes it a sink: UDP is
 * read and dropped, as a bulk receiver's application would consume it, and
 * the count is printed at exit. One dual-stack socket per
 * protocol serves IPv4 and IPv6. UDP is read and answered in batches with
 * recvmmsg/sendmmsg, so the reflector costs little CPU in the receiving
 * container: the queues being measured are the kernel's, not ours.
 *
 * A UDP probe (testbed/probe.py, version 2) comes back with three guest
 * CLOCK_REALTIME stamps written into its stamp block, which its CRC leaves
 * out: the kernel's receive stamp (SO_TIMESTAMPNS, taken when the datagram
 * entered this namespace's backlog at the veth; 0 if the kernel gave none),
 * when recvmmsg returned it and when the reply went to sendmmsg. Read and
 * send stamps are one per batch, as one call reads or sends the whole batch.
 * So the sender can tell the wait in this namespace and our own time from
 * the rest of the round trip. (SO_TIMESTAMPNS makes the kernel stamp every
 * packet it receives, one clock read each, on any kernel alike.) Any other
 * datagram, and every TCP byte, is echoed unchanged; -r echoes probes
 * unchanged too.
 *
 * It runs in the guest, where no Python is installed; it is built with the
 * guest image (testbed/image.py) from this file.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 64
#define MAX_DATAGRAM 65536
#define MAX_CLIENTS 256

/* The probe payload's layout, as testbed/probe.py writes it. */
#define PROBE_MAGIC "PRSM"
#define PROBE_VERSION 2
#define PROBE_STAMPS 24			/* offset of the stamp block */
#define PROBE_MIN (PROBE_STAMPS + 3 * 8 + 4)
enum { STAMP_KERNEL_RX, STAMP_READ, STAMP_SEND };

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int listen_socket(int type, int port)
{
	struct sockaddr_in6 addr = {
		.sin6_family = AF_INET6,
		.sin6_port = htons(port),
		.sin6_addr = IN6ADDR_ANY_INIT,
	};
	int off = 0, on = 1;
	int fd = socket(AF_INET6, type | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) ||
	    bind(fd, (struct sockaddr *)&addr, sizeof(addr)) ||
	    (type == SOCK_STREAM && listen(fd, 64))) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint64_t timespec_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return timespec_ns(&ts);
}

/* The kernel's receive stamp of a datagram, or 0 when it gave none. */
static uint64_t kernel_rx_ns(struct msghdr *msg)
{
	struct cmsghdr *c;
	struct timespec ts;

	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			memcpy(&ts, CMSG_DATA(c), sizeof(ts));
			return timespec_ns(&ts);
		}
	}
	return 0;
}

static int is_probe(const char *buf, unsigned int len)
{
	return len >= PROBE_MIN && !memcmp(buf, PROBE_MAGIC, 4) && buf[4] == PROBE_VERSION;
}

/* Stamps go in network byte order, like the rest of the payload. */
static void put_stamp(char *buf, int which, uint64_t ns)
{
	uint64_t be = htobe64(ns);

	memcpy(buf + PROBE_STAMPS + 8 * which, &be, sizeof(be));
}

union stamp_cmsg {
	char buf[CMSG_SPACE(sizeof(struct timespec))];
	struct cmsghdr align;
};

/*
 * Read up to batch datagrams and send each back to where it came from
 * (or, for a sink, count them). With stamp, probes carry the guest's
 * receive, read and send times back (see the top of this file).
 */
static int reflect_udp(int fd, int batch, char (*bufs)[MAX_DATAGRAM], int sink, int stamp)
{
	struct sockaddr_in6 peers[MAX_BATCH];
	union stamp_cmsg ctl[MAX_BATCH];
	struct mmsghdr msgs[MAX_BATCH];
	struct iovec iovs[MAX_BATCH];
	char probes[MAX_BATCH];
	uint64_t now;
	int n, i, sent;

	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < batch; i++) {
		iovs[i].iov_base = bufs[i];
		iovs[i].iov_len = MAX_DATAGRAM;
		msgs[i].msg_hdr.msg_iov = &iovs[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &peers[i];
		msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
		if (stamp) {
			msgs[i].msg_hdr.msg_control = ctl[i].buf;
			msgs[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
		}
	}
	n = recvmmsg(fd, msgs, batch, MSG_DONTWAIT, NULL);
	if (n <= 0)
		return n < 0 && errno != EAGAIN && errno != EINTR ? -1 : 0;
	if (sink)
		return n;
	now = stamp ? realtime_ns() : 0;
	for (i = 0; i < n; i++) {
		iovs[i].iov_len = msgs[i].msg_len;
		probes[i] = stamp && is_probe(bufs[i], msgs[i].msg_len);
		if (probes[i]) {
			put_stamp(bufs[i], STAMP_KERNEL_RX, kernel_rx_ns(&msgs[i].msg_hdr));
			put_stamp(bufs[i], STAMP_READ, now);
		}
		/* the receive stamp is not ancillary data sendmmsg would accept */
		msgs[i].msg_hdr.msg_control = NULL;
		msgs[i].msg_hdr.msg_controllen = 0;
	}
	for (sent = 0; sent < n;) {
		int r;

		if (stamp) {
			now = realtime_ns();
			for (i = sent; i < n; i++)
				if (probes[i])
					put_stamp(bufs[i], STAMP_SEND, now);
		}
		r = sendmmsg(fd, msgs + sent, n - sent, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			/* a reply that cannot go out is lost, as on a real host */
			sent++;
			continue;
		}
		sent += r;
	}
	return n;
}

/* Echo what one TCP client sent; 0 when it closed, -1 on error. */
static int reflect_tcp(int fd, char *buf)
{
	ssize_t n = read(fd, buf, MAX_DATAGRAM);
	ssize_t done = 0;

	if (n == 0)
		return 0;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 1 : -1;
	while (done < n) {
		ssize_t w = write(fd, buf + done, n - done);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += w;
	}
	return 1;
}

int main(int argc, char **argv)
{
	static char bufs[MAX_BATCH][MAX_DATAGRAM];
	struct pollfd fds[2 + MAX_CLIENTS];
	int port = 7007, batch = 32, udp = 0, tcp = 0, sink = 0, stamp = 1, nfds = 0;
	unsigned long long sunk = 0;
	int udp_fd = -1, tcp_fd = -1, opt, i;

	while ((opt = getopt(argc, argv, "p:b:utsr")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'b':
			batch = atoi(optarg);
			break;
		case 'u':
			udp = 1;
			break;
		case 't':
			tcp = 1;
			break;
		case 's':
			sink = 1;
			break;
		case 'r':
			stamp = 0;
			break;
		default:
			fprintf(stderr, "usage: %s [-p PORT] [-u] [-t] [-s] [-r] [-b BATCH]\n", argv[0]);
			return 2;
		}
	}
	if (!udp && !tcp)
		udp = 1;
	if (port <= 0 || port > 65535 || batch <= 0 || batch > MAX_BATCH) {
		fprintf(stderr, "%s: port must be 1-65535 and batch 1-%d\n", argv[0], MAX_BATCH);
		return 2;
	}
	if (sink)
		stamp = 0;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);

	if (udp) {
		udp_fd = listen_socket(SOCK_DGRAM, port);
		if (udp_fd < 0) {
			fprintf(stderr, "%s: udp port %d: %s\n", argv[0], port, strerror(errno));
			return 1;
		}
		if (stamp && setsockopt(udp_fd, SOL_SOCKET, SO_TIMESTAMPNS, &(int){ 1 }, sizeof(int))) {
			fprintf(stderr, "%s: SO_TIMESTAMPNS: %s\n", argv[0], strerror(errno));
			return 1;
		}
		fds[nfds++] = (struct pollfd){ .fd = udp_fd, .events = POLLIN };
	}
	if (tcp) {
		tcp_fd = listen_socket(SOCK_STREAM, port);
		if (tcp_fd < 0) {
			fprintf(stderr, "%s: tcp port %d: %s\n", argv[0], port, strerror(errno));
			return 1;
		}
		fds[nfds++] = (struct pollfd){ .fd = tcp_fd, .events = POLLIN };
	}
	printf("prism-reflector: %s%s%s on port %d%s\n", sink ? "sinking" : "serving",
	       udp ? " udp" : "", tcp ? " tcp" : "", port, udp && stamp ? ", stamping udp probes" : "");
	fflush(stdout);

	while (!stop) {
		if (poll(fds, nfds, 1000) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		for (i = 0; i < nfds; i++) {
			if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (fds[i].fd == udp_fd) {
				int n;

				while ((n = reflect_udp(udp_fd, batch, bufs, sink, stamp)) > 0) {
					sunk += n;
					if (n < batch)
						break;
				}
			} else if (fds[i].fd == tcp_fd) {
				int one = 1;
				int c = accept4(tcp_fd, NULL, NULL, SOCK_CLOEXEC);

				if (c < 0)
					continue;
				if (nfds >= (int)(sizeof(fds) / sizeof(fds[0]))) {
					close(c);
					continue;
				}
				setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				fds[nfds++] = (struct pollfd){ .fd = c, .events = POLLIN };
			} else if (reflect_tcp(fds[i].fd, bufs[0]) <= 0) {
				close(fds[i].fd);
				fds[i--] = fds[--nfds];
			}
		}
	}
	if (sink)
		printf("prism-reflector: sank %llu datagrams\n", sunk);
	return 0;
}
