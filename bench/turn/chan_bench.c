/* TURN ChannelData load generator (bench/turn/relay.sh): N allocations (coturn's shared-secret
 * credentials), each with a channel to one peer socket, then media through them both ways at
 * a fixed rate; counts what arrives, checks every byte, and reads the server's CPU (and its
 * eBPF program's run time) over the measured window.
 *
 *   chan_bench SERVER:PORT SECRET PEER_IP CLIENT_NET STREAMS PPS SECS [PID [BPF_PROG_ID]]
 *
 * CLIENT_NET "198.18.1": clients bind CLIENT_NET.1 to .250 in turn (the server
 * sees many sources, as from many NATs). PPS is per allocation and per
 * direction; packets are 172 bytes (G.711 at 20 ms) unless BENCH_SIZE says
 * otherwise. One second of warm-up precedes SECS measured seconds. Prints one
 * line of key=value figures.
 *
 * BENCH_RXTIME_OBJ (rx_time.bpf.o, built by relay.sh) and BENCH_SRV_NETNS (a path to the
 * server's network namespace, /run/netns/NAME): the kernel's receive time per namespace
 * over the window as well (rx_time.bpf.c), for the accounting that charges each server its
 * packets' way in and out through the kernel (rx_srv_s, and ns_all_per_pkt).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "stun/stun.h"
#include "turn/turn.h"

#define MAGIC 0x50485442u /* "PHTB" */
#define CHAN 0x4000

struct stream {
	int fd;
	struct net_addr relay;
	char user[64];
	uint8_t key[32];
	size_t keylen;
	char nonce[128], realm[128];
	uint32_t seq_tp, seq_tc;
};

static struct net_addr srv, peer;
static const char *secret;
static size_t size = 172;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int xchg(struct stream *s, struct buf *b, struct stun_msg *m, uint8_t *rx, size_t cap)
{
	for (int tries = 0; tries < 5; tries++) {
		sendto(s->fd, b->data, b->len, 0, &srv.u.sa, net_addr_len(&srv));
		struct pollfd pf = {s->fd, POLLIN, 0};
		while (poll(&pf, 1, 500) == 1) {
			ssize_t n = recv(s->fd, rx, cap, 0);
			if (n > 20 && stun_msg_decode(m, rx, (size_t)n) == 0 &&
			    memcmp(rx + 8, b->data + 8, 12) == 0) {
				if (m->cls == STUN_CLASS_SUCCESS)
					return 0;
				uint16_t code = 0;
				stun_attr_error(stun_msg_attr(m, STUN_ATTR_ERROR_CODE), &code, NULL);
				const struct stun_attr *a = stun_msg_attr(m, STUN_ATTR_NONCE);
				if (a)
					slice_to_cstr(stun_attr_slice(a), s->nonce, sizeof s->nonce);
				if ((a = stun_msg_attr(m, STUN_ATTR_REALM)))
					slice_to_cstr(stun_attr_slice(a), s->realm, sizeof s->realm);
				return code;
			}
		}
	}
	return -1;
}

static void auth(struct stream *s, struct stun_enc *e)
{
	stun_enc_str(e, STUN_ATTR_USERNAME, slice_cstr(s->user));
	stun_enc_str(e, STUN_ATTR_REALM, slice_cstr(s->realm));
	stun_enc_str(e, STUN_ATTR_NONCE, slice_cstr(s->nonce));
	stun_enc_integrity(e, s->key, s->keylen);
}

static int setup(struct stream *s, unsigned i, const char *net)
{
	char ip[64];
	snprintf(ip, sizeof ip, "%s.%u:0", net, 1 + i % 250);
	struct net_addr local;
	if (net_addr_parse(ip, 0, &local))
		return EINVAL;
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, &local.u.sa, net_addr_len(&local)))
		return errno;
	snprintf(s->user, sizeof s->user, "%lld:b%u-%d", (long long)time(NULL) + 3600, i,
		 (int)getpid());
	char pass[29];
	turn_secret_password(slice_cstr(secret), slice_cstr(s->user), pass);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	struct stun_msg m;
	uint8_t rx[2048];
	stun_enc_begin(&e, &b, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, NULL);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_end(&e);
	int code = xchg(s, &b, &m, rx, sizeof rx);
	if (code != 401)
		goto out;
	stun_key_long_term(STUN_PWALG_MD5, slice_cstr(s->user), slice_cstr(s->realm),
			   slice_cstr(pass), s->key, &s->keylen);
	buf_reset(&b);
	stun_enc_begin(&e, &b, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, NULL);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	auth(s, &e);
	stun_enc_end(&e);
	if ((code = xchg(s, &b, &m, rx, sizeof rx)))
		goto out;
	if ((code = stun_msg_addr(&m, STUN_ATTR_XOR_RELAYED_ADDRESS, &s->relay.u.ss)))
		goto out;
	buf_reset(&b);
	stun_enc_begin(&e, &b, STUN_METHOD_CHANNEL_BIND, STUN_CLASS_REQUEST, NULL);
	stun_enc_channel(&e, CHAN);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer.u.sa);
	auth(s, &e);
	stun_enc_end(&e);
	code = xchg(s, &b, &m, rx, sizeof rx);
out:
	buf_free(&b);
	return code;
}

static void teardown(struct stream *s)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	struct stun_msg m;
	uint8_t rx[2048];
	stun_enc_begin(&e, &b, STUN_METHOD_REFRESH, STUN_CLASS_REQUEST, NULL);
	stun_enc_u32(&e, STUN_ATTR_LIFETIME, 0);
	auth(s, &e);
	stun_enc_end(&e);
	xchg(s, &b, &m, rx, sizeof rx);
	buf_free(&b);
	close(s->fd);
}

/* payload: magic, stream, seq, phase, then bytes that follow from them */
static void payload(uint8_t *p, uint32_t stream, uint32_t seq, uint8_t phase)
{
	uint32_t h[3] = {htonl(MAGIC), htonl(stream), htonl(seq)};
	memcpy(p, h, sizeof h);
	p[12] = phase;
	for (size_t k = 13; k < size; k++)
		p[k] = (uint8_t)(stream * 31 + seq * 7 + k);
}

static int check(const uint8_t *p, size_t n, unsigned nstreams, uint8_t *phase)
{
	uint32_t h[3];
	if (n != size)
		return -1;
	memcpy(h, p, sizeof h);
	uint32_t st = ntohl(h[1]), seq = ntohl(h[2]);
	if (ntohl(h[0]) != MAGIC || st >= nstreams)
		return -1;
	for (size_t k = 13; k < size; k++)
		if (p[k] != (uint8_t)(st * 31 + seq * 7 + k))
			return -1;
	*phase = p[12];
	return 0;
}

/* Reads fd until it is empty: the peer's socket (raw data) or a client's
 * (ChannelData), counting what was sent in the measured phase. */
static void drain(int fd, bool at_peer, unsigned n, uint64_t recv_m[2], uint64_t *bad)
{
	static uint8_t rx[64][2048];
	struct mmsghdr mm[64];
	struct iovec iov[64];
	for (;;) {
		for (int i = 0; i < 64; i++) {
			iov[i] = (struct iovec){rx[i], sizeof rx[i]};
			mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
		}
		int k = recvmmsg(fd, mm, 64, MSG_DONTWAIT, NULL);
		if (k <= 0)
			return;
		for (int i = 0; i < k; i++) {
			const uint8_t *p = rx[i];
			size_t len = mm[i].msg_len;
			uint8_t ph;
			if (!at_peer) {
				if (len < 4 || (p[0] << 8 | p[1]) != CHAN ||
				    (size_t)(p[2] << 8 | p[3]) != len - 4) {
					(*bad)++;
					continue;
				}
				p += 4;
				len -= 4;
			}
			if (check(p, len, n, &ph)) {
				(*bad)++;
				continue;
			}
			recv_m[at_peer ? 0 : 1] += ph;
		}
		if (k < 64)
			return;
	}
}

static double cpu_s(int pid)
{
	if (pid <= 0)
		return 0;
	char path[64], line[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(line, 1, sizeof line - 1, f);
	fclose(f);
	line[n] = 0;
	char *p = strrchr(line, ')');
	unsigned long ut = 0, st = 0;
	if (p)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* kernel.bpf_stats_enabled: 1 while the kernel times every BPF program's run (two clock
 * reads per run: on this kind of VM a cost of its own, in every program's packets) */
static int bpf_stats_on(void)
{
	FILE *f = fopen("/proc/sys/kernel/bpf_stats_enabled", "r");
	int v = -1;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static uint64_t bpf_ns(int id)
{
	if (id <= 0)
		return 0;
	int fd = bpf_prog_get_fd_by_id((uint32_t)id);
	if (fd < 0)
		return 0;
	struct bpf_prog_info info = {0};
	uint32_t len = sizeof info;
	uint64_t ns = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.run_time_ns : 0;
	close(fd);
	return ns;
}

/* the receive-time probes (rx_time.bpf.c): [0] server ns, [1] generator ns, [2] and [3]
 * the same while the server's process was current; body: the probes' own time there, left
 * out of ns */
struct rx_acc {
	uint64_t ns[4], pkts[4], body[4];
	uint64_t probe_ns, probe_runs; /* the rx_in probe's own run time (bpf_stats) */
};
static struct bpf_object *rx_obj;
static int rx_fd = -1;

/* loads and attaches one copy of the probes, configured for these namespaces */
static struct bpf_object *rx_load(const char *obj, const void *conf)
{
	struct bpf_object *o = bpf_object__open_file(obj, NULL);
	if (!o || bpf_object__load(o))
		return NULL;
	uint32_t zero = 0;
	if (bpf_map_update_elem(bpf_object__find_map_fd_by_name(o, "rx_conf"), &zero, conf, 0))
		return NULL;
	struct bpf_program *p;
	bpf_object__for_each_program(p, o)
	{
		if (!bpf_program__attach(p))
			return NULL;
	}
	return o;
}

/* BENCH_RXTIME_TWIN=1: a second copy of the probes runs beside the first, its figures
 * unused: the run's all/pkt less that of a run without it is what one copy of the
 * probes adds to a server's figure (the measuring's own cost, in every server's) */
static struct bpf_object *rx_twin;

static int rx_start(int srv_pid)
{
	const char *obj = getenv("BENCH_RXTIME_OBJ"), *srv_ns = getenv("BENCH_SRV_NETNS");
	if (!obj || !*obj || !srv_ns)
		return 0;
	struct stat sn, gn;
	if (stat(srv_ns, &sn) || stat("/proc/self/ns/net", &gn))
		return errno;
	struct {
		uint32_t srv_netns, gen_netns, srv_tgid;
	} c = {(uint32_t)sn.st_ino, (uint32_t)gn.st_ino, (uint32_t)srv_pid};
	if (!(rx_obj = rx_load(obj, &c)))
		return EINVAL;
	rx_fd = bpf_object__find_map_fd_by_name(rx_obj, "rx_acc");
	const char *twin = getenv("BENCH_RXTIME_TWIN");
	if (twin && strcmp(twin, "1") == 0 && !(rx_twin = rx_load(obj, &c)))
		return EINVAL;
	return 0;
}

static void rx_read(struct rx_acc *out)
{
	memset(out, 0, sizeof *out);
	if (rx_fd < 0)
		return;
	int ncpu = libbpf_num_possible_cpus();
	struct {
		uint64_t ns[4], pkts[4], body[4]; /* rx_time.bpf.c's struct acc, one per CPU */
	} *v = calloc((size_t)ncpu, sizeof *v);
	uint32_t zero = 0;
	if (v && bpf_map_lookup_elem(rx_fd, &zero, v) == 0)
		for (int c = 0; c < ncpu; c++)
			for (int i = 0; i < 4; i++) {
				out->ns[i] += v[c].ns[i];
				out->pkts[i] += v[c].pkts[i];
				out->body[i] += v[c].body[i];
			}
	free(v);
	struct bpf_program *p = bpf_object__find_program_by_name(rx_obj, "rx_in");
	struct bpf_prog_info info = {0};
	uint32_t len = sizeof info;
	if (p && bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) == 0) {
		out->probe_ns = info.run_time_ns;
		out->probe_runs = info.run_cnt;
	}
}

int main(int argc, char **argv)
{
	if (argc < 8) {
		fprintf(stderr, "usage: chan_bench SERVER:PORT SECRET PEER_IP CLIENT_NET STREAMS "
				"PPS SECS [PID [BPF_PROG_ID]]\n");
		return 2;
	}
	if (net_addr_parse(argv[1], 3478, &srv))
		return 2;
	secret = argv[2];
	char pa[80];
	snprintf(pa, sizeof pa, "%s:0", argv[3]);
	if (net_addr_parse(pa, 0, &peer))
		return 2;
	unsigned n = (unsigned)atoi(argv[5]);
	double pps = atof(argv[6]), secs = atof(argv[7]);
	int pid = argc > 8 ? atoi(argv[8]) : 0, prog = argc > 9 ? atoi(argv[9]) : 0;
	if (getenv("BENCH_SIZE"))
		size = (size_t)atoi(getenv("BENCH_SIZE"));
	if (size < 16 || size > 1400)
		return 2;
	int rx_err = rx_start(pid);
	if (rx_err) {
		fprintf(stderr, "receive-time probes: %s\n", strerror(rx_err));
		return 1;
	}
	int pfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int big = 8 << 20;
	setsockopt(pfd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
	setsockopt(pfd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
	if (bind(pfd, &peer.u.sa, net_addr_len(&peer)))
		return perror("peer bind"), 1;
	net_sock_addr(pfd, &peer);
	struct stream *s = calloc(n, sizeof *s);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (unsigned i = 0; i < n; i++) {
		int code = setup(&s[i], i, argv[4]);
		if (code) {
			fprintf(stderr, "stream %u: setup failed (%d)\n", i, code);
			return 1;
		}
		int sz = 256 * 1024;
		setsockopt(s[i].fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &ev);
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = n};
	epoll_ctl(ep, EPOLL_CTL_ADD, pfd, &ev);

	double rate = pps * n; /* per direction */
	uint64_t t0 = now_ns(), warm = 1000000000ull, meas = (uint64_t)(secs * 1e9);
	uint64_t sent = 0, sent_m[2] = {0}, recv_m[2] = {0}, bad = 0, send_err[2] = {0};
	int last_err = 0;
	double cpu0 = 0, cpu1 = 0;
	uint64_t bpf0 = 0, bpf1 = 0;
	struct rx_acc rx0, rx1;
	bool measuring = false;
	int stats0 = -1;
	uint8_t pkt[1500];
	for (;;) {
		uint64_t el = now_ns() - t0;
		if (!measuring && el >= warm) {
			measuring = true;
			stats0 = bpf_stats_on();
			cpu0 = cpu_s(pid);
			bpf0 = bpf_ns(prog);
			rx_read(&rx0);
		}
		if (el >= warm + meas)
			break;
		uint64_t due = (uint64_t)((double)el * rate / 1e9);
		uint8_t phase = measuring;
		for (; sent < due; sent++) {
			struct stream *x = &s[sent % n];
			uint32_t st = (uint32_t)(sent % n);
			stun_chan_header(pkt, CHAN, (uint16_t)size);
			payload(pkt + 4, st, x->seq_tp++, phase);
			if (sendto(x->fd, pkt, 4 + size, 0, &srv.u.sa, net_addr_len(&srv)) > 0)
				sent_m[0] += phase;
			else
				send_err[0]++, last_err = errno;
			payload(pkt, st, x->seq_tc++, phase);
			if (sendto(pfd, pkt, size, 0, &x->relay.u.sa, net_addr_len(&x->relay)) > 0)
				sent_m[1] += phase;
			else
				send_err[1]++, last_err = errno;
		}
		drain(pfd, true, n, recv_m, &bad);
		struct epoll_event evs[256];
		int k = epoll_wait(ep, evs, 256, 1);
		for (int j = 0; j < k; j++)
			if (evs[j].data.u32 != n)
				drain(s[evs[j].data.u32].fd, false, n, recv_m, &bad);
	}
	cpu1 = cpu_s(pid);
	int stats1 = bpf_stats_on();
	bpf1 = bpf_ns(prog);
	rx_read(&rx1);
	if (rx_obj)
		bpf_object__close(rx_obj); /* detaches the probes */
	if (rx_twin)
		bpf_object__close(rx_twin);
	/* what is in flight */
	uint64_t d0 = now_ns();
	while (now_ns() - d0 < 500000000ull) {
		drain(pfd, true, n, recv_m, &bad);
		struct epoll_event evs[256];
		int k = epoll_wait(ep, evs, 256, 10);
		for (int j = 0; j < k; j++)
			if (evs[j].data.u32 != n)
				drain(s[evs[j].data.u32].fd, false, n, recv_m, &bad);
	}
	for (unsigned i = 0; i < n; i++)
		teardown(&s[i]);
	uint64_t tot_sent = sent_m[0] + sent_m[1], tot_recv = recv_m[0] + recv_m[1];
	double cpu = cpu1 - cpu0, bpf = (double)(bpf1 - bpf0) / 1e9;
	double rx[4], body[4];
	uint64_t rxp[4];
	for (int i = 0; i < 4; i++) {
		rx[i] = (double)(rx1.ns[i] - rx0.ns[i]) / 1e9;
		body[i] = (double)(rx1.body[i] - rx0.body[i]) / 1e9;
		rxp[i] = rx1.pkts[i] - rx0.pkts[i];
	}
	/* the server's process without the receive work it happened to run (the
	 * kernel's tick accounting charged it that, the probes' own time in it
	 * included), plus every packet's way through the server's namespace,
	 * whoever ran it: the fast path's program, redirect and transmit included
	 * (bpf_s is inside rx_srv_s); the probes' own work left out (all_incl: with
	 * it, as before session 13) */
	double all = cpu - rx[2] - rx[3] - body[2] - body[3] + rx[0];
	double all_incl = all + body[0];
	printf("streams=%u offered_pps=%.0f relayed_pps=%.0f sent=%llu received=%llu "
	       "lost=%lld bad=%llu to_peer_lost=%lld to_client_lost=%lld cpu_s=%.3f bpf_s=%.3f "
	       "ns_per_pkt=%.0f rx_srv_s=%.3f rx_srv_pkts=%llu rx_gen_s=%.3f rx_gen_pkts=%llu "
	       "rx_in_srv_s=%.3f all_s=%.3f ns_all_per_pkt=%.0f ns_all_incl_per_pkt=%.0f "
	       "probe_body_ns=%.0f probe_ns=%.0f bpf_stats=%d%d twin=%d\n",
	       n, 2 * rate, (double)tot_recv / secs, (unsigned long long)tot_sent,
	       (unsigned long long)tot_recv, (long long)(tot_sent - tot_recv),
	       (unsigned long long)bad, (long long)(sent_m[0] - recv_m[0]),
	       (long long)(sent_m[1] - recv_m[1]), cpu, bpf,
	       tot_recv ? (cpu + bpf) * 1e9 / (double)tot_recv : 0, rx[0],
	       (unsigned long long)rxp[0], rx[1], (unsigned long long)rxp[1],
	       rx[2] + rx[3] + body[2] + body[3], all,
	       tot_recv && rx_obj ? all * 1e9 / (double)tot_recv : 0,
	       tot_recv && rx_obj ? all_incl * 1e9 / (double)tot_recv : 0,
	       rxp[0] ? body[0] * 1e9 / (double)rxp[0] : 0,
	       rx1.probe_runs > rx0.probe_runs ? (double)(rx1.probe_ns - rx0.probe_ns) /
						     (double)(rx1.probe_runs - rx0.probe_runs)
					       : 0,
	       stats0, stats1, rx_twin != NULL);
	/* every relayed packet came into the server's namespace once: the probes
	 * saw them all, or the accounting is not to be trusted */
	if (rx_obj && (rxp[0] < tot_recv * 95 / 100 || rxp[0] > tot_sent * 105 / 100))
		fprintf(stderr, "receive-time probes saw %llu packets in the server's namespace "
				"for %llu relayed: all_s is off\n",
			(unsigned long long)rxp[0], (unsigned long long)tot_recv);
	if (send_err[0] || send_err[1])
		fprintf(stderr, "send errors: %llu to the server, %llu to relays (last: %s)\n",
			(unsigned long long)send_err[0], (unsigned long long)send_err[1],
			strerror(last_err));
	return 0;
}
