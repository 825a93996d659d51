/* One TLS handshake between a server SSL and a client SSL over a memory BIO
 * pair, with only the server's calls timed (thread CPU time): what hs_cost.c
 * and hs_opts.c measure. Header-only: each is built by a single cc line. */
#ifndef PINHOLE_BENCH_HS_PAIR_H
#define PINHOLE_BENCH_HS_PAIR_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static inline uint64_t hs_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int hs_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Runs the handshake between srv (in accept state) and cl (in connect
 * state), then lets the client read the server's tickets; with keepalive, a
 * CRLF ping in and its pong out too (as bench/tls/run.sh hs counts a
 * handshake). Adds the server's CPU ns to *ns; both SSLs stay the caller's.
 * True when both sides finished the handshake. */
static inline bool hs_pair_run(SSL *srv, SSL *cl, bool keepalive, uint64_t *ns)
{
	BIO *a, *b;
	BIO_new_bio_pair(&a, 0, &b, 0);
	SSL_set_bio(cl, a, a);
	SSL_set_bio(srv, b, b);
	int rc = 0, rs = 0;
	for (int i = 0; i < 20 && (rc != 1 || rs != 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(cl);
		if (rs != 1) {
			uint64_t t0 = hs_cpu_ns();
			rs = SSL_do_handshake(srv);
			*ns += hs_cpu_ns() - t0;
		}
	}
	char buf[64];
	size_t got;
	SSL_read_ex(cl, buf, sizeof buf, &got); /* the tickets come after the handshake */
	if (keepalive) {
		SSL_write_ex(cl, "\r\n\r\n", 4, &got);
		uint64_t t0 = hs_cpu_ns();
		SSL_read_ex(srv, buf, sizeof buf, &got);
		SSL_write_ex(srv, "\r\n", 2, &got);
		*ns += hs_cpu_ns() - t0;
		SSL_read_ex(cl, buf, sizeof buf, &got);
	}
	ERR_clear_error();
	return rc == 1 && rs == 1;
}

#endif
