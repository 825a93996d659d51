/* stun_ping: sends plain 20-byte STUN Binding requests (an RFC 5626 keepalive's form: no
 * attributes) and prints the XOR-MAPPED-ADDRESS of each answer, for the NAT lab.
 *
 * usage: stun_ping -b LOCAL_IP:PORT -d SERVER_IP:PORT [-n COUNT]
 * Prints "mapped <ip>:<port> len <n>" per answer; exit 0 when every request
 * was answered within 2 s, 3 on a timeout, 1 on errors, 2 on usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

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

int main(int argc, char **argv)
{
	struct sockaddr_in local, server;
	int have_b = 0, have_d = 0, count = 1, opt;
	while ((opt = getopt(argc, argv, "b:d:n:")) != -1) {
		if (opt == 'b')
			have_b = parse(optarg, &local) == 0;
		else if (opt == 'd')
			have_d = parse(optarg, &server) == 0;
		else if (opt == 'n')
			count = atoi(optarg);
		else
			return 2;
	}
	if (!have_b || !have_d || count < 1)
		return fprintf(stderr, "usage: stun_ping -b IP:PORT -d IP:PORT [-n COUNT]\n"), 2;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof local))
		return perror("stun_ping: socket"), 1;
	for (int i = 0; i < count; i++) {
		uint8_t req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, rsp[1500];
		if (getrandom(req + 8, 12, 0) != 12)
			return 1;
		if (sendto(fd, req, sizeof req, 0, (struct sockaddr *)&server, sizeof server) < 0)
			return perror("stun_ping: sendto"), 1;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2000) != 1)
			return printf("timeout\n"), 3;
		ssize_t n = recv(fd, rsp, sizeof rsp, 0);
		/* success response, same transaction, XOR-MAPPED-ADDRESS first */
		if (n < 32 || rsp[0] != 0x01 || rsp[1] != 0x01 || memcmp(rsp + 4, req + 4, 16) ||
		    rsp[20] != 0x00 || rsp[21] != 0x20 || rsp[25] != 0x01)
			return printf("bad answer len %zd\n", n), 1;
		uint16_t port = (uint16_t)((rsp[26] << 8 | rsp[27]) ^ 0x2112);
		uint8_t ip[4];
		for (int j = 0; j < 4; j++)
			ip[j] = rsp[28 + j] ^ req[4 + j];
		printf("mapped %u.%u.%u.%u:%u len %zd\n", ip[0], ip[1], ip[2], ip[3], port, n);
	}
	return 0;
}
