/* Where the memory of an idle server-side TLS connection goes in OpenSSL:
 * N connections over socketpairs in this process, the server context set
 * as pinhole sets it (src/net/tls.c: RELEASE_BUFFERS, one ticket, no
 * server cache), each handshake done and one record read; then the
 * allocator's bytes in use per connection (mallinfo2) and the live
 * allocations of the last connection by OpenSSL source line (through
 * CRYPTO_set_mem_functions). Not part of ctest.
 *
 *   cc -O2 -o ssl_mem bench/tls/ssl_mem.c -lssl -lcrypto
 *   ./ssl_mem N CERT KEY [1.2]
 */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_LIVE 4096

static struct live {
	void *p;
	size_t n;
	const char *file;
	int line;
} live[MAX_LIVE];
static int tracking;

static void track_add(void *p, size_t n, const char *file, int line)
{
	for (int i = 0; p && tracking && i < MAX_LIVE; i++)
		if (!live[i].p) {
			live[i] = (struct live){p, n, file, line};
			return;
		}
}

static void track_del(void *p)
{
	for (int i = 0; p && i < MAX_LIVE; i++)
		if (live[i].p == p) {
			live[i].p = NULL;
			return;
		}
}

static void *m_malloc(size_t n, const char *file, int line)
{
	void *p = malloc(n);
	track_add(p, n, file, line);
	return p;
}

static void *m_realloc(void *old, size_t n, const char *file, int line)
{
	void *p = realloc(old, n);
	if (p || !n)
		track_del(old);
	track_add(p, n, file, line);
	return p;
}

static void m_free(void *p, const char *file, int line)
{
	(void)file, (void)line;
	track_del(p);
	free(p);
}

static size_t in_use(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

static int by_size(const void *a, const void *b)
{
	const struct live *x = a, *y = b;
	if (!x->p || !y->p)
		return !x->p - !y->p; /* the free slots last */
	return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: ssl_mem N CERT KEY [1.2]\n");
		return 2;
	}
	CRYPTO_set_mem_functions(m_malloc, m_realloc, m_free);
	int n = atoi(argv[1]);
	SSL_CTX *s = SSL_CTX_new(TLS_server_method()), *c = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
	if (argc > 4 && !strcmp(argv[4], "1.2"))
		SSL_CTX_set_max_proto_version(s, TLS1_2_VERSION);
	SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				   SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(s, argv[2]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(s, argv[3], SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_num_tickets(s, 1);
	SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL **keep = calloc((size_t)n, sizeof *keep);
	size_t base = 0;
	for (int i = 0; i < n; i++) {
		if (i == 1)
			base = in_use(); /* after the first: OpenSSL's one-time state */
		if (i == n - 1)
			tracking = 1;
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			return 1;
		fcntl(sv[0], F_SETFL, O_NONBLOCK);
		fcntl(sv[1], F_SETFL, O_NONBLOCK);
		SSL *a = SSL_new(s), *b = SSL_new(c);
		SSL_set_fd(a, sv[0]);
		SSL_set_fd(b, sv[1]);
		SSL_set_accept_state(a);
		SSL_set_connect_state(b);
		int da = 0, db = 0;
		for (int k = 0; k < 100 && !(da && db); k++) {
			da = da || SSL_do_handshake(a) == 1;
			db = db || SSL_do_handshake(b) == 1;
		}
		if (!da || !db) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
		char buf[64];
		size_t got;
		SSL_write_ex(b, "\r\n\r\n", 4, &got);
		SSL_read_ex(a, buf, sizeof buf, &got);
		SSL_write_ex(a, "\r\n", 2, &got);
		SSL_read_ex(b, buf, sizeof buf, &got); /* the ticket, the pong */
		tracking = 0;
		SSL_free(b);
		close(sv[1]);
		keep[i] = a;
	}
	size_t after = in_use();
	printf("%s: %zu bytes in use per idle server connection (mallinfo2, %d connections, "
	       "socket pairs' kernel memory not included)\n",
	       SSL_get_version(keep[n - 1]), (after - base) / (size_t)(n > 1 ? n - 1 : 1), n);
	qsort(live, MAX_LIVE, sizeof live[0], by_size);
	size_t total = 0;
	printf("live OpenSSL allocations of the last connection, by source line:\n");
	for (int i = 0; i < MAX_LIVE && live[i].p; i++) {
		printf("  %6zu  %s:%d\n", live[i].n, live[i].file, live[i].line);
		total += live[i].n;
	}
	printf("  %6zu  total (without malloc's 16 bytes a chunk)\n", total);
	return 0;
}
