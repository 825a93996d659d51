/* net: the record layer of parked TLS connections (tls_rec.c) alone, two ends over memory with
 * fixed secrets: what OpenSSL cannot be made to do in test_tls_park.c. Our own KeyUpdate at
 * TLS_REC_REKEY_AT records, the last sequence number refused both ways, a record under
 * another key, a kernel that takes a few bytes at a time (each byte sent once), data held
 * for a small read buffer, the KeyUpdate owed before more data. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "net/net_int.h"

/* one direction of the wire */
struct pipe_ {
	uint8_t buf[200000];
	size_t len, off;
	size_t take; /* bytes a send may take; SIZE_MAX: all */
};

static ssize_t pipe_send(void *arg, const void *p, size_t n)
{
	struct pipe_ *w = arg;
	if (w->take == 0) {
		errno = EAGAIN;
		return -1;
	}
	if (n > w->take)
		n = w->take;
	if (w->take != SIZE_MAX)
		w->take -= n;
	assert_true(w->len + n <= sizeof w->buf);
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	return (ssize_t)n;
}

static ssize_t pipe_recv(void *arg, void *p, size_t n)
{
	struct pipe_ *w = arg;
	if (w->off == w->len) {
		errno = EAGAIN;
		return -1;
	}
	if (n > w->len - w->off)
		n = w->len - w->off;
	memcpy(p, w->buf + w->off, n);
	w->off += n;
	return (ssize_t)n;
}

static const uint8_t s_client[48] = {1, 1, 2, 3, 5, 8, 13, 21}, s_server[48] = {42, 43, 44};

/* a client and a server end, keys each way */
static void pair(struct tls_rec *c, struct tls_rec *s, uint8_t suite)
{
	assert_int_equal(tls_rec_init(c, suite, true, s_server, s_client), 0);
	assert_int_equal(tls_rec_init(s, suite, false, s_client, s_server), 0);
}

/* Reads all there is; the bytes of data (their copy in out). */
static size_t drain(struct tls_rec *r, struct pipe_ *w, char *out, size_t cap, size_t room)
{
	size_t got = 0;
	for (int i = 0; i < 10000; i++) {
		bool more;
		size_t n = room < cap - got ? room : cap - got;
		ssize_t k = tls_rec_read(r, pipe_recv, w, out + got, n, &more);
		if (k > 0) {
			got += (size_t)k;
			continue;
		}
		if (k == 0 || errno != EAGAIN || (!more && w->off == w->len))
			break;
	}
	return got;
}

static void roundtrip_all_suites(void **state)
{
	(void)state;
	for (uint8_t suite = TLS_REC_AES128GCM; suite < TLS_REC_SUITES; suite++) {
		struct tls_rec c, s;
		pair(&c, &s, suite);
		static struct pipe_ up;
		memset(&up, 0, sizeof up);
		up.take = SIZE_MAX;
		assert_int_equal(tls_rec_write(&c, pipe_send, &up, "REGISTER\r\n", 10), 10);
		assert_int_equal(tls_rec_write(&c, pipe_send, &up, "OPTIONS\r\n", 9), 9);
		char out[64];
		/* a 7-byte read buffer: the rest of an opened record waits in r */
		assert_int_equal(drain(&s, &up, out, sizeof out, 7), 19);
		assert_memory_equal(out, "REGISTER\r\nOPTIONS\r\n", 19);
		assert_int_equal(s.rd.seq, 2);
		tls_rec_free(&c);
		tls_rec_free(&s);
	}
}

/* A kernel that takes 3 bytes a call, EAGAIN between: the caller calls
 * again with the same bytes, each arrives once. */
static void partial_writes_send_once(void **state)
{
	(void)state;
	struct tls_rec c, s;
	pair(&c, &s, TLS_REC_AES256GCM);
	static struct pipe_ up;
	memset(&up, 0, sizeof up);
	const char *msg = "INVITE sip:bob@example.com SIP/2.0\r\n";
	size_t len = strlen(msg), done = 0;
	for (int i = 0; i < 1000 && done < len; i++) {
		up.take = 3;
		ssize_t k = tls_rec_write(&c, pipe_send, &up, msg + done, len - done);
		if (k > 0)
			done += (size_t)k;
		else
			assert_int_equal(errno, EAGAIN);
	}
	assert_int_equal(done, len);
	assert_false(tls_rec_write_pending(&c));
	char out[128];
	assert_int_equal(drain(&s, &up, out, sizeof out, sizeof out), len);
	assert_memory_equal(out, msg, len);
	assert_int_equal(c.wr.seq, 1); /* one record, sealed once */
	tls_rec_free(&c);
	tls_rec_free(&s);
}

/* At TLS_REC_REKEY_AT records our KeyUpdate goes first; the peer follows. */
static void rekey_before_the_limit(void **state)
{
	(void)state;
	struct tls_rec c, s;
	pair(&c, &s, TLS_REC_AES128GCM);
	c.wr.seq = s.rd.seq = TLS_REC_REKEY_AT - 1;
	static struct pipe_ up;
	memset(&up, 0, sizeof up);
	up.take = SIZE_MAX;
	assert_int_equal(tls_rec_write(&c, pipe_send, &up, "A\n", 2), 2); /* the last under key 0 */
	assert_int_equal(tls_rec_write(&c, pipe_send, &up, "B\n", 2), 2); /* KeyUpdate, then B */
	assert_int_equal(c.wr.seq, 1);
	char out[16];
	assert_int_equal(drain(&s, &up, out, sizeof out, sizeof out), 4);
	assert_memory_equal(out, "A\nB\n", 4);
	assert_int_equal(s.key_updates, 1);
	assert_false(s.ku_send); /* update_not_requested */
	assert_false(s.closed);
	tls_rec_free(&c);
	tls_rec_free(&s);
}

/* The peer asks for our KeyUpdate: it goes before our next data. */
static void key_update_owed_goes_first(void **state)
{
	(void)state;
	struct tls_rec c, s;
	pair(&c, &s, TLS_REC_CHACHA20);
	static struct pipe_ up, down;
	memset(&up, 0, sizeof up);
	memset(&down, 0, sizeof down);
	up.take = down.take = SIZE_MAX;
	/* the client's KeyUpdate(update_requested), sealed by hand */
	uint8_t rec[64];
	static const uint8_t ku[5] = {24, 0, 0, 1, 1};
	assert_int_equal(tls_rec_seal(&c, 22, ku, sizeof ku, rec), 0);
	pipe_send(&up, rec, sizeof ku + 22);
	char out[16];
	assert_int_equal(drain(&s, &up, out, sizeof out, sizeof out), 0);
	assert_int_equal(s.key_updates, 1);
	assert_true(s.ku_send);
	assert_false(s.closed);
	assert_int_equal(tls_rec_write(&s, pipe_send, &down, "OK\n", 3), 3);
	assert_false(s.ku_send);
	/* on the wire: a 27-byte KeyUpdate record, then the data */
	assert_int_equal(down.len, (5 + 22) + (3 + 22));
	tls_rec_free(&c);
	tls_rec_free(&s);
}

/* Sequence numbers never wrap: the last one is refused when reading, and
 * when writing (where the KeyUpdate would have come long before). */
static void last_sequence_number_refused(void **state)
{
	(void)state;
	struct tls_rec c, s;
	pair(&c, &s, TLS_REC_AES128GCM);
	static struct pipe_ up;
	memset(&up, 0, sizeof up);
	up.take = SIZE_MAX;
	assert_int_equal(tls_rec_write(&c, pipe_send, &up, "X\n", 2), 2);
	s.rd.seq = UINT64_MAX;
	char out[16];
	assert_int_equal(drain(&s, &up, out, sizeof out, sizeof out), 0);
	assert_true(s.closed);
	assert_int_equal(s.why, TLS_REC_SEQ_WRAP);
	uint8_t rec[64];
	c.wr.seq = UINT64_MAX;
	assert_int_equal(tls_rec_seal(&c, 23, "Y", 1, rec), EOVERFLOW);
	tls_rec_free(&c);
	tls_rec_free(&s);
}

/* A record sealed under another key: closed, the cause decrypt, and
 * nothing more is written. */
static void other_key_closes(void **state)
{
	(void)state;
	struct tls_rec c, s;
	pair(&c, &s, TLS_REC_AES128GCM);
	static struct pipe_ up, down;
	memset(&up, 0, sizeof up);
	memset(&down, 0, sizeof down);
	up.take = down.take = SIZE_MAX;
	c.wr.key[0] ^= 1;
	assert_int_equal(tls_rec_write(&c, pipe_send, &up, "X\n", 2), 2);
	char out[16];
	assert_int_equal(drain(&s, &up, out, sizeof out, sizeof out), 0);
	assert_int_equal(s.why, TLS_REC_DECRYPT);
	assert_int_equal(tls_rec_write(&s, pipe_send, &down, "Y\n", 2), -1);
	tls_rec_close_notify(&s, pipe_send, &down);
	assert_int_equal(down.len, 0);
	tls_rec_free(&c);
	tls_rec_free(&s);
}

/* The record as a fresh OpenSSL context seals it: the key, nonce (IV xor
 * seq) and header of RFC 8446 5.2, nothing kept between calls. */
static void fresh_seal(uint8_t suite, const struct tls_rec_dir *d, uint64_t seq,
		       const char *plain, size_t len, uint8_t *out)
{
	static const char *names[] = {NULL, "AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};
	EVP_CIPHER *ci = EVP_CIPHER_fetch(NULL, names[suite], NULL);
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	assert_non_null(ci);
	assert_non_null(x);
	uint8_t nonce[12], body[256];
	memcpy(nonce, d->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(seq >> (8 * i));
	size_t blen = len + 1 + 16;
	out[0] = 0x17, out[1] = out[2] = 0x03, out[3] = (uint8_t)(blen >> 8), out[4] = (uint8_t)blen;
	memcpy(body, plain, len);
	body[len] = 23;
	int ol = 0, fl = 0;
	assert_int_equal(EVP_EncryptInit_ex2(x, ci, d->key, nonce, NULL), 1);
	assert_int_equal(EVP_EncryptUpdate(x, NULL, &ol, out, 5), 1);
	assert_int_equal(EVP_EncryptUpdate(x, out + 5, &ol, body, (int)len + 1), 1);
	assert_int_equal(EVP_EncryptFinal_ex(x, out + 5 + ol, &fl), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out + 5 + len + 1), 1);
	EVP_CIPHER_CTX_free(x);
	EVP_CIPHER_free(ci);
}

/* The thread's cipher contexts are kept and only re-keyed per record: the
 * suites and directions taken in turn, a record that fails its tag in
 * between, and every record still the one a fresh context seals, and
 * opened by the other end. */
static void kept_contexts_seal_as_fresh(void **state)
{
	(void)state;
	struct tls_rec c[TLS_REC_SUITES], s[TLS_REC_SUITES];
	for (uint8_t suite = TLS_REC_AES128GCM; suite < TLS_REC_SUITES; suite++)
		pair(&c[suite], &s[suite], suite);
	for (int round = 0; round < 3; round++) {
		for (uint8_t suite = TLS_REC_AES128GCM; suite < TLS_REC_SUITES; suite++) {
			const char *msg = round == 1 ? "SIP/2.0 200 OK\r\n" : "REGISTER sip:x\r\n";
			size_t len = strlen(msg);
			uint8_t got[64], want[64];
			uint64_t seq = c[suite].wr.seq;
			fresh_seal(suite, &c[suite].wr, seq, msg, len, want);
			assert_int_equal(tls_rec_seal(&c[suite], 23, msg, len, got), 0);
			assert_memory_equal(got, want, 5 + len + 1 + 16);
			/* the server end opens it; a copy with one bit changed fails first */
			uint8_t bad[64];
			memcpy(bad, got, sizeof bad);
			bad[7] ^= 0x10;
			assert_false(tls_rec_opens(&s[suite], bad, 5 + len + 1 + 16, seq, false));
			assert_true(tls_rec_opens(&s[suite], got, 5 + len + 1 + 16, seq, false));
		}
	}
	for (uint8_t suite = TLS_REC_AES128GCM; suite < TLS_REC_SUITES; suite++) {
		tls_rec_free(&c[suite]);
		tls_rec_free(&s[suite]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(roundtrip_all_suites),
	    cmocka_unit_test(partial_writes_send_once),
	    cmocka_unit_test(rekey_before_the_limit),
	    cmocka_unit_test(key_update_owed_goes_first),
	    cmocka_unit_test(last_sequence_number_refused),
	    cmocka_unit_test(other_key_closes),
	    cmocka_unit_test(kept_contexts_seal_as_fresh),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
