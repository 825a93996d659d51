/* ng_client: a minimal rtpengine "ng" client for lab tests, independent of pinhole's code.
 *
 * An ng message is one UDP datagram: a cookie, a space, and a bencoded
 * dictionary; the reply carries the same cookie.
 *
 *   "5323_1 d7:command4:pinge"  ->  "5323_1 d6:result4:ponge"
 *
 * usage: ng_client [-t MS] [-r RAW] ADDR:PORT KEY=VALUE...
 *   KEY=VALUE    a string entry; VALUE "@FILE" reads the file (an SDP)
 *   KEY=[a,b,c]  a list of strings (flags, replace, received-from...)
 *   -r RAW       send RAW after the cookie instead of a dictionary (to send
 *                malformed bencode)
 *   -t MS        give up after MS milliseconds (default 2000); the request is
 *                retransmitted every 250 ms with the same cookie
 *
 * The reply is printed flattened, one leaf per line, path=value, dictionary
 * keys joined by '.', list items by their index; CR and LF in strings are
 * printed as \r and \n:
 *   result=ok
 *   sdp=v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n...
 *   tags.abc.medias.0.streams.0.stats.packets=50
 * Exit: 0 a reply came (whatever its result), 1 no reply / system error,
 * 2 usage, 3 the reply is not a bencoded dictionary.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char out[65536];
static size_t out_len;

static void die_usage(const char *why)
{
	fprintf(stderr, "ng_client: %s\nusage: ng_client [-t MS] [-r RAW] ADDR:PORT KEY=VALUE...\n",
		why);
	exit(2);
}

static void put(const char *p, size_t n)
{
	if (out_len + n >= sizeof out)
		die_usage("request too long");
	memcpy(out + out_len, p, n);
	out_len += n;
}

static void put_str(const char *p, size_t n)
{
	char len[24];
	int l = snprintf(len, sizeof len, "%zu:", n);
	put(len, (size_t)l);
	put(p, n);
}

static void put_value(const char *v)
{
	size_t n = strlen(v);
	if (n >= 2 && v[0] == '[' && v[n - 1] == ']') {
		put("l", 1);
		const char *p = v + 1, *end = v + n - 1;
		while (p < end) {
			const char *c = memchr(p, ',', (size_t)(end - p));
			if (!c)
				c = end;
			put_str(p, (size_t)(c - p));
			p = c + 1;
		}
		put("e", 1);
	} else if (v[0] == '@') {
		FILE *f = fopen(v + 1, "rb");
		if (!f)
			die_usage("cannot read the @file");
		static char buf[32768];
		size_t m = fread(buf, 1, sizeof buf, f);
		fclose(f);
		put_str(buf, m);
	} else {
		put_str(v, n);
	}
}

/* ---- reply: a bencode walker that prints leaves ---- */

static const char *rp, *rend;

static int print_node(char *path, size_t plen, size_t cap);

static int read_str(const char **s, size_t *n)
{
	size_t len = 0;
	if (rp >= rend || *rp < '0' || *rp > '9')
		return -1;
	while (rp < rend && *rp >= '0' && *rp <= '9')
		len = len * 10 + (size_t)(*rp++ - '0');
	if (rp >= rend || *rp++ != ':' || (size_t)(rend - rp) < len)
		return -1;
	*s = rp;
	*n = len;
	rp += len;
	return 0;
}

static size_t extend(char *path, size_t plen, size_t cap, const char *s, size_t n)
{
	size_t l = plen;
	if (l && l + 1 < cap)
		path[l++] = '.';
	if (l + n >= cap)
		n = cap - l - 1;
	memcpy(path + l, s, n);
	path[l + n] = '\0';
	return l + n;
}

static int print_node(char *path, size_t plen, size_t cap)
{
	if (rp >= rend)
		return -1;
	if (*rp == 'd' || *rp == 'l') {
		int dict = *rp++ == 'd';
		for (size_t i = 0; rp < rend && *rp != 'e'; i++) {
			size_t nl;
			if (dict) {
				const char *k;
				size_t kn;
				if (read_str(&k, &kn))
					return -1;
				nl = extend(path, plen, cap, k, kn);
			} else {
				char idx[24];
				int il = snprintf(idx, sizeof idx, "%zu", i);
				nl = extend(path, plen, cap, idx, (size_t)il);
			}
			if (print_node(path, nl, cap))
				return -1;
			path[plen] = '\0';
		}
		if (rp >= rend)
			return -1;
		rp++;
		return 0;
	}
	if (*rp == 'i') {
		const char *e = memchr(rp, 'e', (size_t)(rend - rp));
		if (!e)
			return -1;
		printf("%s=%.*s\n", path, (int)(e - rp - 1), rp + 1);
		rp = e + 1;
		return 0;
	}
	const char *s;
	size_t n;
	if (read_str(&s, &n))
		return -1;
	printf("%s=", path);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r')
			fputs("\\r", stdout);
		else if (s[i] == '\n')
			fputs("\\n", stdout);
		else
			putchar(s[i]);
	}
	putchar('\n');
	return 0;
}

int main(int argc, char **argv)
{
	int timeout_ms = 2000, o;
	const char *raw = NULL;
	while ((o = getopt(argc, argv, "t:r:")) != -1) {
		if (o == 't')
			timeout_ms = atoi(optarg);
		else if (o == 'r')
			raw = optarg;
		else
			die_usage("bad option");
	}
	if (optind >= argc)
		die_usage("need ADDR:PORT");
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char host[64];
	const char *colon = strrchr(argv[optind], ':');
	if (!colon || (size_t)(colon - argv[optind]) >= sizeof host)
		die_usage("bad address");
	memcpy(host, argv[optind], (size_t)(colon - argv[optind]));
	host[colon - argv[optind]] = '\0';
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die_usage("bad address");
	sa.sin_port = htons((unsigned short)atoi(colon + 1));

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char cookie[32];
	int cl =
	    snprintf(cookie, sizeof cookie, "%d_%ld ", (int)getpid(), (long)(ts.tv_nsec % 100000));
	put(cookie, (size_t)cl);
	if (raw) {
		put(raw, strlen(raw));
	} else {
		put("d", 1);
		for (int i = optind + 1; i < argc; i++) {
			const char *eq = strchr(argv[i], '=');
			if (!eq)
				die_usage("arguments are KEY=VALUE");
			put_str(argv[i], (size_t)(eq - argv[i]));
			put_value(eq + 1);
		}
		put("e", 1);
	}

	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("ng_client: socket");
		return 1;
	}
	static char reply[65536];
	for (int waited = 0; waited < timeout_ms; waited += 250) {
		if (sendto(fd, out, out_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
			perror("ng_client: sendto");
			return 1;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		while (poll(&p, 1, 250) == 1) {
			ssize_t n = recv(fd, reply, sizeof reply, 0);
			if (n < cl || memcmp(reply, cookie, (size_t)cl) != 0)
				continue; /* not ours (a late reply to nothing) */
			rp = reply + cl;
			rend = reply + n;
			char path[512] = "";
			if (rp >= rend || *rp != 'd' || print_node(path, 0, sizeof path) ||
			    rp != rend) {
				fprintf(stderr,
					"ng_client: reply is not a bencoded dictionary: %.*s\n",
					(int)(n > 200 ? 200 : n), reply);
				return 3;
			}
			return 0;
		}
	}
	fprintf(stderr, "ng_client: no reply from %s\n", argv[optind]);
	return 1;
}
