/* rtp_bench: RTP generator and sink for relay benchmarks; calls set up over ng; loss, latency.
 *
 * One process plays both parties of N calls through a relay driven over the
 * rtpengine ng protocol (pinhole's relay or rtpengine itself), using
 * pinhole's own ng client (relayctl_ng_alloc). Per call: party A and party B
 * each have one UDP socket on --bind (symmetric RTP: they send from the port
 * their SDP names and receive there); an offer carries A's SDP, the answer
 * B's, and each party sends to the relay port that the other's rewritten SDP
 * names. With --direct no relay is used: each party sends straight to the
 * other (the generator's and sink's own latency, the baseline). With
 * --baseline both at once: as many direct calls again, interleaved with the
 * relayed ones so that every 1 ms slot sends both kinds, one after the other,
 * and a latency histogram for each: the relay's added latency is read under
 * the very same load and scheduling, not across two runs.
 *
 *   calls mode   every party sends 172-byte RTP (12 + 160, PCMU) at --pps
 *                (default 50) per direction, paced in 1 ms slots
 *   blast mode   the same sockets, but the sender offers --rate packets/s in
 *                total, in sendmmsg batches of up to 32 per socket
 *
 * Phases: warm-up (--warmup s: latching, caches), measure (--secs s), drain
 * (300 ms, nothing sent). Only packets sent during measure count. The
 * relay's CPU time (utime + stime of --pid, all threads, /proc/PID/stat) is
 * sampled at the start and end of measure.
 *
 * Payload (after the 12-byte RTP header), so the sink can time and sort:
 *   "PHBN" | phase (u32) | stream (u32) | send time CLOCK_MONOTONIC ns (u64) | 0xff...
 *
 * Options: --port-base P binds the parties to P, P+1, ... (default: ephemeral
 * ports, which may collide with a relay port range above 32768).
 *
 * --streams FILE: the calls were set up by someone else (SIP through a proxy
 * that chose whether to relay, bench/relay/nat_facing.sh): one stream per
 * line, "BIND_IP:PORT DST_IP:PORT" (the party's own SDP address, and the
 * address the SDP it received names: a relay port or the other party); the
 * two parties of a call on two lines that name each other's traffic. No ng.
 *
 * --bpf-stats: keep the kernel's BPF run-time statistics on while this runs
 * (BPF_ENABLE_STATS: a reference of our own, so another program switching
 * kernel.bpf_stats_enabled off does not stop them); bpf_stats=1 in the result
 * when that worked.
 *
 * Output: one line, key=value, for bench/relay/run.sh:
 *   result relay=pinhole mode=calls calls=1000 streams=2000 secs=5 sent=... received=...
 *     offered_pps=... forwarded_pps=... loss_pct=... cpu_s=... cores=... ns_per_pkt=...
 *     lat_p50_us=... lat_p99_us=... lat_max_us=... setup_ms=...
 *   and with --baseline: base_sent=... base_received=... base_p50_us=... base_p99_us=...
 *     base_max_us=... (the direct calls; the other figures are the relayed calls' only)
 * Exit 0, or 1 on a setup error (message on stderr).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "relayctl/relayctl.h"

#define PKT 172
#define HDR 12
#define BATCH 32
#define LAT_BUCKETS 200000 /* 1 us each, up to 200 ms */

struct stream {
	int fd;			 /* this party's socket (shared by its send and receive) */
	struct sockaddr_in self; /* bound address */
	struct sockaddr_in dst;	 /* where it sends: the relay port, or the peer (--direct) */
	uint16_t seq;
	uint32_t ts, ssrc;
	int direct;		   /* --baseline: this stream bypasses the relay */
	uint64_t sent;		   /* measure phase, by the sender thread */
	_Atomic uint64_t received; /* measure phase, by the receiver thread */
};

static struct stream *streams;
static size_t n_streams;
static _Atomic int phase; /* 0 warm-up, 1 measure, 2 drain, 3 stop */
static _Atomic int stop_rx;
/* latency histograms: [0] relayed (or --direct) streams, [1] --baseline's direct ones */
static uint64_t lat_hist[2][LAT_BUCKETS + 1];
static uint64_t lat_count[2];

static const char *opt_relay = "pinhole", *opt_ng = NULL, *opt_bind = "127.0.0.1";
static const char *opt_relay_ip = "127.0.0.1", *opt_streams = NULL;
static int opt_calls = 100, opt_pid = 0, opt_blast = 0, opt_direct = 0, opt_port_base = 0;
static int opt_baseline = 0, opt_bpf_stats = 0;
static double opt_secs = 5, opt_warmup = 1, opt_pps = 50, opt_rate = 100000;

/* calls mode: stream i sends in the slots where slot % period == i % period */
static unsigned send_period(void)
{
	unsigned period = (unsigned)(1000.0 / opt_pps + 0.5);
	return period ? period : 1;
}

/* --baseline: which calls go direct. A slot sends streams s, s + period,
 * s + 2 period, ...: alternating blocks of period streams (period / 2 calls)
 * put a relayed and a direct stream next to each other in every slot. */
static int baseline_direct(int call)
{
	return opt_baseline && ((2u * (unsigned)call / send_period()) & 1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u),
			      .tv_nsec = (long)(t % 1000000000u)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* utime + stime of a whole process, seconds. */
static double proc_cpu(int pid)
{
	if (pid <= 0)
		return 0;
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* comm may hold spaces */
	if (!p)
		return 0;
	unsigned long ut = 0, st = 0;
	/* after ")": state(3) ... utime is field 14, stime 15 */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void fill(uint8_t *p, struct stream *s, uint32_t idx, int ph)
{
	p[0] = 0x80;
	p[1] = 0;
	p[2] = (uint8_t)(s->seq >> 8);
	p[3] = (uint8_t)s->seq;
	memcpy(p + 4, &(uint32_t){htonl(s->ts)}, 4);
	memcpy(p + 8, &(uint32_t){htonl(s->ssrc)}, 4);
	memcpy(p + HDR, "PHBN", 4);
	uint32_t ph32 = (uint32_t)ph;
	memcpy(p + HDR + 4, &ph32, 4);
	memcpy(p + HDR + 8, &idx, 4);
	uint64_t t = now_ns();
	memcpy(p + HDR + 12, &t, 8);
	s->seq++;
	s->ts += 160;
}

static void *sender(void *arg)
{
	(void)arg;
	uint8_t pkts[BATCH][PKT];
	memset(pkts, 0xff, sizeof pkts);
	struct mmsghdr mm[BATCH];
	struct iovec iov[BATCH];
	uint64_t t0 = now_ns(), slot = 0;
	size_t rr = 0; /* blast: next socket */
	double carry = 0;
	for (;;) {
		int ph = atomic_load(&phase);
		if (ph >= 2)
			break;
		uint64_t due = t0 + slot * 1000000u; /* 1 ms slots */
		sleep_until(due);
		if (!opt_blast) {
			unsigned period = send_period();
			for (size_t i = slot % period; i < n_streams; i += period) {
				struct stream *s = &streams[i];
				fill(pkts[0], s, (uint32_t)i, ph);
				if (sendto(s->fd, pkts[0], PKT, 0, (struct sockaddr *)&s->dst,
					   sizeof s->dst) == PKT &&
				    ph == 1)
					s->sent++;
			}
		} else {
			carry += opt_rate / 1000.0;
			size_t todo = (size_t)carry;
			carry -= (double)todo;
			while (todo) {
				struct stream *s = &streams[rr];
				rr = (rr + 1) % n_streams;
				size_t k = todo < BATCH ? todo : BATCH;
				size_t per = (todo + n_streams - 1) / n_streams;
				if (per < k)
					k = per ? per : 1;
				if (k > BATCH)
					k = BATCH;
				for (size_t j = 0; j < k; j++) {
					fill(pkts[j], s, (uint32_t)(s - streams), ph);
					iov[j] = (struct iovec){pkts[j], PKT};
					mm[j].msg_hdr =
					    (struct msghdr){.msg_name = &s->dst,
							    .msg_namelen = sizeof s->dst,
							    .msg_iov = &iov[j],
							    .msg_iovlen = 1};
				}
				int r = sendmmsg(s->fd, mm, (unsigned)k, 0);
				if (r > 0 && ph == 1)
					s->sent += (uint64_t)r;
				todo -= k;
			}
		}
		slot++;
		/* fell behind (generator limit): skip slots rather than burst */
		uint64_t now = now_ns();
		if (now > t0 + (slot + 5) * 1000000u)
			slot = (now - t0) / 1000000u;
	}
	return NULL;
}

static void *receiver(void *arg)
{
	int ep = *(int *)arg;
	struct epoll_event ev[64];
	uint8_t bufs[BATCH][256];
	struct mmsghdr mm[BATCH];
	struct iovec iov[BATCH];
	for (int j = 0; j < BATCH; j++) {
		iov[j] = (struct iovec){bufs[j], sizeof bufs[j]};
		mm[j].msg_hdr = (struct msghdr){.msg_iov = &iov[j], .msg_iovlen = 1};
	}
	while (!atomic_load(&stop_rx)) {
		int n = epoll_wait(ep, ev, 64, 50);
		for (int e = 0; e < n; e++) {
			struct stream *s = ev[e].data.ptr;
			for (;;) {
				int r = recvmmsg(s->fd, mm, BATCH, MSG_DONTWAIT, NULL);
				if (r <= 0)
					break;
				uint64_t now = now_ns();
				for (int j = 0; j < r; j++) {
					const uint8_t *p = bufs[j];
					if (mm[j].msg_len < HDR + 20 || memcmp(p + HDR, "PHBN", 4))
						continue;
					uint32_t ph, idx;
					uint64_t t;
					memcpy(&ph, p + HDR + 4, 4);
					memcpy(&idx, p + HDR + 8, 4);
					memcpy(&t, p + HDR + 12, 8);
					if (ph != 1 || idx >= n_streams)
						continue;
					atomic_fetch_add_explicit(&streams[idx].received, 1,
								  memory_order_relaxed);
					uint64_t us = now > t ? (now - t) / 1000 : 0;
					int h = streams[idx].direct;
					lat_hist[h][us > LAT_BUCKETS ? LAT_BUCKETS : us]++;
					lat_count[h]++;
				}
				if (r < BATCH)
					break;
			}
		}
	}
	return NULL;
}

static double lat_pct(int h, double q)
{
	if (!lat_count[h])
		return -1;
	uint64_t want = (uint64_t)((double)lat_count[h] * q), acc = 0;
	for (size_t i = 0; i <= LAT_BUCKETS; i++) {
		acc += lat_hist[h][i];
		if (acc > want)
			return (double)i;
	}
	return LAT_BUCKETS;
}

static double lat_max(int h)
{
	for (size_t i = LAT_BUCKETS + 1; i-- > 0;)
		if (lat_hist[h][i])
			return (double)i;
	return -1;
}

static int open_socket(struct stream *s, size_t i)
{
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (s->fd < 0)
		return errno;
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, opt_bind, &a.sin_addr);
	if (opt_port_base)
		a.sin_port = htons((uint16_t)(opt_port_base + (int)i));
	if (opt_streams)
		a = s->self; /* from the file */
	int sz = 1 << 20;
	setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	if (bind(s->fd, (struct sockaddr *)&a, sizeof a))
		return errno;
	socklen_t l = sizeof s->self;
	getsockname(s->fd, (struct sockaddr *)&s->self, &l);
	s->ssrc = (uint32_t)random();
	s->seq = (uint16_t)random();
	s->ts = (uint32_t)random();
	return 0;
}

static void make_sdp(char *out, size_t n, const struct stream *s, int sess)
{
	snprintf(out, n,
		 "v=0\r\no=- %d 1 IN IP4 %s\r\ns=bench\r\nc=IN IP4 %s\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
		 sess, opt_bind, opt_bind, ntohs(s->self.sin_port));
}

static int parse_ipport(const char *s, struct sockaddr_in *a)
{
	char ip[64];
	unsigned port;
	if (sscanf(s, "%63[^:]:%u", ip, &port) != 2 || port == 0 || port > 65535)
		return EINVAL;
	memset(a, 0, sizeof *a);
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : EINVAL;
}

/* --streams FILE: fills streams[] (self and dst); 0 or an errno value. */
static int read_streams(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return errno;
	char line[256], b[128], d[128];
	size_t cap = 0;
	int err = 0;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%127s %127s", b, d) != 2)
			continue;
		if (n_streams == cap) {
			cap = cap ? 2 * cap : 1024;
			struct stream *ns = realloc(streams, cap * sizeof *ns);
			if (!ns) {
				err = ENOMEM;
				break;
			}
			streams = ns;
		}
		struct stream *s = &streams[n_streams];
		memset(s, 0, sizeof *s);
		if ((err = parse_ipport(b, &s->self)) || (err = parse_ipport(d, &s->dst))) {
			fprintf(stderr, "rtp_bench: %s: bad line: %s", path, line);
			break;
		}
		n_streams++;
	}
	fclose(f);
	return err ? err : n_streams ? 0 : ENODATA;
}

/* The audio port of a rewritten SDP. */
static int sdp_port(const struct buf *b)
{
	const char *p = memmem(b->data, b->len, "m=audio ", 8);
	return p ? atoi(p + 8) : -1;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"relay", required_argument, NULL, 'R'},	 {"ng", required_argument, NULL, 'n'},
	    {"calls", required_argument, NULL, 'c'},	 {"secs", required_argument, NULL, 's'},
	    {"warmup", required_argument, NULL, 'w'},	 {"pps", required_argument, NULL, 'p'},
	    {"rate", required_argument, NULL, 'r'},	 {"blast", no_argument, NULL, 'B'},
	    {"direct", no_argument, NULL, 'D'},		 {"pid", required_argument, NULL, 'P'},
	    {"bind", required_argument, NULL, 'b'},	 {"relay-ip", required_argument, NULL, 'I'},
	    {"port-base", required_argument, NULL, 'O'}, {"baseline", no_argument, NULL, 'L'},
	    {"streams", required_argument, NULL, 'F'},	 {"bpf-stats", no_argument, NULL, 'T'},
	    {NULL, 0, NULL, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'R':
			opt_relay = optarg;
			break;
		case 'n':
			opt_ng = optarg;
			break;
		case 'c':
			opt_calls = atoi(optarg);
			break;
		case 's':
			opt_secs = atof(optarg);
			break;
		case 'w':
			opt_warmup = atof(optarg);
			break;
		case 'p':
			opt_pps = atof(optarg);
			break;
		case 'r':
			opt_rate = atof(optarg);
			break;
		case 'B':
			opt_blast = 1;
			break;
		case 'D':
			opt_direct = 1;
			break;
		case 'P':
			opt_pid = atoi(optarg);
			break;
		case 'b':
			opt_bind = optarg;
			break;
		case 'I':
			opt_relay_ip = optarg;
			break;
		case 'O':
			opt_port_base = atoi(optarg);
			break;
		case 'L':
			opt_baseline = 1;
			break;
		case 'F':
			opt_streams = optarg;
			break;
		case 'T':
			opt_bpf_stats = 1;
			break;
		default:
			fprintf(
			    stderr,
			    "usage: rtp_bench [--relay NAME --ng udp:IP:PORT --pid PID | "
			    "--direct]\n"
			    "  [--calls N] [--baseline] [--secs S] [--warmup S] [--pps P]\n"
			    "  [--blast --rate PPS] [--streams FILE [--pid PID]]\n"
			    "  [--bind IP] [--port-base PORT] [--relay-ip IP]\n");
			return 2;
		}
	}
	if (!opt_direct && !opt_ng && !opt_streams) {
		fprintf(stderr, "rtp_bench: need --ng, --direct or --streams\n");
		return 2;
	}
	if (opt_streams && (opt_ng || opt_direct || opt_baseline)) {
		fprintf(stderr, "rtp_bench: --streams goes alone (the calls exist already)\n");
		return 2;
	}
	if (opt_baseline && (opt_direct || opt_blast)) {
		fprintf(stderr, "rtp_bench: --baseline goes with relayed calls only\n");
		return 2;
	}
	srandom((unsigned)now_ns());
	int stats_fd = -1; /* closed at exit: the kernel then drops our reference */
	if (opt_bpf_stats) {
		union bpf_attr attr;
		memset(&attr, 0, sizeof attr);
		attr.enable_stats.type = BPF_STATS_RUN_TIME;
		stats_fd = (int)syscall(__NR_bpf, BPF_ENABLE_STATS, &attr, sizeof attr);
	}
	int total_calls = opt_baseline ? 2 * opt_calls : opt_calls, relayed_calls = 0;
	for (int c = 0; c < total_calls; c++)
		relayed_calls += !baseline_direct(c);
	if (opt_streams) {
		int err = read_streams(opt_streams);
		if (err) {
			fprintf(stderr, "rtp_bench: --streams %s: %s\n", opt_streams, strerror(err));
			return 1;
		}
		total_calls = relayed_calls = (int)(n_streams / 2);
	} else {
		n_streams = 2 * (size_t)total_calls;
		streams = calloc(n_streams, sizeof *streams);
		if (!streams)
			return 1;
	}
	for (size_t i = 0; i < n_streams; i++) {
		int err = open_socket(&streams[i], i);
		if (err) {
			fprintf(stderr, "rtp_bench: socket %zu: %s\n", i, strerror(err));
			return 1;
		}
	}

	/* ---- set up the calls: streams 2k (A) and 2k+1 (B) ---- */
	struct relayctl *rc = NULL;
	char run_id[32];
	snprintf(run_id, sizeof run_id, "%d-%ld", (int)getpid(), random() % 100000);
	uint64_t t_setup = now_ns();
	if (!opt_direct && !opt_streams && relayctl_ng_alloc(&rc, opt_ng, 2000)) {
		fprintf(stderr, "rtp_bench: bad ng address %s\n", opt_ng);
		return 1;
	}
	struct sockaddr_in relay = {.sin_family = AF_INET};
	inet_pton(AF_INET, opt_relay_ip, &relay.sin_addr);
	struct buf out;
	buf_init(&out);
	for (int c = 0; !opt_streams && c < total_calls; c++) {
		struct stream *a = &streams[2 * c], *b = &streams[2 * c + 1];
		a->direct = b->direct = baseline_direct(c);
		if (opt_direct || a->direct) {
			a->dst = b->self;
			b->dst = a->self;
			continue;
		}
		char cid[64], sdp[512];
		snprintf(cid, sizeof cid, "bench-%s-%d", run_id, c);
		struct relayctl_req req = {
		    .call_id = slice_cstr(cid), .from_tag = slice_cstr("caller"), .sdp = {sdp, 0}};
		make_sdp(sdp, sizeof sdp, a, c);
		req.sdp.l = strlen(sdp);
		buf_reset(&out);
		int err = relayctl_offer(rc, &req, &out);
		int pb = err ? -1 : sdp_port(&out);
		if (pb <= 0) {
			fprintf(stderr, "rtp_bench: offer %d: %s\n", c,
				err ? relayctl_strerror(err) : "no port");
			return 1;
		}
		make_sdp(sdp, sizeof sdp, b, c);
		req.sdp.l = strlen(sdp);
		req.to_tag = slice_cstr("callee");
		buf_reset(&out);
		err = relayctl_answer(rc, &req, &out);
		int pa = err ? -1 : sdp_port(&out);
		if (pa <= 0) {
			fprintf(stderr, "rtp_bench: answer %d: %s\n", c,
				err ? relayctl_strerror(err) : "no port");
			return 1;
		}
		a->dst = relay;
		a->dst.sin_port = htons((uint16_t)pa);
		b->dst = relay;
		b->dst.sin_port = htons((uint16_t)pb);
	}
	double setup_ms = (double)(now_ns() - t_setup) / 1e6;

	int ep = epoll_create1(0);
	for (size_t i = 0; i < n_streams; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &streams[i]};
		epoll_ctl(ep, EPOLL_CTL_ADD, streams[i].fd, &ev);
	}
	pthread_t tx, rx;
	pthread_create(&rx, NULL, receiver, &ep);
	pthread_create(&tx, NULL, sender, NULL);
	sleep_until(now_ns() + (uint64_t)(opt_warmup * 1e9));
	double cpu0 = proc_cpu(opt_pid);
	uint64_t m0 = now_ns();
	atomic_store(&phase, 1);
	sleep_until(m0 + (uint64_t)(opt_secs * 1e9));
	atomic_store(&phase, 2);
	double cpu1 = proc_cpu(opt_pid);
	double secs = (double)(now_ns() - m0) / 1e9;
	pthread_join(tx, NULL);
	sleep_until(now_ns() + 300000000u);
	atomic_store(&stop_rx, 1);
	pthread_join(rx, NULL);

	uint64_t sent = 0, recvd = 0, base_sent = 0, base_recvd = 0;
	for (size_t i = 0; i < n_streams; i++) {
		*(streams[i].direct ? &base_sent : &sent) += streams[i].sent;
		*(streams[i].direct ? &base_recvd : &recvd) += atomic_load(&streams[i].received);
	}
	double cpu = cpu1 - cpu0;
	double loss = sent ? 100.0 * (double)(sent > recvd ? sent - recvd : 0) / (double)sent : 0;
	printf("result relay=%s mode=%s calls=%d streams=%zu secs=%.2f sent=%llu received=%llu "
	       "offered_pps=%.0f forwarded_pps=%.0f loss_pct=%.4f cpu_s=%.3f cores=%.3f "
	       "ns_per_pkt=%.0f lat_p50_us=%.0f lat_p99_us=%.0f lat_max_us=%.0f setup_ms=%.0f",
	       opt_direct ? "direct" : opt_relay, opt_blast ? "blast" : "calls", relayed_calls,
	       2 * (size_t)relayed_calls, secs, (unsigned long long)sent, (unsigned long long)recvd,
	       (double)sent / secs, (double)recvd / secs, loss, cpu, cpu / secs,
	       recvd ? cpu * 1e9 / (double)recvd : 0, lat_pct(0, 0.50), lat_pct(0, 0.99), lat_max(0),
	       setup_ms);
	if (opt_baseline)
		printf(" base_sent=%llu base_received=%llu base_p50_us=%.0f base_p99_us=%.0f "
		       "base_max_us=%.0f",
		       (unsigned long long)base_sent, (unsigned long long)base_recvd,
		       lat_pct(1, 0.50), lat_pct(1, 0.99), lat_max(1));
	if (opt_bpf_stats)
		printf(" bpf_stats=%d", stats_fd >= 0);
	printf("\n");
	fflush(stdout);

	/* ---- tear down ---- */
	for (int c = 0; rc && !opt_streams && c < total_calls; c++) {
		if (baseline_direct(c))
			continue;
		char cid[64];
		snprintf(cid, sizeof cid, "bench-%s-%d", run_id, c);
		relayctl_delete(rc, slice_cstr(cid), SLICE_NULL, SLICE_NULL);
	}
	relayctl_free(rc);
	buf_free(&out);
	for (size_t i = 0; i < n_streams; i++)
		close(streams[i].fd);
	free(streams);
	return 0;
}
