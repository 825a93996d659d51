/* udp_probe: a tiny scripted UDP peer for the NAT lab (tests/lab/lib.sh).
 *
 * One socket, bound to one local address and port, runs a list of steps in
 * order.  Everything it sees is printed on stdout, one line per event, so
 * that a shell test can grep it:
 *
 *   bound  <ip>:<port>              the socket is ready
 *   sent   <ip>:<port> <msg>
 *   recv   <ip>:<port> <msg>        a datagram arrived from <ip>:<port>
 *   icmp   <ip> type=<t> code=<c> errno=<e> (an ICMP error came back, IP_RECVERR)
 *   timeout                         a 'recv' step waited in vain (exit 3)
 *
 * usage: udp_probe -b ADDR:PORT STEP...
 *   send DEST MSG           send MSG to DEST (ADDR:PORT, or 'peer' = the
 *                           source of the last datagram received)
 *   recv SECS               wait up to SECS for one datagram; exit 3 if none
 *   listen SECS             report whatever arrives during SECS
 *   ping DEST MSG EVERY SECS  send MSG to DEST every EVERY s during SECS s,
 *                           reporting whatever arrives meanwhile
 *   echo SECS               during SECS, send every datagram back to its source
 * SECS may be fractional.  Exit: 0 ok, 1 system error, 2 usage, 3 timeout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static struct sockaddr_in peer;
static int have_peer;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die_usage(const char *why)
{
	fprintf(stderr, "udp_probe: %s\n"
		"usage: udp_probe -b ADDR:PORT STEP...\n"
		"  send DEST MSG | recv SECS | listen SECS | ping DEST MSG EVERY SECS | echo SECS\n"
		"  DEST = ADDR:PORT or 'peer'\n", why);
	exit(2);
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -1;
	return 0;
}

static const char *fmt(const struct sockaddr_in *sa)
{
	static char buf[2][64];
	static int i;
	char ip[INET_ADDRSTRLEN];
	i ^= 1;
	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
	snprintf(buf[i], sizeof buf[i], "%s:%u", ip, ntohs(sa->sin_port));
	return buf[i];
}

static void dest(const char *s, struct sockaddr_in *sa)
{
	if (strcmp(s, "peer") == 0) {
		if (!have_peer)
			die_usage("'peer' used before any datagram was received");
		*sa = peer;
	} else if (parse_addr(s, sa) != 0) {
		die_usage("bad ADDR:PORT");
	}
}

static void do_send(const struct sockaddr_in *to, const char *msg)
{
	if (sendto(fd, msg, strlen(msg), 0, (const struct sockaddr *)to, sizeof *to) < 0)
		printf("senderr %s errno=%d %s\n", fmt(to), errno, strerror(errno));
	else
		printf("sent %s %s\n", fmt(to), msg);
	fflush(stdout);
}

static void drain_errqueue(void)
{
	char cbuf[512], dbuf[2048];
	for (;;) {
		struct sockaddr_in from;
		struct iovec iov = { dbuf, sizeof dbuf };
		struct msghdr mh = { .msg_name = &from, .msg_namelen = sizeof from,
				     .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cbuf, .msg_controllen = sizeof cbuf };
		if (recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
			return;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_IP || c->cmsg_type != IP_RECVERR)
				continue;
			struct sock_extended_err *ee = (struct sock_extended_err *)CMSG_DATA(c);
			struct sockaddr_in *off = (struct sockaddr_in *)SO_EE_OFFENDER(ee);
			char ip[INET_ADDRSTRLEN] = "?";
			if (off->sin_family == AF_INET)
				inet_ntop(AF_INET, &off->sin_addr, ip, sizeof ip);
			printf("icmp %s type=%u code=%u errno=%u dest=%s\n", ip,
			       ee->ee_type, ee->ee_code, ee->ee_errno, fmt(&from));
			fflush(stdout);
		}
	}
}

/* Wait until deadline for datagrams.  Returns 1 as soon as one arrived when
 * 'one' is set, else keeps reporting until the deadline and returns the count.
 * With 'reflect', each datagram is sent back to its source. */
static int wait_until(double deadline, int one, int reflect)
{
	int got = 0;
	for (;;) {
		double left = deadline - now();
		if (left <= 0)
			return got;
		struct pollfd p = { fd, POLLIN, 0 };
		int r = poll(&p, 1, (int)(left * 1000) + 1);
		if (r < 0 && errno != EINTR) {
			perror("poll");
			exit(1);
		}
		if (r <= 0)
			continue;
		if (p.revents & POLLERR)
			drain_errqueue();
		if (!(p.revents & POLLIN))
			continue;
		char buf[2048];
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(fd, buf, sizeof buf - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			/* an ICMP error reported on the socket itself */
			drain_errqueue();
			continue;
		}
		buf[n] = '\0';
		for (ssize_t k = 0; k < n; k++)
			if (buf[k] == '\n' || buf[k] == '\r')
				buf[k] = ' ';
		printf("recv %s %s\n", fmt(&from), buf);
		fflush(stdout);
		peer = from;
		have_peer = 1;
		got++;
		if (reflect)
			do_send(&from, buf);
		if (one)
			return got;
	}
}

static double secs(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || v < 0)
		die_usage("bad SECS");
	return v;
}

int main(int argc, char **argv)
{
	struct sockaddr_in local;
	if (argc < 3 || strcmp(argv[1], "-b") != 0 || parse_addr(argv[2], &local) != 0)
		die_usage("need -b ADDR:PORT");
	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	int on = 1;
	setsockopt(fd, SOL_IP, IP_RECVERR, &on, sizeof on);
	if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
		fprintf(stderr, "udp_probe: bind %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	socklen_t ll = sizeof local;
	getsockname(fd, (struct sockaddr *)&local, &ll);
	printf("bound %s\n", fmt(&local));
	fflush(stdout);

	for (int i = 3; i < argc;) {
		const char *op = argv[i];
		struct sockaddr_in to;
		if (strcmp(op, "send") == 0 && i + 2 < argc) {
			dest(argv[i + 1], &to);
			do_send(&to, argv[i + 2]);
			i += 3;
		} else if (strcmp(op, "recv") == 0 && i + 1 < argc) {
			if (!wait_until(now() + secs(argv[i + 1]), 1, 0)) {
				printf("timeout\n");
				return 3;
			}
			i += 2;
		} else if (strcmp(op, "listen") == 0 && i + 1 < argc) {
			wait_until(now() + secs(argv[i + 1]), 0, 0);
			i += 2;
		} else if (strcmp(op, "echo") == 0 && i + 1 < argc) {
			wait_until(now() + secs(argv[i + 1]), 0, 1);
			i += 2;
		} else if (strcmp(op, "ping") == 0 && i + 4 < argc) {
			dest(argv[i + 1], &to);
			double every = secs(argv[i + 3]), end = now() + secs(argv[i + 4]);
			if (every <= 0)
				die_usage("ping EVERY must be > 0");
			while (now() < end) {
				do_send(&to, argv[i + 2]);
				double next = now() + every;
				wait_until(next < end ? next : end, 0, 0);
			}
			i += 5;
		} else {
			die_usage("bad step");
		}
	}
	drain_errqueue();
	return 0;
}
