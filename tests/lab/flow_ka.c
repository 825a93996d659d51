/* flow_ka: sends RFC 5626 keepalives on another program's flow, for the NAT lab.
 *
 * sipp cannot send STUN or a CRLF ping on its own socket, and a keepalive
 * from any other socket is another flow (a symmetric NAT even gives it
 * another public port). So this borrows the very socket: pidfd_getfd(2)
 * duplicates the socket of process PID bound to LOCAL_IP:PORT (port 0: any;
 * sipp's TCP connection has an ephemeral one), and the
 * keepalives leave from it, through the same NAT mapping as the phone's
 * SIP messages.
 *
 * usage: flow_ka -p PID -l LOCAL_IP:PORT -t udp|tcp [-d SERVER_IP:PORT]
 *                [-n COUNT] [-i MS]
 *   udp: a 20-byte STUN Binding request (no attributes, RFC 5626 8.3) to
 *        SERVER (-d, required: the borrowed socket may not be connected);
 *   tcp: a double-CRLF ping (RFC 5626 4.4.1) on the connection, whose peer
 *        must be SERVER when -d is given.
 * COUNT keepalives (default 1), MS milliseconds apart (default 1000).
 * Nothing is read: the answers go to the owner's socket (the test drops
 * the STUN answers before the phone sees them, and counts them there; the
 * CRLF pong is ignored by sipp). Prints "sent N"; exit 0 when every
 * keepalive was sent, 1 on errors, 2 on usage, 4 when this kernel does not
 * let us borrow a socket (no pidfd_getfd: Linux < 5.6, or not permitted).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static int parse(const char *s, struct sockaddr_in *a)
{
	char ip[64];
	const char *c = strrchr(s, ':');
	if (!c || (size_t)(c - s) >= sizeof ip)
		return -1;
	memcpy(ip, s, (size_t)(c - s));
	ip[c - s] = '\0';
	memset(a, 0, sizeof *a);
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)atoi(c + 1));
	return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

/* b's port 0 matches any port */
static int same(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
	return (!b->sin_port || a->sin_port == b->sin_port) &&
	       a->sin_addr.s_addr == b->sin_addr.s_addr;
}

static int cannot_borrow; /* pidfd_open or pidfd_getfd refused as such */

static int refused(int err)
{
	return err == ENOSYS || err == EPERM;
}

/* the socket of PID bound to local (and connected to peer, if given), of
 * type type; a descriptor of ours for it, or -1 */
static int borrow(int pid, const struct sockaddr_in *local, int type,
		  const struct sockaddr_in *peer)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		cannot_borrow = refused(errno);
		return perror("flow_ka: pidfd_open"), -1;
	}
	char dir[64];
	snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
	DIR *d = opendir(dir);
	if (!d)
		return perror("flow_ka: opendir"), close(pidfd), -1;
	int found = -1;
	struct dirent *e;
	while (found < 0 && (e = readdir(d))) {
		char path[320], link[64];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		ssize_t n = readlink(path, link, sizeof link - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, "socket:", 7))
			continue;
		int fd = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(e->d_name), 0);
		if (fd < 0) {
			if (refused(errno) && !cannot_borrow)
				perror("flow_ka: pidfd_getfd");
			cannot_borrow |= refused(errno);
			continue;
		}
		struct sockaddr_in a, p;
		socklen_t al = sizeof a, pl = sizeof p;
		int t = 0;
		socklen_t tl = sizeof t;
		if (!getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &tl) && t == type &&
		    !getsockname(fd, (struct sockaddr *)&a, &al) && a.sin_family == AF_INET &&
		    same(&a, local) &&
		    (!peer || (!getpeername(fd, (struct sockaddr *)&p, &pl) && same(&p, peer))))
			found = fd;
		else
			close(fd);
	}
	closedir(d);
	close(pidfd);
	return found;
}

int main(int argc, char **argv)
{
	struct sockaddr_in local, server;
	int pid = 0, have_l = 0, have_d = 0, count = 1, ms = 1000, tcp = -1, opt;
	while ((opt = getopt(argc, argv, "p:l:t:d:n:i:")) != -1) {
		if (opt == 'p')
			pid = atoi(optarg);
		else if (opt == 'l')
			have_l = parse(optarg, &local) == 0;
		else if (opt == 't')
			tcp = !strcmp(optarg, "tcp") ? 1 : !strcmp(optarg, "udp") ? 0 : -1;
		else if (opt == 'd')
			have_d = parse(optarg, &server) == 0;
		else if (opt == 'n')
			count = atoi(optarg);
		else if (opt == 'i')
			ms = atoi(optarg);
		else
			return 2;
	}
	if (pid <= 0 || !have_l || tcp < 0 || (!tcp && !have_d) || count < 1 || ms < 0)
		return fprintf(stderr, "usage: flow_ka -p PID -l IP:PORT -t udp|tcp [-d IP:PORT] "
				       "[-n COUNT] [-i MS]\n"),
		       2;
	int fd = borrow(pid, &local, tcp ? SOCK_STREAM : SOCK_DGRAM, tcp && have_d ? &server : NULL);
	if (fd < 0 && cannot_borrow)
		return 4;
	if (fd < 0)
		return fprintf(stderr, "flow_ka: process %d has no such %s socket\n", pid,
			       tcp ? "tcp" : "udp"),
		       1;
	int sent = 0;
	for (int i = 0; i < count; i++) {
		if (i) {
			struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		ssize_t n;
		if (tcp) {
			n = send(fd, "\r\n\r\n", 4, MSG_NOSIGNAL);
		} else {
			uint8_t req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
			if (getrandom(req + 8, 12, 0) != 12)
				return 1;
			n = sendto(fd, req, sizeof req, 0, (struct sockaddr *)&server,
				   sizeof server);
		}
		if (n < 0)
			return perror("flow_ka: send"), printf("sent %d\n", sent), 1;
		sent++;
	}
	printf("sent %d\n", sent);
	return 0;
}
