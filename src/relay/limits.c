/* relay: per-call bounds: m= lines per call, port pairs per signalling source and per AOR. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_int.h"

static struct metric m_limit_media = {
    .name = "relay_limit_media_total",
    .help = "offers refused for more m= lines than [relay] max_media"};
static struct metric m_limit_source = {
    .name = "relay_limit_source_total",
    .help = "port pairs refused: the call's signalling source held max_pairs_per_source"};
static struct metric m_limit_aor = {
    .name = "relay_limit_aor_total",
    .help = "port pairs refused: the call's AOR held max_pairs_per_aor"};

#define CHARGE_BUCKETS 1024 /* charges <= 2 per session <= 2 per pair */

/*
 * Who pays for a session's port pairs. One INVITE with 16 m= lines took 32
 * pairs and some 157 of them a minute kept the default pool full, so one
 * source could deny media to everyone. Each session is charged, from its
 * first offer on, to its offerer's signalling source (an IPv4 address, or an
 * IPv6 /64, which one host usually has whole) and to the AOR the controller
 * names (the proxy: the caller's From), and a pair is refused (EDQUOT, 503)
 * when either holds its limit. A charge lives while a session holds it.
 * Under pool_lock.
 */
struct relay_charge {
	struct relay_charge *next;
	uint64_t hash;
	uint32_t pairs;	   /* held by the sessions charged to it */
	uint32_t sessions; /* holding it; freed at 0 */
	uint8_t kind;	   /* RELAY_CHARGE_SOURCE, RELAY_CHARGE_AOR */
	uint16_t len;
	unsigned char key[];
};

void relay_limits_register(void)
{
	metric_register(&m_limit_media);
	metric_register(&m_limit_source);
	metric_register(&m_limit_aor);
}

int relay_limits_init(struct relay *r, const struct conf *c)
{
	r->max_media = (unsigned)conf_int(c, "relay", "max_media");
	r->max_pairs[RELAY_CHARGE_SOURCE] = (uint32_t)conf_int(c, "relay", "max_pairs_per_source");
	r->max_pairs[RELAY_CHARGE_AOR] = (uint32_t)conf_int(c, "relay", "max_pairs_per_aor");
	r->charges = calloc(CHARGE_BUCKETS, sizeof *r->charges);
	return r->charges ? 0 : ENOMEM;
}

void relay_limits_free(struct relay *r)
{
	for (size_t b = 0; r->charges && b < CHARGE_BUCKETS; b++)
		while (r->charges[b]) {
			struct relay_charge *c = r->charges[b];
			r->charges[b] = c->next;
			free(c);
		}
	free(r->charges);
	r->charges = NULL;
}

int relay_limit_media(struct relay *r, const struct sdp *sd, const struct relay_leg *L)
{
	unsigned n = 0;
	for (unsigned i = 0; i < SDP_MAX_MEDIA; i++)
		/* a line that keeps its ports from an earlier offer counts too,
		 * or re-offers could walk the call through every index */
		n += (i < sd->n_media && sd->media[i].port) || L->media[i];
	if (n <= r->max_media)
		return 0;
	metric_inc(&m_limit_media);
	return E2BIG;
}

static struct relay_charge *charge_get(struct relay *r, uint8_t kind, const void *key, size_t len)
{
	uint64_t h = hash_bytes(key, len) ^ kind;
	struct relay_charge **head = &r->charges[h % CHARGE_BUCKETS];
	for (struct relay_charge *c = *head; c; c = c->next)
		if (c->hash == h && c->kind == kind && c->len == len && !memcmp(c->key, key, len))
			return c;
	struct relay_charge *c = calloc(1, sizeof *c + len);
	if (!c)
		return NULL;
	c->hash = h;
	c->kind = kind;
	c->len = (uint16_t)len;
	memcpy(c->key, key, len);
	c->next = *head;
	*head = c;
	return c;
}

static void charge_put(struct relay *r, struct relay_charge *c)
{
	if (!c || --c->sessions)
		return;
	struct relay_charge **pp = &r->charges[c->hash % CHARGE_BUCKETS];
	while (*pp != c)
		pp = &(*pp)->next;
	*pp = c->next;
	free(c);
}

int relay_charge_attach(struct relay *r, struct relay_session *s, const struct net_addr *src,
			struct slice owner)
{
	unsigned char ip[16];
	size_t iplen = 0;
	if (net_addr_family(src) == AF_INET) {
		memcpy(ip, &src->u.in.sin_addr, 4);
		iplen = 4;
	} else if (net_addr_family(src) == AF_INET6) {
		memcpy(ip, &src->u.in6.sin6_addr, 8); /* the /64 */
		iplen = 8;
	}
	if (owner.l > 255)
		owner.l = 255; /* longer AORs are not ours to store anyway */
	int err = 0;
	pthread_mutex_lock(&r->pool_lock);
	if (iplen &&
	    !(s->charge[RELAY_CHARGE_SOURCE] = charge_get(r, RELAY_CHARGE_SOURCE, ip, iplen)))
		err = ENOMEM;
	else if (iplen)
		s->charge[RELAY_CHARGE_SOURCE]->sessions++;
	if (!err && owner.l &&
	    !(s->charge[RELAY_CHARGE_AOR] = charge_get(r, RELAY_CHARGE_AOR, owner.p, owner.l)))
		err = ENOMEM;
	else if (!err && owner.l)
		s->charge[RELAY_CHARGE_AOR]->sessions++;
	pthread_mutex_unlock(&r->pool_lock);
	return err;
}

void relay_charge_detach(struct relay *r, struct relay_session *s)
{
	pthread_mutex_lock(&r->pool_lock);
	for (int k = 0; k < RELAY_CHARGE_KINDS; k++) {
		charge_put(r, s->charge[k]);
		s->charge[k] = NULL;
	}
	pthread_mutex_unlock(&r->pool_lock);
}

int relay_charge_check(struct relay *r, const struct relay_session *s)
{
	static struct metric *const counter[RELAY_CHARGE_KINDS] = {&m_limit_source, &m_limit_aor};
	for (int k = 0; k < RELAY_CHARGE_KINDS; k++) {
		const struct relay_charge *c = s->charge[k];
		if (c && r->max_pairs[k] && c->pairs >= r->max_pairs[k]) {
			metric_inc(counter[k]);
			return EDQUOT;
		}
	}
	return 0;
}

void relay_charge_add(struct relay_session *s, int delta)
{
	for (int k = 0; k < RELAY_CHARGE_KINDS; k++)
		if (s->charge[k])
			s->charge[k]->pairs = (uint32_t)((int64_t)s->charge[k]->pairs + delta);
}

uint32_t relay_charge_pairs(struct relay *r, int kind, const void *key, size_t len)
{
	uint32_t n = 0;
	pthread_mutex_lock(&r->pool_lock);
	uint64_t h = hash_bytes(key, len) ^ (uint8_t)kind;
	for (struct relay_charge *c = r->charges[h % CHARGE_BUCKETS]; c; c = c->next)
		if (c->hash == h && c->kind == kind && c->len == len && !memcmp(c->key, key, len))
			n = c->pairs;
	pthread_mutex_unlock(&r->pool_lock);
	return n;
}

uint32_t relay_charge_pairs_of(struct relay *r, const char *aor)
{
	return relay_charge_pairs(r, RELAY_CHARGE_AOR, aor, strlen(aor));
}
