/* The RFC 5780 tests: mapping, filtering, hairpinning, port preservation, binding lifetime. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "probe.h"
#include "stun/stun.h"

#define RTO_FIRST_MS 250 /* shorter than RFC 8489's 500: a probe is interactive */

struct answer {
	struct sockaddr_storage from, mapped, origin, other;
	bool has_mapped, has_origin, has_other;
	uint16_t code;
};

static socklen_t ss_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static uint16_t ss_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static bool ss_ip_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static bool ss_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	return ss_ip_eq(a, b) && ss_port(a) == ss_port(b);
}

static void ss_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static int open_sock(const struct probe_opts *o, int *fdp)
{
	int fd = socket(o->local.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (bind(fd, (const struct sockaddr *)&o->local, ss_len(&o->local)) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	*fdp = fd;
	return 0;
}

/* Waits until deadline for a STUN message with transaction id tid on fd. */
static int wait_tid(int fd, const uint8_t *tid, uint64_t deadline, struct answer *a)
{
	uint8_t p[2048];
	for (;;) {
		uint64_t now = time_mono_ms();
		if (now >= deadline)
			return ETIMEDOUT;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)(deadline - now));
		if (r < 0 && errno != EINTR)
			return errno;
		if (r <= 0)
			continue;
		socklen_t fl = sizeof a->from;
		ssize_t n =
		    recvfrom(fd, p, sizeof p, MSG_DONTWAIT, (struct sockaddr *)&a->from, &fl);
		if (n < 0)
			continue;
		struct stun_msg m;
		if (stun_msg_decode(&m, p, (size_t)n) || m.classic ||
		    memcmp(m.tid, tid, STUN_TID_LEN) != 0)
			continue; /* a late answer to an earlier test: not ours */
		if (m.fp >= 0 && stun_msg_check_fingerprint(&m))
			continue;
		a->code = 0;
		const struct stun_attr *ec = stun_msg_attr(&m, STUN_ATTR_ERROR_CODE);
		if (m.cls == STUN_CLASS_ERROR && (!ec || stun_attr_error(ec, &a->code, NULL)))
			a->code = 400;
		a->has_mapped = stun_msg_addr(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &a->mapped) == 0 ||
				stun_msg_addr(&m, STUN_ATTR_MAPPED_ADDRESS, &a->mapped) == 0;
		a->has_origin = stun_msg_addr(&m, STUN_ATTR_RESPONSE_ORIGIN, &a->origin) == 0;
		a->has_other = stun_msg_addr(&m, STUN_ATTR_OTHER_ADDRESS, &a->other) == 0;
		return 0;
	}
}

/*
 * One Binding transaction: sent from sfd to `to`, the answer awaited on rfd
 * (the same socket, except in the lifetime test). Retransmits with a doubling
 * RTO until timeout_ms (RFC 8489 6.2.1). 0, ETIMEDOUT, or EPROTO for an error
 * response (a->code).
 */
static int txn(int sfd, int rfd, const struct sockaddr_storage *to, uint32_t change, uint16_t rport,
	       unsigned timeout_ms, struct answer *a)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin(&e, &b, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	if (change)
		stun_enc_change(&e, change);
	if (rport)
		stun_enc_response_port(&e, rport);
	stun_enc_str(&e, STUN_ATTR_SOFTWARE, SLICE_LIT("pinhole probe"));
	stun_enc_fingerprint(&e);
	int err = stun_enc_end(&e);
	uint8_t tid[STUN_TID_LEN];
	if (!err)
		memcpy(tid, b.data + 8, STUN_TID_LEN);
	uint64_t end = time_mono_ms() + timeout_ms, rto = RTO_FIRST_MS;
	while (!err) {
		if (sendto(sfd, b.data, b.len, 0, (const struct sockaddr *)to, ss_len(to)) < 0) {
			err = errno;
			break;
		}
		uint64_t now = time_mono_ms();
		uint64_t until = MIN(end, now + rto);
		rto *= 2;
		err = wait_tid(rfd, tid, until, a);
		if (err == ETIMEDOUT && until < end)
			err = 0; /* retransmit */
		else
			break;
	}
	buf_free(&b);
	if (!err && a->code)
		return EPROTO;
	return err;
}

/* RFC 5780 4.3: three Binding requests from one socket. */
static void test_mapping(const struct probe_opts *o, int fd, struct probe_result *r)
{
	struct sockaddr_storage a2p1 = r->other, a2p2 = r->other;
	ss_set_port(&a2p1, ss_port(&o->server));
	struct answer t2, t3;
	int err = txn(fd, fd, &a2p1, 0, 0, o->timeout_ms, &t2);
	if (err || !t2.has_mapped) {
		snprintf(r->error, sizeof r->error,
			 "the server's alternate IP (test II) did not answer: mapping unknown");
		r->rfc5780 = false;
		return;
	}
	if (ss_eq(&t2.mapped, &r->mapped)) {
		r->mapping = PROBE_EI;
		return;
	}
	err = txn(fd, fd, &a2p2, 0, 0, o->timeout_ms, &t3);
	if (err || !t3.has_mapped) {
		snprintf(
		    r->error, sizeof r->error,
		    "the server's alternate address (test III) did not answer: mapping unknown");
		return;
	}
	r->mapping = ss_eq(&t3.mapped, &t2.mapped) ? PROBE_AD : PROBE_APD;
}

/* RFC 5780 4.4: a fresh socket that has talked to A1:P1 only. */
static void test_filtering(const struct probe_opts *o, struct probe_result *r)
{
	int fd;
	if (open_sock(o, &fd))
		return;
	struct answer t;
	if (txn(fd, fd, &o->server, 0, 0, o->timeout_ms, &t) == 0) {
		if (txn(fd, fd, &o->server, STUN_CHANGE_IP | STUN_CHANGE_PORT, 0, o->timeout_ms,
			&t) == 0)
			r->filtering = PROBE_EI;
		else if (txn(fd, fd, &o->server, STUN_CHANGE_PORT, 0, o->timeout_ms, &t) == 0)
			r->filtering = PROBE_AD;
		else
			r->filtering = PROBE_APD;
	}
	close(fd);
}

/* RFC 5780 4.5: a second socket sends to the first one's mapped address; a
 * NAT that hairpins delivers it. */
static void test_hairpin(const struct probe_opts *o, int fd, struct probe_result *r)
{
	int y;
	if (open_sock(o, &y))
		return;
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin(&e, &b, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_fingerprint(&e);
	uint8_t tid[STUN_TID_LEN];
	memcpy(tid, b.data + 8, STUN_TID_LEN);
	r->hairpin = PROBE_NO;
	uint64_t end = time_mono_ms() + MIN(o->timeout_ms, 1500u);
	for (int i = 0; i < 3 && r->hairpin == PROBE_NO; i++) {
		sendto(y, b.data, b.len, 0, (const struct sockaddr *)&r->mapped,
		       ss_len(&r->mapped));
		struct answer a;
		uint64_t until = MIN(end, time_mono_ms() + 300);
		if (wait_tid(fd, tid, until, &a) == 0)
			r->hairpin = PROBE_YES;
	}
	buf_free(&b);
	close(y);
}

static void sleep_until(uint64_t t)
{
	for (uint64_t now = time_mono_ms(); now < t; now = time_mono_ms())
		poll(NULL, 0, (int)(t - now));
}

/*
 * RFC 5780 4.6, in one pass: K sockets each create a binding at t0; at t0 + k
 * * step, socket Y asks the server (RESPONSE-PORT) to answer to socket k's
 * mapped port. The first binding found gone ends the test, so it lasts about
 * the lifetime, never more than max_wait. One socket per probe because an
 * inbound packet refreshes the binding it reaches.
 */
#define LIFETIME_MAX_SOCKS 40

static void test_lifetime(const struct probe_opts *o, struct probe_result *r)
{
	unsigned wait = o->max_wait_s ? o->max_wait_s : 1;
	unsigned step_ms = MAX(1000u, wait * 1000 / LIFETIME_MAX_SOCKS);
	unsigned k = MIN(LIFETIME_MAX_SOCKS, (wait * 1000 + step_ms - 1) / step_ms);
	int fds[LIFETIME_MAX_SOCKS], y = -1;
	struct sockaddr_storage mapped[LIFETIME_MAX_SOCKS];
	unsigned n = 0;
	for (; n < k; n++) {
		struct answer a;
		if (open_sock(o, &fds[n]))
			break;
		if (txn(fds[n], fds[n], &o->server, 0, 0, o->timeout_ms, &a) || !a.has_mapped) {
			close(fds[n]);
			break;
		}
		mapped[n] = a.mapped;
	}
	uint64_t t0 = time_mono_ms();
	if (n < k || open_sock(o, &y)) {
		snprintf(r->error, sizeof r->error, "lifetime: could not set up %u bindings", k);
		goto out_close;
	}
	r->lifetime_tested = true;
	r->lifetime_lo_s = 0;
	r->lifetime_hi_s = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t at = t0 + (uint64_t)(i + 1) * step_ms;
		sleep_until(at);
		struct answer a;
		int err = txn(y, fds[i], &o->server, 0, ss_port(&mapped[i]),
			      MIN(o->timeout_ms, 1500u), &a);
		unsigned t = (unsigned)((at - t0) / 1000);
		if (err == EPROTO) {
			snprintf(r->error, sizeof r->error,
				 "lifetime: the server refused RESPONSE-PORT (error %u)", a.code);
			r->lifetime_tested = false;
			break;
		}
		if (err) {
			r->lifetime_hi_s = MAX(t, r->lifetime_lo_s + 1);
			break;
		}
		r->lifetime_lo_s = t;
	}
out_close:
	if (y >= 0)
		close(y);
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

int probe_run(const struct probe_opts *o, struct probe_result *r)
{
	memset(r, 0, sizeof *r);
	r->hairpin = r->port_preserved = PROBE_NA;
	int fd, err = open_sock(o, &fd);
	if (err) {
		snprintf(r->error, sizeof r->error, "cannot open a UDP socket: %s", strerror(err));
		return err;
	}
	socklen_t l = sizeof r->local;
	getsockname(fd, (struct sockaddr *)&r->local, &l);

	/* test I */
	struct answer t1;
	err = txn(fd, fd, &o->server, 0, 0, o->timeout_ms, &t1);
	if (err || !t1.has_mapped) {
		if (err == EPROTO)
			snprintf(r->error, sizeof r->error,
				 "the server answered with error %u to a plain Binding request",
				 t1.code);
		else
			snprintf(r->error, sizeof r->error,
				 "no STUN answer from the server within %u ms", o->timeout_ms);
		close(fd);
		return ETIMEDOUT;
	}
	r->answered = true;
	r->mapped = t1.mapped;
	r->origin = t1.has_origin ? t1.origin : t1.from;
	/* a wildcard-bound socket reports 0.0.0.0: the address the kernel routes
	 * from toward the server is the one to compare with the mapped address */
	struct sockaddr_storage route;
	int tmp = socket(o->server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	socklen_t rl = sizeof route;
	if (tmp >= 0 &&
	    connect(tmp, (const struct sockaddr *)&o->server, ss_len(&o->server)) == 0 &&
	    getsockname(tmp, (struct sockaddr *)&route, &rl) == 0 &&
	    route.ss_family == r->local.ss_family) {
		uint16_t port = ss_port(&r->local);
		bool any =
		    r->local.ss_family == AF_INET
			? ((struct sockaddr_in *)&r->local)->sin_addr.s_addr == 0
			: IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&r->local)->sin6_addr);
		if (any) {
			r->local = route;
			ss_set_port(&r->local, port);
		}
	}
	if (tmp >= 0)
		close(tmp);
	struct sockaddr_storage me = r->local;
	r->nat = !ss_eq(&me, &r->mapped);
	r->port_preserved = ss_port(&r->local) == ss_port(&r->mapped) ? PROBE_YES : PROBE_NO;

	r->rfc5780 = t1.has_other && !ss_ip_eq(&t1.other, &o->server) &&
		     ss_port(&t1.other) != ss_port(&o->server);
	if (r->rfc5780) {
		r->other = t1.other;
		if (!r->nat)
			r->mapping = PROBE_NO_NAT;
		else
			test_mapping(o, fd, r);
	} else {
		snprintf(r->error, sizeof r->error,
			 "the server does not support RFC 5780 (no usable OTHER-ADDRESS): mapping, "
			 "filtering and lifetime cannot be tested");
		r->mapping = r->nat ? PROBE_UNKNOWN : PROBE_NO_NAT;
	}
	if (r->rfc5780)
		test_filtering(o, r);
	if (r->nat)
		test_hairpin(o, fd, r);
	close(fd);
	if (r->rfc5780 && o->lifetime && (r->nat || o->lifetime_without_nat))
		test_lifetime(o, r);
	return 0;
}
