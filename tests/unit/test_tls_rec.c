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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(roundtrip_all_suites),
	    cmocka_unit_test(partial_writes_send_once),
	    cmocka_unit_test(rekey_before_the_limit),
	    cmocka_unit_test(key_update_owed_goes_first),
	    cmocka_unit_test(last_sequence_number_refused),
	    cmocka_unit_test(other_key_closes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
