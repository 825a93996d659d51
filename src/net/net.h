/* net: event loops, timers, worker threads, addresses, UDP and TCP transports, flows. */
#ifndef PINHOLE_NET_H
#define PINHOLE_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/core.h"

/* ---- addresses ---- */

struct net_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		struct sockaddr_storage ss;
	} u;
};

#define NET_ADDR_STRLEN 64 /* "[v6]:port" with room to spare */

struct net_cidr;

/* 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
bool net_addr_is_loopback(const struct net_addr *a);
/* Parses a comma-separated list of net_cidr_parse items into out[cap];
 * *n = entries; an empty list is fine. EINVAL, ERANGE, EDOM as
 * net_cidr_parse for the first bad item, ENOSPC past cap. */
int net_cidr_list_parse(const char *s, struct net_cidr *out, size_t cap, size_t *n);
/* Whether a's IP is inside any of the n prefixes. */
bool net_cidr_list_has(const struct net_cidr *list, size_t n, const struct net_addr *a);

/* Parses "1.2.3.4:5060", "[::1]:5060", "1.2.3.4" (port = defport); numeric only. */
int net_addr_parse(const char *s, uint16_t defport, struct net_addr *out);
/* Parses a host slice (IPv4 literal, or IPv6 with or without brackets) and a port. */
int net_addr_from_host(struct slice host, uint16_t port, struct net_addr *out);
/* "1.2.3.4:5060" or "[::1]:5060"; returns buf. */
char *net_addr_fmt(const struct net_addr *a, char *buf, size_t len);
/* Just the IP, no brackets; returns buf. */
char *net_addr_ip_fmt(const struct net_addr *a, char *buf, size_t len);
uint16_t net_addr_port(const struct net_addr *a);
void net_addr_set_port(struct net_addr *a, uint16_t port);
int net_addr_family(const struct net_addr *a);
socklen_t net_addr_len(const struct net_addr *a);
bool net_addr_eq(const struct net_addr *a, const struct net_addr *b);    /* IP and port */
bool net_addr_ip_eq(const struct net_addr *a, const struct net_addr *b); /* IP only */
bool net_addr_is_any(const struct net_addr *a);
/* RFC 1918, RFC 6598 shared (100.64.0.0/10), loopback, link-local, RFC 4193 ULA. */
bool net_addr_is_private(const struct net_addr *a);
uint64_t net_addr_hash(const struct net_addr *a);
/* What names one source for per-source bounds: an IPv4 address (v4-mapped
 * IPv6 too), or an IPv6 /64, which one subscriber gets whole (RFC 6177). */
struct net_src_key {
	uint64_t hi, lo;
};
void net_addr_src_key(const struct net_addr *a, struct net_src_key *out);

/* An address prefix, as in a source allow-list. */
struct net_cidr {
	struct net_addr net; /* port unused */
	unsigned plen;
};
/* Parses "192.0.2.0/24", "2001:db8::/32" or a bare address (a host: /32,
 * /128). EINVAL when it is not that, ERANGE for a prefix length beyond the
 * family's, EDOM when the address has bits set past the prefix (a typo for
 * another network, more likely than not). */
int net_cidr_parse(const char *s, struct net_cidr *out);
/* Whether a's IP is inside c; an IPv4-mapped IPv6 address (a dual-stack
 * socket's view of an IPv4 peer) matches as the IPv4 address it carries. */
bool net_cidr_has(const struct net_cidr *c, const struct net_addr *a);

/* ---- event loop: one per worker thread (epoll) ---- */

struct loop;

typedef void(loop_fd_h)(int fd, uint32_t events, void *arg);
typedef void(loop_call_h)(void *arg);

int loop_alloc(struct loop **lp);
void loop_free(struct loop *l);
/* Watches fd for epoll events; the handler runs on the loop's thread. */
int loop_fd_add(struct loop *l, int fd, uint32_t events, loop_fd_h *h, void *arg);
int loop_fd_mod(struct loop *l, int fd, uint32_t events);
void loop_fd_del(struct loop *l, int fd);
/* Runs until loop_stop(); returns 0. */
int loop_run(struct loop *l);
/* Thread-safe. */
void loop_stop(struct loop *l);
/* Thread-safe: runs h(arg) on the loop's thread, in posting order (FIFO). */
int loop_post(struct loop *l, loop_call_h *h, void *arg);
/* One turn without waiting, on the calling thread as l's: the calls posted
 * so far, then the turn hooks. For a loop whose thread has stopped. */
void loop_run_pending(struct loop *l);
/* Calls posted to l and not yet run: how far behind its thread is with
 * work handed to it (a snapshot; any thread). */
size_t loop_post_pending(const struct loop *l);
/* h(arg) runs once after each turn's batch of events (e.g. group commit flush). */
int loop_on_turn_end(struct loop *l, loop_call_h *h, void *arg);
/* After a busy turn (its wake-up came within us of the last turn's end),
 * sleep us microseconds before waiting again (0 = never, the default): under
 * load, packets of many sockets are then served per wake-up, at the cost of up
 * to us of added latency; a quiet loop answers at once. Before run. */
void loop_set_batch_wait(struct loop *l, unsigned us);
/* Millisecond clock cached at the start of the turn. */
uint64_t loop_now_ms(const struct loop *l);
/* The loop of the calling thread, or NULL. */
struct loop *loop_current(void);

/* ---- timers: a hashed wheel per loop, 10 ms resolution ----
 * A struct timer is embedded in its owner; only the loop's thread touches it. */

typedef void(timer_h)(void *arg);

struct timer {
	struct timer *next, *prev; /* wheel slot list; NULL when idle */
	uint64_t expire_ms;
	timer_h *h;
	void *arg;
	struct loop *loop;
};

void timer_init(struct timer *t);
/* (Re)arms t to fire once after delay_ms. Safe to call from inside its handler. */
void timer_start(struct loop *l, struct timer *t, uint64_t delay_ms, timer_h *h, void *arg);
void timer_cancel(struct timer *t);
bool timer_active(const struct timer *t);

/* ---- flows: where a message came from, and the way back ---- */

/* NET_WSS: WebSocket over TLS (RFC 7118), a TLS connection whose bytes are ws.c's */
enum net_transport { NET_UDP = 0, NET_TCP = 1, NET_TLS = 2, NET_WS = 3, NET_WSS = 4 };

const char *net_transport_name(enum net_transport tp);      /* "udp" */
const char *net_transport_name_upper(enum net_transport tp); /* "UDP", as in Via */
int net_transport_parse(struct slice s, enum net_transport *out);

/* A flow is a value: copy it freely. conn_id names a TCP connection (0 for UDP);
 * a connection id is never reused within a process, so a stale flow fails to
 * send instead of reaching someone else's connection.
 *
 * A stream flow is one of two kinds, and only the second may ever open a
 * connection: one naming a connection (conn_id set: a phone's, a peer's; if it
 * is gone, sends fail with ENOTCONN and nothing is dialled, since a phone
 * behind NAT cannot be reached by a new connection), and a next hop by
 * address (conn_id 0, may_connect: made by net_flow_next_hop for a URI or
 * Route that names a host), sent over a connection to that address if one
 * exists (ours, or the peer's aliased per RFC 5923), else over a new one. A
 * stream flow with neither (a stored binding's after a restart) is gone. */
struct flow {
	enum net_transport tp;
	uint16_t listener; /* index into the net's listeners */
	bool may_connect;  /* a next hop by address; never with conn_id */
	uint64_t conn_id;
	struct net_addr local;  /* the listener's bound address */
	struct net_addr remote; /* the packet's real source */
};

bool flow_eq(const struct flow *a, const struct flow *b);
char *flow_fmt(const struct flow *f, char *buf, size_t len); /* "udp:1.2.3.4:5060" */

/* ---- the network: listeners and worker threads ---- */

struct net;
struct worker;

struct net_listener_conf {
	enum net_transport tp;
	struct net_addr addr;
};

/* A received message. data is valid only during the call; copy to keep it. */
typedef void(net_recv_h)(struct worker *w, const struct flow *f, const char *data, size_t len,
			 void *arg);
/* TCP framing, supplied by the protocol: 0 and *msglen when a whole message is at
 * the start of p, ENODATA when more bytes are needed, EBADMSG when the stream is
 * broken (the connection is then closed). fs is the connection's framing state,
 * zeroed by the transport for each new message: the framer notes in it where it
 * stopped, so that the next call on the same message (with more bytes after the
 * same start) resumes there; fields other than filler mean what the framer says. */
struct net_frame_state {
	size_t scanned, mark, value; /* the framer's */
	/* set by the framer with 0: the bytes are filler (a keepalive), not a
	 * message: they keep the connection from going idle but do not count as
	 * its first message (tcp_handshake_s) */
	bool filler;
};
typedef int(net_frame_h)(struct net_frame_state *fs, const char *p, size_t l, size_t max,
			 size_t *msglen);
/* Called on a worker thread when it starts, before any packet (per-worker setup). */
typedef void(net_worker_init_h)(struct worker *w, void *arg);
/* A TCP connection is gone, for whatever reason (the peer closed or reset it,
 * idle, broken framing, a slow reader): called on the worker that owned it,
 * after it was closed and unlinked (net_conn_alive is false, a send on f
 * fails), with the flow it carried. Not called for the connections net_free
 * closes at shutdown. The handler may send on other flows. */
typedef void(net_conn_closed_h)(struct worker *w, const struct flow *f, void *arg);

struct net_conf {
	unsigned workers;        /* 0 = one per core */
	size_t max_msg;          /* bytes; larger messages are dropped and counted */
	unsigned tcp_max_conns;  /* per process; 0 = NET_TCP_MAX_CONNS_DEFAULT */
	/* per source (IPv4 address, IPv6 /64); 0 = no bound beyond tcp_max_conns */
	unsigned tcp_max_conns_per_addr;
	/* bytes a connection may have queued for sending; a peer that lets more
	 * pile up is closed as a slow reader; 0 = NET_TCP_MAX_QUEUE_DEFAULT */
	size_t tcp_max_queue;
	/* seconds a connection's queue may wait with nothing taken by the peer
	 * before it is closed as a slow reader; 0 = NET_TCP_STALL_S_DEFAULT */
	unsigned tcp_stall_s;
	unsigned tcp_idle_s;     /* close a TCP connection silent this long */
	unsigned tcp_handshake_s;/* close a connection that sent no full message by then */
	/* seconds an outgoing connect may take; 0 = NET_TCP_CONNECT_S_DEFAULT */
	unsigned tcp_connect_s;
	/* outgoing connects in progress at once (they count in tcp_max_conns
	 * too); 0 = NET_TCP_MAX_CONNECTING_DEFAULT */
	unsigned tcp_max_connecting;
	/* ws: listeners (ws.c): seconds of silence before the server pings a
	 * WebSocket (0 = never), and seconds a ping may go unanswered before the
	 * connection is closed (0 = NET_WS_PONG_S_DEFAULT) */
	unsigned ws_ping_s;
	unsigned ws_pong_s;
};

#define NET_TCP_MAX_CONNS_DEFAULT 10000
#define NET_TCP_MAX_QUEUE_DEFAULT (128u * 1024u)
#define NET_TCP_STALL_S_DEFAULT 32 /* 64*T1: any transaction waiting on it has timed out */
#define NET_TCP_CONNECT_S_DEFAULT 10
#define NET_TCP_MAX_CONNECTING_DEFAULT 64
#define NET_WS_PONG_S_DEFAULT 10

int net_alloc(struct net **np, const struct net_conf *conf);
void net_free(struct net *n);
/* Adds a listener; returns its index in *idx. Before net_start. */
int net_listen(struct net *n, const struct net_listener_conf *lc, unsigned *idx);
void net_set_recv(struct net *n, net_recv_h *h, net_frame_h *frame, void *arg);
void net_set_worker_init(struct net *n, net_worker_init_h *h, void *arg);
/* One handler per net (the role that owns the receive path fans it out);
 * before net_start. */
void net_set_conn_closed(struct net *n, net_conn_closed_h *h, void *arg);
/* ---- WebSocket (RFC 6455, RFC 7118) over a ws: listener's connections ----
 * The transport runs the connection (upgrade first, then frames: pings
 * answered, messages reassembled and delivered one per net_recv_h call,
 * close answered, idle connections pinged); the role hands it the codec,
 * since plumbing and codecs do not include each other. A flow of such a
 * connection has tp NET_WS; net_send on it sends one message. */
struct net_ws_frame {
	bool fin;
	uint8_t opcode; /* RFC 6455 5.2 */
	size_t hlen, plen;
};
struct net_ws_hooks {
	/* The opening handshake in p[0..l) (what the client sent so far).
	 * ENODATA: not complete; else 0 with *used its length, the answer
	 * appended to out and its HTTP status in *status (101 opens). */
	int (*upgrade)(const struct flow *f, const char *p, size_t l, size_t *used, struct buf *out,
		       unsigned *status, void *arg);
	/* A client's frame at p[0..l), payload unmasked in place: 0, ENODATA,
	 * EBADMSG (protocol error), EMSGSIZE (payload above max). */
	int (*frame)(char *p, size_t l, size_t max, struct net_ws_frame *fr);
	/* Writes a server frame's header (at most 14 bytes); returns its length. */
	size_t (*frame_hdr)(uint8_t *out, bool fin, uint8_t opcode, size_t plen);
	/* A close frame's payload: 0 and its code, or EBADMSG. */
	int (*close_code)(const char *p, size_t l, uint16_t *code);
	/* Whether a text message is UTF-8 (RFC 6455 8.1). */
	bool (*utf8)(const char *p, size_t l);
	void *arg;
};
/* Before net_start; without hooks a ws: listener's connections are closed. */
void net_set_ws(struct net *n, const struct net_ws_hooks *h);
/* Counted as ws_* metrics (ws.c): upgrades, refusals by status, protocol
 * errors, oversize messages, pings, ping timeouts, closes. */

/* Starts the workers (threads). Listener sockets are bound in net_listen, so
 * errors such as EADDRINUSE surface there. */
int net_start(struct net *n);
/* Stops and joins the workers. */
void net_stop(struct net *n);

unsigned net_listener_count(const struct net *n);
const struct net_listener_conf *net_listener(const struct net *n, unsigned idx);
/* The listener's actual bound address (port resolved when configured as 0). */
const struct net_addr *net_listener_addr(const struct net *n, unsigned idx);
/* First listener of a transport and family (AF_INET/AF_INET6, 0 = any); -1 if none. */
int net_listener_find(const struct net *n, enum net_transport tp, int family);

unsigned net_worker_count(const struct net *n);
struct worker *net_worker(struct net *n, unsigned i);
unsigned worker_id(const struct worker *w);
struct loop *worker_loop(struct worker *w);
struct net *worker_net(struct worker *w);
/* Role-private per-worker state, set in the worker init hook. */
void worker_set_data(struct worker *w, void *data);
void *worker_data(struct worker *w);
/* The worker of the calling thread, or NULL. */
struct worker *worker_current(void);
/* During a receive handler: how long ago (ms) the kernel received the
 * datagram being delivered (UDP, by its receive timestamp), or 0 (TCP: read
 * as it came). A worker that falls behind sees this grow. */
uint64_t worker_rx_age_ms(const struct worker *w);

/* Sends on a flow from any thread. UDP: from this worker's socket of the
 * flow's listener (same address and port); on a worker thread the datagram is
 * queued and leaves at the end of the loop turn with the turn's others (one
 * sendmmsg), so an error the kernel reports then (no route, full buffer) is
 * counted in udp_tx_errors, not returned. TCP: on the flow's connection;
 * ENOTCONN if it is gone; a next hop by address goes through
 * net_flow_connect first (reuse, or a new connection from a worker). */
int net_send(struct net *n, const struct flow *f, const void *data, size_t len);
/* Lets an sk_reuseport program choose which worker's socket of a UDP
 * listener receives each datagram: sockarray_fd (a REUSEPORT_SOCKARRAY) gets
 * worker i's socket at index i, and the program is attached to the listener's
 * group. ENOTSUP in builds without eBPF. */
int net_udp_steer(struct net *n, unsigned listener, int prog_fd, int sockarray_fd);
/* Builds a UDP flow to dst from the listener idx. */
void net_flow_udp(const struct net *n, unsigned listener, const struct net_addr *dst,
		  struct flow *out);
/* Whether a TCP connection still exists. */
bool net_conn_alive(struct net *n, uint64_t conn_id);

/* ---- outgoing connections and reuse (RFC 5923) ---- */

/* Builds a next-hop flow to dst over the stream listener idx (its transport
 * and family): conn_id 0, may_connect. Nothing is opened yet. */
void net_flow_next_hop(const struct net *n, unsigned listener, const struct net_addr *dst,
		       struct flow *out);
/* Binds a next-hop flow to a connection: one to its address that exists (one
 * we opened, or one the peer opened and aliased, net_conn_alias), else a new
 * one, connecting in the background on the calling worker's loop; messages
 * sent on it meanwhile are queued (up to tcp_max_queue) and leave once it is
 * connected. On success f names that connection (conn_id set, may_connect
 * cleared, local = our end's address with the listener's port). A flow that
 * already names a connection, or a UDP flow, is left as it is: 0. A stream
 * flow that is neither fails ENOTCONN: it never turns into a connect.
 * A connect that fails later (refused, no answer in tcp_connect_s) closes the
 * connection as any close does. Errors now: ENOTCONN (not a worker thread of
 * n, for a new connection), ENOSPC (tcp_max_conns), EAGAIN (tcp_max_connecting
 * connects in progress), EMFILE (tcp_max_conns_per_addr toward that address),
 * EINVAL, EAFNOSUPPORT, or the socket's errno; all but EINVAL are counted. */
int net_flow_connect(struct net *n, struct flow *f);
/* RFC 5923 alias: requests toward (the connection's remote IP, port) may go
 * over this accepted connection, as if we had opened it to there. The caller
 * decides who may ask (RFC 5923 wants TLS; a trusted peer's word over TCP).
 * Any thread. 0, or ENOTCONN when the connection is gone. */
int net_conn_alias(struct net *n, uint64_t conn_id, uint16_t port);
/* When f names a connection that is reusable by address (one we opened, or
 * one the peer aliased), turns f into the next hop by that address (the
 * peer's IP and listening port, may_connect) and returns true: what a
 * Record-Route should name, so that a request long after reuses or reopens
 * a connection there. Otherwise (a phone's connection: never) false, f as it
 * was. Any thread. */
bool net_conn_next_hop(struct net *n, struct flow *f);

struct net_stats {
	int64_t udp_rx, udp_tx, udp_tx_errors, udp_oversize, tcp_accepted, tcp_open,
		tcp_refused, tcp_idle_closed, tcp_broken, tcp_oversize;
	int64_t tcp_refused_addr; /* refused at tcp_max_conns_per_addr */
	int64_t tcp_slow_closed;  /* closed with more than tcp_max_queue unsent */
	int64_t tcp_buffered;     /* bytes of input and output buffers held now */
	int64_t tcp_connects;     /* outgoing connect attempts (connect() calls) */
	int64_t tcp_connect_failed; /* of those: refused, unreachable, timed out */
	/* outgoing connects not attempted: tcp_max_conns, tcp_max_connecting or
	 * the per-address bound was reached */
	int64_t tcp_connect_limited;
	int64_t tcp_connecting;   /* outgoing connects in progress now */
};
void net_stats_get(struct net *n, struct net_stats *out);

/* ---- TLS (tls.c): OpenSSL under the stream transport ----
 * A tls: listener is a TCP listener whose connections run a TLS handshake
 * before anything else; a NET_TLS next hop is a TCP connect followed by a
 * client handshake. Above the bytes, a TLS connection is a TCP one: same
 * framing, flows, bounds and counters, plus the handshake's own. */
struct net_tls_conf {
	/* PEM files; the certificate file may hold the chain after the leaf */
	const char *certificate, *private_key;
	const char *sni;     /* "CERT:KEY, ...": more, each for the names it holds */
	const char *ca_file; /* peers' certificates are checked against it; "" = system store */
	int verify_client;   /* 0 no, 1 optional (checked if sent), 2 required */
	bool verify_server;  /* outgoing: the chain and the target's address (RFC 5922) */
	const char *ciphers; /* TLS 1.2 list */
	const char *ciphersuites; /* TLS 1.3 suites in our order; NULL/"" = AES-128-GCM first */
	const char *groups;  /* key exchange groups a server takes; NULL/"" = X25519:P-256 */
	bool tls13_only;
	unsigned handshake_s;      /* a handshake not done by then is closed; 0 = 10 */
	unsigned max_handshakes;   /* incoming handshakes at once; 0 = 256 */
	unsigned expiry_warn_days; /* warn when a certificate expires sooner */
	/* TLS 1.3 connections leave OpenSSL after the handshake for tls_rec.c's
	 * record layer (a few hundred bytes instead of the SSL object's 14 KB) */
	bool park;
};
/* Loads the contexts; before net_listen of a tls: listener and net_start.
 * EINVAL with err naming the file and OpenSSL's reason. */
int net_tls_setup(struct net *n, const struct net_tls_conf *c, char *err, size_t errlen);
bool net_tls_can_listen(const struct net *n);
bool net_tls_can_connect(const struct net *n);
/* A TLS connection's protocol version ("TLSv1.3") and peer certificate
 * subject ("" without one); ENOTSUP for a connection without TLS, ENOTCONN. */
int net_conn_tls_info(struct net *n, uint64_t conn_id, char *version, size_t vlen, char *subject,
		      size_t slen);
struct net_tls_stats {
	int64_t handshakes, resumed;
	/* failed handshakes by cause: plain text to a TLS port, not done in
	 * handshake_s, a certificate refused (ours or theirs), another protocol
	 * error, closed by the peer */
	int64_t failed_plaintext, failed_timeout, failed_verify, failed_protocol, failed_closed;
	int64_t limited;     /* connections refused at max_handshakes */
	/* sessions kept to resume outgoing connections (one per target, at
	 * most 64), and those that gave way to a newer target's */
	int64_t sessions, sessions_evicted;
	int64_t handshaking; /* incoming handshakes in progress now */
	int64_t cert_expiry_s; /* seconds until the first of our certificates expires */
	/* parking: connections parked now, parked in all, TLS 1.3 ones left on
	 * OpenSSL (a KeyUpdate before parking, sequence numbers not found), and
	 * parked ones closed on their input: a record that did not decrypt, a
	 * malformed or unexpected one, an alert other than close_notify */
	int64_t parked, parked_total, park_skipped, parked_closed_decrypt, parked_closed_protocol,
		parked_closed_alert;
	bool have_cert;
};
void net_tls_stats_get(struct net *n, struct net_tls_stats *out);

/* A TLS client on a socket its caller owns and drives (pinhole ua; one
 * thread). verify: the chain against ca_file (else the system store) and
 * the host (a name, or an address) the socket was opened to (RFC 5922). */
struct net_tls_client;
struct net_tls_sock;
int net_tls_client_alloc(struct net_tls_client **cp, const char *ca_file, bool verify, char *err,
			 size_t errlen);
void net_tls_client_free(struct net_tls_client *c);
int net_tls_sock_alloc(struct net_tls_sock **sp, struct net_tls_client *c, int fd, const char *host);
void net_tls_sock_free(struct net_tls_sock *s);
/* 0 done; EAGAIN: wait for *want (epoll events); EPERM: the certificate
 * was refused; else failed; why says how, in words. */
int net_tls_sock_handshake(struct net_tls_sock *s, uint32_t *want, char *why, size_t whylen);
const char *net_tls_sock_version(const struct net_tls_sock *s);
/* Whether the handshake resumed a session: the client offers the latest
 * ticket of the same target (host name and address) once, kept from the
 * connections before; a failed or dropped connection keeps its ticket. */
bool net_tls_sock_resumed(const struct net_tls_sock *s);
/* recv/send-like; -1 with EAGAIN when it would block. */
ssize_t net_tls_sock_read(struct net_tls_sock *s, void *buf, size_t len, bool *more);
ssize_t net_tls_sock_write(struct net_tls_sock *s, const void *buf, size_t len);

/* A TLS server on sockets its caller owns and drives (the TURN role, on its
 * own thread and loop): the [tls] certificates (SNI too) in contexts of its
 * own, with the same bound on handshakes in progress (max_handshakes,
 * counted apart from the SIP listeners'). The caller bounds each
 * handshake's time by net_tls_server_handshake_s. Client certificates are
 * not asked for. */
struct net_tls;
int net_tls_server_alloc(struct net_tls **out, const struct net_tls_conf *c, char *err,
			 size_t errlen);
void net_tls_server_free(struct net_tls *t);
unsigned net_tls_server_handshake_s(const struct net_tls *t);
/* A server-side socket on an accepted fd; EAGAIN at max_handshakes, ENOMEM.
 * Then net_tls_sock_handshake, _read, _write, _free as for a client. */
int net_tls_sock_accept(struct net_tls_sock **sp, struct net_tls *srv, int fd);

/* ---- per-source rate limits: token buckets keyed by net_src_key ----
 *
 * One table for the whole process (all workers share it, so the limit does
 * not multiply by the worker count), of a fixed size: a new source takes the
 * place of the one with the most tokens in its set (see ratelimit.c). */
struct net_ratelimit;

/* rate: tokens per second per source; burst: a bucket's size; slots: table
 * entries (rounded up). EINVAL for a zero. */
int net_ratelimit_alloc(struct net_ratelimit **rp, size_t slots, unsigned rate, unsigned burst);
void net_ratelimit_free(struct net_ratelimit *r);
/* Takes a token from a's source: true if it had one. Any thread. */
bool net_ratelimit_take(struct net_ratelimit *r, const struct net_addr *a, uint64_t now_ms);
/* Takes refused; sources whose unfull bucket gave way to another's. */
void net_ratelimit_stats(const struct net_ratelimit *r, int64_t *limited, int64_t *evictions);

/* Opens a UDP socket bound to a (SO_REUSEPORT when reuseport); nonblocking. */
int net_udp_socket(const struct net_addr *a, bool reuseport, int *fdp);
/* 0 when nobody holds a's port (UDP, or TCP when stream), else EADDRINUSE or
 * another errno; port 0 is always free. Call it before making a group of
 * SO_REUSEPORT sockets: any later socket of the same user with the option
 * (another role, a second pinhole) joins such a group silently. */
int net_port_free(const struct net_addr *a, bool stream);
/* Bound address of a socket. */
int net_sock_addr(int fd, struct net_addr *out);
/* The source address the kernel would use towards the internet (a route
 * lookup by connect() on a UDP socket to a documentation address: nothing is
 * sent), for a wildcard listener's advertised address. 0, or an errno. */
int net_default_source(int family, struct net_addr *out);

/* ---- this host's own addresses, kept current ----
 * A snapshot taken at alloc, read again whenever netlink reports an address
 * added or removed (RTM_NEWADDR / RTM_DELADDR) once watched on a loop. An
 * address on a loopback interface stands for its prefix (127.0.0.0/8 is
 * ours although lo holds 127.0.0.1); any other stands for itself. */
/* Addresses beyond this many are not known as ours: a loop through one is
 * then caught after a round trip (RFC 3261 16.3 step 4), not before. */
#define NET_HOSTADDRS_MAX 128
struct net_hostaddrs;
int net_hostaddrs_alloc(struct net_hostaddrs **hp);
/* Follows address events on loop l (one loop; before it runs, or on it).
 * ENOTSUP when no netlink socket could be opened: the snapshot stays. */
int net_hostaddrs_watch(struct net_hostaddrs *h, struct loop *l);
/* After the loops stopped. */
void net_hostaddrs_free(struct net_hostaddrs *h);
/* Whether a's IP is this host's. Any thread; no lock on the way (each
 * thread keeps a copy of the set, taken again when it changed). */
bool net_hostaddrs_has(struct net_hostaddrs *h, const struct net_addr *a);
/* How many times the set was read again since alloc (tests, logs). */
uint64_t net_hostaddrs_refreshes(struct net_hostaddrs *h);
/* Moves on every change of the set: an answer of net_hostaddrs_has stands
 * while this does not move (callers that cache a verdict). */
uint64_t net_hostaddrs_gen(struct net_hostaddrs *h);

/* ---- tc ingress hooks for the eBPF fast paths (relay, stund) ----
 *
 * A program (its fd) is attached to the ingress of each interface once: as a
 * tcx link on Linux 6.6 and later (the kernel removes it when the process
 * exits, even after kill -9), else as a classic clsact filter removed by
 * net_tc_detach. Builds without eBPF support (PINHOLE_BPF=OFF) return
 * ENOTSUP. Not thread-safe: one owner per struct net_tc.
 */
#define NET_TC_MAX_DEV 16
struct net_tc {
	unsigned n;
	struct {
		int ifindex;
		int link_fd; /* tcx; -1 for a classic filter */
		uint32_t handle, priority;
	} dev[NET_TC_MAX_DEV];
};
int net_tc_attach(struct net_tc *t, int prog_fd, int ifindex);
/* Sends libbpf's own messages to our log at debug level (before loading). */
void net_bpf_log_init(void);
bool net_tc_has(const struct net_tc *t, int ifindex);
void net_tc_detach(struct net_tc *t);
/* Attaches to the interface holding IPv4 address a (network order; 127/8:
 * loopback), or for 0 (the wildcard) to every interface with an IPv4 address. */
int net_tc_attach_ip4(struct net_tc *t, int prog_fd, uint32_t a);
/* A loaded program's id (what bpftool and bpf_stats name it by), or 0. */
uint32_t net_bpf_prog_id(int prog_fd);
/* The sum over CPUs of a per-CPU array's u64 at key; errno on failure. */
int net_bpf_percpu_sum(int map_fd, uint32_t key, uint64_t *sum);
/* This host's IPv4 addresses (network order) and their interfaces: a snapshot
 * for lookups on paths that should not ask the kernel each time. */
#define NET_IP4_IFS_MAX 64
struct net_ip4_ifs {
	size_t n;
	struct {
		uint32_t addr;
		int ifindex;
	} e[NET_IP4_IFS_MAX];
};
int net_ip4_ifs_read(struct net_ip4_ifs *out);
/* The interface holding a (127/8: loopback) in the snapshot, or 0. */
int net_ip4_ifs_find(const struct net_ip4_ifs *ifs, uint32_t a);

#endif
