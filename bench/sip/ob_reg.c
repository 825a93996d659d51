/*
 * ob_reg: RFC 5626 outbound REGISTERs over many UDP flows, paced, for
 * bench/outbound_rate.sh.
 *
 *   ob_reg PORT RATE SECS FLOWS PER_SOURCE USERS TAG [START]
 *
 * FLOWS flows, PER_SOURCE of them on each source address from 127.2.1.1 up;
 * every REGISTER goes to 127.0.0.1:PORT over flow n % FLOWS, RATE per second
 * for SECS seconds. REGISTER n (counting from START) is for AOR
 * TAG-u<n % USERS>, or for a new AOR every time with USERS 0: with USERS =
 * FLOWS every flow is one phone that refreshes its own binding (same Call-ID,
 * CSeq up by one each time). Each carries Supported: outbound, a Contact with
 * ;ob, the AOR's own +sip.instance and reg-id=1. Nothing is retransmitted: a
 * REGISTER without a 200 within the run (plus a 1 s drain) is lost, as for a
 * UA whose first try failed.
 *
 * A flow is a (source address, source port) pair, as a phone behind its own
 * NAT mapping would be. The generator holds PER_SOURCE sockets, each bound to
 * its own port on the wildcard address, and picks each datagram's source
 * address with IP_PKTINFO: flow f is socket f % PER_SOURCE from address
 * f / PER_SOURCE. The server sees FLOWS distinct flows, while the generator
 * sends a whole batch with one sendmmsg per socket and reads the answers with
 * recvmmsg from PER_SOURCE sockets instead of FLOWS: it costs a fraction of
 * what it measures (its own CPU is printed, see below).
 *
 * Prints a CSV line per second (second;sent;send_errors;ok_200;
 * ok_require_outbound;other), then "cpu;user_us;system_us" (the generator's
 * own CPU time, getrusage) and a total line "total;...". A 200 counts in
 * ok_require_outbound when it carries Require: outbound (RFC 5626 section 6:
 * the registrar took it as an outbound registration).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64 /* datagrams sent per pacing step at most */
#define RX_BATCH 64
#define MSG_MAX 1024

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct count {
	uint64_t sent, err, ok, ok_ob, other;
};

static int *fds, nsocks, epfd;

static void answers(struct count *c, int ms)
{
	struct epoll_event ev[64];
	static char rb[RX_BATCH][2048];
	struct mmsghdr mh[RX_BATCH];
	struct iovec iov[RX_BATCH];
	int n = epoll_wait(epfd, ev, 64, ms);
	for (int k = 0; k < n; k++) {
		int fd = fds[ev[k].data.u32];
		for (;;) {
			for (int i = 0; i < RX_BATCH; i++) {
				iov[i] = (struct iovec){rb[i], sizeof rb[i] - 1};
				mh[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
			}
			int r = recvmmsg(fd, mh, RX_BATCH, MSG_DONTWAIT, NULL);
			if (r <= 0)
				break;
			for (int i = 0; i < r; i++) {
				char *m = rb[i];
				m[mh[i].msg_len] = 0;
				if (mh[i].msg_len >= 12 && !memcmp(m, "SIP/2.0 200", 11)) {
					c->ok++;
					const char *h = strcasestr(m, "\nRequire:");
					if (h) {
						const char *o = strcasestr(h, "outbound");
						if (o && o < h + 1 + strcspn(h + 1, "\n"))
							c->ok_ob++;
					}
				} else if (mh[i].msg_len >= 8 && !memcmp(m, "SIP/2.0 1", 9)) {
					/* a provisional: not an answer */
				} else {
					if (c->other++ < 3) /* what the other answers are */
						fprintf(stderr, "ob_reg: %.*s\n", (int)strcspn(m, "\r\n"), m);
				}
			}
			if (r < RX_BATCH)
				break;
		}
	}
}

/* one pending datagram of a batch */
struct out {
	struct mmsghdr mh;
	struct iovec iov;
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} ctl;
	char m[MSG_MAX];
};

int main(int argc, char **argv)
{
	if (argc < 8) {
		fprintf(stderr, "usage: ob_reg PORT RATE SECS FLOWS PER_SOURCE USERS TAG [START]\n");
		return 2;
	}
	int port = atoi(argv[1]);
	uint64_t rate = strtoull(argv[2], NULL, 10);
	int secs = atoi(argv[3]);
	int nflows = atoi(argv[4]);
	int per_source = atoi(argv[5]);
	uint64_t users = strtoull(argv[6], NULL, 10);
	const char *tag = argv[7];
	uint64_t start_n = argc > 8 ? strtoull(argv[8], NULL, 10) : 0;
	if (port <= 0 || rate == 0 || secs < 1 || nflows < 1 || per_source < 1)
		return 2;
	nsocks = per_source < nflows ? per_source : nflows;
	int naddrs = (nflows + per_source - 1) / per_source;
	fds = calloc((size_t)nsocks, sizeof *fds);
	char (*src)[INET_ADDRSTRLEN] = calloc((size_t)naddrs, sizeof *src);
	struct in_addr *srcip = calloc((size_t)naddrs, sizeof *srcip);
	uint16_t *lport = calloc((size_t)nsocks, sizeof *lport);
	struct out *out = calloc(BATCH, sizeof *out);
	epfd = epoll_create1(0);
	if (!fds || !src || !srcip || !lport || !out || epfd < 0)
		return 1;
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int k = 0; k < naddrs; k++) {
		uint32_t a = (127u << 24) | ((uint32_t)(2 + k / 62500) << 16) |
			     ((uint32_t)(1 + (k / 250) % 250) << 8) | (uint32_t)(1 + k % 250);
		srcip[k].s_addr = htonl(a);
		inet_ntop(AF_INET, &srcip[k], src[k], sizeof src[k]);
	}
	for (int s = 0; s < nsocks; s++) {
		struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
		socklen_t ml = sizeof me;
		int big = 8 << 20;
		fds[s] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		if (fds[s] < 0 || bind(fds[s], (struct sockaddr *)&me, sizeof me) ||
		    getsockname(fds[s], (struct sockaddr *)&me, &ml)) {
			perror("ob_reg: socket");
			return 1;
		}
		/* a deep receive queue: answers wait while a batch goes out */
		setsockopt(fds[s], SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
		lport[s] = ntohs(me.sin_port);
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)s};
		epoll_ctl(epfd, EPOLL_CTL_ADD, fds[s], &ev);
	}
	for (int i = 0; i < BATCH; i++) {
		out[i].iov.iov_base = out[i].m;
		out[i].mh.msg_hdr = (struct msghdr){.msg_name = &dst, .msg_namelen = sizeof dst,
						    .msg_iov = &out[i].iov, .msg_iovlen = 1,
						    .msg_control = out[i].ctl.buf,
						    .msg_controllen = sizeof out[i].ctl.buf};
		struct cmsghdr *c = CMSG_FIRSTHDR(&out[i].mh.msg_hdr);
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
	}
	struct count tot = {0}, sec = {0};
	uint64_t seq = 0, t0 = now_ns(), end = t0 + (uint64_t)secs * 1000000000u;
	uint64_t next_report = t0 + 1000000000u;
	int second = 0;
	printf("second;sent;send_errors;ok_200;ok_require_outbound;other\n");
	for (;;) {
		uint64_t t = now_ns();
		if (t >= next_report || t >= end) {
			printf("%d;%llu;%llu;%llu;%llu;%llu\n", ++second, (unsigned long long)sec.sent,
			       (unsigned long long)sec.err, (unsigned long long)sec.ok,
			       (unsigned long long)sec.ok_ob, (unsigned long long)sec.other);
			fflush(stdout);
			tot.sent += sec.sent, tot.err += sec.err, tot.ok += sec.ok;
			tot.ok_ob += sec.ok_ob, tot.other += sec.other;
			sec = (struct count){0};
			next_report += 1000000000u;
			if (t >= end)
				break;
		}
		uint64_t due = (t - t0) * rate / 1000000000u;
		if (seq >= due) {
			answers(&sec, 0);
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
			continue;
		}
		/* the batch, then one sendmmsg per socket over its datagrams */
		int nb = 0, sock_of[BATCH];
		for (; nb < BATCH && seq < due; nb++, seq++) {
			uint64_t n = start_n + seq;
			int f = (int)(n % (uint64_t)nflows);
			int s = f % nsocks, a = f / per_source;
			uint64_t u = users ? n % users : n;
			uint64_t cseq = users ? n / users + 1 : 1;
			struct out *o = &out[nb];
			int l = snprintf(o->m, sizeof o->m,
					 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
					 "Via: SIP/2.0/UDP %s:%u;branch=z9hG4bK%sn%llu;rport\r\n"
					 "Max-Forwards: 70\r\n"
					 "From: <sip:%s-u%llu@127.0.0.1>;tag=t%llu\r\n"
					 "To: <sip:%s-u%llu@127.0.0.1>\r\n"
					 "Call-ID: %s-c%llu\r\n"
					 "CSeq: %llu REGISTER\r\n"
					 "Supported: outbound, path\r\n"
					 "Contact: <sip:%s-u%llu@%s:%u;ob>"
					 ";+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-%012llx>\";reg-id=1\r\n"
					 "Expires: 3600\r\n"
					 "User-Agent: ob_reg\r\n"
					 "Content-Length: 0\r\n\r\n",
					 src[a], lport[s], tag, (unsigned long long)n, tag,
					 (unsigned long long)u, (unsigned long long)u, tag,
					 (unsigned long long)u, tag, (unsigned long long)u,
					 (unsigned long long)cseq, tag, (unsigned long long)u, src[a],
					 lport[s], (unsigned long long)u);
			o->iov.iov_len = (size_t)l;
			struct in_pktinfo pi = {.ipi_spec_dst = srcip[a]};
			memcpy(CMSG_DATA(CMSG_FIRSTHDR(&o->mh.msg_hdr)), &pi, sizeof pi);
			sock_of[nb] = s;
		}
		for (int s = 0; s < nsocks; s++) {
			struct mmsghdr mh[BATCH];
			int k = 0;
			for (int i = 0; i < nb; i++)
				if (sock_of[i] == s)
					mh[k++] = out[i].mh;
			for (int done = 0; done < k;) {
				int r = sendmmsg(fds[s], mh + done, (unsigned)(k - done), MSG_DONTWAIT);
				if (r <= 0) {
					sec.err++; /* this one is lost; the rest still go */
					done++;
					continue;
				}
				sec.sent += (uint64_t)r;
				done += r;
			}
		}
		answers(&sec, 0);
	}
	uint64_t stop = now_ns() + 1000000000u;
	while (now_ns() < stop)
		answers(&tot, 10);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("cpu;%lld;%lld\n", (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
	       (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec);
	printf("total;%llu;%llu;%llu;%llu;%llu\n", (unsigned long long)tot.sent,
	       (unsigned long long)tot.err, (unsigned long long)tot.ok, (unsigned long long)tot.ok_ob,
	       (unsigned long long)tot.other);
	return 0;
}
