/* sdp: zero-copy parser of session descriptions into struct sdp (RFC 8866). */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "sdp/line.h"
#include "sdp/sdp.h"

const char *sdp_dir_name(enum sdp_dir d)
{
	switch (d) {
	case SDP_DIR_SENDRECV:
		return "sendrecv";
	case SDP_DIR_SENDONLY:
		return "sendonly";
	case SDP_DIR_RECVONLY:
		return "recvonly";
	case SDP_DIR_INACTIVE:
		return "inactive";
	default:
		return "";
	}
}

/* Splits off the next space-separated token; RFC 8866 9 uses exactly one SP
 * between fields, but phones are forgiven runs of blanks. */
static struct slice next_token(struct slice *s)
{
	size_t i = 0;
	while (i < s->l && (s->p[i] == ' ' || s->p[i] == '\t'))
		i++;
	size_t start = i;
	while (i < s->l && s->p[i] != ' ' && s->p[i] != '\t')
		i++;
	struct slice tok = {s->p + start, i - start};
	s->p += i;
	s->l -= i;
	return tok;
}

static struct slice skip_blanks(struct slice s)
{
	while (s.l && (s.p[0] == ' ' || s.p[0] == '\t')) {
		s.p++;
		s.l--;
	}
	while (s.l && (s.p[s.l - 1] == ' ' || s.p[s.l - 1] == '\t'))
		s.l--;
	return s;
}

static int parse_port(struct slice tok, uint16_t *port)
{
	uint32_t v;
	if (slice_to_u32(tok, 65535, &v))
		return EBADMSG;
	*port = (uint16_t)v;
	return 0;
}

static bool addr_char_ok(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '.' || c == '-' || c == ':' || c == '_' || c == '%';
}

static bool is_literal(enum sdp_af af, struct slice a)
{
	char tmp[64];
	unsigned char bin[16];
	if (a.l == 0 || a.l >= sizeof tmp)
		return false;
	slice_to_cstr(a, tmp, sizeof tmp);
	return inet_pton(af == SDP_AF_IP6 ? AF_INET6 : AF_INET, tmp, bin) == 1;
}

/* "<nettype> <addrtype> <address>[/ttl[/count]]" (RFC 8866 5.7), also the
 * tail of o= and of a=rtcp. */
static int parse_conn_fields(struct slice *rest, struct sdp_conn *c)
{
	struct slice net = next_token(rest);
	struct slice atype = next_token(rest);
	struct slice addr = next_token(rest);
	if (net.l == 0 || atype.l == 0 || addr.l == 0)
		return EBADMSG;
	if (!slice_eq_cstr_nocase(net, "IN"))
		return ENOTSUP;
	if (slice_eq_cstr_nocase(atype, "IP4"))
		c->af = SDP_AF_IP4;
	else if (slice_eq_cstr_nocase(atype, "IP6"))
		c->af = SDP_AF_IP6;
	else
		return ENOTSUP;
	size_t slash = slice_find(addr, '/');
	c->suffix = (struct slice){addr.p + slash, addr.l - slash};
	c->addr = (struct slice){addr.p, slash};
	if (c->addr.l == 0)
		return EBADMSG;
	for (size_t i = 0; i < c->addr.l; i++)
		if (!addr_char_ok(c->addr.p[i]))
			return EBADMSG;
	/* the suffix is /ttl[/count] for IP4 and /count for IP6: digits only */
	for (size_t i = 0; i < c->suffix.l; i++) {
		char ch = c->suffix.p[i];
		if (ch != '/' && (ch < '0' || ch > '9'))
			return EBADMSG;
		if (ch == '/' && (i + 1 == c->suffix.l || c->suffix.p[i + 1] == '/'))
			return EBADMSG;
	}
	c->literal = is_literal(c->af, c->addr);
	c->present = true;
	return 0;
}

static int parse_conn(struct slice v, struct sdp_conn *c)
{
	if (c->present)
		return ENOTSUP; /* several c= in one section: layered multicast only */
	int err = parse_conn_fields(&v, c);
	if (err)
		return err;
	return skip_blanks(v).l ? EBADMSG : 0;
}

/* o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address> */
static int parse_origin(struct slice v, struct sdp_origin *o)
{
	o->username = next_token(&v);
	o->sess_id = next_token(&v);
	o->sess_version = next_token(&v);
	if (o->username.l == 0 || o->sess_id.l == 0 || o->sess_version.l == 0)
		return EBADMSG;
	if (o->sess_version.l > 20)
		return EBADMSG;
	uint64_t ver = 0;
	for (size_t i = 0; i < o->sess_version.l; i++) {
		char ch = o->sess_version.p[i];
		if (ch < '0' || ch > '9')
			return EBADMSG;
		uint64_t d = (uint64_t)(ch - '0');
		if (ver > (UINT64_MAX - d) / 10)
			return EBADMSG;
		ver = ver * 10 + d;
	}
	o->version = ver;
	int err = parse_conn_fields(&v, &o->conn);
	if (err)
		return err;
	return skip_blanks(v).l ? EBADMSG : 0;
}

/* m=<media> <port>[/<number of ports>] <proto> <fmt> ... */
static int parse_mline(struct slice v, struct sdp_media *m)
{
	m->type = next_token(&v);
	struct slice port = next_token(&v);
	m->proto = next_token(&v);
	m->fmts = skip_blanks(v);
	if (m->type.l == 0 || port.l == 0 || m->proto.l == 0)
		return EBADMSG;
	size_t slash = slice_find(port, '/');
	m->port_count = 1;
	if (slash < port.l) {
		struct slice cnt = {port.p + slash + 1, port.l - slash - 1};
		if (slice_to_u32(cnt, 65535, &m->port_count) || m->port_count == 0)
			return EBADMSG;
		port.l = slash;
	}
	return parse_port(port, &m->port);
}

/* RFC 3605 2.1: a=rtcp:<port> [<nettype> <addrtype> <connection-address>] */
static int parse_rtcp(struct slice v, struct sdp_media *m)
{
	struct slice port = next_token(&v);
	int err = parse_port(port, &m->rtcp_port);
	if (err)
		return err;
	v = skip_blanks(v);
	if (v.l) {
		err = parse_conn_fields(&v, &m->rtcp_conn);
		if (err)
			return err;
		if (skip_blanks(v).l)
			return EBADMSG;
	}
	m->has_rtcp = true;
	return 0;
}

static enum sdp_dir dir_from(struct slice name)
{
	if (slice_eq_cstr_nocase(name, "sendrecv"))
		return SDP_DIR_SENDRECV;
	if (slice_eq_cstr_nocase(name, "sendonly"))
		return SDP_DIR_SENDONLY;
	if (slice_eq_cstr_nocase(name, "recvonly"))
		return SDP_DIR_RECVONLY;
	if (slice_eq_cstr_nocase(name, "inactive"))
		return SDP_DIR_INACTIVE;
	return SDP_DIR_NONE;
}

/* Splits "name[:value]" of an a= line. */
static void attr_split(struct slice v, struct slice *name, struct slice *val)
{
	size_t colon = slice_find(v, ':');
	*name = (struct slice){v.p, colon};
	if (colon < v.l)
		*val = (struct slice){v.p + colon + 1, v.l - colon - 1};
	else
		*val = (struct slice){v.p + v.l, 0};
}

/* ICE attributes of RFC 8839 5, at either level. Returns true if taken. */
static bool parse_ice_attr(struct slice name, struct slice val, struct sdp_ice *ice)
{
	if (slice_eq_cstr_nocase(name, "candidate")) {
		if (ice->n_candidates < SDP_MAX_CANDIDATES)
			ice->candidates[ice->n_candidates] = val;
		ice->n_candidates++;
	} else if (slice_eq_cstr_nocase(name, "ice-ufrag")) {
		ice->ufrag = val;
	} else if (slice_eq_cstr_nocase(name, "ice-pwd")) {
		ice->pwd = val;
	} else if (slice_eq_cstr_nocase(name, "ice-options")) {
		ice->options = val;
	} else if (slice_eq_cstr_nocase(name, "remote-candidates")) {
		ice->remote_cands = val;
	} else if (slice_eq_cstr_nocase(name, "end-of-candidates")) {
		ice->end_of_candidates = true;
	} else if (slice_eq_cstr_nocase(name, "ice-lite")) {
		ice->lite = true;
	} else {
		return false;
	}
	return true;
}

static int parse_session_attr(struct sdp *s, struct slice v)
{
	struct slice name, val;
	attr_split(v, &name, &val);
	enum sdp_dir d = dir_from(name);
	if (d != SDP_DIR_NONE) {
		s->dir = d;
	} else if (slice_eq_cstr_nocase(name, "nortpproxy")) {
		s->nortpproxy = true;
		s->nortpproxy_val = val;
	} else if (slice_eq_cstr_nocase(name, "fingerprint")) {
		s->fingerprint = true;
	} else {
		parse_ice_attr(name, val, &s->ice);
	}
	return 0;
}

static int parse_media_attr(struct sdp_media *m, struct slice v)
{
	struct slice name, val;
	attr_split(v, &name, &val);
	enum sdp_dir d = dir_from(name);
	if (d != SDP_DIR_NONE) {
		m->dir_attr = d;
	} else if (slice_eq_cstr_nocase(name, "rtcp")) {
		if (m->has_rtcp)
			return EBADMSG; /* RFC 3605 2.1: at most one per media */
		return parse_rtcp(val, m);
	} else if (slice_eq_cstr_nocase(name, "rtcp-mux")) {
		m->rtcp_mux = true;
	} else if (slice_eq_cstr_nocase(name, "mid")) {
		m->mid = val;
	} else if (slice_eq_cstr_nocase(name, "nortpproxy")) {
		m->nortpproxy = true;
	} else if (slice_eq_cstr_nocase(name, "fingerprint")) {
		m->fingerprint = true;
	} else {
		parse_ice_attr(name, val, &m->ice);
	}
	return 0;
}

/* Line types that belong to the session part only (RFC 8866 9 grammar). */
static bool session_only(char t)
{
	return strchr("vosuepztr", t) != NULL;
}

static void media_finish(const struct sdp *s, struct sdp_media *m, const char *end)
{
	m->section.l = (size_t)(end - m->section.p);
	if (m->conn.present) {
		m->conn_level = SDP_CONN_MEDIA;
	} else if (s->conn.present) {
		m->conn = s->conn;
		m->conn_level = SDP_CONN_SESSION;
	} else {
		m->conn_level = SDP_CONN_NONE;
	}
	m->dir = m->dir_attr != SDP_DIR_NONE ? m->dir_attr
		 : s->dir != SDP_DIR_NONE    ? s->dir
					     : SDP_DIR_SENDRECV;
	m->hold = m->dir == SDP_DIR_SENDONLY || m->dir == SDP_DIR_INACTIVE ||
		  (m->conn.present && m->conn.af == SDP_AF_IP4 &&
		   slice_eq(m->conn.addr, SLICE_LIT("0.0.0.0")));
}

static int parse_session_line(struct sdp *s, const struct sdp_line *ln, bool *seen_o)
{
	switch (ln->type) {
	case 'v':
		return EBADMSG; /* only the first line */
	case 'o':
		if (*seen_o)
			return EBADMSG;
		*seen_o = true;
		return parse_origin(ln->val, &s->origin);
	case 's':
		s->name = ln->val;
		return 0;
	case 't':
		if (s->timing.p == NULL)
			s->timing = ln->val;
		return 0;
	case 'c':
		return parse_conn(ln->val, &s->conn);
	case 'a':
		return parse_session_attr(s, ln->val);
	default:
		return 0; /* i, u, e, p, b, z, k, r and unknown letters are carried */
	}
}

int sdp_parse(struct sdp *s, struct slice body)
{
	struct slice rest = body;
	struct sdp_line ln;
	struct sdp_media *m = NULL;
	bool seen_o = false;
	int err;

	memset(s, 0, sizeof *s);
	s->raw = body;
	s->session.p = body.p;

	/* RFC 8866 5.1: v=0 comes first */
	err = sdp_line_next(&rest, &ln);
	if (err)
		return EBADMSG;
	if (ln.type != 'v' || !slice_eq(ln.val, SLICE_LIT("0")))
		return EBADMSG;
	s->crlf = ln.raw.l >= 2 && ln.raw.p[ln.raw.l - 2] == '\r';

	while ((err = sdp_line_next(&rest, &ln)) == 0) {
		if (ln.type == 'm') {
			if (m)
				media_finish(s, m, ln.raw.p);
			else
				s->session.l = (size_t)(ln.raw.p - body.p);
			if (s->n_media == SDP_MAX_MEDIA)
				return ENOTSUP;
			m = &s->media[s->n_media++];
			m->section.p = ln.raw.p;
			err = parse_mline(ln.val, m);
		} else if (!m) {
			err = parse_session_line(s, &ln, &seen_o);
		} else if (session_only(ln.type)) {
			err = EBADMSG;
		} else if (ln.type == 'c') {
			err = parse_conn(ln.val, &m->conn);
		} else if (ln.type == 'a') {
			err = parse_media_attr(m, ln.val);
		}
		if (err)
			return err;
	}
	if (err != ENOENT)
		return err;
	if (!seen_o)
		return EBADMSG;
	const char *end = rest.p; /* trailing empty lines belong to no section */
	if (m)
		media_finish(s, m, end);
	else
		s->session.l = (size_t)(end - body.p);
	return 0;
}

bool sdp_has_nortpproxy(const struct sdp *s)
{
	if (s->nortpproxy)
		return true;
	for (size_t i = 0; i < s->n_media; i++)
		if (s->media[i].nortpproxy)
			return true;
	return false;
}

bool sdp_has_fingerprint(const struct sdp *s)
{
	if (s->fingerprint)
		return true;
	for (size_t i = 0; i < s->n_media; i++)
		if (s->media[i].fingerprint)
			return true;
	return false;
}

static bool ice_present(const struct sdp_ice *ice)
{
	return ice->ufrag.p || ice->pwd.p || ice->options.p || ice->remote_cands.p || ice->lite ||
	       ice->end_of_candidates || ice->n_candidates;
}

bool sdp_has_ice(const struct sdp *s)
{
	if (ice_present(&s->ice))
		return true;
	for (size_t i = 0; i < s->n_media; i++)
		if (ice_present(&s->media[i].ice))
			return true;
	return false;
}
