/* The TLS 1.3 record layer of a parked connection (RFC 8446 section 5): once
 * OpenSSL has done the handshake, an idle connection keeps only its traffic
 * secrets, keys, IVs and sequence numbers here, and its SSL object is freed.
 * libcrypto does the AEAD; this file only frames, and is strict about it:
 * anything but application data, alerts (which close), KeyUpdate and (on our
 * outgoing connections) NewSessionTicket ends the connection. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "net_int.h"

#define REC_HDR 5
#define REC_TAG 16
#define REC_PLAIN_MAX 16384u		    /* 2^14 */
#define REC_BODY_MAX (REC_PLAIN_MAX + 256u) /* 2^14 + 256: the ciphertext bound */
#define HS_KEY_UPDATE 24
#define HS_NEW_SESSION_TICKET 4

static const struct suite {
	const char *cipher, *digest;
	uint8_t key_len, secret_len;
} suites[] = {
    [TLS_REC_AES128GCM] = {"AES-128-GCM", "SHA256", 16, 32},
    [TLS_REC_AES256GCM] = {"AES-256-GCM", "SHA384", 32, 48},
    [TLS_REC_CHACHA20] = {"ChaCha20-Poly1305", "SHA256", 32, 32},
};

/* Fetched once: the AEADs and HKDF (a provider lookup each time costs more
 * than sealing a REGISTER). Cipher contexts per thread, one per suite, kept
 * with their provider state: a record is sealed or opened on the thread
 * that holds the connection's lock, and only its key and nonce are set
 * (EVP_CipherInit_ex2 with a cipher resets and rebuilds the provider's
 * context: half of a REGISTER's AEAD instructions went there). */
static EVP_CIPHER *ciphers[TLS_REC_SUITES];
static EVP_KDF *hkdf;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;

struct thread_ctxs {
	EVP_CIPHER_CTX *c[TLS_REC_SUITES];
};

static void ctx_free(void *p)
{
	struct thread_ctxs *t = p;
	for (int s = 1; s < TLS_REC_SUITES; s++)
		EVP_CIPHER_CTX_free(t->c[s]);
	free(t);
}

static void fetch(void)
{
	for (int s = 1; s < TLS_REC_SUITES; s++)
		ciphers[s] = EVP_CIPHER_fetch(NULL, suites[s].cipher, NULL);
	hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	pthread_key_create(&ctx_key, ctx_free);
}

/* This thread's context of suite, its cipher set (a key and nonce each
 * record); NULL without memory. */
static EVP_CIPHER_CTX *thread_ctx(uint8_t suite)
{
	struct thread_ctxs *t = pthread_getspecific(ctx_key);
	if (!t) {
		t = calloc(1, sizeof *t);
		if (!t)
			return NULL;
		if (pthread_setspecific(ctx_key, t)) {
			free(t);
			return NULL;
		}
	}
	if (!t->c[suite]) {
		EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
		if (!ctx)
			return NULL;
		if (EVP_CipherInit_ex2(ctx, ciphers[suite], NULL, NULL, 1, NULL) != 1) {
			EVP_CIPHER_CTX_free(ctx);
			return NULL;
		}
		t->c[suite] = ctx;
	}
	return t->c[suite];
}

bool tls_rec_available(void)
{
	pthread_once(&fetch_once, fetch);
	for (int s = 1; s < TLS_REC_SUITES; s++)
		if (!ciphers[s])
			return false;
	return hkdf != NULL;
}

/* HKDF-Expand-Label(secret, label, "", len) (RFC 8446 7.1): the HkdfLabel is
 * built here, HKDF-Expand is libcrypto's. */
static int expand_label(uint8_t suite, const uint8_t *secret, const char *label, uint8_t *out,
			size_t len)
{
	uint8_t info[2 + 1 + 6 + 32 + 1];
	size_t ll = strlen(label);
	if (ll > 32)
		return EINVAL;
	info[0] = (uint8_t)(len >> 8);
	info[1] = (uint8_t)len;
	info[2] = (uint8_t)(6 + ll);
	memcpy(info + 3, "tls13 ", 6);
	memcpy(info + 9, label, ll);
	info[9 + ll] = 0; /* empty context */
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
	    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)suites[suite].digest,
					     0),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret,
					      suites[suite].secret_len),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + ll),
	    OSSL_PARAM_construct_end(),
	};
	EVP_KDF_CTX *k = EVP_KDF_CTX_new(hkdf);
	int rc = k && EVP_KDF_derive(k, out, len, params) == 1 ? 0 : EIO;
	EVP_KDF_CTX_free(k);
	return rc;
}

/* A direction's key and IV from its secret (RFC 8446 7.3); seq from 0. */
static int dir_keys(uint8_t suite, struct tls_rec_dir *d)
{
	d->seq = 0;
	if (expand_label(suite, d->secret, "key", d->key, suites[suite].key_len) ||
	    expand_label(suite, d->secret, "iv", d->iv, sizeof d->iv))
		return EIO;
	return 0;
}

/* The next traffic secret (RFC 8446 7.2) and its keys. */
static int dir_update(uint8_t suite, struct tls_rec_dir *d)
{
	uint8_t next[TLS_REC_SECRET_MAX];
	if (expand_label(suite, d->secret, "traffic upd", next, suites[suite].secret_len))
		return EIO;
	memcpy(d->secret, next, suites[suite].secret_len);
	OPENSSL_cleanse(next, sizeof next);
	return dir_keys(suite, d);
}

int tls_rec_init(struct tls_rec *r, uint8_t suite, bool client, const uint8_t *read_secret,
		 const uint8_t *write_secret)
{
	memset(r, 0, sizeof *r);
	if (suite == 0 || suite >= TLS_REC_SUITES || !tls_rec_available())
		return ENOTSUP;
	r->suite = suite;
	r->client = client;
	memcpy(r->rd.secret, read_secret, suites[suite].secret_len);
	memcpy(r->wr.secret, write_secret, suites[suite].secret_len);
	if (dir_keys(suite, &r->rd) || dir_keys(suite, &r->wr)) {
		tls_rec_free(r);
		return EIO;
	}
	return 0;
}

void tls_rec_free(struct tls_rec *r)
{
	free(r->part);
	free(r->wpend);
	OPENSSL_cleanse(r, sizeof *r);
}

size_t tls_rec_secret_len(uint8_t suite)
{
	return suite && suite < TLS_REC_SUITES ? suites[suite].secret_len : 0;
}

/* The AEAD over one record, in place: enc seals body[0..len) and appends the
 * tag; else opens body[0..len) (tag included) and checks it. */
static int aead(uint8_t suite, const struct tls_rec_dir *d, uint64_t seq, bool enc,
		const uint8_t hdr[REC_HDR], uint8_t *body, size_t len)
{
	EVP_CIPHER_CTX *ctx = thread_ctx(suite);
	if (!ctx)
		return ENOMEM;
	uint8_t nonce[12];
	memcpy(nonce, d->iv, sizeof nonce);
	for (int i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(seq >> (8 * i));
	size_t ct_len = enc ? len : len - REC_TAG;
	int outl = 0, finl = 0;
	if (EVP_CipherInit_ex2(ctx, NULL, d->key, nonce, enc, NULL) != 1 ||
	    EVP_CipherUpdate(ctx, NULL, &outl, hdr, REC_HDR) != 1)
		return EIO;
	if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, REC_TAG, body + ct_len) != 1)
		return EIO;
	if (ct_len && EVP_CipherUpdate(ctx, body, &outl, body, (int)ct_len) != 1)
		return EIO;
	if (EVP_CipherFinal_ex(ctx, body + outl, &finl) != 1)
		return EBADMSG; /* opening: the tag does not match */
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, REC_TAG, body + ct_len) != 1)
		return EIO;
	return 0;
}

/* Whether a record's header is one a TLS 1.3 peer may send after the
 * handshake: application_data, legacy version 1.2, a body within bounds. */
static int check_header(const uint8_t *h, size_t *body)
{
	size_t len = (size_t)h[3] << 8 | h[4];
	if (h[0] != 0x17 || h[1] != 0x03 || h[2] != 0x03 || len > REC_BODY_MAX || len < REC_TAG + 1)
		return EBADMSG;
	*body = len;
	return 0;
}

bool tls_rec_opens(const struct tls_rec *r, const uint8_t *rec, size_t len, uint64_t seq,
		   bool write_dir)
{
	size_t body;
	if (len < REC_HDR || check_header(rec, &body) || body != len - REC_HDR)
		return false;
	uint8_t *copy = malloc(body);
	if (!copy)
		return false;
	memcpy(copy, rec + REC_HDR, body);
	bool ok = aead(r->suite, write_dir ? &r->wr : &r->rd, seq, false, rec, copy, body) == 0;
	free(copy);
	return ok;
}

/* Closes r on its input: nothing more is read or sent, and what was kept of
 * an unfinished record goes (no caller touches it after). */
static int fail(struct tls_rec *r, enum tls_rec_why why)
{
	r->why = why;
	r->closed = true;
	free(r->part);
	r->part = NULL;
	r->part_len = r->part_need = r->plain_off = r->plain_len = 0;
	r->hlen = 0;
	return EPROTO;
}

/* The handshake messages of a record (p[0..len)): KeyUpdate, and on our
 * outgoing connections NewSessionTicket; each whole in this record. */
static int handshake(struct tls_rec *r, const uint8_t *p, size_t len)
{
	while (len) {
		if (len < 4)
			return fail(r, TLS_REC_UNEXPECTED); /* spans records: not taken */
		size_t ml = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
		if (ml > len - 4)
			return fail(r, TLS_REC_UNEXPECTED);
		if (p[0] == HS_KEY_UPDATE) {
			/* a key change ends its record (RFC 8446 5.1) */
			if (ml != 1 || p[4] > 1 || len != 5)
				return fail(r, TLS_REC_UNEXPECTED);
			if (dir_update(r->suite, &r->rd))
				return fail(r, TLS_REC_NOMEM);
			r->key_updates++;
			if (p[4] == 1)
				r->ku_send = true; /* ours follows before any more data */
		} else if (p[0] != HS_NEW_SESSION_TICKET || !r->client) {
			return fail(r, TLS_REC_UNEXPECTED);
		}
		p += 4 + ml;
		len -= 4 + ml;
	}
	return 0;
}

/* Opens the whole record rec[0..REC_HDR + body) in place: its application
 * data at rec + REC_HDR, *plain bytes (0 for a record of another type, which
 * is handled here). EPROTO (r->why says why) or 0; *eof at close_notify. */
static int open_record(struct tls_rec *r, uint8_t *rec, size_t body, size_t *plain, bool *eof)
{
	*plain = 0;
	if (r->rd.seq == UINT64_MAX)
		return fail(r, TLS_REC_SEQ_WRAP);
	int err = aead(r->suite, &r->rd, r->rd.seq, false, rec, rec + REC_HDR, body);
	if (err)
		return fail(r, err == EBADMSG ? TLS_REC_DECRYPT : TLS_REC_NOMEM);
	r->rd.seq++;
	uint8_t *p = rec + REC_HDR;
	size_t n = body - REC_TAG;
	while (n && p[n - 1] == 0) /* padding */
		n--;
	if (n == 0)
		return fail(r, TLS_REC_MALFORMED); /* no content type */
	uint8_t type = p[--n];
	if (n > REC_PLAIN_MAX)
		return fail(r, TLS_REC_MALFORMED); /* record_overflow */
	switch (type) {
	case 23:
		*plain = n;
		return 0;
	case 21:
		/* any alert ends the connection; close_notify is the orderly one */
		if (n != 2)
			return fail(r, TLS_REC_MALFORMED);
		if (p[1] != 0)
			return fail(r, TLS_REC_ALERT);
		r->closed = true;
		*eof = true;
		return 0;
	case 22:
		return n ? handshake(r, p, n) : fail(r, TLS_REC_MALFORMED);
	default:
		return fail(r, TLS_REC_UNEXPECTED);
	}
}

/* Takes what a read brought: k bytes in buf, in place. Whole records are
 * opened and their data moved to the start of buf; the start of an
 * unfinished one is kept in r (hdr, or part sized for the whole record).
 * The bytes of data at buf's start, or -1 with errno. */
static ssize_t take(struct tls_rec *r, uint8_t *buf, size_t k)
{
	size_t off = 0, w = 0;
	bool eof = false;
	while (k - off >= REC_HDR) {
		size_t body, plain;
		if (check_header(buf + off, &body)) {
			fail(r, TLS_REC_MALFORMED);
			break;
		}
		if (k - off < REC_HDR + body)
			break;
		if (open_record(r, buf + off, body, &plain, &eof))
			break;
		memmove(buf + w, buf + off + REC_HDR, plain);
		w += plain;
		off += REC_HDR + body;
		if (eof)
			break;
	}
	if (!r->closed && off < k) {
		size_t tail = k - off;
		if (tail < REC_HDR) {
			memcpy(r->hdr, buf + off, tail);
			r->hlen = (uint8_t)tail;
		} else {
			size_t body = 0;
			check_header(buf + off, &body); /* checked in the loop */
			r->part = malloc(REC_HDR + body);
			if (!r->part) {
				fail(r, TLS_REC_NOMEM);
			} else {
				memcpy(r->part, buf + off, tail);
				r->part_len = (uint32_t)tail;
				r->part_need = (uint32_t)(REC_HDR + body);
			}
		}
	}
	if (w)
		return (ssize_t)w; /* an error or the close after it shows next time */
	if (r->closed) {
		errno = eof ? 0 : EPROTO;
		return eof ? 0 : -1;
	}
	errno = EAGAIN;
	return -1;
}

/* Delivers from a record opened in r->part; frees it once all is taken. */
static size_t give(struct tls_rec *r, uint8_t *buf, size_t len)
{
	size_t n = r->plain_len < len ? r->plain_len : len;
	memcpy(buf, r->part + r->plain_off, n);
	r->plain_off += (uint32_t)n;
	r->plain_len -= (uint32_t)n;
	if (!r->plain_len) {
		free(r->part);
		r->part = NULL;
		r->part_len = r->part_need = r->plain_off = 0;
	}
	return n;
}

/* Goes on with an unfinished record: reads only what it lacks, opens it
 * once whole. The bytes of data given (0 with none yet: *again when a
 * record of another type was taken and more may follow), or -1 with errno
 * (EAGAIN: not whole yet), or 0 with r->closed at close_notify. */
static ssize_t finish(struct tls_rec *r, tls_rec_recv_h *rx, void *arg, uint8_t *buf, size_t len)
{
	if (!r->part) {
		ssize_t k = rx(arg, r->hdr + r->hlen, REC_HDR - r->hlen);
		if (k <= 0)
			return k;
		r->hlen += (uint8_t)k;
		if (r->hlen < REC_HDR) {
			errno = EAGAIN;
			return -1;
		}
		size_t body;
		if (check_header(r->hdr, &body)) {
			fail(r, TLS_REC_MALFORMED);
			errno = EPROTO;
			return -1;
		}
		r->part = malloc(REC_HDR + body);
		if (!r->part) {
			fail(r, TLS_REC_NOMEM);
			errno = ENOMEM;
			return -1;
		}
		memcpy(r->part, r->hdr, REC_HDR);
		r->part_len = REC_HDR;
		r->part_need = (uint32_t)(REC_HDR + body);
		r->hlen = 0;
	}
	ssize_t k = rx(arg, r->part + r->part_len, r->part_need - r->part_len);
	if (k <= 0)
		return k;
	r->part_len += (uint32_t)k;
	if (r->part_len < r->part_need) {
		errno = EAGAIN;
		return -1;
	}
	size_t plain;
	bool eof = false;
	if (open_record(r, r->part, r->part_need - REC_HDR, &plain, &eof)) {
		errno = EPROTO;
		return -1;
	}
	if (eof || !plain) {
		free(r->part);
		r->part = NULL;
		r->part_len = r->part_need = 0;
		if (eof)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	r->plain_off = REC_HDR;
	r->plain_len = (uint32_t)plain;
	return (ssize_t)give(r, buf, len);
}

ssize_t tls_rec_read(struct tls_rec *r, tls_rec_recv_h *rx, void *arg, void *out, size_t len,
		     bool *more)
{
	uint8_t *buf = out;
	*more = false;
	if (r->closed) {
		errno = r->why ? EPROTO : 0;
		return r->why ? -1 : 0;
	}
	if (r->plain_len) {
		size_t n = give(r, buf, len);
		*more = r->plain_len != 0;
		return (ssize_t)n;
	}
	if (r->part || r->hlen) {
		ssize_t n = finish(r, rx, arg, buf, len);
		*more = r->plain_len != 0;
		if (n >= 0 || errno != EAGAIN || r->part || r->hlen)
			return n;
		/* a record of another type was taken whole: read on */
	}
	/* what the kernel still holds, epoll (level-triggered) reports: *more
	 * stays false, so a peer that never stops sending gets one read a turn */
	ssize_t k = rx(arg, buf, len);
	if (k <= 0)
		return k;
	return take(r, buf, (size_t)k);
}

int tls_rec_seal(struct tls_rec *r, uint8_t type, const void *plain, size_t len, uint8_t *out)
{
	if (r->wr.seq == UINT64_MAX)
		return EOVERFLOW; /* RFC 8446 5.3: never wrap */
	size_t body = len + 1 + REC_TAG;
	out[0] = 0x17;
	out[1] = out[2] = 0x03;
	out[3] = (uint8_t)(body >> 8);
	out[4] = (uint8_t)body;
	memcpy(out + REC_HDR, plain, len);
	out[REC_HDR + len] = type;
	int err = aead(r->suite, &r->wr, r->wr.seq, true, out, out + REC_HDR, len + 1);
	if (err)
		return err;
	r->wr.seq++;
	return 0;
}

/* Sends rec[0..n); what the kernel does not take waits in r->wpend, to be
 * reported as plain bytes once gone. 0 all sent, EAGAIN kept, else errno. */
static int send_record(struct tls_rec *r, tls_rec_send_h *tx, void *arg, const uint8_t *rec,
		       size_t n, size_t plain)
{
	size_t done = 0;
	while (done < n) {
		ssize_t k = tx(arg, rec + done, n - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return errno;
		if (k < 0)
			break;
		done += (size_t)k;
	}
	if (done == n)
		return 0;
	/* sealed with a sequence number spent: kept, never sealed again */
	r->wpend = malloc(n - done);
	if (!r->wpend)
		return ENOMEM;
	memcpy(r->wpend, rec + done, n - done);
	r->wpend_len = (uint32_t)(n - done);
	r->wpend_plain = (uint32_t)plain;
	return EAGAIN;
}

/* The rest of a record the kernel did not take: 0 once gone (*plain: the
 * caller's bytes it carried), EAGAIN still waiting, else errno. */
static int flush_pending(struct tls_rec *r, tls_rec_send_h *tx, void *arg, size_t *plain)
{
	*plain = 0;
	while (r->wpend_off < r->wpend_len) {
		ssize_t k = tx(arg, r->wpend + r->wpend_off, r->wpend_len - r->wpend_off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno == EWOULDBLOCK ? EAGAIN : errno;
		r->wpend_off += (uint32_t)k;
	}
	*plain = r->wpend_plain;
	free(r->wpend);
	r->wpend = NULL;
	r->wpend_len = r->wpend_off = r->wpend_plain = 0;
	return 0;
}

/* Our KeyUpdate (update_not_requested) under the old key, then the new
 * write key (RFC 8446 4.6.3). */
static int send_key_update(struct tls_rec *r, tls_rec_send_h *tx, void *arg)
{
	static const uint8_t ku[5] = {HS_KEY_UPDATE, 0, 0, 1, 0};
	uint8_t rec[REC_HDR + sizeof ku + 1 + REC_TAG];
	r->ku_send = false;
	int err = tls_rec_seal(r, 22, ku, sizeof ku, rec);
	if (!err)
		err = dir_update(r->suite, &r->wr);
	if (err)
		return err;
	return send_record(r, tx, arg, rec, sizeof rec, 0);
}

ssize_t tls_rec_write(struct tls_rec *r, tls_rec_send_h *tx, void *arg, const void *plain,
		      size_t len)
{
	if (r->closed && r->why) {
		errno = EPIPE;
		return -1;
	}
	int err = 0;
	if (r->wpend) {
		size_t done;
		err = flush_pending(r, tx, arg, &done);
		if (err)
			goto out;
		if (done)
			return (ssize_t)done; /* the caller's first bytes: gone now */
	}
	if (r->wr.seq >= TLS_REC_REKEY_AT)
		r->ku_send = true;
	if (r->ku_send) {
		err = send_key_update(r, tx, arg);
		if (err)
			goto out;
	}
	if (!len)
		return 0;
	size_t n = len < REC_PLAIN_MAX ? len : REC_PLAIN_MAX;
	uint8_t *rec = malloc(n + REC_HDR + 1 + REC_TAG);
	if (!rec) {
		errno = ENOMEM;
		return -1;
	}
	err = tls_rec_seal(r, 23, plain, n, rec);
	if (!err)
		err = send_record(r, tx, arg, rec, n + REC_HDR + 1 + REC_TAG, n);
	free(rec);
	if (!err)
		return (ssize_t)n;
out:
	if (err != EAGAIN)
		r->closed = true;
	errno = err;
	return -1;
}

bool tls_rec_write_pending(const struct tls_rec *r)
{
	return r->wpend != NULL;
}

void tls_rec_close_notify(struct tls_rec *r, tls_rec_send_h *tx, void *arg)
{
	static const uint8_t alert[2] = {1, 0}; /* warning, close_notify */
	uint8_t rec[REC_HDR + sizeof alert + 1 + REC_TAG];
	if (r->wpend || (r->closed && r->why) || tls_rec_seal(r, 21, alert, sizeof alert, rec))
		return; /* mid-record or broken: nothing more may be sent */
	ssize_t k;
	do
		k = tx(arg, rec, sizeof rec);
	while (k < 0 && errno == EINTR);
}
