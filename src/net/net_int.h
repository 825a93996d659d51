/* net internals shared by its files: workers, listeners, TCP connections. */
#ifndef PINHOLE_NET_INT_H
#define PINHOLE_NET_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "net.h"

#define MAX_LISTENERS 16
/* Reusable connections (ours and aliased ones) are few, one per next hop. */
#define NET_DST_BUCKETS 1024
/* stripes of the connections' output locks (net_conn_io) */
#define NET_IO_LOCKS 64
#define RX_BATCH 16
/* UDP send queue per worker: what a loop turn sends leaves in one sendmmsg
 * per socket at the turn's end (or when the queue fills), which saves a
 * system call and, above all, a wake-up of the receiver per datagram. */
#define TX_BATCH 64
#define TX_ARENA (128u * 1024u)

struct conn;
struct tls_conn;
struct net_tls;

struct worker {
	unsigned id;
	struct net *net;
	struct loop *loop;
	pthread_t thread;
	bool started;
	int fds[MAX_LISTENERS]; /* this worker's socket per listener (UDP or TCP listen) */
	void *data;
	/* UDP receive batch */
	struct mmsghdr msgs[RX_BATCH];
	struct iovec iov[RX_BATCH];
	struct net_addr src[RX_BATCH];
	/* IP_PKTINFO: where each datagram was sent to, for wildcard listeners;
	 * SO_TIMESTAMPNS: when the kernel received it */
	union {
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} ctl[RX_BATCH];
	uint64_t rx_age_ms; /* of the message being delivered; worker_rx_age_ms */
	char *rxbuf;
	/* UDP send queue: tx_n datagrams, their bytes in tx_arena */
	struct mmsghdr tx_msgs[TX_BATCH];
	struct iovec tx_iov[TX_BATCH];
	struct net_addr tx_to[TX_BATCH];
	int tx_fd[TX_BATCH];
	unsigned tx_n;
	size_t tx_used;
	char *tx_arena;
	/* TCP connections this worker owns; worker-local list */
	struct conn *conns;
	struct timer sweep;
	struct timer accept_pause;
	int paused_fd; /* listening socket paused after EMFILE, or -1 */
	struct fd_ctx {
		struct worker *w;
		unsigned listener;
	} ctx[MAX_LISTENERS];
};

/* A TCP connection. Idle, it holds no buffer: input is read into the
 * worker's scratch and only the start of an unfinished message is kept (at
 * most max_msg bytes), and the output queue exists only while the kernel
 * does not take everything (at most tcp_max_queue bytes). */
struct conn {
	uint64_t id;
	int fd;
	struct worker *owner;
	struct flow flow;
	struct buf in;     /* start of an unfinished message; worker-local */
	struct net_frame_state fs; /* the framer's place in it; worker-local */
	struct buf out;    /* unsent bytes; guarded by net_conn_io(c) */
	bool want_out;     /* EPOLLOUT requested; guarded by net_conn_io(c) */
	/* since when the queue has waited with no byte taken, 0 when empty;
	 * written under net_conn_io(c), read by the sweep */
	_Atomic uint64_t stall_ms;
	_Atomic bool dead; /* a slow reader, shut down; its owner closes it */
	/* TLS state (tls.c), NULL on a plain TCP connection; set before the
	 * connection can be found, then RO */
	struct tls_conn *tls;
	uint64_t last_rx_ms;
	uint64_t opened_ms;
	bool got_message;
	/* outgoing, connect() not finished: sends only queue; guarded by
	 * net_conn_io(c) */
	bool connecting;
	/* accepted from a TCP_DEFER_ACCEPT listener, first step not yet run */
	bool deferred;
	/* in the net's destination index under (remote IP, dst_port): one we
	 * opened (the remote port), or one the peer aliased (RFC 5923); 0 = not
	 * reusable for requests toward the peer; guarded by conn_lock */
	uint16_t dst_port;
	struct conn *next_in_worker, *prev_in_worker;
	struct conn *next_hash;
	struct conn *next_dst; /* destination index chain; guarded by conn_lock */
	struct net_ws *ws; /* a ws: listener's connection (ws.c); worker-local */
};

/* Open connections per source (struct net_src_key); one entry per source
 * with a connection, so never more than tcp_max_conns. Guarded by conn_lock. */
struct addr_count {
	struct addr_count *next;
	struct net_src_key key;
	unsigned n;
};

struct listener {
	struct net_listener_conf conf;
	struct net_addr bound;
	int first_fd; /* bound in net_listen; worker 0 takes it */
	bool wildcard; /* bound to 0.0.0.0 or [::]: a connection's local address is asked */
	bool deferred; /* TCP_DEFER_ACCEPT: a connection comes with its first bytes */
};

struct net {
	struct net_conf conf;
	struct listener listeners[MAX_LISTENERS];
	unsigned n_listeners;
	struct worker *workers;
	unsigned n_workers;
	net_recv_h *recv;
	net_frame_h *frame;
	void *recv_arg;
	net_worker_init_h *winit;
	void *winit_arg;
	net_conn_closed_h *closed; /* RO after start; NULL from net_free on */
	struct net_ws_hooks ws; /* RO after start; ws.upgrade NULL = none */
	void *closed_arg;
	/* connection table: id -> conn; guarded by conn_lock */
	pthread_mutex_t conn_lock;
	/* a connection's output side (its queue, EPOLLOUT, the send calls):
	 * striped by id (net_conn_io), taken after conn_lock when both are,
	 * so that a send (a syscall, and a record sealed) holds no lock that
	 * every other worker needs for its own connections */
	pthread_mutex_t io_locks[NET_IO_LOCKS];
	struct conn **conn_hash;
	size_t conn_hash_size;
	unsigned n_conns;
	struct addr_count **addr_hash; /* conn_hash_size chains */
	/* connections by destination (struct conn dst_port): NET_DST_BUCKETS
	 * chains; guarded by conn_lock */
	struct conn **dst_hash;
	unsigned n_connecting; /* guarded by conn_lock */
	_Atomic uint64_t next_conn_id;
	struct net_tls *tls; /* RO after net_tls_setup; NULL without TLS */
	struct {
		_Atomic int64_t udp_rx, udp_tx, udp_tx_errors, udp_oversize, tcp_accepted,
			tcp_refused, tcp_idle_closed, tcp_broken, tcp_oversize, tcp_refused_addr,
			tcp_slow_closed, tcp_buffered, tcp_connects, tcp_connect_failed,
			tcp_connect_limited;
	} st;
};

/* tcp.c */
/* Accepts on a listening socket (an epoll handler; arg: its struct fd_ctx). */
void net_tcp_acceptable(int fd, uint32_t events, void *arg);
/* Closes idle, silent and stalled connections of a worker; re-arms itself. */
void net_tcp_sweep(void *arg);
/* net_send for a TCP flow. */
int net_tcp_send(struct net *n, const struct flow *f, const void *data, size_t len);
/* Closes and frees c, on its owner's thread. */
void net_tcp_close(struct conn *c);
/* A connection's epoll handler (arg: the conn). */
void net_conn_readable(int fd, uint32_t events, void *arg);
/* The connection table and per-source counts; caller holds conn_lock. */
void net_conn_hash_link(struct net *n, struct conn *c);
struct conn *net_conn_find_locked(struct net *n, uint64_t id);
int net_addr_take_locked(struct net *n, const struct net_src_key *k);
void net_addr_put_locked(struct net *n, const struct net_src_key *k);
/* Writes what it can of c->out; caller holds net_conn_io(c). errno on a dead socket. */
int net_conn_flush_locked(struct net *n, struct conn *c);
/* The lock of c's output side. A sender finds c under conn_lock and takes
 * this before letting conn_lock go; the owner takes it once after taking c
 * out of the table, before freeing c: so no send outlives c. */
pthread_mutex_t *net_conn_io(struct net *n, const struct conn *c);

/* ws.c: a ws: listener's connection, hooked into tcp.c */
/* Sets c up for WebSocket: 0, or ENOMEM. */
int net_ws_conn_init(struct net *n, struct conn *c);
/* Frees what c's WebSocket state holds. */
void net_ws_conn_free(struct net *n, struct conn *c);
/* conn_deliver for a WebSocket: takes the upgrade and whole frames at the
 * start of p[0..len) (unmasked in place); the bytes taken, or SIZE_MAX when
 * c was closed. */
size_t net_ws_deliver(struct conn *c, char *p, size_t len);
/* net_send for a NET_WS flow: one message, as one frame. */
int net_ws_send(struct net *n, const struct flow *f, const void *data, size_t len);
/* The sweep's look at c: pings it when silent, closes it when a ping went
 * unanswered. true when c was closed. */
bool net_ws_sweep(struct conn *c, uint64_t now);

/* connect.c */
/* Takes c out of the destination index, if in; caller holds conn_lock. */
void net_conn_dst_unlink_locked(struct net *n, struct conn *c);
/* A connecting c became writable or failed: true when it was closed (failed),
 * false when it is connected now and its queue went out. On its owner. */
bool net_conn_connected(struct conn *c);
/* An outgoing connection is up (TCP connected, TLS handshake done): its
 * queue goes out. true when that failed and c was closed. On its owner. */
bool net_conn_up(struct conn *c);
/* An outgoing connect failed (err: why): counted and closed. On its owner. */
void net_conn_connect_failed(struct conn *c, int err);

/* tls.c */
enum net_tls_cause { NET_TLS_PLAINTEXT, NET_TLS_TIMEOUT, NET_TLS_VERIFY, NET_TLS_PROTO,
		     NET_TLS_CLOSED };
void net_tls_free(struct net_tls *t);
/* for tls_sock.c's server side: an SSL in accept state counted among the
 * handshakes in progress (NULL, errno EAGAIN at max_handshakes); its end */
void *net_tls_server_ssl_new(struct net_tls *t);
void net_tls_server_handshake_done(struct net_tls *t);
/* Server side of an accepted c: EAGAIN at max_handshakes (counted). */
int net_tls_accept(struct conn *c);
/* Client side of an outgoing c (its flow's remote is what is verified). */
int net_tls_connect(struct conn *c);
/* Frees c->tls, sending a close_notify when the handshake was done. */
void net_tls_conn_free(struct conn *c);
/* Sends what a server handshake's last step and the wake-up after it
 * corked (one send(2)); EPIPE when the kernel did not take it all (close c).
 * On the owner. */
int net_tls_uncork(struct conn *c);
/* epoll said c's socket is readable (or hung up): its next read may find bytes */
void net_tls_readable(struct conn *c);
bool net_tls_handshaking(const struct conn *c);
/* Seconds a tls: listener defers accepting a silent connection ([tls]
 * handshake_timeout); 0 without TLS. */
int net_tls_defer_s(const struct net *n);
/* A server connection that has not sent a byte yet. */
bool net_tls_silent(const struct conn *c);
/* A handshake step: 0 done, EAGAIN with *want (epoll events) to wait for,
 * else failed (counted by cause): close c. On its owner. */
int net_tls_handshake(struct conn *c, uint32_t *want);
/* recv-like: bytes, 0 at the peer's close, -1 with errno (EAGAIN); *more
 * when OpenSSL holds more decrypted bytes than were asked for. */
ssize_t net_tls_read(struct conn *c, void *buf, size_t len, bool *more);
/* send-like, for the send path (caller holds conn_lock). */
ssize_t net_tls_write_locked(struct conn *c, const void *buf, size_t len);
void net_tls_fail(struct conn *c, enum net_tls_cause cause);
/* A handshake older than [tls] handshake_timeout. */
bool net_tls_timed_out(const struct conn *c, uint64_t now_ms);
/* The sweep's look at a TLS connection not parked yet: parks it once idle
 * (an outgoing one that got no session ticket). On its owner. */
void net_tls_sweep(struct conn *c, uint64_t now_ms);

/* tls_rec.c: the TLS 1.3 record layer of a parked connection (tls.c parks
 * an idle connection: its SSL object freed, these few hundred bytes kept) */
enum { TLS_REC_AES128GCM = 1, TLS_REC_AES256GCM, TLS_REC_CHACHA20, TLS_REC_SUITES };
#define TLS_REC_SECRET_MAX 48
/* our own KeyUpdate after this many records under one key: far below
 * AES-GCM's 2^24.5 full-size records (RFC 8446 5.5) */
#define TLS_REC_REKEY_AT (1ull << 23)
/* why a parked connection was closed on its input */
enum tls_rec_why { TLS_REC_NONE, TLS_REC_DECRYPT, TLS_REC_MALFORMED, TLS_REC_UNEXPECTED,
		   TLS_REC_ALERT, TLS_REC_SEQ_WRAP, TLS_REC_NOMEM };
struct tls_rec_dir {
	uint8_t secret[TLS_REC_SECRET_MAX]; /* the traffic secret (KeyUpdate derives the next) */
	uint8_t key[32], iv[12];
	uint64_t seq;
};
/* Read side on the connection's owner, write side by senders; both under
 * the connection's TLS lock. */
struct tls_rec {
	struct tls_rec_dir rd, wr;
	uint8_t suite;
	bool client;   /* ours: the peer may send NewSessionTicket */
	bool closed;   /* an alert, an error or close_notify: nothing more */
	bool ku_send;  /* the peer asked for our KeyUpdate */
	uint8_t why;   /* enum tls_rec_why of the input error that closed it */
	uint8_t hlen;  /* header bytes of the next record, until it is whole */
	uint8_t hdr[5];
	/* an incoming record until whole, then its data until all delivered */
	uint8_t *part;
	uint32_t part_len, part_need, plain_off, plain_len;
	/* the end of a sealed record the kernel did not take; wpend_plain of the
	 * caller's bytes it carries (0: our KeyUpdate) */
	uint8_t *wpend;
	uint32_t wpend_len, wpend_off, wpend_plain;
	uint32_t key_updates; /* received */
};
typedef ssize_t(tls_rec_recv_h)(void *arg, void *buf, size_t len);
typedef ssize_t(tls_rec_send_h)(void *arg, const void *buf, size_t len);
/* Whether libcrypto has the three AEADs and HKDF (fetched once). */
bool tls_rec_available(void);
/* The bytes of a suite's traffic secret (its hash's), 0 for none. */
size_t tls_rec_secret_len(uint8_t suite);
/* Keys from the application traffic secrets, sequence numbers 0. ENOTSUP. */
int tls_rec_init(struct tls_rec *r, uint8_t suite, bool client, const uint8_t *read_secret,
		 const uint8_t *write_secret);
void tls_rec_free(struct tls_rec *r);
/* Whether the whole record rec[0..len) opens with r's read (or write) key
 * at seq: how tls.c finds the sequence numbers at parking. */
bool tls_rec_opens(const struct tls_rec *r, const uint8_t *rec, size_t len, uint64_t seq,
		   bool write_dir);
/* recv-like, reading through rx: application data, 0 at close_notify or the
 * peer's FIN, -1 with errno EAGAIN, or EPROTO (r->why). *more: opened data
 * is held that no read(2) would show (at most one record's). */
ssize_t tls_rec_read(struct tls_rec *r, tls_rec_recv_h *rx, void *arg, void *buf, size_t len,
		     bool *more);
/* send-like through tx, as SSL_write with partial writes and a moving
 * buffer: plain bytes taken (at most one record's), or -1 with errno
 * EAGAIN: call again with the same bytes first. A KeyUpdate owed goes first. */
ssize_t tls_rec_write(struct tls_rec *r, tls_rec_send_h *tx, void *arg, const void *buf,
		      size_t len);
bool tls_rec_write_pending(const struct tls_rec *r);
/* Seals plain[0..len) as one record of inner type into out (len + 22 bytes):
 * EOVERFLOW at the last sequence number. */
int tls_rec_seal(struct tls_rec *r, uint8_t type, const void *plain, size_t len, uint8_t *out);
/* A close_notify, if the write side is at a record boundary; no wait. */
void tls_rec_close_notify(struct tls_rec *r, tls_rec_send_h *tx, void *arg);

/* tls_park.c: what parking learns while OpenSSL runs the connection */
struct ssl_st;
struct ssl_ctx_st;
struct tls_park;
/* A context whose connections may park: its key log callback. */
void tls_park_ctx(struct ssl_ctx_st *ctx);
/* Watches ssl (on a socket BIO) from before its handshake: ENOTSUP, ENOMEM. */
int tls_park_watch(struct tls_park **pp, struct ssl_st *ssl, bool server);
/* 0: a TLS 1.3 suite tls_rec.c has, with both secrets; ENOTSUP else. */
int tls_park_handshake_done(struct tls_park *p, struct ssl_st *ssl, uint64_t now_ms);
/* The record layer to go on with: 0 and *out, EAGAIN not now (OpenSSL
 * holds bytes, or an outgoing connection waits for its ticket), ENOTSUP
 * never (stays on OpenSSL). */
int tls_park_try(struct tls_park *p, struct ssl_st *ssl, bool write_blocked, uint64_t now_ms,
		 struct tls_rec **out);
/* Unhooks from ssl (NULL: freed already) and frees p. */
void tls_park_free(struct tls_park *p, struct ssl_st *ssl);

#endif
