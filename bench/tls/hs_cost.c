/* Server CPU per TLS handshake, pinhole's own server context against a
 * context left at OpenSSL's defaults, in one process over memory BIOs (no
 * sockets, no scheduler, no generator on the same cores). Not part of ctest.
 *
 *   hs_cost N CERT KEY [resume]
 *
 * Each of N handshakes: a new server SSL (pinhole's: net_tls_server_alloc
 * and net_tls_server_ssl_new, exactly what a tls: listener and the TURN
 * role use), a new client SSL (OpenSSL defaults, X25519 key share, no
 * verification), the handshake to the end, the server's tickets read by
 * the client, both freed. Only the server's calls are timed (thread CPU
 * time): SSL_new, SSL_do_handshake, SSL_free. The two contexts alternate
 * handshake by handshake so that a shared machine slows both alike.
 * "resume": the client offers the session of the handshake before (a
 * resumed handshake, as a phone that reconnects makes).
 *
 * Prints, per context: median and mean µs per handshake, tickets sent,
 * suite and group chosen. Build (from the top of the tree, after cmake):
 *   cc -O2 -Isrc -o hs_cost bench/tls/hs_cost.c build/libpinhole_lib.a \
 *      $(pkg-config --libs inih sqlite3 libssl libcrypto zlib libmicrohttpd libbpf) -lm
 * bench/tls/run.sh does it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hs_pair.h"

#include "net/net_int.h" /* net_tls_server_ssl_new: the SSL a listener makes */

struct side {
	const char *name;
	struct net_tls *pinhole; /* pinhole's; else ctx */
	SSL_CTX *ctx;
	uint64_t *ns;
	unsigned tickets;
	SSL_SESSION *last; /* for "resume" */
	char suite[64], group[32];
	unsigned resumed;
};

static int on_ticket(SSL *ssl, SSL_SESSION *sess)
{
	struct side *s = SSL_get_app_data(ssl);
	s->tickets++;
	SSL_SESSION_free(s->last);
	s->last = sess; /* kept: returning 1 */
	return 1;
}

/* One handshake; returns the server's CPU ns, 0 on failure. */
static uint64_t one(struct side *s, SSL_CTX *cctx, bool resume)
{
	uint64_t t = 0, t0 = hs_cpu_ns();
	SSL *srv = s->pinhole ? net_tls_server_ssl_new(s->pinhole) : SSL_new(s->ctx);
	t += hs_cpu_ns() - t0;
	if (!srv)
		return 0;
	if (!s->pinhole)
		SSL_set_accept_state(srv);
	SSL *cl = SSL_new(cctx);
	SSL_set_app_data(cl, s);
	SSL_set_connect_state(cl);
	if (resume && s->last)
		SSL_set_session(cl, s->last);
	bool ok = hs_pair_run(srv, cl, false, &t);
	if (ok) {
		snprintf(s->suite, sizeof s->suite, "%s", SSL_CIPHER_get_name(SSL_get_current_cipher(srv)));
		int g = SSL_get_shared_group(srv, 0);
		snprintf(s->group, sizeof s->group, "%s", g ? OBJ_nid2sn(g) : "?");
		s->resumed += SSL_session_reused(srv) == 1;
	}
	SSL_shutdown(cl); /* else OpenSSL takes the session as not resumable */
	SSL_free(cl);
	t0 = hs_cpu_ns();
	SSL_free(srv);
	t += hs_cpu_ns() - t0;
	if (s->pinhole)
		net_tls_server_handshake_done(s->pinhole);
	ERR_clear_error();
	return ok ? t : 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: hs_cost N CERT KEY [resume]\n");
		return 2;
	}
	unsigned n = (unsigned)atoi(argv[1]);
	bool resume = argc > 4 && !strcmp(argv[4], "resume");
	struct net_tls_conf conf = {.certificate = argv[2], .private_key = argv[3],
				    .max_handshakes = 4};
	char err[512];
	struct side sides[2] = {{.name = "pinhole"}, {.name = "defaults"}};
	if (net_tls_server_alloc(&sides[0].pinhole, &conf, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	/* what a server gets from OpenSSL with the certificate and no more */
	sides[1].ctx = SSL_CTX_new(TLS_server_method());
	if (SSL_CTX_use_certificate_chain_file(sides[1].ctx, argv[2]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sides[1].ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "%s: cannot load\n", argv[2]);
		return 1;
	}
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(cctx, on_ticket);
	for (int k = 0; k < 2; k++) {
		sides[k].ns = calloc(n, sizeof(uint64_t));
		for (int w = 0; w < 20; w++) /* warm: first fetches, caches */
			one(&sides[k], cctx, resume);
		sides[k].tickets = sides[k].resumed = 0;
	}
	unsigned fails = 0;
	for (unsigned i = 0; i < n; i++)
		for (int k = 0; k < 2; k++)
			if (!(sides[k].ns[i] = one(&sides[k], cctx, resume)))
				fails++;
	double mean[2];
	for (int k = 0; k < 2; k++) {
		struct side *s = &sides[k];
		uint64_t sum = 0;
		for (unsigned i = 0; i < n; i++)
			sum += s->ns[i];
		qsort(s->ns, n, sizeof *s->ns, hs_cmp_u64);
		mean[k] = (double)sum / n / 1000;
		printf("%-8s median %6.1f us  mean %6.1f us  tickets/hs %.1f  resumed %u/%u  %s %s\n",
		       s->name, (double)s->ns[n / 2] / 1000, mean[k], (double)s->tickets / n,
		       s->resumed, n, s->suite, s->group);
	}
	printf("ratio pinhole/defaults (mean) %.2f  failed %u\n", mean[0] / mean[1], fails);
	return fails ? 1 : 0;
}
