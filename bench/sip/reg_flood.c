/*
 * reg_flood: a REGISTER flood generator for bench/overload.sh.
 *
 *   reg_flood PORT RATE SECS [SOCKETS] [USERS] [TAG]
 *
 * sipp keeps a call (and retransmits) per REGISTER, so at ten times pinhole's
 * capacity it spends its core on its own state and offers far less than asked.
 * This one thread sends REGISTERs to 127.0.0.1:PORT at RATE per second for
 * SECS seconds with sendmmsg from SOCKETS UDP sockets (distinct source ports,
 * default 8) and never retransmits, as a flood would not. Every REGISTER has
 * its own Call-ID and branch; its AOR is f<TAG>u<n % USERS> with one Contact
 * per AOR, whichever socket sends it (USERS 0 = every one new, so each 200
 * adds a binding; otherwise bindings stop growing at USERS). Responses are read with recvmmsg and
 * counted by status. Prints one CSV line per second of the flood (second,
 * sent, send errors, 200s, 503s, other answers, requests from the server:
 * its keepalive OPTIONS, as the Contact's port differs from the source's), then, after a 1 s drain, a
 * total line "total;...".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKS 64
#define BATCH 64
#define MSG_MAX 600

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct count {
	uint64_t sent, err, ok, busy, other, req;
};

static void drain(const int *fds, int n, struct count *c)
{
	static char rb[BATCH][2048];
	struct mmsghdr mh[BATCH];
	struct iovec iov[BATCH];
	for (int s = 0; s < n; s++) {
		for (;;) {
			for (int i = 0; i < BATCH; i++) {
				iov[i] = (struct iovec){rb[i], sizeof rb[i]};
				mh[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
			}
			int r = recvmmsg(fds[s], mh, BATCH, MSG_DONTWAIT, NULL);
			if (r <= 0)
				break;
			for (int i = 0; i < r; i++) {
				if (mh[i].msg_len >= 12 && !memcmp(rb[i], "SIP/2.0 200", 11))
					c->ok++;
				else if (mh[i].msg_len >= 12 && !memcmp(rb[i], "SIP/2.0 503", 11))
					c->busy++;
				else if (mh[i].msg_len < 8 || memcmp(rb[i], "SIP/2.0 ", 8))
					c->req++; /* the server's keepalive OPTIONS */
				else
					c->other++;
			}
			if (r < BATCH)
				break;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: reg_flood PORT RATE SECS [SOCKETS] [USERS] [TAG]\n");
		return 2;
	}
	int port = atoi(argv[1]);
	uint64_t rate = strtoull(argv[2], NULL, 10);
	int secs = atoi(argv[3]);
	int nsock = argc > 4 ? atoi(argv[4]) : 8;
	uint64_t users = argc > 5 ? strtoull(argv[5], NULL, 10) : 0;
	const char *tag = argc > 6 ? argv[6] : "x";
	if (nsock < 1 || nsock > MAX_SOCKS || rate == 0 || secs < 1)
		return 2;
	int fds[MAX_SOCKS];
	uint16_t lport[MAX_SOCKS];
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int s = 0; s < nsock; s++) {
		fds[s] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		int big = 4 << 20;
		setsockopt(fds[s], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
		setsockopt(fds[s], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
		struct sockaddr_in me = {.sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t ml = sizeof me;
		if (bind(fds[s], (struct sockaddr *)&me, sizeof me) ||
		    getsockname(fds[s], (struct sockaddr *)&me, &ml)) {
			perror("bind");
			return 1;
		}
		lport[s] = ntohs(me.sin_port);
		if (connect(fds[s], (struct sockaddr *)&dst, sizeof dst)) {
			perror("connect");
			return 1;
		}
	}
	static char mb[BATCH][MSG_MAX];
	struct mmsghdr mh[BATCH];
	struct iovec iov[BATCH];
	struct count tot = {0}, sec = {0};
	uint64_t seq = 0, start = now_ns(), end = start + (uint64_t)secs * 1000000000u;
	uint64_t next_report = start + 1000000000u;
	int s = 0, second = 0;
	printf("second;sent;send_errors;ok_200;busy_503;other;requests\n");
	for (;;) {
		uint64_t t = now_ns();
		if (t >= next_report || t >= end) {
			drain(fds, nsock, &sec);
			printf("%d;%llu;%llu;%llu;%llu;%llu;%llu\n", ++second,
			       (unsigned long long)sec.sent, (unsigned long long)sec.err,
			       (unsigned long long)sec.ok, (unsigned long long)sec.busy,
			       (unsigned long long)sec.other, (unsigned long long)sec.req);
			fflush(stdout);
			tot.sent += sec.sent, tot.err += sec.err, tot.ok += sec.ok;
			tot.busy += sec.busy, tot.other += sec.other, tot.req += sec.req;
			sec = (struct count){0};
			next_report += 1000000000u;
			if (t >= end)
				break;
		}
		uint64_t due = (t - start) * rate / 1000000000u;
		if (seq >= due) {
			drain(fds, nsock, &sec);
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
			continue;
		}
		int n = (int)(due - seq < BATCH ? due - seq : BATCH);
		for (int i = 0; i < n; i++) {
			uint64_t k = seq + (uint64_t)i;
			uint64_t u = users ? k % users : k;
			int l = snprintf(mb[i], MSG_MAX,
					 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
					 "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKf%s%llu\r\n"
					 "Max-Forwards: 70\r\n"
					 "From: <sip:f%su%llu@127.0.0.1>;tag=t%llu\r\n"
					 "To: <sip:f%su%llu@127.0.0.1>\r\n"
					 "Call-ID: f%s-%llu\r\n"
					 "CSeq: 1 REGISTER\r\n"
					 "Contact: <sip:f%su%llu@127.0.0.1:5060>\r\n"
					 "Expires: 3600\r\n"
					 "User-Agent: reg_flood\r\n"
					 "Content-Length: 0\r\n\r\n",
					 lport[s], tag, (unsigned long long)k, tag, (unsigned long long)u,
					 (unsigned long long)k, tag, (unsigned long long)u, tag,
					 (unsigned long long)k, tag, (unsigned long long)u);
			iov[i] = (struct iovec){mb[i], (size_t)l};
			mh[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
		}
		int r = sendmmsg(fds[s], mh, (unsigned)n, MSG_DONTWAIT);
		/* what the kernel would not take is counted and skipped: a flood
		 * does not wait for its victim */
		int taken = r < 0 ? 0 : r;
		sec.sent += (uint64_t)taken;
		sec.err += (uint64_t)(n - taken);
		seq += (uint64_t)n;
		s = (s + 1) % nsock;
	}
	uint64_t stop = now_ns() + 1000000000u;
	while (now_ns() < stop) {
		drain(fds, nsock, &tot);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	printf("total;%llu;%llu;%llu;%llu;%llu;%llu\n", (unsigned long long)tot.sent,
	       (unsigned long long)tot.err, (unsigned long long)tot.ok, (unsigned long long)tot.busy,
	       (unsigned long long)tot.other, (unsigned long long)tot.req);
	return 0;
}
