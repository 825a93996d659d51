/* Server CPU per full TLS 1.3 handshake under variants of pinhole's server
 * context, in one process over memory BIOs, interleaved handshake by
 * handshake so that a shared machine slows all alike. Not part of ctest.
 *
 *   hs_opts N CERT KEY VARIANT...
 *
 * The base (0) is pinhole's server context as src/net/tls.c builds it
 * (suites, groups, modes, options, read-ahead, one ticket, no session
 * cache). A variant adds bits:
 *   1  a key log callback (what parking sets: OpenSSL then formats five
 *      secret lines per handshake, sprintf by byte)
 *   2  no SSL_MODE_RELEASE_BUFFERS (buffers kept through the handshake)
 *   8  SSL_OP_NO_TICKET with the server's session cache (stateful
 *      resumption: no ticket to seal, a session kept per client)
 * Each handshake: a new server and client SSL, the handshake, the ticket
 * read by the client, a CRLF keepalive in and its answer out (as
 * bench/tls/run.sh hs), both freed; only the server's calls are timed
 * (thread CPU time). Prints the median and mean per variant.
 *   cc -O2 -o hs_opts bench/tls/hs_opts.c -lssl -lcrypto */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hs_pair.h"

#define MAX_VARIANTS 8

/* as parking's callback does at least: look at the line */
static void on_keylog(const SSL *ssl, const char *line)
{
	(void)ssl;
	volatile size_t n = strlen(line);
	(void)n;
}

static SSL_CTX *server_ctx(const char *cert, const char *key, int variant)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
				      "TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
	if (!(variant & 2))
		mode |= SSL_MODE_RELEASE_BUFFERS;
	SSL_CTX_set_mode(ctx, mode);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE |
					 (variant & 8 ? SSL_OP_NO_TICKET : 0));
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set1_groups_list(ctx, "X25519:P-256");
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "%s: cannot load\n", cert);
		exit(1);
	}
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, variant & 8 ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"pinhole", 7);
	if (variant & 1)
		SSL_CTX_set_keylog_callback(ctx, on_keylog);
	return ctx;
}

/* One handshake; the server's CPU ns, 0 on failure. */
static uint64_t one(SSL_CTX *sctx, SSL_CTX *cctx)
{
	uint64_t t = 0, t0 = hs_cpu_ns();
	SSL *srv = SSL_new(sctx);
	SSL_set_accept_state(srv);
	t += hs_cpu_ns() - t0;
	SSL *cl = SSL_new(cctx);
	SSL_set_connect_state(cl);
	bool ok = hs_pair_run(srv, cl, true, &t);
	SSL_free(cl);
	t0 = hs_cpu_ns();
	SSL_free(srv);
	t += hs_cpu_ns() - t0;
	return ok ? t : 0;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc - 4 > MAX_VARIANTS) {
		fprintf(stderr, "usage: hs_opts N CERT KEY VARIANT... (at most %d)\n", MAX_VARIANTS);
		return 2;
	}
	unsigned n = (unsigned)atoi(argv[1]);
	int nv = argc - 4;
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX *ctx[MAX_VARIANTS];
	uint64_t *ns[MAX_VARIANTS];
	for (int i = 0; i < nv; i++) {
		ctx[i] = server_ctx(argv[2], argv[3], atoi(argv[4 + i]));
		ns[i] = calloc(n, sizeof(uint64_t));
		for (int w = 0; w < 20; w++) /* warm: first fetches, caches */
			one(ctx[i], cctx);
	}
	unsigned fails = 0;
	for (unsigned j = 0; j < n; j++)
		for (int i = 0; i < nv; i++)
			if (!(ns[i][j] = one(ctx[i], cctx)))
				fails++;
	for (int i = 0; i < nv; i++) {
		uint64_t sum = 0;
		for (unsigned j = 0; j < n; j++)
			sum += ns[i][j];
		qsort(ns[i], n, sizeof(uint64_t), hs_cmp_u64);
		printf("variant %s: median %6.1f us  mean %6.1f us\n", argv[4 + i],
		       (double)ns[i][n / 2] / 1000, (double)sum / n / 1000);
	}
	if (fails)
		printf("failed %u\n", fails);
	return fails ? 1 : 0;
}
