/* TURN over TLS: the [tls] certificates in the role's own contexts, handshakes on its loop,
 * bounded. */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "turn_int.h"

/*
 * A tls: listener's connection is a TCP one whose bytes go through TLS
 * (RFC 8656 3.1, RFC 7350 for the port): after the handshake, the same
 * framing (STUN messages and ChannelData padded to 4 bytes), budgets and
 * bounds as TCP. The handshake is what a stranger gets for free: one SSL
 * object and a private-key operation each, so at most [tls] max_handshakes
 * are in progress at once (beyond, closed at accept), each for at most
 * [tls] handshake_timeout seconds, and the [turn] tcp_max_connections caps
 * (in total and per address) count them as connections.
 */

static struct metric m_ok = {.name = "turn_tls_handshakes_total",
			     .help = "TLS handshakes completed on tls: TURN listeners"};
static struct metric m_fail[] = {
    {.name = "turn_tls_handshake_failures_total",
     .help = "TLS handshakes on tls: TURN listeners that failed, by cause",
     .labels = "cause=\"protocol\""},
    {.name = "turn_tls_handshake_failures_total",
     .help = "TLS handshakes on tls: TURN listeners that failed, by cause",
     .labels = "cause=\"timeout\""},
    {.name = "turn_tls_handshake_failures_total",
     .help = "TLS handshakes on tls: TURN listeners that failed, by cause",
     .labels = "cause=\"limited\""},
};
enum { F_PROTO, F_TIMEOUT, F_LIMITED };

void turn_tls_metrics_register(void)
{
	metric_register(&m_ok);
	for (size_t i = 0; i < ARRAY_SIZE(m_fail); i++)
		metric_register(&m_fail[i]);
}

int turn_tls_setup(struct turn *t, const struct conf *c)
{
	bool any = false;
	for (unsigned i = 0; i < t->ntcp; i++)
		any |= t->tcp_tls[i];
	if (!any)
		return 0;
	struct net_tls_conf tc = {
	    .certificate = conf_str(c, "tls", "certificate"),
	    .private_key = conf_str(c, "tls", "private_key"),
	    .sni = conf_str(c, "tls", "sni_certificates"),
	    .ca_file = conf_str(c, "tls", "ca_file"),
	    .verify_server = false, /* the role connects to no one over TLS */
	    .ciphers = conf_str(c, "tls", "ciphers"),
	    .tls13_only = strcmp(conf_str(c, "tls", "min_version"), "1.3") == 0,
	    .handshake_s = (unsigned)conf_int(c, "tls", "handshake_timeout"),
	    .max_handshakes = (unsigned)conf_int(c, "tls", "max_handshakes"),
	    .expiry_warn_days = (unsigned)conf_int(c, "tls", "expiry_warning"),
	};
	char err[512];
	int rc = net_tls_server_alloc(&t->tls, &tc, err, sizeof err);
	if (rc)
		LOG_E("turn", "turn.listen has a tls: listener: %s", err);
	return rc;
}

int turn_tls_accept(struct turn *t, struct turn_conn *c)
{
	int err = net_tls_sock_accept(&c->tls, t->tls, c->sk.fd);
	if (err == EAGAIN)
		metric_inc(&m_fail[F_LIMITED]);
	if (err)
		return err;
	c->handshaking = true;
	return 0;
}

bool turn_tls_step(struct turn *t, struct turn_conn *c, bool *closed)
{
	uint32_t want;
	char why[200];
	*closed = false;
	int err = net_tls_sock_handshake(c->tls, &want, why, sizeof why);
	if (err == EAGAIN) {
		loop_fd_mod(t->loop, c->sk.fd, want);
		return false;
	}
	if (err) {
		/* plain text to the port, a client that gave up, a broken hello */
		metric_inc(&m_fail[F_PROTO]);
		char a[NET_ADDR_STRLEN];
		LOG_D("turn", "tls handshake from %s failed: %s",
		      net_addr_fmt(&c->remote, a, sizeof a), why);
		turn_conn_close(t, c);
		*closed = true;
		return false;
	}
	metric_inc(&m_ok);
	c->handshaking = false;
	loop_fd_mod(t->loop, c->sk.fd, EPOLLIN | (c->out.len ? EPOLLOUT : 0));
	return true;
}

void turn_tls_sweep(struct turn *t, uint64_t now)
{
	if (!t->tls)
		return;
	uint64_t bound = net_tls_server_handshake_s(t->tls) * 1000ull;
	for (struct turn_conn *c = t->conns, *next; c; c = next) {
		next = c->next;
		if (c->handshaking && now - c->opened_ms >= bound) {
			metric_inc(&m_fail[F_TIMEOUT]);
			turn_conn_close(t, c);
		}
	}
}
