/*
 * stun_bench: a STUN Binding load generator (RFC 8489 requests over UDP).
 *
 *   stun_bench --server IP:PORT [--rate R] [--duration S] [--warmup S]
 *              [--sockets N] [--batch B] [--cpu-pid PID]
 *
 * One thread. N UDP sockets (distinct source ports, so a SO_REUSEPORT server
 * spreads them over its workers) take turns sending 20-byte Binding requests
 * with sendmmsg, paced to R requests/s (0 = as fast as it can), and read
 * responses with recvmmsg. Every request has its own transaction id: a 4-byte
 * run tag and the 8-byte CLOCK_MONOTONIC send time, so a response is counted
 * only if it is a Binding success for this run and its latency is known
 * without a table. Runs WARMUP seconds, then measures DURATION seconds, then
 * drains for 0.2 s. With --cpu-pid, reads utime+stime of that process from
 * /proc/PID/stat at the start and end of the measured phase.
 *
 * Prints one line of key=value pairs: offered (requests/s sent in the
 * measured phase), rps (valid responses/s received in it), loss (fraction of
 * the measured requests never answered, counted after the drain), p50_us and
 * p99_us latency, cpu_s (the server's CPU seconds in the phase),
 * cpu_ns_per_resp, and user_ns_per_resp (its user-space share: the rest is
 * the kernel's, sockets and loopback delivery).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKS 64
#define MAX_BATCH 64
#define HIST_US 200000 /* latency histogram, 1 µs buckets; slower ones in the last */
#define COOKIE 0x2112A442u

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* utime + stime of a process (all threads), in seconds, and utime alone in
 * *user; -1 if unreadable */
static double proc_cpu_s(int pid, double *user)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* comm may hold spaces */
	if (!p)
		return -1;
	unsigned long ut = 0, st = 0;
	/* after ")": state(3) ... utime is field 14, stime 15 */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	*user = (double)ut / (double)sysconf(_SC_CLK_TCK);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void usage(void)
{
	fprintf(stderr, "usage: stun_bench --server IP:PORT [--rate R] [--duration S] "
			"[--warmup S] [--sockets N] [--batch B] [--cpu-pid PID]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *server = NULL;
	double rate = 0, duration = 5, warmup = 1;
	int nsocks = 8, batch = 32, cpu_pid = 0;
	static const struct option opts[] = {
	    {"server", required_argument, NULL, 's'},	{"rate", required_argument, NULL, 'r'},
	    {"duration", required_argument, NULL, 'd'}, {"warmup", required_argument, NULL, 'w'},
	    {"sockets", required_argument, NULL, 'n'},	{"batch", required_argument, NULL, 'b'},
	    {"cpu-pid", required_argument, NULL, 'p'},	{NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's': server = optarg; break;
		case 'r': rate = atof(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 'n': nsocks = atoi(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 'p': cpu_pid = atoi(optarg); break;
		default: usage();
		}
	}
	if (!server || nsocks < 1 || nsocks > MAX_SOCKS || batch < 1 || batch > MAX_BATCH ||
	    duration <= 0 || rate < 0 || warmup < 0)
		usage();

	struct sockaddr_in sa = {.sin_family = AF_INET};
	char host[64];
	const char *colon = strrchr(server, ':');
	if (!colon || (size_t)(colon - server) >= sizeof host)
		usage();
	memcpy(host, server, (size_t)(colon - server));
	host[colon - server] = 0;
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		usage();

	int fds[MAX_SOCKS];
	struct pollfd pfd[MAX_SOCKS];
	for (int i = 0; i < nsocks; i++) {
		fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		int sz = 8 << 20;
		if (fds[i] < 0)
			return perror("socket"), 1;
		if (setsockopt(fds[i], SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz))
			setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
		if (setsockopt(fds[i], SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz))
			setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
		if (connect(fds[i], (struct sockaddr *)&sa, sizeof sa))
			return perror("connect"), 1;
		pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
	}

	uint32_t tag = (uint32_t)now_ns() ^ (uint32_t)getpid() * 2654435761u;
	static uint8_t txb[MAX_BATCH][20], rxb[MAX_BATCH][256];
	struct mmsghdr tm[MAX_BATCH], rm[MAX_BATCH];
	struct iovec tv[MAX_BATCH], rv[MAX_BATCH];
	for (int i = 0; i < MAX_BATCH; i++) {
		memset(txb[i], 0, 20);
		txb[i][1] = 0x01; /* Binding request, length 0 */
		put32(txb[i] + 4, COOKIE);
		put32(txb[i] + 8, tag);
		tv[i] = (struct iovec){txb[i], 20};
		rv[i] = (struct iovec){rxb[i], sizeof rxb[i]};
		memset(&tm[i], 0, sizeof tm[i]);
		tm[i].msg_hdr.msg_iov = &tv[i];
		tm[i].msg_hdr.msg_iovlen = 1;
	}
	static uint32_t hist[HIST_US + 1];

	uint64_t t0 = now_ns();
	uint64_t m_start = t0 + (uint64_t)(warmup * 1e9);
	uint64_t m_end = m_start + (uint64_t)(duration * 1e9);
	uint64_t d_end = m_end + 200000000u; /* drain */
	uint64_t sent = 0, m_sent = 0, m_rx = 0, m_answered = 0, bad = 0, send_fail = 0;
	double cpu0 = -1, cpu1 = -1, usr0 = 0, usr1 = 0;
	int measuring = 0, si = 0;
	for (;;) {
		uint64_t now = now_ns();
		if (!measuring && now >= m_start) {
			measuring = 1;
			if (cpu_pid)
				cpu0 = proc_cpu_s(cpu_pid, &usr0);
		}
		if (measuring == 1 && now >= m_end) {
			measuring = 2;
			if (cpu_pid)
				cpu1 = proc_cpu_s(cpu_pid, &usr1);
		}
		if (now >= d_end)
			break;
		int did = 0;
		/* send what the pace allows, one batch on the next socket */
		if (now < m_end) {
			uint64_t due = rate > 0 ? (uint64_t)((double)(now - t0) * rate / 1e9) + 1
						: sent + (uint64_t)batch;
			if (due > sent) {
				int n = (int)(due - sent < (uint64_t)batch ? due - sent : (uint64_t)batch);
				for (int i = 0; i < n; i++) {
					uint64_t ts = now;
					put32(txb[i] + 12, (uint32_t)(ts >> 32));
					put32(txb[i] + 16, (uint32_t)ts);
				}
				int r = sendmmsg(fds[si], tm, (unsigned)n, 0);
				if (r < 0) {
					if (errno != EAGAIN && errno != ENOBUFS)
						return perror("sendmmsg"), 1;
					send_fail += (uint64_t)n;
					r = n; /* count them as offered and lost: pacing goes on */
				}
				sent += (uint64_t)r;
				if (now >= m_start)
					m_sent += (uint64_t)r;
				si = (si + 1) % nsocks;
				did = 1;
			}
		}
		/* read every socket once */
		for (int s = 0; s < nsocks; s++) {
			for (int i = 0; i < batch; i++) {
				memset(&rm[i].msg_hdr, 0, sizeof rm[i].msg_hdr);
				rm[i].msg_hdr.msg_iov = &rv[i];
				rm[i].msg_hdr.msg_iovlen = 1;
			}
			int r = recvmmsg(fds[s], rm, (unsigned)batch, MSG_DONTWAIT, NULL);
			if (r <= 0)
				continue;
			did = 1;
			uint64_t rnow = now_ns();
			for (int i = 0; i < r; i++) {
				const uint8_t *p = rxb[i];
				if (rm[i].msg_len < 20 || p[0] != 0x01 || p[1] != 0x01 ||
				    get32(p + 4) != COOKIE || get32(p + 8) != tag) {
					bad++;
					continue;
				}
				uint64_t ts = (uint64_t)get32(p + 12) << 32 | get32(p + 16);
				if (ts >= m_start && ts < m_end) {
					m_answered++;
					uint64_t us = (rnow - ts) / 1000;
					hist[us > HIST_US ? HIST_US : us]++;
				}
				if (rnow >= m_start && rnow < m_end)
					m_rx++;
			}
		}
		if (!did) {
			/* idle: wait for a response or the next send slot */
			int ms = 0;
			if (now >= m_end)
				ms = 1;
			else if (rate > 0 && rate < 20000)
				ms = 1;
			if (ms)
				poll(pfd, (nfds_t)nsocks, ms);
		}
	}

	uint64_t p50 = 0, p99 = 0, acc = 0;
	for (uint64_t us = 0; us <= HIST_US && m_answered; us++) {
		acc += hist[us];
		if (!p50 && acc * 2 >= m_answered)
			p50 = us ? us : 1;
		if (!p99 && acc * 100 >= m_answered * 99) {
			p99 = us ? us : 1;
			break;
		}
	}
	double rps = (double)m_rx / duration;
	double cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
	printf("offered=%.0f rps=%.0f loss=%.4f p50_us=%llu p99_us=%llu cpu_s=%.2f "
	       "cpu_ns_per_resp=%.0f user_ns_per_resp=%.0f bad=%llu send_fail=%llu\n",
	       (double)m_sent / duration, rps,
	       m_sent ? 1.0 - (double)m_answered / (double)m_sent : 0.0, (unsigned long long)p50,
	       (unsigned long long)p99, cpu, cpu >= 0 && m_rx ? cpu * 1e9 / (double)m_rx : -1.0,
	       cpu >= 0 && m_rx ? (usr1 - usr0) * 1e9 / (double)m_rx : -1.0,
	       (unsigned long long)bad, (unsigned long long)send_fail);
	return 0;
}
