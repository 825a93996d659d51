/*
 * alloc_bench: a TURN allocation load generator (RFC 8656 over UDP, coturn's
 * shared-secret credentials).
 *
 *   alloc_bench --server IP:PORT --secret S --peer IP:PORT [--sessions N]
 *               [--sources K] [--duration S] [--warmup S] [--cpu-pid PID]
 *               [--procs P]
 *   alloc_bench ... --hold N [--rss-pid PID]
 *
 * Rate mode: N sessions run at once, each a UDP socket of its own bound to
 * one of K addresses in 127.0.0.0/8 (127.1.x.y: many sources, as many
 * clients behind many NATs would be). Each session cycles through what a
 * fresh client does for one allocation:
 *
 *   Allocate (no credentials) -> 401 with REALM and NONCE
 *   Allocate (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY)  -> success
 *   ChannelBind 0x4000 to the peer                        -> success
 *   Refresh LIFETIME 600                                  -> success
 *   Refresh LIFETIME 0 (deallocate)                       -> success
 *
 * and starts again as a new client: a new socket on the next of the K
 * source addresses (round robin). A cycle counts when its last answer came; a request
 * unanswered after 2 s, or an unexpected answer, ends the session's cycle as
 * failed and it starts again on a new socket. The username of session i is
 * EXPIRY:b<i> (one user per session: per-user quotas do not decide the
 * result), the password base64(HMAC-SHA1(secret, username)), the key
 * MD5(username:realm:password) (RFC 5389 style, no PASSWORD-ALGORITHM).
 * Runs WARMUP seconds, then measures DURATION seconds. With --cpu-pid, reads
 * that process's utime+stime at the start and end of the measured phase.
 * Prints one line: allocs_s (completed cycles per second), failed, cpu_s,
 * cpu_us_per_alloc, p50_ms/p99_ms (cycle time).
 *
 * --procs P splits the N sessions (and the K source addresses) over P
 * processes, each as above, so that the generator is not limited to one CPU;
 * the first one measures the server's CPU and prints the sums.
 *
 * Hold mode: N sessions allocate and bind a channel, then hold them; with
 * --rss-pid the server's VmRSS is read before and after; prints held,
 * rss_before_kb, rss_after_kb, bytes_per_alloc; then deallocates them all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#define COOKIE 0x2112A442u
#define RTO_MS 2000
#define HIST_MS 5000

enum step { S_CHALLENGE, S_ALLOCATE, S_BIND, S_REFRESH, S_DEALLOC, S_HELD };

struct sess {
	int fd;
	unsigned idx;
	enum step st;
	uint8_t tid[12];
	uint64_t sent_ms, cycle_ms;
	char user[64];
	uint8_t key[16];
	char realm[128], nonce[256];
};

static struct sockaddr_in srv, peer;
static char secret[256];
static unsigned nsources = 8192;
static uint64_t ok_cycles, failed, hist[HIST_MS + 1];
static bool measuring;
static int ep;
static uint64_t tid_ctr;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}
static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* HMAC-SHA1 with one context, re-keyed per message; MD5 fetched once: the
 * generator should not be what limits the rate */
static EVP_MAC_CTX *mac;
static EVP_MD *md5;

static void crypto_init(void)
{
	EVP_MAC *h = EVP_MAC_fetch(NULL, "HMAC", NULL);
	mac = EVP_MAC_CTX_new(h);
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA1", 0),
	    OSSL_PARAM_construct_end(),
	};
	EVP_MAC_CTX_set_params(mac, params);
	md5 = EVP_MD_fetch(NULL, "MD5", NULL);
}

static void hmac_sha1(const void *key, size_t kl, const void *p, size_t l, uint8_t out[20])
{
	size_t ol = 0;
	EVP_MAC_init(mac, key, kl, NULL);
	EVP_MAC_update(mac, p, l);
	EVP_MAC_final(mac, out, &ol, 20);
}

/* ---- a tiny STUN encoder ---- */

struct msg {
	uint8_t b[1024];
	size_t len;
};

static void m_begin(struct msg *m, uint16_t type, const uint8_t tid[12])
{
	put16(m->b, type);
	put16(m->b + 2, 0);
	put32(m->b + 4, COOKIE);
	memcpy(m->b + 8, tid, 12);
	m->len = 20;
}

static void m_attr(struct msg *m, uint16_t t, const void *v, size_t l)
{
	put16(m->b + m->len, t);
	put16(m->b + m->len + 2, (uint16_t)l);
	memcpy(m->b + m->len + 4, v, l);
	size_t pad = (4 - (l & 3)) & 3;
	memset(m->b + m->len + 4 + l, 0, pad);
	m->len += 4 + l + pad;
	put16(m->b + 2, (uint16_t)(m->len - 20));
}

static void m_u32(struct msg *m, uint16_t t, uint32_t v)
{
	uint8_t b[4];
	put32(b, v);
	m_attr(m, t, b, 4);
}

static void m_xaddr(struct msg *m, uint16_t t, const struct sockaddr_in *a)
{
	uint8_t v[8] = {0, 1};
	put16(v + 2, (uint16_t)(ntohs(a->sin_port) ^ (COOKIE >> 16)));
	put32(v + 4, ntohl(a->sin_addr.s_addr) ^ COOKIE);
	m_attr(m, t, v, 8);
}

static void m_auth(struct msg *m, const struct sess *s)
{
	m_attr(m, 0x0006, s->user, strlen(s->user));
	m_attr(m, 0x0014, s->realm, strlen(s->realm));
	m_attr(m, 0x0015, s->nonce, strlen(s->nonce));
	/* MESSAGE-INTEGRITY: HMAC-SHA1 over the message with the length
	 * counting the attribute (RFC 8489 14.5) */
	put16(m->b + 2, (uint16_t)(m->len - 20 + 24));
	uint8_t md[20];
	hmac_sha1(s->key, 16, m->b, m->len, md);
	m_attr(m, 0x0008, md, 20);
}

/* ---- sessions ---- */

static unsigned next_src;

/* A new socket on the next source address: every cycle is a new client. */
static int open_sock(struct sess *s)
{
	unsigned k = next_src++ % nsources;
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(0x7f010000u | ((k / 250) << 8) | (k % 250 + 1));
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
	    connect(fd, (struct sockaddr *)&srv, sizeof srv) < 0) {
		close(fd);
		return -1;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	s->fd = fd;
	return 0;
}

static void new_tid(struct sess *s)
{
	uint64_t c = ++tid_ctr;
	memcpy(s->tid, &c, 8);
	put32(s->tid + 8, s->idx);
}

static void send_step(struct sess *s)
{
	struct msg m;
	new_tid(s);
	switch (s->st) {
	case S_CHALLENGE:
	case S_ALLOCATE:
		m_begin(&m, 0x0003, s->tid);
		m_u32(&m, 0x0019, 17u << 24); /* REQUESTED-TRANSPORT UDP */
		break;
	case S_BIND:
		m_begin(&m, 0x0009, s->tid);
		m_u32(&m, 0x000c, 0x4000u << 16);
		m_xaddr(&m, 0x0012, &peer);
		break;
	case S_REFRESH:
	case S_DEALLOC:
		m_begin(&m, 0x0004, s->tid);
		m_u32(&m, 0x000d, s->st == S_REFRESH ? 600 : 0);
		break;
	case S_HELD:
		return;
	}
	if (s->st != S_CHALLENGE)
		m_auth(&m, s);
	s->sent_ms = now_ms();
	send(s->fd, m.b, m.len, 0);
}

static void start_cycle(struct sess *s)
{
	s->st = S_CHALLENGE;
	s->cycle_ms = now_ms();
	/* coturn's REST-API username: EXPIRY:USER, password base64(HMAC-SHA1) */
	snprintf(s->user, sizeof s->user, "%lld:b%u", (long long)time(NULL) + 86400, s->idx);
	send_step(s);
}

static void restart(struct sess *s)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	if (open_sock(s) == 0)
		start_cycle(s);
}

static void derive_key(struct sess *s)
{
	uint8_t md[20];
	hmac_sha1(secret, strlen(secret), s->user, strlen(s->user), md);
	char pw[40];
	EVP_EncodeBlock((uint8_t *)pw, md, 20);
	char in[512];
	int n = snprintf(in, sizeof in, "%s:%s:%s", s->user, s->realm, pw);
	unsigned kl = 0;
	EVP_Digest(in, (size_t)n, s->key, &kl, md5, NULL);
}

/* The error code of a response, 0 for a success. */
static int read_answer(struct sess *s, const uint8_t *p, size_t n, unsigned *code)
{
	if (n < 20 || get16(p + 2) + 20u != n || memcmp(p + 8, s->tid, 12) != 0)
		return -1;
	uint16_t type = get16(p);
	*code = 0;
	bool err = (type & 0x0110) == 0x0110;
	for (size_t o = 20; o + 4 <= n;) {
		uint16_t t = get16(p + o), l = get16(p + o + 2);
		if (o + 4 + l > n)
			return -1;
		const uint8_t *v = p + o + 4;
		if (t == 0x0009 && l >= 4)
			*code = (unsigned)(v[2] & 7) * 100 + v[3];
		else if (t == 0x0014 && l < sizeof s->realm) {
			memcpy(s->realm, v, l);
			s->realm[l] = 0;
		} else if (t == 0x0015 && l < sizeof s->nonce) {
			memcpy(s->nonce, v, l);
			s->nonce[l] = 0;
		}
		o += 4 + ((l + 3u) & ~3u);
	}
	if (err && !*code)
		*code = 500;
	return 0;
}

static bool hold_mode;
static unsigned held;

static void on_answer(struct sess *s, const uint8_t *p, size_t n)
{
	unsigned code;
	if (s->st == S_HELD || read_answer(s, p, n, &code))
		return;
	if (s->st == S_CHALLENGE) {
		if (code != 401) {
			failed += measuring;
			restart(s);
			return;
		}
		derive_key(s);
		s->st = S_ALLOCATE;
	} else if (code == 438) {
		/* stale nonce: again with the fresh one */
	} else if (code) {
		failed += measuring;
		restart(s);
		return;
	} else if (s->st == S_DEALLOC) {
		if (measuring) {
			ok_cycles++;
			uint64_t d = now_ms() - s->cycle_ms;
			hist[d < HIST_MS ? d : HIST_MS]++;
		}
		restart(s);
		return;
	} else if (hold_mode && s->st == S_BIND) {
		s->st = S_HELD;
		held++;
		return;
	} else {
		s->st++;
	}
	send_step(s);
}

static uint64_t proc_cpu_ticks(int pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	unsigned long ut = 0, st = 0;
	/* fields after the name: state is 3rd; utime 14th, stime 15th */
	sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return ut + st;
}

static long proc_rss_kb(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	long kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char ip[64];
	unsigned port;
	if (sscanf(s, "%63[0-9.]:%u", ip, &port) != 2 || port > 65535)
		return -1;
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

static void pump(struct sess *ss, unsigned n, uint64_t until)
{
	struct epoll_event evs[256];
	uint64_t last_scan = now_ms();
	while (now_ms() < until) {
		int k = epoll_wait(ep, evs, 256, 50);
		for (int i = 0; i < k; i++) {
			struct sess *s = evs[i].data.ptr;
			uint8_t p[1500];
			ssize_t r;
			while ((r = recv(s->fd, p, sizeof p, 0)) > 0)
				on_answer(s, p, (size_t)r);
		}
		uint64_t t = now_ms();
		if (t - last_scan >= 100) {
			last_scan = t;
			for (unsigned i = 0; i < n; i++)
				if (ss[i].st != S_HELD && t - ss[i].sent_ms > RTO_MS) {
					failed += measuring;
					restart(&ss[i]);
				}
		}
		if (hold_mode && held == n)
			return;
	}
}

static bool read_full(int fd, void *p, size_t l)
{
	for (size_t off = 0; off < l;) {
		ssize_t r = read(fd, (char *)p + off, l - off);
		if (r <= 0)
			return false;
		off += (size_t)r;
	}
	return true;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"server", required_argument, NULL, 's'},
	    {"secret", required_argument, NULL, 'k'},
	    {"peer", required_argument, NULL, 'p'},
	    {"sessions", required_argument, NULL, 'n'},
	    {"sources", required_argument, NULL, 'S'},
	    {"duration", required_argument, NULL, 'd'},
	    {"warmup", required_argument, NULL, 'w'},
	    {"cpu-pid", required_argument, NULL, 'c'},
	    {"hold", required_argument, NULL, 'h'},
	    {"rss-pid", required_argument, NULL, 'r'},
	    {"procs", required_argument, NULL, 'P'},
	    {NULL, 0, NULL, 0},
	};
	unsigned n = 64, dur = 5, warm = 1, hold = 0, procs = 1;
	int cpu_pid = 0, rss_pid = 0, c;
	bool have_srv = false, have_peer = false;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			have_srv = parse_addr(optarg, &srv) == 0;
			break;
		case 'k':
			snprintf(secret, sizeof secret, "%s", optarg);
			break;
		case 'p':
			have_peer = parse_addr(optarg, &peer) == 0;
			break;
		case 'n':
			n = (unsigned)atoi(optarg);
			break;
		case 'S':
			nsources = (unsigned)atoi(optarg);
			break;
		case 'd':
			dur = (unsigned)atoi(optarg);
			break;
		case 'w':
			warm = (unsigned)atoi(optarg);
			break;
		case 'c':
			cpu_pid = atoi(optarg);
			break;
		case 'h':
			hold = (unsigned)atoi(optarg);
			break;
		case 'r':
			rss_pid = atoi(optarg);
			break;
		case 'P':
			procs = (unsigned)atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (!have_srv || !have_peer || !secret[0] || !nsources || nsources > 62500) {
		fprintf(stderr,
			"usage: alloc_bench --server IP:PORT --secret S --peer IP:PORT ...\n");
		return 2;
	}
	if (hold) {
		hold_mode = true;
		n = hold;
		procs = 1;
	}
	if (procs < 1 || procs > 16 || procs > n) {
		fprintf(stderr, "alloc_bench: --procs 1..16, at most --sessions\n");
		return 2;
	}
	/* process me runs sessions [base, base + n) of the whole n; it tells
	 * the first its counts through a pipe */
	unsigned me = 0, base = 0, all = n;
	int pipes[16][2];
	pid_t kids[16];
	for (unsigned k = 1; k < procs; k++) {
		if (pipe(pipes[k]) < 0 || (kids[k] = fork()) < 0) {
			perror("fork");
			return 1;
		}
		if (kids[k] == 0) {
			me = k;
			break;
		}
		close(pipes[k][1]);
	}
	base = all / procs * me;
	n = me == procs - 1 ? all - base : all / procs;
	next_src = nsources / procs * me;
	struct rlimit rl = {n + 64, n + 64};
	setrlimit(RLIMIT_NOFILE, &rl);
	crypto_init();
	ep = epoll_create1(EPOLL_CLOEXEC);
	struct sess *ss = calloc(n, sizeof *ss);
	if (!ss)
		return 1;
	srand((unsigned)getpid());
	tid_ctr = (uint64_t)rand() << 32;
	long rss0 = rss_pid ? proc_rss_kb(rss_pid) : -1;
	for (unsigned i = 0; i < n; i++) {
		ss[i].idx = base + i;
		if (open_sock(&ss[i])) {
			perror("socket");
			return 1;
		}
		start_cycle(&ss[i]);
		if (hold_mode && i % 256 == 255)
			pump(ss, i + 1, now_ms() + 1); /* do not flood the server's queue */
	}
	if (hold_mode) {
		pump(ss, n, now_ms() + 60000);
		sleep(1);
		long rss1 = rss_pid ? proc_rss_kb(rss_pid) : -1;
		printf("held=%u rss_before_kb=%ld rss_after_kb=%ld bytes_per_alloc=%.0f\n", held,
		       rss0, rss1, held ? (double)(rss1 - rss0) * 1024.0 / held : 0.0);
		/* release them: Refresh 0 from each */
		hold_mode = false;
		for (unsigned i = 0; i < n; i++)
			if (ss[i].st == S_HELD) {
				ss[i].st = S_DEALLOC;
				send_step(&ss[i]);
			}
		measuring = false;
		uint64_t end = now_ms() + 3000;
		struct epoll_event evs[256];
		while (now_ms() < end) {
			int k = epoll_wait(ep, evs, 256, 50);
			for (int i = 0; i < k; i++) {
				struct sess *s = evs[i].data.ptr;
				uint8_t p[1500];
				while (recv(s->fd, p, sizeof p, 0) > 0)
					s->st = S_HELD; /* answered: stop here */
			}
		}
		return 0;
	}
	pump(ss, n, now_ms() + warm * 1000u);
	measuring = true;
	uint64_t cpu0 = cpu_pid ? proc_cpu_ticks(cpu_pid) : 0;
	uint64_t t0 = now_ms();
	pump(ss, n, t0 + dur * 1000u);
	uint64_t t1 = now_ms();
	uint64_t cpu1 = cpu_pid ? proc_cpu_ticks(cpu_pid) : 0;
	measuring = false;
	if (me) { /* a helper process: its counts to the first */
		ssize_t w = write(pipes[me][1], &ok_cycles, sizeof ok_cycles);
		w += write(pipes[me][1], &failed, sizeof failed);
		w += write(pipes[me][1], hist, sizeof hist);
		(void)w;
	}
	for (unsigned k = 1; me == 0 && k < procs; k++) {
		uint64_t v[2], h[HIST_MS + 1];
		if (read_full(pipes[k][0], v, sizeof v) && read_full(pipes[k][0], h, sizeof h)) {
			ok_cycles += v[0];
			failed += v[1];
			for (unsigned i = 0; i <= HIST_MS; i++)
				hist[i] += h[i];
		}
		waitpid(kids[k], NULL, 0);
	}
	double secs = (double)(t1 - t0) / 1000.0;
	double cpu_s = (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK);
	uint64_t tot = 0, p50 = 0, p99 = 0, acc = 0;
	for (unsigned i = 0; i <= HIST_MS; i++)
		tot += hist[i];
	for (unsigned i = 0; i <= HIST_MS; i++) {
		acc += hist[i];
		if (!p50 && acc * 2 >= tot)
			p50 = i;
		if (!p99 && acc * 100 >= tot * 99) {
			p99 = i;
			break;
		}
	}
	if (me == 0)
		printf("allocs_s=%.0f failed=%llu cpu_s=%.2f cpu_us_per_alloc=%.1f p50_ms=%llu "
		       "p99_ms=%llu\n",
		       (double)ok_cycles / secs, (unsigned long long)failed, cpu_s,
		       ok_cycles ? cpu_s * 1e6 / (double)ok_cycles : 0.0, (unsigned long long)p50,
		       (unsigned long long)p99);
	/* release what is allocated now, so that runs do not pile up */
	for (unsigned i = 0; i < n; i++)
		if (ss[i].st == S_BIND || ss[i].st == S_REFRESH) {
			ss[i].st = S_DEALLOC;
			send_step(&ss[i]);
		}
	usleep(300000);
	return 0;
}
