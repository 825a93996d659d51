/* rtp_peer: a symmetric RTP phone for the NAT lab: sends G.711-sized RTP, counts what returns.
 *
 * One UDP socket, bound to one local address and port, sends and receives
 * (symmetric RTP, RFC 4961: that is what lets a relay latch through NAT).
 * It sends 20 ms PCMU packets (12-byte RTP header + 160 bytes payload = 172
 * bytes, 50 packets/s, payload type 0, one SSRC, sequence +1, timestamp +160)
 * to one or more destinations for a duration, and counts every datagram that
 * arrives, per source address and per sender tag.
 *
 * Payload (160 bytes): our own marker so that a receiver can tell streams
 * apart even if an attacker copies an SSRC:
 *
 *    0                   1                   2                   3
 *   +-------+-------+-------+-------+-------+-------+-------+-------+
 *   |  'P'  |  'H'  |  'R'  |  'T'  |   tag (8 bytes, NUL padded)   ...
 *   +-------+-------+-------+-------+-------+-------+-------+-------+
 *   ...tag  | send time, CLOCK_REALTIME ns, big endian (8 bytes)    |
 *   +-------+-------+-------+-------+-------+-------+-------+-------+
 *   | 0xff (PCMU silence) ...                                       |
 *
 * usage: rtp_peer -b ADDR:PORT [options]
 *   -d ADDR:PORT[-PORT2]  destination (repeatable; a port range sprays every
 *                         port in it, RTP and RTCP ports alike; each
 *                         destination gets the full packet rate)
 *   -t SECS     how long to send (default 5; 0 = only listen)
 *   -w SECS     keep listening this long after sending stops (default 1)
 *   -s SSRC     (default: random)         -m TAG   sender tag (default "peer")
 *   -S EPOCH    start sending at this CLOCK_REALTIME second (fractional), so
 *               that two peers in different namespaces start together
 *   -G          start sending when SIGUSR1 comes (listening until then): a
 *               test starts the peers, waits until each says "bound", then
 *               signals them together, so their start does not depend on how
 *               long the start of a process took
 *   -r PPS      packets per second per destination (default 50)
 *   -f PORT     the first packet leaves from PORT on the -b address (a second
 *               socket, closed right after), the rest from -b: what the
 *               relay sees when a NAT gave a phone's first packet a mapping
 *               of its own and every later one the mapping the phone
 *               announced (a SIP ALG's NAT when the phone's first packet and
 *               the relay's cross in it)
 *
 * Output, one line per fact, for a shell test to read:
 *   bound 100.64.1.2:40000
 *   sent 250 to 198.18.0.1:30002 ssrc 0x1234abcd tag alice
 *   from 198.18.0.1:30000 packets 248 rtp 248 ssrc 0x5678 tag bob latency_max_us 412
 *   summary sent 250 received 248 rtp 248 sources 1 from 198.18.0.1:30000
 * "from" lines are one per (source, SSRC, tag); non-RTP datagrams count in
 * "received" but not "rtp", with ssrc - and tag -.  "summary ... from" lists
 * every distinct source, comma-separated ("-" when nothing came).
 * Exit: 0 ok, 1 system error, 2 usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RTP_HDR 12
#define PAYLOAD 160
#define MAX_DEST 256
#define MAX_SRC 64

struct src {
	struct sockaddr_in addr;
	uint32_t ssrc;
	char tag[9];
	int rtp;
	uint64_t packets;
	int64_t lat_max_ns;
};

static struct sockaddr_in dests[MAX_DEST];
static size_t n_dest;
static struct src srcs[MAX_SRC];
static size_t n_src;
static volatile sig_atomic_t stop, go;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_go(int sig)
{
	(void)sig;
	go = 1;
}

static double now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die_usage(const char *why)
{
	fprintf(stderr,
		"rtp_peer: %s\n"
		"usage: rtp_peer -b ADDR:PORT [-d ADDR:PORT[-PORT2]]... [-t SECS] [-w SECS]\n"
		"                [-s SSRC] [-m TAG] [-S EPOCH | -G] [-r PPS] [-f PORT]\n",
		why);
	exit(2);
}

/* "a.b.c.d:p" or "a.b.c.d:p1-p2"; sets *lo, *hi. */
static int parse_addr(const char *s, struct sockaddr_in *sa, unsigned *lo, unsigned *hi)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -1;
	char *end;
	unsigned long a = strtoul(colon + 1, &end, 10), b = a;
	if (*end == '-')
		b = strtoul(end + 1, &end, 10);
	if (*end || a > 65535 || b > 65535 || b < a)
		return -1;
	*lo = (unsigned)a;
	*hi = (unsigned)b;
	sa->sin_port = htons((uint16_t)a);
	return 0;
}

static const char *fmt(const struct sockaddr_in *sa, char *buf, size_t n)
{
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
	snprintf(buf, n, "%s:%u", ip, ntohs(sa->sin_port));
	return buf;
}

static void count(const struct sockaddr_in *from, const uint8_t *p, size_t len)
{
	int rtp = len >= RTP_HDR && (p[0] >> 6) == 2 && !(p[1] >= 192 && p[1] <= 223);
	uint32_t ssrc = 0;
	char tag[9] = "-";
	int64_t lat = -1;
	if (rtp) {
		ssrc = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
		if (len >= RTP_HDR + 20 && memcmp(p + RTP_HDR, "PHRT", 4) == 0) {
			memcpy(tag, p + RTP_HDR + 4, 8);
			tag[8] = '\0';
			uint64_t t = 0;
			for (int i = 0; i < 8; i++)
				t = t << 8 | p[RTP_HDR + 12 + i];
			lat = now_real_ns() - (int64_t)t;
		}
	}
	struct src *s = NULL;
	for (size_t i = 0; i < n_src; i++) {
		struct src *c = &srcs[i];
		if (c->addr.sin_addr.s_addr == from->sin_addr.s_addr &&
		    c->addr.sin_port == from->sin_port && c->rtp == rtp && c->ssrc == ssrc &&
		    strcmp(c->tag, tag) == 0) {
			s = c;
			break;
		}
	}
	if (!s) {
		if (n_src == MAX_SRC)
			s = &srcs[MAX_SRC - 1]; /* overflow bucket: counted, misattributed */
		else {
			s = &srcs[n_src++];
			s->addr = *from;
			s->ssrc = ssrc;
			s->rtp = rtp;
			snprintf(s->tag, sizeof s->tag, "%s", tag[0] ? tag : "-");
		}
	}
	s->packets++;
	if (lat > s->lat_max_ns)
		s->lat_max_ns = lat;
}

/* Counts every datagram waiting on fd. */
static void drain(int fd)
{
	for (;;) {
		uint8_t buf[2048];
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from,
				     &fl);
		if (n < 0)
			return;
		count(&from, buf, (size_t)n);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in bind_sa;
	int have_bind = 0;
	double secs = 5, linger = 1, start_at = 0, pps = 50;
	unsigned first_port = 0;
	uint32_t ssrc;
	char tag[9] = "peer";
	unsigned lo, hi;
	int o, wait_go = 0;

	srandom((unsigned)(now_real_ns() ^ getpid()));
	ssrc = (uint32_t)random() << 1 ^ (uint32_t)random();
	while ((o = getopt(argc, argv, "b:d:t:w:s:m:S:Gr:f:")) != -1) {
		switch (o) {
		case 'b':
			if (parse_addr(optarg, &bind_sa, &lo, &hi) || lo != hi)
				die_usage("bad -b address");
			have_bind = 1;
			break;
		case 'd': {
			struct sockaddr_in d;
			if (parse_addr(optarg, &d, &lo, &hi))
				die_usage("bad -d address");
			for (unsigned p = lo; p <= hi; p++) {
				if (n_dest == MAX_DEST)
					die_usage("too many destinations");
				d.sin_port = htons((uint16_t)p);
				dests[n_dest++] = d;
			}
			break;
		}
		case 't':
			secs = atof(optarg);
			break;
		case 'w':
			linger = atof(optarg);
			break;
		case 's':
			ssrc = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'm':
			snprintf(tag, sizeof tag, "%s", optarg);
			break;
		case 'S':
			start_at = atof(optarg);
			break;
		case 'G':
			wait_go = 1;
			break;
		case 'r':
			pps = atof(optarg);
			break;
		case 'f':
			first_port = (unsigned)strtoul(optarg, NULL, 10);
			if (first_port == 0 || first_port > 65535)
				die_usage("bad -f port");
			break;
		default:
			die_usage("bad option");
		}
	}
	if (!have_bind || optind != argc || pps <= 0 || secs < 0 || (wait_go && start_at > 0))
		die_usage("need -b, no extra arguments");
	if (secs > 0 && n_dest == 0)
		die_usage("need -d to send");

	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&bind_sa, sizeof bind_sa) < 0) {
		perror("rtp_peer: bind");
		return 1;
	}
	int rcvbuf = 1 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	/* SIGUSR1 blocked but while waiting in ppoll: none slips in between */
	sigset_t usr1, waitmask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (wait_go) {
		struct sigaction sa = {.sa_handler = on_go};
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
		sigprocmask(SIG_BLOCK, &usr1, &waitmask);
		sigdelset(&waitmask, SIGUSR1);
	}
	char a[64];
	printf("bound %s\n", fmt(&bind_sa, a, sizeof a));
	fflush(stdout);

	uint8_t pkt[RTP_HDR + PAYLOAD];
	memset(pkt, 0xff, sizeof pkt);
	pkt[0] = 0x80; /* V=2 */
	pkt[1] = 0;    /* PT 0 PCMU */
	pkt[8] = (uint8_t)(ssrc >> 24);
	pkt[9] = (uint8_t)(ssrc >> 16);
	pkt[10] = (uint8_t)(ssrc >> 8);
	pkt[11] = (uint8_t)ssrc;
	memcpy(pkt + RTP_HDR, "PHRT", 4);
	memset(pkt + RTP_HDR + 4, 0, 8);
	memcpy(pkt + RTP_HDR + 4, tag, strlen(tag));
	uint16_t seq = (uint16_t)random();
	uint32_t ts = (uint32_t)random();
	uint64_t *sent = calloc(n_dest ? n_dest : 1, sizeof *sent);
	if (!sent)
		return 1;

	while (wait_go && !go && !stop) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = ppoll(&p, 1, NULL, &waitmask);
		if (r < 0 && errno != EINTR) {
			perror("rtp_peer: ppoll");
			return 1;
		}
		if (r > 0)
			drain(fd);
	}
	double t_run = now_real();
	double t0 = start_at > 0 ? start_at : t_run;
	double first_try = -1; /* when the first packet was due and sent */
	uint64_t send_failed = 0;
	int send_errno = 0;
	double send_end = t0 + secs, end = send_end + linger, period = 1.0 / pps;
	uint64_t tick = 0; /* packets sent per destination so far */
	while (!stop) {
		double t = now_real();
		if (t >= end)
			break;
		if (secs > 0 && t >= t0 && t < send_end && t >= t0 + (double)tick * period) {
			pkt[2] = (uint8_t)(seq >> 8);
			pkt[3] = (uint8_t)seq;
			pkt[4] = (uint8_t)(ts >> 24);
			pkt[5] = (uint8_t)(ts >> 16);
			pkt[6] = (uint8_t)(ts >> 8);
			pkt[7] = (uint8_t)ts;
			if (tick == 0)
				first_try = t;
			int sfd = fd;
			if (tick == 0 && first_port) {
				struct sockaddr_in fa = bind_sa;
				fa.sin_port = htons((uint16_t)first_port);
				sfd = socket(AF_INET, SOCK_DGRAM, 0);
				if (sfd < 0 || bind(sfd, (struct sockaddr *)&fa, sizeof fa) < 0) {
					perror("rtp_peer: bind -f");
					return 1;
				}
			}
			for (size_t i = 0; i < n_dest; i++) {
				uint64_t ns = (uint64_t)now_real_ns();
				for (int b = 0; b < 8; b++)
					pkt[RTP_HDR + 12 + b] = (uint8_t)(ns >> (56 - 8 * b));
				if (sendto(sfd, pkt, sizeof pkt, 0, (struct sockaddr *)&dests[i],
					   sizeof dests[i]) == (ssize_t)sizeof pkt)
					sent[i]++;
				else
					send_failed++, send_errno = errno;
			}
			if (sfd != fd)
				close(sfd);
			seq++;
			ts += PAYLOAD;
			tick++;
			continue;
		}
		double next = end;
		if (secs > 0 && t < send_end) {
			double due = t < t0 ? t0 : t0 + (double)tick * period;
			if (due < next)
				next = due;
		}
		int ms = (int)((next - t) * 1000.0);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, ms < 0 ? 0 : ms);
		if (r < 0 && errno != EINTR) {
			perror("rtp_peer: poll");
			return 1;
		}
		if (r > 0)
			drain(fd);
	}

	/* when a run sent less than asked, why: for the test's logs */
	if (secs > 0 && first_try < 0)
		printf("late: running %.3f s after the start, the sending time was over\n",
		       t_run - t0);
	else if (secs > 0 && first_try - t0 > 0.1)
		printf("late: first packet %.3f s after the start\n", first_try - t0);
	if (send_failed)
		printf("send failed %llu times: %s\n", (unsigned long long)send_failed,
		       strerror(send_errno));

	drain(fd); /* stopped by a signal: what already arrived counts too */

	uint64_t total_sent = 0, received = 0, rtp = 0;
	for (size_t i = 0; i < n_dest; i++) {
		total_sent += sent[i];
		if (n_dest <= 16 || sent[i] == 0)
			printf("sent %llu to %s ssrc 0x%08x tag %s\n", (unsigned long long)sent[i],
			       fmt(&dests[i], a, sizeof a), ssrc, tag);
	}
	if (n_dest > 16)
		printf("sent %llu to %zu destinations ssrc 0x%08x tag %s\n",
		       (unsigned long long)total_sent, n_dest, ssrc, tag);
	char from_list[1024] = "-";
	size_t fl_len = 0, n_addr = 0;
	for (size_t i = 0; i < n_src; i++) {
		struct src *s = &srcs[i];
		received += s->packets;
		if (s->rtp)
			rtp += s->packets;
		printf("from %s packets %llu rtp %llu ssrc ", fmt(&s->addr, a, sizeof a),
		       (unsigned long long)s->packets,
		       (unsigned long long)(s->rtp ? s->packets : 0));
		if (s->rtp)
			printf("0x%08x", s->ssrc);
		else
			printf("-");
		printf(" tag %s latency_max_us %lld\n", s->tag,
		       s->lat_max_ns >= 0 ? (long long)(s->lat_max_ns / 1000) : -1LL);
		int seen = 0;
		for (size_t j = 0; j < i; j++)
			if (srcs[j].addr.sin_addr.s_addr == s->addr.sin_addr.s_addr &&
			    srcs[j].addr.sin_port == s->addr.sin_port)
				seen = 1;
		if (!seen && fl_len + 32 < sizeof from_list) {
			fl_len += (size_t)snprintf(from_list + fl_len, sizeof from_list - fl_len,
						   "%s%s", n_addr ? "," : "", a);
			n_addr++;
		}
	}
	printf("summary sent %llu received %llu rtp %llu sources %zu from %s\n",
	       (unsigned long long)total_sent, (unsigned long long)received,
	       (unsigned long long)rtp, n_addr, from_list);
	free(sent);
	close(fd);
	return 0;
}
