/* sdp: splicing rewriter that points a parsed description's media at a relay. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sdp/line.h"
#include "sdp/sdp.h"

struct rw_out {
	struct buf *b;
	struct slice eol;
	int err;
	bool lite; /* the relay's ICE-lite lines go in (a=ice-lite at session level) */
};

static void put(struct rw_out *o, struct slice s)
{
	if (!o->err)
		o->err = buf_append_slice(o->b, s);
}

static void put_cstr(struct rw_out *o, const char *s)
{
	put(o, slice_cstr(s));
}

/* Copies an input line as it was, adding a line end to a last line that had none. */
static void put_line(struct rw_out *o, const struct sdp_line *ln)
{
	put(o, ln->raw);
	if (ln->has_eol)
		return;
	/* "a=x\r" at the very end: its CR is already there */
	if (ln->raw.l && ln->raw.p[ln->raw.l - 1] == '\r')
		put_cstr(o, "\n");
	else
		put(o, o->eol);
}

static const char *af_name(enum sdp_af af)
{
	return af == SDP_AF_IP6 ? "IP6" : "IP4";
}

static void put_conn(struct rw_out *o, enum sdp_af af, struct slice addr, struct slice suffix)
{
	put_cstr(o, "c=IN ");
	put_cstr(o, af_name(af));
	put_cstr(o, " ");
	put(o, addr);
	put(o, suffix);
	put(o, o->eol);
}

static void put_u64(struct rw_out *o, uint64_t v)
{
	if (!o->err)
		o->err = buf_printf(o->b, "%" PRIu64, v);
}

static bool addr_ok(enum sdp_af af, struct slice a)
{
	if (af != SDP_AF_IP4 && af != SDP_AF_IP6)
		return false;
	if (a.l == 0 || a.l > 255)
		return false;
	for (size_t i = 0; i < a.l; i++)
		if (a.p[i] == ' ' || a.p[i] == '\t' || a.p[i] == '\r' || a.p[i] == '\n' ||
		    a.p[i] == '\0' || a.p[i] == '/')
			return false;
	return true;
}

/* ICE attributes that stop meaning anything once a relay sits in the path
 * (RFC 8839 5). */
static bool is_ice_attr(struct slice v)
{
	static const char *const names[] = {
	    "candidate",	 "ice-ufrag", "ice-pwd",      "ice-options", "end-of-candidates",
	    "remote-candidates", "ice-lite",  "ice-mismatch", "ice-pacing",
	};
	size_t colon = slice_find(v, ':');
	struct slice name = {v.p, colon};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (slice_eq_cstr_nocase(name, names[i]))
			return true;
	return false;
}

static bool attr_is(struct slice v, const char *name)
{
	size_t colon = slice_find(v, ':');
	return slice_eq_cstr_nocase((struct slice){v.p, colon}, name);
}

static bool same_conn(enum sdp_af af1, struct slice a1, enum sdp_af af2, struct slice a2)
{
	return af1 == af2 && slice_eq_nocase(a1, a2);
}

/* The session-level connection as the output will carry it. */
struct sess_conn {
	bool present;
	bool replaced;
	enum sdp_af af;
	struct slice addr;
	struct slice suffix;
};

/* o=: rebuilt from its fields so that the address and version can change;
 * *ver_off receives the offset of the version digits in the output. */
static void put_origin(struct rw_out *o, const struct sdp *s, const struct sdp_rw *rw,
		       size_t *ver_off)
{
	const struct sdp_origin *org = &s->origin;
	put_cstr(o, "o=");
	put(o, org->username);
	put_cstr(o, " ");
	put(o, org->sess_id);
	put_cstr(o, " ");
	*ver_off = o->b->len;
	put_u64(o, org->version);
	put_cstr(o, " IN ");
	if (rw->replace_origin) {
		put_cstr(o, af_name(rw->origin_af));
		put_cstr(o, " ");
		put(o, rw->origin_addr);
	} else {
		put_cstr(o, af_name(org->conn.af));
		put_cstr(o, " ");
		put(o, org->conn.addr);
		put(o, org->conn.suffix);
	}
	put(o, o->eol);
}

static void rewrite_session(struct rw_out *o, const struct sdp *s, const struct sdp_rw *rw,
			    const struct sess_conn *sc, size_t *ver_off)
{
	struct slice rest = s->session;
	struct sdp_line ln;
	bool rebuild_origin = rw->replace_origin || rw->vstate;
	bool strip = rw->strip_ice, lite = false;
	for (size_t i = 0; i < rw->n_media; i++) {
		const struct sdp_media_rw *mr = &rw->media[i];
		if (mr->keep || (i < s->n_media && s->media[i].port == 0))
			continue;
		if (mr->ice_candidate)
			strip = false; /* the section's ICE needs the session's ufrag, pwd, lite */
		else if (mr->lite_ufrag.l)
			lite = true;
	}
	lite = lite && strip; /* never mixed with a party's own ICE */
	o->lite = lite;

	while (sdp_line_next(&rest, &ln) == 0) {
		if (ln.type == 'o' && rebuild_origin)
			put_origin(o, s, rw, ver_off);
		else if (ln.type == 'c' && sc->replaced)
			put_conn(o, sc->af, sc->addr, SLICE_NULL);
		else if (ln.type == 'a' && strip && is_ice_attr(ln.val))
			continue;
		else
			put_line(o, &ln);
	}
	if (lite) {
		put_cstr(o, "a=ice-lite");
		put(o, o->eol);
	}
	/* marker for chained proxies, as Kamailio and OpenSIPS write it */
	if (rw->add_nortpproxy && !s->nortpproxy) {
		put_cstr(o, "a=nortpproxy:yes");
		put(o, o->eol);
	}
}

/* What the section's own candidates mean for the ones the relay adds. */
struct ice_scan {
	size_t n;	      /* a=candidate lines, well-formed or not */
	uint32_t min_prio[3]; /* per component 1 and 2; 0: none */
	char foundation[sizeof SDP_RELAY_FOUNDATION + 1];
};

static void ice_scan(const struct sdp_media *m, struct ice_scan *sc)
{
	memset(sc, 0, sizeof *sc);
	struct slice rest = m->section;
	struct sdp_line ln;
	unsigned clash = 0; /* bit d: SDP_RELAY_FOUNDATION followed by digit d (0: none) is used */
	while (sdp_line_next(&rest, &ln) == 0) {
		if (ln.type != 'a' || !attr_is(ln.val, "candidate"))
			continue;
		sc->n++;
		size_t colon = slice_find(ln.val, ':');
		struct sdp_candidate c;
		/* a malformed candidate is the party's business: copied, not read */
		if (colon == ln.val.l ||
		    sdp_candidate_parse((struct slice){ln.val.p + colon + 1, ln.val.l - colon - 1},
					&c))
			continue;
		if (c.component <= 2 &&
		    (!sc->min_prio[c.component] || c.priority < sc->min_prio[c.component]))
			sc->min_prio[c.component] = c.priority;
		size_t fl = sizeof SDP_RELAY_FOUNDATION - 1;
		if (c.foundation.l == fl && memcmp(c.foundation.p, SDP_RELAY_FOUNDATION, fl) == 0)
			clash |= 1u;
		else if (c.foundation.l == fl + 1 &&
			 memcmp(c.foundation.p, SDP_RELAY_FOUNDATION, fl) == 0 &&
			 c.foundation.p[fl] >= '1' && c.foundation.p[fl] <= '9')
			clash |= 1u << (c.foundation.p[fl] - '0');
	}
	strcpy(sc->foundation, SDP_RELAY_FOUNDATION);
	for (unsigned d = 0; d < 10 && (clash & (1u << d)); d++) {
		size_t fl = sizeof SDP_RELAY_FOUNDATION - 1;
		sc->foundation[fl] = (char)('1' + d);
		sc->foundation[fl + 1] = '\0';
	}
}

/* RFC 8445 5.1.2.1: priority = 2^24 * type preference + 2^8 * local
 * preference + (256 - component). Type preference 0 (relayed, as RFC 8445
 * recommends), and below the lowest candidate the party has for the
 * component, so that any path of its own is preferred to the relay. */
static uint32_t relay_priority(const struct ice_scan *sc, unsigned comp)
{
	uint32_t p = (65535u << 8) + (256u - comp);
	uint32_t low = sc->min_prio[comp];
	if (low && low <= p)
		p = low > 1 ? low - 1 : 1;
	return p;
}

/* a=candidate:<foundation> <comp> UDP <prio> <addr> <port> typ relay raddr <addr> rport <port>
 * (rel-addr and rel-port are required for relayed candidates, RFC 8839 5.1;
 * the relay's address is its own base); sc NULL: the ICE-lite agent's
 * "typ host" candidate, with the host type preference 126 (RFC 8445 5.1.2.2) */
static void put_candidate(struct rw_out *o, const struct ice_scan *sc,
			  const struct sdp_media_rw *mrw)
{
	for (unsigned comp = 1; comp <= 2; comp++) {
		uint16_t port = comp == 1 ? mrw->port : mrw->ice_rtcp_port;
		if (!port)
			continue;
		put_cstr(o, "a=candidate:");
		put_cstr(o, sc ? sc->foundation : SDP_RELAY_FOUNDATION);
		put_cstr(o, comp == 1 ? " 1 UDP " : " 2 UDP ");
		put_u64(o,
			sc ? relay_priority(sc, comp) : (126u << 24) + (65535u << 8) + 256 - comp);
		put_cstr(o, " ");
		put(o, mrw->addr);
		put_cstr(o, " ");
		put_u64(o, port);
		if (sc) {
			put_cstr(o, " typ relay raddr ");
			put(o, mrw->addr);
			put_cstr(o, " rport ");
			put_u64(o, port);
		} else {
			put_cstr(o, " typ host");
		}
		put(o, o->eol);
	}
}

static void rewrite_media(struct rw_out *o, const struct sdp_media *m,
			  const struct sdp_media_rw *mrw, const struct sdp_rw *rw,
			  const struct sess_conn *sc)
{
	/* RFC 3264 6: a rejected stream (port 0) stays as it is */
	bool active = mrw && !mrw->keep && m->port != 0;
	bool rtcp_done = false, mux_done = false;
	struct slice rest = m->section;
	struct sdp_line ln;
	bool ice = active && mrw->ice_candidate;
	bool strip = rw->strip_ice && !ice;
	struct ice_scan is;
	size_t cands = 0;
	bool cand_done = false;
	if (ice)
		ice_scan(m, &is);

	/* Connection this section must end up with when it has no c= of its
	 * own: the relay's, or the session one it had before we replaced it. */
	bool want_conn = false;
	enum sdp_af want_af = SDP_AF_NONE;
	struct slice want_addr = SLICE_NULL, want_suffix = SLICE_NULL;
	if (active) {
		want_conn = true;
		want_af = mrw->af;
		want_addr = mrw->addr;
	} else if (m->conn_level == SDP_CONN_SESSION) {
		want_conn = true;
		want_af = m->conn.af;
		want_addr = m->conn.addr;
		want_suffix = m->conn.suffix;
	}
	bool insert_conn = want_conn && m->conn_level != SDP_CONN_MEDIA &&
			   !(sc->present && same_conn(sc->af, sc->addr, want_af, want_addr) &&
			     slice_eq(sc->suffix, want_suffix));
	bool after_m = false;

	while (sdp_line_next(&rest, &ln) == 0) {
		/* RFC 8866 5: c= follows m= and i= */
		if (insert_conn && after_m && ln.type != 'i') {
			put_conn(o, want_af, want_addr, want_suffix);
			insert_conn = false;
		}
		if (ln.type == 'm') {
			after_m = true;
			if (!active) {
				put_line(o, &ln);
				continue;
			}
			/* the relay gives one port: a port count does not survive */
			put_cstr(o, "m=");
			put(o, m->type);
			put_cstr(o, " ");
			put_u64(o, mrw->port);
			put_cstr(o, " ");
			put(o, m->proto);
			if (m->fmts.l) {
				put_cstr(o, " ");
				put(o, m->fmts);
			}
			put(o, o->eol);
		} else if (ln.type == 'c' && active) {
			put_conn(o, mrw->af, mrw->addr, SLICE_NULL);
		} else if (ln.type == 'a' && strip && is_ice_attr(ln.val)) {
			continue;
		} else if (ice && ln.type == 'a' && attr_is(ln.val, "candidate")) {
			/* ours go after the party's own */
			put_line(o, &ln);
			if (++cands == is.n && !cand_done) {
				put_candidate(o, &is, mrw);
				cand_done = true;
			}
		} else if (ice && ln.type == 'a' && attr_is(ln.val, "end-of-candidates")) {
			/* RFC 8840 (trickle): nothing may follow the last candidate */
			if (!cand_done) {
				put_candidate(o, &is, mrw);
				cand_done = true;
			}
			put_line(o, &ln);
		} else if (ln.type == 'a' && active && attr_is(ln.val, "rtcp")) {
			/* RFC 3605 2.1: without an address, RTCP goes to the c= address */
			if (mrw->rtcp_port && !rtcp_done) {
				put_cstr(o, "a=rtcp:");
				put_u64(o, mrw->rtcp_port);
				put(o, o->eol);
			}
			rtcp_done = true;
		} else if (ln.type == 'a' && active && attr_is(ln.val, "rtcp-mux")) {
			if (mrw->rtcp_mux && !mux_done)
				put_line(o, &ln);
			mux_done = true;
		} else {
			put_line(o, &ln);
		}
	}
	if (insert_conn)
		put_conn(o, want_af, want_addr, want_suffix);
	if (active && mrw->rtcp_port && !rtcp_done) {
		put_cstr(o, "a=rtcp:");
		put_u64(o, mrw->rtcp_port);
		put(o, o->eol);
	}
	if (active && mrw->rtcp_mux && !mux_done) {
		put_cstr(o, "a=rtcp-mux");
		put(o, o->eol);
	}
	if (ice && !cand_done)
		put_candidate(o, &is, mrw);
	if (active && !ice && mrw->lite_ufrag.l && o->lite) {
		put_cstr(o, "a=ice-ufrag:");
		put(o, mrw->lite_ufrag);
		put(o, o->eol);
		put_cstr(o, "a=ice-pwd:");
		put(o, mrw->lite_pwd);
		put(o, o->eol);
		put_candidate(o, NULL, mrw);
	}
}

/* FNV-1a 64, continued across pieces so that the version digits can be left out. */
static uint64_t fnv_more(uint64_t h, const char *p, size_t l)
{
	for (size_t i = 0; i < l; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* RFC 3264 8: a re-offer keeps the o= version when the description is
 * unchanged and raises it when anything changed. What counts is what we send,
 * not what the phone sent us: our ports may change while its version does not. */
static int apply_version(struct buf *b, size_t start, size_t ver_off, const struct sdp *s,
			 struct sdp_vstate *vs)
{
	const char *p = b->data;
	size_t ver_len = 0;
	while (ver_off + ver_len < b->len && p[ver_off + ver_len] >= '0' &&
	       p[ver_off + ver_len] <= '9')
		ver_len++;
	uint64_t h = 0xcbf29ce484222325ULL;
	h = fnv_more(h, p + start, ver_off - start);
	h = fnv_more(h, p + ver_off + ver_len, b->len - ver_off - ver_len);

	uint64_t ver = s->origin.version;
	if (vs->valid && h == vs->digest) {
		ver = vs->out_version;
	} else if (vs->valid) {
		uint64_t next = vs->out_version == UINT64_MAX ? UINT64_MAX : vs->out_version + 1;
		ver = MAX(ver, next);
	}
	vs->valid = true;
	vs->digest = h;
	vs->out_version = ver;
	if (ver == s->origin.version)
		return 0;

	char digits[24];
	int n = snprintf(digits, sizeof digits, "%" PRIu64, ver);
	size_t nl = (size_t)n;
	if (nl > ver_len) {
		int err = buf_reserve(b, nl - ver_len);
		if (err)
			return err;
	}
	memmove(b->data + ver_off + nl, b->data + ver_off + ver_len, b->len - ver_off - ver_len);
	memcpy(b->data + ver_off, digits, nl);
	b->len = b->len - ver_len + nl;
	return 0;
}

int sdp_rewrite(const struct sdp *s, const struct sdp_rw *rw, struct buf *out)
{
	if (rw->n_media > s->n_media || (rw->n_media && !rw->media))
		return EINVAL;
	for (size_t i = 0; i < rw->n_media; i++)
		if (!rw->media[i].keep && !addr_ok(rw->media[i].af, rw->media[i].addr))
			return EINVAL;
	if (rw->replace_origin && !addr_ok(rw->origin_af, rw->origin_addr))
		return EINVAL;

	struct sess_conn sc = {.present = s->conn.present,
			       .af = s->conn.af,
			       .addr = s->conn.addr,
			       .suffix = s->conn.suffix};
	if (rw->replace_session_conn && s->conn.present) {
		if (rw->session_addr.l) {
			if (!addr_ok(rw->session_af, rw->session_addr))
				return EINVAL;
			sc.af = rw->session_af;
			sc.addr = rw->session_addr;
			sc.suffix = SLICE_NULL;
			sc.replaced = true;
		} else {
			for (size_t i = 0; i < rw->n_media; i++) {
				if (rw->media[i].keep || s->media[i].port == 0)
					continue;
				sc.af = rw->media[i].af;
				sc.addr = rw->media[i].addr;
				sc.suffix = SLICE_NULL;
				sc.replaced = true;
				break;
			}
		}
	}

	struct rw_out o = {.b = out, .eol = s->crlf ? SLICE_LIT("\r\n") : SLICE_LIT("\n")};
	size_t start = out->len, ver_off = 0;
	rewrite_session(&o, s, rw, &sc, &ver_off);
	for (size_t i = 0; i < s->n_media; i++)
		rewrite_media(&o, &s->media[i], i < rw->n_media ? &rw->media[i] : NULL, rw, &sc);
	if (o.err)
		return o.err;
	if (rw->vstate)
		return apply_version(out, start, ver_off, s, rw->vstate);
	return 0;
}
