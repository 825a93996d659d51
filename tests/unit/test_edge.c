/* Tests for the edge: flow tokens, local-address checks, and the NAT test of the registrar. */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "edge/edge.h"
#include "registrar/registrar.h"

static const struct conf_key *const tables[] = {edge_conf_keys, NULL};

struct fixture {
	struct conf *conf;
	struct net *net;
	struct edge *edge;
};

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof f);
	char err[256];
	assert_int_equal(conf_alloc(&f.conf, tables), 0);
	assert_int_equal(conf_load_string(f.conf, "test",
					  "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\n"
					  "flow_key = 000102030405060708090a0b0c0d0e0f"
					  "101112131415161718191a1b1c1d1e1f\n",
					  err, sizeof err),
			 0);
	struct net_conf nc = {.workers = 1, .max_msg = 4096, .tcp_max_conns = 4};
	assert_int_equal(net_alloc(&f.net, &nc), 0);
	assert_int_equal(edge_alloc(&f.edge, f.net, f.conf), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	edge_free(f->edge);
	net_free(f->net);
	conf_free(f->conf);
	return 0;
}

static void token_roundtrip(void **state, const char *remote, enum net_transport tp,
			    uint64_t conn)
{
	struct fixture *f = *state;
	struct flow in;
	memset(&in, 0, sizeof in);
	in.tp = tp;
	in.listener = tp == NET_UDP ? 0 : 1;
	in.conn_id = conn;
	assert_int_equal(net_addr_parse(remote, 5060, &in.remote), 0);
	char tok[FLOW_TOKEN_LEN + 1];
	edge_flow_token_encode(f->edge, &in, tok);
	assert_int_equal(strlen(tok), FLOW_TOKEN_LEN);
	for (const char *c = tok; *c; c++) /* unreserved in a SIP user part */
		assert_true((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
			    (*c >= '0' && *c <= '9') || *c == '-' || *c == '_');
	struct flow out;
	assert_int_equal(edge_flow_token_decode(f->edge, slice_cstr(tok), &out), 0);
	assert_true(flow_eq(&in, &out));
	assert_int_equal(out.tp, tp);
	assert_int_equal(out.conn_id, conn);
}

static void test_token_v4_udp(void **state)
{
	token_roundtrip(state, "198.18.0.11:40001", NET_UDP, 0);
}

static void test_token_v6_tcp(void **state)
{
	/* connection ids count from 1 per run; the token keeps 40 bits */
	token_roundtrip(state, "[2001:db8::7]:5062", NET_TCP, 0x0102030405ULL);
}

static void test_token_tampered(void **state)
{
	struct fixture *f = *state;
	struct flow in;
	memset(&in, 0, sizeof in);
	net_addr_parse("198.18.0.11:40001", 0, &in.remote);
	char tok[FLOW_TOKEN_LEN + 1];
	edge_flow_token_encode(f->edge, &in, tok);
	/* flip one character of the address part: the HMAC must catch it */
	tok[20] = tok[20] == 'A' ? 'B' : 'A';
	struct flow out;
	assert_int_equal(edge_flow_token_decode(f->edge, slice_cstr(tok), &out), EPERM);
	assert_int_equal(edge_flow_token_decode(f->edge, SLICE_LIT("alice"), &out), EBADMSG);
	assert_int_equal(edge_flow_token_decode(f->edge, slice_cstr(tok + 1), &out), EBADMSG);
}

/* An edge of its own, as after a restart, keyed with key (64 hex chars). */
static void edge_with_key(const char *key, struct conf **c, struct net **n, struct edge **e)
{
	char text[256], err[256];
	snprintf(text, sizeof text,
		 "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nflow_key = %s\n", key);
	assert_int_equal(conf_alloc(c, tables), 0);
	assert_int_equal(conf_load_string(*c, "test", text, err, sizeof err), 0);
	struct net_conf nc = {.workers = 1, .max_msg = 4096, .tcp_max_conns = 4};
	assert_int_equal(net_alloc(n, &nc), 0);
	assert_int_equal(edge_alloc(e, *n, *c), 0);
}

/* Flow tokens carry an epoch. With a fixed flow_key a token outlived a
 * restart, and one that names a TCP connection then named whichever new
 * connection got the same id: a route into a stranger's connection. Now it
 * is stale (RFC 5626 5.3: 430), while UDP tokens survive the restart as the
 * README promises; after a key rotation every old token is stale, told
 * apart from a forged one. */
static void test_token_epoch(void **state)
{
	struct fixture *f = *state;
	static const char key[] = "000102030405060708090a0b0c0d0e0f"
				  "101112131415161718191a1b1c1d1e1f";
	struct flow tcp, udp, out;
	memset(&tcp, 0, sizeof tcp);
	memset(&udp, 0, sizeof udp);
	tcp.tp = NET_TCP;
	tcp.listener = 1;
	tcp.conn_id = 7;
	assert_int_equal(net_addr_parse("198.18.0.21:40000", 0, &tcp.remote), 0);
	assert_int_equal(net_addr_parse("198.18.0.22:40002", 0, &udp.remote), 0);
	char ttok[FLOW_TOKEN_LEN + 1], utok[FLOW_TOKEN_LEN + 1];
	edge_flow_token_encode(f->edge, &tcp, ttok);
	edge_flow_token_encode(f->edge, &udp, utok);
	assert_int_equal(edge_flow_token_decode(f->edge, slice_cstr(ttok), &out), 0);
	assert_int_equal(out.conn_id, 7);

	/* the same key after a restart */
	struct conf *c;
	struct net *n;
	struct edge *e;
	edge_with_key(key, &c, &n, &e);
	assert_int_equal(edge_flow_token_decode(e, slice_cstr(ttok), &out), ESTALE);
	assert_int_equal(edge_flow_token_decode(e, slice_cstr(utok), &out), 0);
	assert_true(net_addr_eq(&out.remote, &udp.remote));
	assert_int_equal(out.tp, NET_UDP);
	char again[FLOW_TOKEN_LEN + 1];
	edge_flow_token_encode(e, &tcp, again);
	assert_string_not_equal(again, ttok);
	assert_int_equal(edge_flow_token_decode(e, slice_cstr(again), &out), 0);
	edge_free(e);
	net_free(n);
	conf_free(c);

	/* a rotated key: stale, both kinds; a tampered token is still forged */
	edge_with_key("ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", &c, &n,
		      &e);
	assert_int_equal(edge_flow_token_decode(e, slice_cstr(ttok), &out), ESTALE);
	assert_int_equal(edge_flow_token_decode(e, slice_cstr(utok), &out), ESTALE);
	edge_free(e);
	net_free(n);
	conf_free(c);
	char bad[FLOW_TOKEN_LEN + 1];
	memcpy(bad, utok, sizeof bad);
	bad[30] = bad[30] == 'A' ? 'B' : 'A';
	assert_int_equal(edge_flow_token_decode(f->edge, slice_cstr(bad), &out), EPERM);
}

/* A next hop by address (a transport=tcp URI) and its token: it names an
 * address, never a connection, so it is no run's and survives a restart;
 * a phone's TCP flow stays a connection's (it never turns into a dial). */
static void test_token_next_hop(void **state)
{
	struct fixture *f = *state;
	struct sip_uri u;
	assert_int_equal(sip_uri_parse(SLICE_LIT("sip:bob@198.18.0.30:5070;transport=tcp"), &u), 0);
	struct flow hop, out;
	assert_int_equal(edge_flow_for_uri(f->edge, &u, &hop), 0);
	assert_int_equal(hop.tp, NET_TCP);
	assert_int_equal(hop.listener, 1);
	assert_true(hop.may_connect);
	assert_int_equal(hop.conn_id, 0);
	char tok[FLOW_TOKEN_LEN + 1];
	edge_flow_token_encode(f->edge, &hop, tok);
	assert_int_equal(edge_flow_token_decode(f->edge, slice_cstr(tok), &out), 0);
	assert_true(flow_eq(&hop, &out));
	assert_true(out.may_connect);
	/* the same key after a restart: still the same next hop */
	struct conf *c;
	struct net *n;
	struct edge *e;
	edge_with_key("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", &c, &n,
		      &e);
	assert_int_equal(edge_flow_token_decode(e, slice_cstr(tok), &out), 0);
	assert_true(out.may_connect);
	edge_free(e);
	net_free(n);
	conf_free(c);
	/* a connection's flow never encodes as a next hop, even if marked */
	struct flow conn = hop;
	conn.conn_id = 9;
	edge_flow_token_encode(f->edge, &conn, tok);
	assert_int_equal(edge_flow_token_decode(f->edge, slice_cstr(tok), &out), 0);
	assert_false(out.may_connect);
	assert_int_equal(out.conn_id, 9);
	/* no listener for the transport: ENOENT, not a flow */
	assert_int_equal(sip_uri_parse(SLICE_LIT("sip:bob@198.18.0.30;transport=tls"), &u), 0);
	assert_int_equal(edge_flow_for_uri(f->edge, &u, &hop), ENOENT);
}

static void test_is_local(void **state)
{
	struct fixture *f = *state;
	uint16_t port = net_addr_port(net_listener_addr(f->net, 0));
	assert_true(edge_is_local(f->edge, SLICE_LIT("127.0.0.1"), port));
	assert_false(edge_is_local(f->edge, SLICE_LIT("127.0.0.1"), (uint16_t)(port + 1)));
	assert_false(edge_is_local(f->edge, SLICE_LIT("198.18.0.1"), port));
	assert_false(edge_is_local(f->edge, SLICE_LIT("example.com"), port));
}

static void via_of(const char *text, struct sip_via *v)
{
	assert_int_equal(sip_via_parse(slice_cstr(text), v), 0);
}

static void uri_of(const char *text, struct sip_uri *u)
{
	assert_int_equal(sip_uri_parse(slice_cstr(text), u), 0);
}

static void test_behind_nat(void **state)
{
	(void)state;
	struct flow f;
	memset(&f, 0, sizeof f);
	f.tp = NET_UDP;
	struct sip_via v;
	struct sip_uri c;
	/* a public phone that says where it is */
	net_addr_parse("198.18.0.50:5060", 0, &f.remote);
	via_of("SIP/2.0/UDP 198.18.0.50:5060;branch=z9hG4bK1", &v);
	uri_of("sip:alice@198.18.0.50:5060", &c);
	assert_false(registrar_behind_nat(&f, &v, &c));
	/* the NAT rewrote the address */
	net_addr_parse("198.18.0.11:5060", 0, &f.remote);
	via_of("SIP/2.0/UDP 100.64.1.2:5060;branch=z9hG4bK1", &v);
	uri_of("sip:alice@100.64.1.2:5060", &c);
	assert_true(registrar_behind_nat(&f, &v, &c));
	/* same address, new port (a port-changing NAT in front of a public IP) */
	net_addr_parse("198.18.0.50:40000", 0, &f.remote);
	via_of("SIP/2.0/UDP 198.18.0.50:5060;branch=z9hG4bK1", &v);
	assert_true(registrar_behind_nat(&f, &v, NULL));
	/* a Contact in the shared range 100.64/10 behind a public source */
	net_addr_parse("198.18.0.50:5060", 0, &f.remote);
	via_of("SIP/2.0/UDP 198.18.0.50:5060;branch=z9hG4bK1", &v);
	uri_of("sip:alice@100.100.1.2", &c);
	assert_true(registrar_behind_nat(&f, &v, &c));
	/* a hostname in the Contact says nothing either way */
	uri_of("sip:alice@phone.example.com", &c);
	assert_false(registrar_behind_nat(&f, &v, &c));
}

static void test_aor(void **state)
{
	(void)state;
	struct sip_uri u;
	char aor[STORE_AOR_MAX];
	uri_of("sip:Alice@Example.COM:5060;transport=udp", &u);
	assert_int_equal(registrar_aor_of(&u, aor), 0);
	assert_string_equal(aor, "Alice@example.com");
	uri_of("sip:example.com", &u);
	assert_int_not_equal(registrar_aor_of(&u, aor), 0);
}

/* The token's MAC is HMAC-SHA1 (RFC 2104) with flow_key over its first 29
 * bytes, truncated to 10, whichever thread makes it: a keyed context on a
 * worker, a copy of the edge's template elsewhere. */
static void b64url_decode(const char *in, unsigned char *out, size_t max)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (const char *c = in; *c && o < max; c++) {
		acc = acc << 6 | (uint32_t)(strchr(alpha, *c) - alpha);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
}

struct on_worker {
	struct edge *edge;
	const struct flow *flow;
	char tok[FLOW_TOKEN_LEN + 1], again[FLOW_TOKEN_LEN + 1];
	int dec_ok, dec_tampered;
	pthread_mutex_t lock;
	bool done;
};

static void encode_on_worker(void *arg)
{
	struct on_worker *ow = arg;
	edge_flow_token_encode(ow->edge, ow->flow, ow->tok);
	/* the second time from the worker's memo */
	edge_flow_token_encode(ow->edge, ow->flow, ow->again);
	struct flow out;
	ow->dec_ok = edge_flow_token_decode(ow->edge, slice_cstr(ow->tok), &out);
	/* a forged MAC for an input whose true MAC is in the memo */
	char bad[FLOW_TOKEN_LEN + 1];
	memcpy(bad, ow->tok, sizeof bad);
	bad[FLOW_TOKEN_LEN - 2] = bad[FLOW_TOKEN_LEN - 2] == 'A' ? 'B' : 'A';
	ow->dec_tampered = edge_flow_token_decode(ow->edge, slice_cstr(bad), &out);
	pthread_mutex_lock(&ow->lock);
	ow->done = true;
	pthread_mutex_unlock(&ow->lock);
}

static void test_token_mac(void **state)
{
	struct fixture *f = *state;
	struct flow in;
	memset(&in, 0, sizeof in);
	in.tp = NET_UDP;
	assert_int_equal(net_addr_parse("198.18.0.7:5062", 5060, &in.remote), 0);
	char tok[FLOW_TOKEN_LEN + 1];
	edge_flow_token_encode(f->edge, &in, tok);
	unsigned char raw[39], key[32], full[EVP_MAX_MD_SIZE];
	b64url_decode(tok, raw, sizeof raw);
	for (int i = 0; i < 32; i++)
		key[i] = (unsigned char)i; /* the fixture's flow_key */
	unsigned int len = 0;
	assert_non_null(HMAC(EVP_sha1(), key, sizeof key, raw, 29, full, &len));
	assert_memory_equal(raw + 29, full, 10);
	/* the same token from a worker thread, with the worker's own context */
	struct on_worker ow = {.edge = f->edge, .flow = &in};
	pthread_mutex_init(&ow.lock, NULL);
	assert_int_equal(net_start(f->net), 0);
	assert_int_equal(loop_post(worker_loop(net_worker(f->net, 0)), encode_on_worker, &ow), 0);
	for (int i = 0; i < 200; i++) {
		pthread_mutex_lock(&ow.lock);
		bool done = ow.done;
		pthread_mutex_unlock(&ow.lock);
		if (done)
			break;
		usleep(10 * 1000);
	}
	net_stop(f->net);
	pthread_mutex_destroy(&ow.lock);
	assert_true(ow.done);
	assert_string_equal(ow.tok, tok);
	assert_string_equal(ow.again, tok);
	assert_int_equal(ow.dec_ok, 0);
	assert_int_equal(ow.dec_tampered, EPERM);
	struct flow out;
	assert_int_equal(edge_flow_token_decode(f->edge, slice_cstr(ow.tok), &out), 0);
	assert_true(flow_eq(&in, &out));
}

/* ---- steering: each UDP datagram to its Call-ID's worker, in the kernel ---- */

#define STEER_MSGS 64

static _Atomic int steer_seen;

static void steer_count(const struct edge_rx *rx, void *arg)
{
	(void)rx, (void)arg;
	atomic_fetch_add(&steer_seen, 1);
}

static int64_t handoffs(void)
{
	struct metric *m = metric_find("sip_worker_handoffs_total", NULL);
	return m ? metric_get(m) : -1;
}

/* Sends STEER_MSGS requests, each from its own socket (so the kernel's own
 * choice spreads them over both workers), in the header forms a Call-ID may
 * take, plus one whose Call-ID is past the scanned head, a REGISTER (handled
 * where it lands, as serve sets it up) and a CRLF ping.
 * Returns the hand-offs they caused; steered/left from the kernel. */
static int64_t steer_run(const char *mode, bool v6, int64_t *steered, int64_t *left)
{
	char cfg[256], err[256];
	snprintf(cfg, sizeof cfg, "[sip]\nlisten = udp:%s:0\nsteering = %s\n",
		 v6 ? "[::1]" : "127.0.0.1", mode);
	struct conf *c;
	assert_int_equal(conf_alloc(&c, tables), 0);
	assert_int_equal(conf_load_string(c, "test", cfg, err, sizeof err), 0);
	struct net_conf nc = {.workers = 2, .max_msg = 8192, .tcp_max_conns = 4};
	struct net *n;
	struct edge *e;
	assert_int_equal(net_alloc(&n, &nc), 0);
	assert_int_equal(edge_alloc(&e, n, c), 0);
	edge_set_handlers(e, steer_count, NULL, NULL);
	edge_set_register_local(e, true);
	assert_int_equal(net_start(n), 0);
	const struct net_addr *to = net_listener_addr(n, 0);
	int fam = v6 ? AF_INET6 : AF_INET;
	static const char *const forms[] = {"Call-ID: ", "i: ", "call-id  :  ", "CALL-ID:\t"};
	int64_t h0 = handoffs();
	atomic_store(&steer_seen, 0);
	char msg[4096], pad[2100];
	memset(pad, 'x', sizeof pad - 1);
	pad[sizeof pad - 1] = '\0';
	for (int i = 0; i <= STEER_MSGS; i++) {
		/* Call-IDs of 19 to 56 bytes, some with white space after them; the
		 * last one carries its Call-ID past the first 2,047 bytes */
		bool late = i == STEER_MSGS;
		int l = snprintf(msg, sizeof msg,
				 "OPTIONS sip:steer@127.0.0.1 SIP/2.0\r\n"
				 "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKsteer%d\r\n"
				 "Max-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:steer@b>\r\n"
				 "%s%s%s"
				 "%sq%d-%d@%.*ssteer.test%s\r\nCSeq: 1 OPTIONS\r\n"
				 "Content-Length: 0\r\n\r\n",
				 i, late ? "Subject: " : "", late ? pad : "", late ? "\r\n" : "",
				 forms[i % 4], i, (int)getpid(), i * 5 % 37, pad, i % 3 ? "" : " ");
		int fd = socket(fam, SOCK_DGRAM, 0);
		assert_true(fd >= 0);
		assert_int_equal(sendto(fd, msg, (size_t)l, 0, &to->u.sa, net_addr_len(to)), l);
		close(fd);
	}
	int l = snprintf(msg, sizeof msg,
			 "REGISTER sip:steer.test SIP/2.0\r\n"
			 "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKsteerreg\r\n"
			 "Max-Forwards: 70\r\nFrom: <sip:a@steer.test>;tag=1\r\n"
			 "To: <sip:a@steer.test>\r\nCall-ID: reg-%d@steer.test\r\n"
			 "CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
			 (int)getpid());
	int fd = socket(fam, SOCK_DGRAM, 0);
	assert_int_equal(sendto(fd, msg, (size_t)l, 0, &to->u.sa, net_addr_len(to)), l);
	assert_int_equal(sendto(fd, "\r\n\r\n", 4, 0, &to->u.sa, net_addr_len(to)), 4);
	close(fd);
	for (int i = 0; i < 500 && atomic_load(&steer_seen) < STEER_MSGS + 2; i++)
		usleep(10 * 1000);
	assert_int_equal(atomic_load(&steer_seen), STEER_MSGS + 2);
	edge_steer_counts(e, steered, left);
	int64_t h = handoffs() - h0;
	net_stop(n);
	edge_free(e);
	net_free(n);
	conf_free(c);
	return h;
}

static void test_steering(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip(); /* loading the program needs CAP_BPF */
	int64_t steered, left;
	/* without it the kernel spreads by source, and user space hands on */
	int64_t h = steer_run("off", false, &steered, &left);
	assert_true(h > 0);
	assert_int_equal(steered, 0);
	/* with it every message with a Call-ID in its head lands on the owner:
	 * the program's hash is user space's (edge_worker_of_callid) */
	for (int v6 = 0; v6 <= 1; v6++) {
		if (v6) {
			/* the same program reads IPv6 datagrams: skip where ::1 is off */
			int fd = socket(AF_INET6, SOCK_DGRAM, 0);
			struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
			bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
			if (fd >= 0)
				close(fd);
			if (!ok)
				break;
		}
		h = steer_run("on", v6, &steered, &left);
		assert_int_equal(steered, STEER_MSGS);
		assert_int_equal(left, 3); /* the late Call-ID, the REGISTER, the CRLF ping */
		assert_true(h <= 1);	   /* only the late one may need a hand-off */
	}
}


/* ---- a closed connection ends its client transactions at once ---- */

static struct {
	struct edge *e;
	_Atomic int started, reports, status, with_msg, closed_calls, answered;
	_Atomic uint64_t conn;
	struct buf req_text;
} CC;

static void cc_resp(struct ctsx *ct, const struct edge_rx *rx, uint16_t status, void *arg)
{
	(void)ct, (void)arg;
	if (rx)
		CC.with_msg++;
	CC.status = status;
	CC.reports++;
}

/* The phone's request over TCP: answered, and a request of ours goes back
 * over that connection with a client transaction (as the proxy would send
 * an INVITE to a phone registered over it). */
static void cc_request(const struct edge_rx *rx, void *arg)
{
	(void)arg;
	stsx_reply(rx->st, 200, "OK", NULL);
	CC.answered++;
	CC.conn = rx->flow.conn_id;
	struct buf req;
	buf_init(&req);
	buf_printf(&req,
		   "OPTIONS sip:phone@10.1.1.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKcc%u\r\nMax-Forwards: 70\r\n"
		   "From: <sip:edge@127.0.0.1>;tag=cc\r\nTo: <sip:phone@10.1.1.1>\r\n"
		   "Call-ID: cc-%u\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		   (unsigned)CC.answered, (unsigned)CC.answered);
	char branch[32];
	snprintf(branch, sizeof branch, "z9hG4bKcc%u", (unsigned)CC.answered);
	if (ctsx_start(CC.e, rx->w, &rx->flow, &req, branch, cc_resp, NULL, NULL) == 0)
		CC.started++;
	buf_free(&req);
}

static void cc_closed(struct worker *w, const struct flow *f, void *arg)
{
	(void)w, (void)arg;
	if (f->conn_id == CC.conn && f->tp == NET_TCP)
		CC.closed_calls++;
}

/* A request we sent over a TCP connection that then closes used to wait
 * for Timer F (32 s with the default T1) to report a failure; the owner (a
 * proxy that could fail over to another flow) hears at once now, as a
 * transport error, and the role's own hook hears of the close too. */
static void test_conn_closed_ends_client_tsx(void **state)
{
	(void)state;
	memset(&CC, 0, sizeof CC);
	char err[256];
	struct conf *c;
	assert_int_equal(conf_alloc(&c, tables), 0);
	assert_int_equal(conf_load_string(c, "test", "[sip]\nlisten = tcp:127.0.0.1:0\n", err,
					  sizeof err),
			 0);
	struct net_conf nc = {.workers = 2, .max_msg = 4096, .tcp_max_conns = 4};
	struct net *n;
	assert_int_equal(net_alloc(&n, &nc), 0);
	assert_int_equal(edge_alloc(&CC.e, n, c), 0);
	edge_set_handlers(CC.e, cc_request, NULL, NULL);
	edge_set_conn_closed(CC.e, cc_closed, NULL);
	assert_int_equal(net_start(n), 0);
	const struct net_addr *to = net_listener_addr(n, 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	static const char opt[] = "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
				  "Via: SIP/2.0/TCP 10.1.1.1:5060;branch=z9hG4bKphone1\r\n"
				  "Max-Forwards: 70\r\nFrom: <sip:phone@127.0.0.1>;tag=p\r\n"
				  "To: <sip:127.0.0.1>\r\nCall-ID: cc-phone\r\nCSeq: 1 OPTIONS\r\n"
				  "Content-Length: 0\r\n\r\n";
	assert_int_equal(send(fd, opt, sizeof opt - 1, MSG_NOSIGNAL), (ssize_t)(sizeof opt - 1));
	/* our 200, then our OPTIONS: the transaction is out on the wire */
	char got[4096] = "";
	size_t have = 0;
	for (int i = 0; i < 200 && !strstr(got, "OPTIONS sip:phone@"); i++) {
		struct timeval tv = {.tv_sec = 0, .tv_usec = 10000};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		ssize_t k = recv(fd, got + have, sizeof got - 1 - have, 0);
		if (k > 0)
			have += (size_t)k;
		got[have] = '\0';
	}
	assert_non_null(strstr(got, "OPTIONS sip:phone@"));
	for (int i = 0; i < 200 && CC.started == 0; i++) /* the handler returns after the send */
		usleep(10 * 1000);
	assert_int_equal(CC.started, 1);
	assert_int_equal(CC.reports, 0);
	close(fd);
	/* the close ends it, long before Timer F */
	for (int i = 0; i < 200 && CC.reports == 0; i++)
		usleep(10 * 1000);
	assert_int_equal(CC.reports, 1);
	assert_int_equal(CC.status, 503);
	assert_int_equal(CC.with_msg, 0);
	assert_int_equal(CC.closed_calls, 1);
	int64_t srv = -1, cli = -1;
	for (int i = 0; i < 200 && cli != 0; i++) {
		usleep(10 * 1000);
		edge_tsx_counts(CC.e, &srv, &cli);
	}
	assert_int_equal(cli, 0); /* and it is gone, not lingering to Timer F */
	net_stop(n);
	edge_free(CC.e);
	net_free(n);
	conf_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token_v4_udp),   cmocka_unit_test(test_token_v6_tcp),
	    cmocka_unit_test(test_token_tampered), cmocka_unit_test(test_token_epoch),
	    cmocka_unit_test(test_token_next_hop), cmocka_unit_test(test_is_local),
	    cmocka_unit_test(test_behind_nat),	   cmocka_unit_test(test_aor),
	    cmocka_unit_test(test_token_mac),	   cmocka_unit_test(test_steering),
	    cmocka_unit_test(test_conn_closed_ends_client_tsx),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
