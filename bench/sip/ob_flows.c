/*
 * ob_flows: holds many registered RFC 5626 outbound TCP flows to one SIP
 * server on loopback, for bench/outbound_flows.sh.
 *
 *   ob_flows [-d ADDR] [-b BASE] PORT FLOWS PER_SOURCE TAG [options]
 *
 * Flow i connects from 127.S1.S2.S3 (source address i / PER_SOURCE, so no
 * source holds more than PER_SOURCE connections) to ADDR:PORT (ADDR
 * 127.0.0.1 unless -d says otherwise) and sends one outbound REGISTER for
 * the domain 127.0.0.1: Supported: outbound, a Contact with ;ob,
 * +sip.instance (a urn:uuid of its own) and reg-id=1, AOR TAG-u<i>, Expires
 * 3600. With -b BASE the flows are numbered from BASE (source addresses,
 * AORs and instances), so that several generators, one per edge, hold
 * disjoint sets. Then it stays open and sends what it is told to. With "options" as
 * the fifth argument each flow sends an OPTIONS instead (no binding, no flow
 * entry: a bare connection that has sent a message), to tell the outbound
 * state apart from the connection's own.
 *
 * It reads commands on stdin, one a line, and answers each with one line on
 * stdout that starts with "ok" (or "error ..."):
 *
 *   open N RATE     open and register the next N flows at RATE connections
 *                   per second (at most 256 waiting for their 200 at once);
 *                   answers "ok open registered=.. failed=.. require_outbound=..
 *                   flow_timer=.. secs=.."
 *   ping RATE SECS  double-CRLF keepalives (RFC 5626 section 4.4.1) on the
 *                   open flows in turn, RATE per second in all, for SECS
 *                   seconds; then waits up to 2 s for the pongs; answers
 *                   "ok ping sent=.. pongs=.. late=.. closed=.. secs=.."
 *                   (a pong is the single CRLF the server answers with)
 *   idle SECS       reads whatever comes for SECS seconds, sends nothing;
 *                   answers "ok idle closed=.. unexpected=.."
 *   count           "ok count open=.. registered=.. closed=.."
 *   quit            closes every flow and exits
 *
 * Every flow is registered over its own connection and nothing but its
 * keepalives follow, so the server holds FLOWS idle registered flows. A flow
 * the server closes is counted, never reopened. One thread, epoll; it raises
 * its own soft file limit to the hard one and stops with an error when FLOWS
 * do not fit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum st { ST_NONE, ST_CONNECTING, ST_SENT, ST_REGISTERED, ST_CLOSED };

struct flow {
	int fd;
	uint8_t st;
	uint8_t crlf; /* CRs and LFs of a pong seen so far */
	uint16_t got; /* bytes of the 200 read (only its first part is kept) */
	char *rx;     /* the answer to the REGISTER until it is whole, then NULL */
};

static struct flow *flows;
static int nflows, per_source, port, epfd, base;
static uint32_t dest = INADDR_LOOPBACK;
static const char *tag;
static int options_only;
static int opened; /* flows started so far */
static uint64_t n_registered, n_failed, n_req_ob, n_closed, n_pongs, n_unexpected;
static long flow_timer = -1;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t source_of(int i)
{
	int k = (base + i) / per_source; /* 127.(1 + k/62500).(1 + k/250 % 250).(1 + k % 250) */
	return (127u << 24) | ((uint32_t)(1 + k / 62500) << 16) |
	       ((uint32_t)(1 + (k / 250) % 250) << 8) | (uint32_t)(1 + k % 250);
}

static void flow_close(int i, bool counted)
{
	struct flow *f = &flows[i];
	if (f->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, f->fd, NULL);
		close(f->fd);
	}
	f->fd = -1;
	free(f->rx);
	f->rx = NULL;
	if (counted && f->st == ST_REGISTERED)
		n_closed++;
	else if (counted)
		n_failed++;
	f->st = ST_CLOSED;
}

static int flow_start(int i)
{
	struct flow *f = &flows[i];
	f->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->fd < 0)
		return errno;
	int one = 1;
	/* the port is chosen at connect, per (source, destination) */
	setsockopt(f->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	setsockopt(f->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(source_of(i))};
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(dest)};
	if (bind(f->fd, (struct sockaddr *)&me, sizeof me) < 0)
		return errno;
	if (connect(f->fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS)
		return errno;
	f->st = ST_CONNECTING;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u32 = (uint32_t)i};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, f->fd, &ev) < 0 ? errno : 0;
}

static void flow_register(int i)
{
	struct flow *f = &flows[i];
	struct sockaddr_in me;
	socklen_t ml = sizeof me;
	getsockname(f->fd, (struct sockaddr *)&me, &ml);
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &me.sin_addr, ip, sizeof ip);
	unsigned lp = ntohs(me.sin_port);
	int n = base + i; /* the flow's number across generators */
	char m[1024];
	int l = options_only
			? snprintf(m, sizeof m,
				   "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
				   "Via: SIP/2.0/TCP %s:%u;branch=z9hG4bK%s%d;rport\r\n"
				   "Max-Forwards: 70\r\n"
				   "From: <sip:%s-u%d@127.0.0.1>;tag=f%d\r\n"
				   "To: <sip:127.0.0.1>\r\n"
				   "Call-ID: %s-%d\r\n"
				   "CSeq: 1 OPTIONS\r\n"
				   "Content-Length: 0\r\n\r\n",
				   ip, lp, tag, n, tag, n, n, tag, n)
			: snprintf(m, sizeof m,
			 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/TCP %s:%u;branch=z9hG4bK%s%d;rport\r\n"
			 "Max-Forwards: 70\r\n"
			 "From: <sip:%s-u%d@127.0.0.1>;tag=f%d\r\n"
			 "To: <sip:%s-u%d@127.0.0.1>\r\n"
			 "Call-ID: %s-%d\r\n"
			 "CSeq: 1 REGISTER\r\n"
			 "Supported: outbound, path\r\n"
			 "Contact: <sip:%s-u%d@%s:%u;transport=tcp;ob>"
			 ";+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-%012x>\";reg-id=1\r\n"
			 "Expires: 3600\r\n"
			 "User-Agent: ob_flows\r\n"
			 "Content-Length: 0\r\n\r\n",
			 ip, lp, tag, n, tag, n, n, tag, n, tag, n, tag, n, ip, lp, (unsigned)n);
	/* a fresh connection's send buffer takes a REGISTER whole */
	if (write(f->fd, m, (size_t)l) != l) {
		flow_close(i, true);
		return;
	}
	f->st = ST_SENT;
	f->rx = malloc(2048);
	f->got = 0;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
	epoll_ctl(epfd, EPOLL_CTL_MOD, f->fd, &ev);
}

/* the 200 to the REGISTER: whole once its headers end (no body expected) */
static void flow_answer(int i, const char *b, size_t n)
{
	struct flow *f = &flows[i];
	size_t room = 2047 - f->got;
	memcpy(f->rx + f->got, b, n < room ? n : room);
	f->got = (uint16_t)(f->got + (n < room ? n : room));
	f->rx[f->got] = 0;
	if (!strstr(f->rx, "\r\n\r\n")) {
		if (f->got >= 2047)
			flow_close(i, true);
		return;
	}
	if (strncmp(f->rx, options_only ? "SIP/2.0 " : "SIP/2.0 200", options_only ? 8 : 11)) {
		if (n_failed < 3)
			fprintf(stderr, "ob_flows: flow %d: %.*s\n", i,
				(int)strcspn(f->rx, "\r"), f->rx);
		flow_close(i, true);
		return;
	}
	const char *h = strcasestr(f->rx, "\nRequire:");
	if (h) {
		const char *o = strcasestr(h, "outbound");
		if (o && o < h + 1 + strcspn(h + 1, "\n"))
			n_req_ob++;
	}
	h = strcasestr(f->rx, "\nFlow-Timer:");
	if (h)
		flow_timer = strtol(h + 12, NULL, 10);
	free(f->rx);
	f->rx = NULL;
	f->st = ST_REGISTERED;
	n_registered++;
}

static void flow_readable(int i, uint32_t evs)
{
	struct flow *f = &flows[i];
	char b[4096];
	for (;;) {
		ssize_t n = read(f->fd, b, sizeof b);
		if (n > 0) {
			if (f->st == ST_SENT) {
				flow_answer(i, b, (size_t)n);
				continue;
			}
			for (ssize_t k = 0; k < n; k++) {
				if (b[k] == '\r' && f->crlf == 0)
					f->crlf = 1;
				else if (b[k] == '\n' && f->crlf == 1) {
					f->crlf = 0;
					n_pongs++;
				} else {
					f->crlf = 0;
					n_unexpected++;
				}
			}
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			flow_close(i, true);
			return;
		}
		break;
	}
	if (evs & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		flow_close(i, true);
}

static int waiting(void)
{
	int w = 0;
	for (int i = 0; i < opened; i++)
		w += flows[i].st == ST_CONNECTING || flows[i].st == ST_SENT;
	return w;
}

/* one round of events, at most ms milliseconds; returns the flows still
 * waiting for their answer that the round saw change */
static void poll_once(int ms, int *pending)
{
	struct epoll_event evs[512];
	int n = epoll_wait(epfd, evs, 512, ms);
	for (int k = 0; k < n; k++) {
		int i = (int)evs[k].data.u32;
		struct flow *f = &flows[i];
		if (f->st == ST_CONNECTING) {
			int err = 0;
			socklen_t el = sizeof err;
			getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &el);
			if (err || (evs[k].events & (EPOLLERR | EPOLLHUP))) {
				if (n_failed < 3)
					fprintf(stderr, "ob_flows: connect %d: %s\n", i, strerror(err));
				flow_close(i, true);
				(*pending)--;
				continue;
			}
			if (evs[k].events & EPOLLOUT)
				flow_register(i);
			continue;
		}
		bool was_sent = f->st == ST_SENT;
		flow_readable(i, evs[k].events);
		if (was_sent && f->st != ST_SENT)
			(*pending)--;
	}
}

static void cmd_open(int n, double rate)
{
	uint64_t t0 = now_ns(), reg0 = n_registered, fail0 = n_failed, ob0 = n_req_ob;
	int end = opened + n > nflows ? nflows : opened + n, start = opened, pending = 0;
	while (opened < end || pending > 0) {
		uint64_t due = start + (uint64_t)((double)(now_ns() - t0) * rate / 1e9);
		while (opened < end && (uint64_t)opened < due && pending < 256) {
			int e = flow_start(opened);
			if (e) {
				if (n_failed < 3)
					fprintf(stderr, "ob_flows: flow %d: %s\n", opened, strerror(e));
				flow_close(opened, true);
			} else {
				pending++;
			}
			opened++;
		}
		poll_once(1, &pending);
		if (now_ns() - t0 > (uint64_t)(n / rate + 60) * 1000000000u) {
			fprintf(stderr, "ob_flows: %d flows still unanswered after the deadline\n", pending);
			break;
		}
	}
	printf("ok open registered=%llu failed=%llu require_outbound=%llu flow_timer=%ld secs=%.3f\n",
	       (unsigned long long)(n_registered - reg0), (unsigned long long)(n_failed - fail0),
	       (unsigned long long)(n_req_ob - ob0), flow_timer, (double)(now_ns() - t0) / 1e9);
}

static void cmd_ping(double rate, double secs)
{
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), sent = 0;
	uint64_t pong0 = n_pongs, closed0 = n_closed;
	int cursor = 0, dummy = 0;
	while (now_ns() < end) {
		uint64_t due = (uint64_t)((double)(now_ns() - t0) * rate / 1e9);
		for (int tries = 0; sent < due && tries < nflows; tries++) {
			struct flow *f = &flows[cursor];
			cursor = (cursor + 1) % (opened ? opened : 1);
			if (f->st != ST_REGISTERED)
				continue;
			if (write(f->fd, "\r\n\r\n", 4) == 4)
				sent++;
		}
		poll_once(1, &dummy);
	}
	uint64_t at_end = n_pongs;
	uint64_t drain = now_ns() + 2000000000u;
	while (n_pongs - pong0 < sent && now_ns() < drain)
		poll_once(10, &dummy);
	printf("ok ping sent=%llu pongs=%llu late=%llu closed=%llu secs=%.3f\n",
	       (unsigned long long)sent, (unsigned long long)(n_pongs - pong0),
	       (unsigned long long)(n_pongs - at_end), (unsigned long long)(n_closed - closed0),
	       (double)(now_ns() - t0) / 1e9);
}

static void cmd_idle(double secs)
{
	uint64_t end = now_ns() + (uint64_t)(secs * 1e9), closed0 = n_closed, un0 = n_unexpected;
	int dummy = 0;
	while (now_ns() < end)
		poll_once(100, &dummy);
	printf("ok idle closed=%llu unexpected=%llu\n", (unsigned long long)(n_closed - closed0),
	       (unsigned long long)(n_unexpected - un0));
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "d:b:")) != -1) {
		struct in_addr a;
		if (opt == 'd' && inet_pton(AF_INET, optarg, &a) == 1)
			dest = ntohl(a.s_addr);
		else if (opt == 'b')
			base = atoi(optarg);
		else
			argc = 0; /* usage */
	}
	argv += optind;
	argc -= optind;
	if (argc != 4 && !(argc == 5 && !strcmp(argv[4], "options"))) {
		fprintf(stderr, "usage: ob_flows [-d ADDR] [-b BASE] PORT FLOWS PER_SOURCE TAG [options]\n");
		return 2;
	}
	port = atoi(argv[0]);
	nflows = atoi(argv[1]);
	per_source = atoi(argv[2]);
	tag = argv[3];
	options_only = argc == 5;
	if (port <= 0 || nflows <= 0 || per_source <= 0 || base < 0)
		return 2;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)nflows + 32) {
		fprintf(stderr, "ob_flows: %d flows need %d files, the limit is %llu (ulimit -n)\n",
			nflows, nflows + 32, (unsigned long long)rl.rlim_cur);
		return 1;
	}
	flows = calloc((size_t)nflows, sizeof *flows);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!flows || epfd < 0)
		return 1;
	for (int i = 0; i < nflows; i++)
		flows[i].fd = -1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	char line[256];
	while (fgets(line, sizeof line, stdin)) {
		char cmd[16] = "";
		double a = 0, b = 0;
		int k = sscanf(line, "%15s %lf %lf", cmd, &a, &b);
		if (k < 1)
			continue;
		if (!strcmp(cmd, "open") && k == 3 && b > 0)
			cmd_open((int)a, b);
		else if (!strcmp(cmd, "ping") && k == 3 && a > 0)
			cmd_ping(a, b);
		else if (!strcmp(cmd, "idle") && k == 2)
			cmd_idle(a);
		else if (!strcmp(cmd, "count")) {
			int open = 0;
			for (int i = 0; i < opened; i++)
				open += flows[i].fd >= 0;
			printf("ok count open=%d registered=%llu closed=%llu waiting=%d\n", open,
			       (unsigned long long)n_registered, (unsigned long long)n_closed, waiting());
		} else if (!strcmp(cmd, "quit"))
			break;
		else
			printf("error unknown command: %s", line);
	}
	for (int i = 0; i < opened; i++)
		if (flows[i].fd >= 0)
			close(flows[i].fd);
	printf("ok quit\n");
	return 0;
}
