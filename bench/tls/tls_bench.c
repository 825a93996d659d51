/* TLS and WebSocket load for bench/tls/run.sh (pinhole against Kamailio): a
 * single-threaded epoll client on OpenSSL. Not part of ctest.
 *
 *   tls_bench hs   PORT CONC SECS          full handshakes, CONC at a time
 *   tls_bench hsl  PORT CONC SECS          the same with the light client (hs_lite.c)
 *   tls_bench reg  PORT CONNS RATE SECS    REGISTERs over CONNS established TLS flows
 *   tls_bench hold PORT CONNS tls|ws       CONNS idle flows, each registered once
 *
 * The server is 127.0.0.1:PORT. Connection i comes from 127.S1.S2.S3 (source
 * i / PER_SOURCE, TB_PER_SOURCE in the environment, 100 by default), from
 * 127.3.0.1 up, so no source holds more than PER_SOURCE connections.
 * TB_FIRST (0 by default) shifts both the AORs (tb<i>) and the sources by
 * that many flows, so that several generators hold distinct flows at once.
 *
 * hs: a handshake counts when the server has answered a CRLF keepalive over
 * the new connection (so it finished its side too), then the connection is
 * reset (SO_LINGER 0: no TIME_WAIT pile). No session is ever offered: every
 * handshake is a full one. Prints "hs N failed F cpu_ns C" (handshakes done
 * in SECS; C: the CPU time of the processes in TB_PIDS meanwhile).
 * hsl: as hs, with hs_lite.c's client instead of OpenSSL's, which pays more
 * per handshake than the server (it parses the certificates and checks the
 * signature): the server's work is the same, the generator's a fraction, so
 * on a shared machine the server's rate shows, not the generator's.
 * reg: every flow registers its own AOR once (unrecorded), then refreshes go
 * round the flows at RATE per second for SECS, one outstanding per flow at
 * most. Prints "reg SENT OK flows F cpu_ns C" (OK = 200s; C as for hs, over
 * the refreshes).
 * hold: every flow registers once (ws: after a WebSocket upgrade over plain
 * TCP, the REGISTER in a masked text frame), then its SSL is freed without a
 * close_notify and only the socket is kept (the server sees an idle
 * connection; the generator stays small). Prints "held N FAILED" and waits
 * until stdin closes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
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

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hs_lite.h"

enum st { ST_CONNECT, ST_HS, ST_UPGRADE, ST_REG, ST_IDLE, ST_PONG, ST_DONE };

struct cx {
	int fd;
	SSL *ssl;
	enum st st;
	bool ws;
	unsigned cseq;
	bool outstanding;
	char in[4096];
	size_t inlen;
	struct lite *lite; /* hsl */
};

static SSL_CTX *ctx;
static int ep, port, per_source = 100;
static unsigned first; /* TB_FIRST */
static struct cx *cxs;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The server's user and system ticks and the times its threads went to
 * sleep and were woken (voluntary context switches): TB_DETAIL's line. */
struct detail {
	unsigned long long utime, stime, wakes, nonvol;
};

static void task_detail(const char *p, const char *t, struct detail *d)
{
	char f[300], line[256];
	snprintf(f, sizeof f, "/proc/%s/task/%s/stat", p, t);
	FILE *fp = fopen(f, "r");
	if (fp) {
		unsigned long long u = 0, s = 0;
		char *rp = fgets(line, sizeof line, fp) ? strrchr(line, ')') : NULL;
		/* after the name: state, then fields 4..13, utime (14), stime (15) */
		if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				 &u, &s) == 2) {
			d->utime += u;
			d->stime += s;
		}
		fclose(fp);
	}
	snprintf(f, sizeof f, "/proc/%s/task/%s/status", p, t);
	fp = fopen(f, "r");
	if (!fp)
		return;
	unsigned long long v;
	while (fgets(line, sizeof line, fp)) {
		if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1)
			d->wakes += v;
		else if (sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
			d->nonvol += v;
	}
	fclose(fp);
}

/* CPU time (ns, user + system, every thread) of the processes in TB_PIDS
 * (space-separated), from /proc/PID/task/TID/schedstat; d (if not NULL)
 * gets the detail. */
static uint64_t server_cpu_ns_detail(struct detail *det)
{
	const char *pids = getenv("TB_PIDS");
	uint64_t sum = 0;
	if (!pids)
		return 0;
	char list[4096];
	snprintf(list, sizeof list, "%s", pids);
	for (char *save = NULL, *p = strtok_r(list, " ", &save); p;
	     p = strtok_r(NULL, " ", &save)) {
		char path[128];
		snprintf(path, sizeof path, "/proc/%s/task", p);
		DIR *d = opendir(path);
		if (!d)
			continue;
		for (struct dirent *e; (e = readdir(d));) {
			if (e->d_name[0] == '.')
				continue;
			char f[300];
			snprintf(f, sizeof f, "/proc/%s/task/%s/schedstat", p, e->d_name);
			FILE *fp = fopen(f, "r");
			unsigned long long ns = 0;
			if (fp && fscanf(fp, "%llu", &ns) == 1)
				sum += ns;
			if (fp)
				fclose(fp);
			if (det)
				task_detail(p, e->d_name, det);
		}
		closedir(d);
	}
	return sum;
}

static uint64_t server_cpu_ns(void)
{
	return server_cpu_ns_detail(NULL);
}

static int open_conn(unsigned i, unsigned idx)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	unsigned k = (first + idx) / (unsigned)per_source;
	struct sockaddr_in src = {.sin_family = AF_INET};
	src.sin_addr.s_addr =
	    htonl((127u << 24) | ((3 + k / 62500) << 16) | ((k / 250 % 250) << 8) | (1 + k % 250));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
		close(fd);
		return -1;
	}
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	return fd;
}

static void want(struct cx *c, unsigned i, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.u32 = i};
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void drop(struct cx *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd >= 0) {
		struct linger l = {1, 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
		close(c->fd);
	}
	c->fd = -1;
	c->st = ST_DONE;
	c->inlen = 0;
}

static int reg_msg(char *buf, size_t len, unsigned i, unsigned cseq, bool ws)
{
	i += first;
	return snprintf(buf, len,
			"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
			"Via: SIP/2.0/%s tb%u.invalid;branch=z9hG4bK-%u-%u\r\n"
			"Max-Forwards: 70\r\n"
			"From: <sip:tb%u@127.0.0.1>;tag=t%u\r\n"
			"To: <sip:tb%u@127.0.0.1>\r\n"
			"Call-ID: tb-%u-%d@bench\r\n"
			"CSeq: %u REGISTER\r\n"
			"Contact: <sip:tb%u@tb%u.invalid;transport=%s>\r\n"
			"Expires: 3600\r\n"
			"User-Agent: tls_bench\r\n"
			"Content-Length: 0\r\n\r\n",
			ws ? "WS" : "TLS", i, i, cseq, i, i, i, i, (int)getpid(), cseq, i, i,
			ws ? "ws" : "tls");
}

/* Writes all of buf over the connection (small messages: the kernel takes them). */
static int put(struct cx *c, const void *buf, size_t len)
{
	if (c->ssl) {
		size_t done;
		return SSL_write_ex(c->ssl, buf, len, &done) == 1 && done == len ? 0 : -1;
	}
	return send(c->fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static int send_reg(struct cx *c, unsigned i)
{
	char msg[1024];
	int n = reg_msg(msg, sizeof msg, i, ++c->cseq, c->ws);
	if (!c->ws)
		return put(c, msg, (size_t)n);
	unsigned char fr[1100];
	size_t h = 0;
	fr[h++] = 0x81; /* FIN, text */
	if (n < 126) {
		fr[h++] = 0x80 | (unsigned char)n;
	} else {
		fr[h++] = 0x80 | 126;
		fr[h++] = (unsigned char)(n >> 8);
		fr[h++] = (unsigned char)n;
	}
	unsigned char mask[4] = {0x12, 0x34, 0x56, (unsigned char)i};
	memcpy(fr + h, mask, 4);
	h += 4;
	for (int k = 0; k < n; k++)
		fr[h + (size_t)k] = (unsigned char)msg[k] ^ mask[k & 3];
	return put(c, fr, h + (size_t)n);
}

/* Reads what is there; returns -1 on close or error, else bytes now held. */
static ssize_t pull(struct cx *c)
{
	for (;;) {
		if (c->inlen == sizeof c->in)
			c->inlen = 0; /* only the counting of answers matters */
		size_t room = sizeof c->in - c->inlen;
		ssize_t k;
		if (c->ssl) {
			size_t got = 0;
			int r = SSL_read_ex(c->ssl, c->in + c->inlen, room, &got);
			if (r != 1) {
				int e = SSL_get_error(c->ssl, r);
				ERR_clear_error();
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return (ssize_t)c->inlen;
				return -1;
			}
			k = (ssize_t)got;
		} else {
			k = recv(c->fd, c->in + c->inlen, room, 0);
			if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return (ssize_t)c->inlen;
			if (k <= 0)
				return -1;
		}
		c->inlen += (size_t)k;
	}
}

/* Takes the complete SIP answers out of the input; counts the 200s. */
static unsigned answers(struct cx *c, unsigned *ok)
{
	unsigned n = 0;
	for (;;) {
		char *start = memmem(c->in, c->inlen, "SIP/2.0 ", 8);
		if (!start)
			break;
		char *end = memmem(start, c->inlen - (size_t)(start - c->in), "\r\n\r\n", 4);
		if (!end)
			break;
		if (!strncmp(start + 8, "200", 3))
			++*ok;
		n++;
		size_t used = (size_t)(end + 4 - c->in);
		memmove(c->in, c->in + used, c->inlen - used);
		c->inlen -= used;
	}
	return n;
}

static const char *upgrade_req =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: sip\r\n\r\n";

/* Drives connection i one step; returns true when it reached what the mode
 * wants (handshake answered, registered). */
static int step(unsigned i, bool hs_mode, unsigned *ok)
{
	struct cx *c = &cxs[i];
	if (c->st == ST_CONNECT) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err)
			return -1;
		if (c->ws) {
			if (put(c, upgrade_req, strlen(upgrade_req)))
				return -1;
			c->st = ST_UPGRADE;
			want(c, i, EPOLLIN);
			return 0;
		}
		c->ssl = SSL_new(ctx);
		SSL_set_fd(c->ssl, c->fd);
		SSL_set_connect_state(c->ssl);
		c->st = ST_HS;
	}
	if (c->st == ST_HS) {
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				want(c, i, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
				return 0;
			}
			ERR_clear_error();
			return -1;
		}
		want(c, i, EPOLLIN);
		if (hs_mode) {
			if (put(c, "\r\n\r\n", 4))
				return -1;
			c->st = ST_PONG;
			return 0;
		}
		if (send_reg(c, i))
			return -1;
		c->st = ST_REG;
		return 0;
	}
	if (pull(c) < 0)
		return -1;
	if (c->st == ST_PONG) {
		if (memmem(c->in, c->inlen, "\r\n", 2))
			return 1;
		return 0;
	}
	if (c->st == ST_UPGRADE) {
		char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
		if (!end)
			return 0;
		if (strncmp(c->in, "HTTP/1.1 101", 12))
			return -1;
		c->inlen = 0;
		if (send_reg(c, i))
			return -1;
		c->st = ST_REG;
		return 0;
	}
	unsigned before = *ok;
	unsigned n = answers(c, ok);
	if (n && c->st == ST_REG) {
		c->st = ST_IDLE;
		c->outstanding = false;
		return *ok > before ? 1 : -1;
	}
	if (n)
		c->outstanding = false;
	return 0;
}

/* hsl: connection i one step with the light client (1 done, 0 wait, -1). */
static int lite_conn_step(unsigned i)
{
	struct cx *c = &cxs[i];
	if (c->st == ST_CONNECT) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err)
			return -1;
		c->st = ST_HS;
		want(c, i, EPOLLIN);
	}
	return lite_step(c->lite, c->fd);
}

static void usage(void)
{
	fprintf(stderr, "usage: tls_bench hs|hsl PORT CONC SECS | reg PORT CONNS RATE SECS | "
			"hold PORT CONNS tls|ws\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 5)
		usage();
	signal(SIGPIPE, SIG_IGN);
	const char *mode = argv[1];
	port = atoi(argv[2]);
	unsigned n = (unsigned)atoi(argv[3]);
	if (getenv("TB_PER_SOURCE"))
		per_source = atoi(getenv("TB_PER_SOURCE"));
	if (getenv("TB_FIRST"))
		first = (unsigned)atoi(getenv("TB_FIRST"));
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < n + 100) {
		rl.rlim_cur = n + 100 < rl.rlim_max ? n + 100 : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* TB_GROUPS: the key exchange groups offered (hs), e.g. only ffdhe8192,
	 * the dearest a server may accept */
	if (getenv("TB_GROUPS") && SSL_CTX_set1_groups_list(ctx, getenv("TB_GROUPS")) != 1) {
		fprintf(stderr, "tls_bench: TB_GROUPS %s\n", getenv("TB_GROUPS"));
		return 2;
	}
	ep = epoll_create1(0);
	cxs = calloc(n, sizeof *cxs);
	struct epoll_event evs[256];
	unsigned ok = 0;

	bool lite = !strcmp(mode, "hsl");
	if (lite && lite_init()) {
		fprintf(stderr, "tls_bench: no X25519\n");
		return 1;
	}
	if (!strcmp(mode, "hs") || lite) {
		if (argc < 5)
			usage();
		double secs = atof(argv[4]);
		unsigned done = 0, failed = 0, next = 0;
		for (unsigned i = 0; i < n; i++) {
			cxs[i].fd = open_conn(i, next++ % 20000);
			cxs[i].st = ST_CONNECT;
			if (lite)
				cxs[i].lite = lite_new();
		}
		uint64_t end = now_ns() + (uint64_t)(secs * 1e9), cpu0 = server_cpu_ns();
		while (now_ns() < end) {
			int k = epoll_wait(ep, evs, 256, 100);
			for (int j = 0; j < k; j++) {
				unsigned i = evs[j].data.u32;
				int r = lite ? lite_conn_step(i) : step(i, true, &ok);
				if (r == 0)
					continue;
				if (r > 0)
					done++;
				else
					failed++;
				drop(&cxs[i]);
				cxs[i].fd = open_conn(i, next++ % 20000);
				cxs[i].st = cxs[i].fd < 0 ? ST_DONE : ST_CONNECT;
				if (lite)
					lite_reset(cxs[i].lite);
			}
		}
		printf("hs %u failed %u cpu_ns %llu\n", done, failed,
		       (unsigned long long)(server_cpu_ns() - cpu0));
		return 0;
	}

	bool ws = (!strcmp(mode, "hold") && argc > 4 && !strcmp(argv[4], "ws")) ||
		  (!strcmp(mode, "reg") && argc > 6 && !strcmp(argv[6], "ws"));
	bool hold = !strcmp(mode, "hold");
	if (!hold && strcmp(mode, "reg"))
		usage();
	/* open and register every flow, at most 200 in progress */
	unsigned opened = 0, ready = 0, failed = 0, inflight = 0;
	while (ready + failed < n) {
		while (opened < n && inflight < 200) {
			cxs[opened].ws = ws;
			cxs[opened].fd = open_conn(opened, opened);
			cxs[opened].st = ST_CONNECT;
			if (cxs[opened].fd < 0) {
				cxs[opened].st = ST_DONE;
				failed++;
			} else {
				inflight++;
			}
			opened++;
		}
		int k = epoll_wait(ep, evs, 256, 10000);
		if (k == 0) {
			fprintf(stderr, "tls_bench: stalled at %u ready %u failed\n", ready,
				failed);
			break;
		}
		for (int j = 0; j < k; j++) {
			unsigned i = evs[j].data.u32;
			if (cxs[i].st == ST_DONE || cxs[i].st == ST_IDLE)
				continue;
			unsigned dummy = 0;
			int r = step(i, false, &dummy);
			if (r == 0)
				continue;
			inflight--;
			if (r > 0) {
				ready++;
				if (hold) {
					/* the server's side stays; ours shrinks to the socket */
					epoll_ctl(ep, EPOLL_CTL_DEL, cxs[i].fd, NULL);
					SSL_free(cxs[i].ssl);
					cxs[i].ssl = NULL;
				}
			} else {
				failed++;
				drop(&cxs[i]);
			}
		}
	}
	if (hold) {
		printf("held %u failed %u\n", ready, failed);
		fflush(stdout);
		char b[16];
		while (read(0, b, sizeof b) > 0)
			;
		return 0;
	}
	/* reg: refreshes at RATE/s round the flows for SECS */
	if (argc < 6)
		usage();
	double rate = atof(argv[4]), secs = atof(argv[5]);
	unsigned sent = 0, okc = 0, at = 0;
	struct detail d0 = {0}, d1 = {0};
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), cpu0 = server_cpu_ns_detail(&d0);
	while (now_ns() < end) {
		uint64_t due = (uint64_t)((double)(now_ns() - t0) / 1e9 * rate);
		for (unsigned tries = 0; sent < due && tries < n; tries++) {
			struct cx *c = &cxs[at];
			unsigned i = at;
			at = (at + 1) % n;
			if (c->st != ST_IDLE || c->outstanding)
				continue;
			if (send_reg(c, i) == 0) {
				c->outstanding = true;
				sent++;
			}
		}
		int k = epoll_wait(ep, evs, 256, 1);
		for (int j = 0; j < k; j++) {
			unsigned i = evs[j].data.u32;
			if (cxs[i].st != ST_IDLE)
				continue;
			if (step(i, false, &okc) < 0)
				drop(&cxs[i]);
		}
	}
	/* the last answers */
	uint64_t grace = now_ns() + 500000000ull;
	while (now_ns() < grace) {
		int k = epoll_wait(ep, evs, 256, 50);
		for (int j = 0; j < k; j++) {
			unsigned i = evs[j].data.u32;
			if (cxs[i].st == ST_IDLE && step(i, false, &okc) < 0)
				drop(&cxs[i]);
		}
	}
	uint64_t cpu1 = server_cpu_ns_detail(&d1);
	printf("reg %u %u flows %u cpu_ns %llu\n", sent, okc, ready,
	       (unsigned long long)(cpu1 - cpu0));
	/* TB_DETAIL: a second line, per 200: user and system CPU (ticks, so
	 * coarse), sleeps (voluntary switches: each a wake-up) and preemptions */
	if (getenv("TB_DETAIL") && okc) {
		long hz = sysconf(_SC_CLK_TCK);
		printf("detail user_us %.1f sys_us %.1f wakeups %.3f preempted %.3f per 200\n",
		       (double)(d1.utime - d0.utime) * 1e6 / (double)hz / okc,
		       (double)(d1.stime - d0.stime) * 1e6 / (double)hz / okc,
		       (double)(d1.wakes - d0.wakes) / okc, (double)(d1.nonvol - d0.nonvol) / okc);
	}
	return 0;
}
