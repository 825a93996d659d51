/* What parking a TLS 1.3 connection needs to learn while OpenSSL still runs
 * it: the application traffic secrets (OpenSSL's key log callback, kept
 * only until parked) and the sequence numbers, which OpenSSL 3.0 does not
 * tell. For those the raw records are watched on the socket BIO, each way:
 * their count, and a copy of the last whole application_data record. At
 * parking the last record is opened with the application key at each
 * sequence number it can have; the tag decides, so a wrong guess cannot
 * pass. Nothing here is on the path of a parked connection. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "net_int.h"

/* Trial opens a connection may cost at parking: one per record that came
 * in the read (or write) that finished the handshake. A peer that packs
 * more there than an honest one does is left on OpenSSL. */
#define PARK_TRIALS 32
#define REC_MAX (5 + 16384 + 256)

/* One way's raw records, from what the BIO moved. */
struct track {
	uint8_t hdr[5];
	uint8_t hlen;
	bool broken;   /* not a record stream we follow (or out of memory) */
	uint32_t need; /* body bytes of the current record still to come */
	uint8_t *cur;  /* the current record, if application_data */
	uint32_t cur_len;
	uint8_t *last; /* the last whole record, if application_data */
	uint32_t last_len;
	uint64_t n;	  /* whole records */
	uint64_t at_done; /* whole records when the handshake was done */
};

struct tls_park {
	uint8_t rd_secret[TLS_REC_SECRET_MAX], wr_secret[TLS_REC_SECRET_MAX];
	uint8_t rd_len, wr_len;
	bool server;
	bool key_update; /* either way before parking: the secrets moved on */
	bool ticket;	 /* outgoing: a NewSessionTicket came (OpenSSL stored it) */
	uint8_t suite;
	uint64_t done_ms;
	struct track in, out;
};

static int ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_new(void)
{
	ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static void track(struct track *t, const uint8_t *p, size_t n)
{
	while (n && !t->broken) {
		if (t->hlen < 5) {
			size_t k = (size_t)(5 - t->hlen) < n ? (size_t)(5 - t->hlen) : n;
			memcpy(t->hdr + t->hlen, p, k);
			t->hlen += (uint8_t)k;
			p += k;
			n -= k;
			if (t->hlen < 5)
				return;
			t->need = (uint32_t)t->hdr[3] << 8 | t->hdr[4];
			if (5 + t->need > REC_MAX) {
				t->broken = true;
				return;
			}
			if (t->hdr[0] == 0x17) {
				t->cur = malloc(5 + t->need);
				if (!t->cur) {
					t->broken = true;
					return;
				}
				memcpy(t->cur, t->hdr, 5);
				t->cur_len = 5;
			}
		}
		size_t k = t->need < n ? t->need : n;
		if (t->cur) {
			memcpy(t->cur + t->cur_len, p, k);
			t->cur_len += (uint32_t)k;
		}
		t->need -= (uint32_t)k;
		p += k;
		n -= k;
		if (t->need == 0) {
			t->n++;
			t->hlen = 0;
			free(t->last);
			t->last = t->cur;
			t->last_len = t->cur ? t->cur_len : 0;
			t->cur = NULL;
		}
	}
}

static void track_free(struct track *t)
{
	free(t->cur);
	free(t->last);
}

/* The socket BIO's callback: every byte read or written passes here. */
static long on_bio(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
		   size_t *processed)
{
	(void)len, (void)argi, (void)argl;
	struct tls_park *p = (struct tls_park *)BIO_get_callback_arg(b);
	if (!p || ret <= 0 || !processed || !*processed)
		return ret;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN))
		track(&p->in, (const uint8_t *)argp, *processed);
	else if (oper == (BIO_CB_WRITE | BIO_CB_RETURN))
		track(&p->out, (const uint8_t *)argp, *processed);
	return ret;
}

/* OpenSSL's record and message callback: KeyUpdate and NewSessionTicket. */
static void on_msg(int write_p, int version, int content_type, const void *buf, size_t len,
		   SSL *ssl, void *arg)
{
	(void)version, (void)ssl;
	struct tls_park *p = arg;
	if (content_type != SSL3_RT_HANDSHAKE || !len || !p)
		return;
	uint8_t type = *(const uint8_t *)buf;
	if (type == SSL3_MT_KEY_UPDATE)
		p->key_update = true;
	else if (type == SSL3_MT_NEWSESSION_TICKET && !write_p)
		p->ticket = true;
}

static int unhex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;
	while (s[0] && s[1] && n < max) {
		char b[3] = {s[0], s[1], 0};
		char *end;
		out[n++] = (uint8_t)strtoul(b, &end, 16);
		if (*end)
			return -1;
		s += 2;
	}
	return s[0] ? -1 : (int)n;
}

/* "CLIENT_TRAFFIC_SECRET_0 <client random> <secret>" and the server's. */
static void on_keylog(const SSL *ssl, const char *line)
{
	struct tls_park *p = ex_index >= 0 ? SSL_get_ex_data(ssl, ex_index) : NULL;
	if (!p)
		return;
	bool client = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0;
	if (!client && strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) != 0)
		return;
	const char *sp = strchr(line + 24, ' ');
	if (!sp)
		return;
	bool ours = client != p->server;
	int n = unhex(sp + 1, ours ? p->wr_secret : p->rd_secret, TLS_REC_SECRET_MAX);
	if (n > 0)
		*(ours ? &p->wr_len : &p->rd_len) = (uint8_t)n;
}

void tls_park_ctx(struct ssl_ctx_st *ctx)
{
	pthread_once(&ex_once, ex_new);
	if (ctx)
		SSL_CTX_set_keylog_callback(ctx, on_keylog);
}

int tls_park_watch(struct tls_park **pp, struct ssl_st *ssl, bool server)
{
	pthread_once(&ex_once, ex_new);
	struct tls_park *p = calloc(1, sizeof *p);
	if (!p)
		return ENOMEM;
	p->server = server;
	BIO *b = SSL_get_rbio(ssl);
	if (ex_index < 0 || !b || b != SSL_get_wbio(ssl) || !SSL_set_ex_data(ssl, ex_index, p)) {
		free(p);
		return ENOTSUP;
	}
	BIO_set_callback_arg(b, (char *)p);
	BIO_set_callback_ex(b, on_bio);
	SSL_set_msg_callback(ssl, on_msg);
	SSL_set_msg_callback_arg(ssl, p);
	*pp = p;
	return 0;
}

void tls_park_free(struct tls_park *p, struct ssl_st *ssl)
{
	if (!p)
		return;
	if (ssl) {
		BIO *b = SSL_get_rbio(ssl);
		if (b) {
			BIO_set_callback_ex(b, NULL);
			BIO_set_callback_arg(b, NULL);
		}
		SSL_set_msg_callback(ssl, NULL);
		SSL_set_msg_callback_arg(ssl, NULL);
		SSL_set_ex_data(ssl, ex_index, NULL);
	}
	track_free(&p->in);
	track_free(&p->out);
	OPENSSL_cleanse(p, sizeof *p);
	free(p);
}

int tls_park_handshake_done(struct tls_park *p, struct ssl_st *ssl, uint64_t now_ms)
{
	if (SSL_version(ssl) != TLS1_3_VERSION)
		return ENOTSUP;
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	switch (c ? SSL_CIPHER_get_protocol_id(c) : 0) {
	case 0x1301:
		p->suite = TLS_REC_AES128GCM;
		break;
	case 0x1302:
		p->suite = TLS_REC_AES256GCM;
		break;
	case 0x1303:
		p->suite = TLS_REC_CHACHA20;
		break;
	default:
		return ENOTSUP;
	}
	size_t sl = tls_rec_secret_len(p->suite);
	if (p->rd_len != sl || p->wr_len != sl)
		return ENOTSUP;
	p->in.at_done = p->in.n;
	p->out.at_done = p->out.n;
	p->done_ms = now_ms;
	return 0;
}

/* The sequence number that follows the last record one way: 0 when no
 * application record went that way (the last whole record is not one that
 * the application key opens), -1 when it cannot be told within the bound.
 * The application records are the last ones: the first of them is one of
 * those up to the handshake's end (at_done), never the very first. */
static int64_t next_seq(const struct tls_rec *r, const struct track *t, bool write_dir)
{
	if (!t->last)
		return 0;
	uint64_t fmax = t->at_done < t->n - 1 ? t->at_done : t->n - 1;
	if (fmax > PARK_TRIALS)
		return -1;
	for (uint64_t first = fmax; first >= 1; first--) {
		uint64_t seq = t->n - 1 - first;
		if (tls_rec_opens(r, t->last, t->last_len, seq, write_dir))
			return (int64_t)seq + 1;
	}
	return 0;
}

int tls_park_try(struct tls_park *p, struct ssl_st *ssl, bool write_blocked, uint64_t now_ms,
		 struct tls_rec **out)
{
	if (p->key_update || p->in.broken || p->out.broken)
		return ENOTSUP;
	/* OpenSSL holds nothing: no byte read and not processed, no record
	 * half read or half written */
	if (write_blocked || SSL_has_pending(ssl) || p->in.hlen || p->out.hlen)
		return EAGAIN;
	/* ours: the server's ticket first (OpenSSL keeps it for resuming),
	 * unless none came for a second */
	if (!p->server && !p->ticket && now_ms - p->done_ms < 1000)
		return EAGAIN;
	struct tls_rec *r = malloc(sizeof *r);
	if (!r)
		return ENOMEM;
	int err = tls_rec_init(r, p->suite, !p->server, p->rd_secret, p->wr_secret);
	if (err) {
		free(r);
		return err;
	}
	int64_t rs = next_seq(r, &p->in, false), ws = next_seq(r, &p->out, true);
	if (rs < 0 || ws < 0) {
		tls_rec_free(r);
		free(r);
		return ENOTSUP;
	}
	r->rd.seq = (uint64_t)rs;
	r->wr.seq = (uint64_t)ws;
	*out = r;
	return 0;
}
