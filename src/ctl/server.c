/* The control endpoint's server: libmicrohttpd on a thread of its own, with our own accept for the
 * connection bounds. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "ctl.h"

const struct conf_key ctl_conf_keys[] = {
    {"control", "listen", CONF_STR, "127.0.0.1:5080", 0, 0, NULL,
     "address of the HTTP control endpoint (pinhole ctl, /metrics); empty = off; beyond "
     "loopback it needs a token"},
    {"control", "token", CONF_STR, "", 0, 0, NULL,
     "bearer token every request must carry (Authorization: Bearer ...), 16-256 token68 "
     "characters; required when listen is not a loopback address"},
    {"control", "token_file", CONF_STR, "", 0, 0, NULL,
     "file whose first line is the token (instead of token, to keep it out of the config)"},
    {"control", "hosts", CONF_STR, "", 0, 0, NULL,
     "Host header names accepted besides localhost and the address connected to (DNS "
     "rebinding defence), comma-separated"},
    {"control", "timeout", CONF_INT, "10", 1, 3600, NULL,
     "seconds a connection may last in all, however slowly it sends; then it is closed"},
    {"control", "max_connections", CONF_INT, "32", 1, 1024, NULL,
     "open control connections; more are closed at once and counted"},
    {"control", "max_per_address", CONF_INT, "4", 1, 1024, NULL,
     "open control connections from one address (IPv6: one /64); more are closed and counted"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

#define CTL_MAX_ROUTES 16
#define CTL_MAX_HOSTS 8
#define CTL_HOST_MAX 128
#define CTL_QUERY_MAX 512
#define CTL_ACCEPT_BATCH 64

static struct metric m_open = {
    .name = "ctl_connections", .help = "open control connections", .gauge = true};
static struct metric m_refused_total = {
    .name = "ctl_refused_total",
    .help = "control connections closed at accept: max_connections or max_per_address reached",
    .labels = "reason=\"total\""};
static struct metric m_refused_addr = {
    .name = "ctl_refused_total",
    .help = "control connections closed at accept: max_connections or max_per_address reached",
    .labels = "reason=\"address\""};
static struct metric m_timeout = {.name = "ctl_timeout_closed_total",
				  .help = "control connections closed at [control] timeout"};
static struct metric m_denied_host = {
    .name = "ctl_denied_total",
    .help = "control requests refused: foreign Host (421) or missing/wrong token (401)",
    .labels = "reason=\"host\""};
static struct metric m_denied_token = {
    .name = "ctl_denied_total",
    .help = "control requests refused: foreign Host (421) or missing/wrong token (401)",
    .labels = "reason=\"token\""};

enum slot_state { SLOT_FREE = 0, SLOT_PENDING, SLOT_LIVE };

/* One accepted connection; the MHD socket context. Control thread only. */
struct ctl_slot {
	enum slot_state state;
	int fd;
	struct net_addr peer, local;
	uint64_t deadline_ms;
	bool reaped; /* shut down at the deadline; MHD closes it */
};

struct ctl {
	struct net_addr addr; /* bound; RO */
	int lfd, wake_fd;
	struct MHD_Daemon *mhd;
	int mhd_epfd;
	pthread_t thread;
	bool started;
	_Atomic bool stop;

	/* RO after ctl_alloc */
	char token[CTL_TOKEN_MAX + 1];
	size_t token_len; /* 0: no token asked */
	char hosts[CTL_MAX_HOSTS][CTL_HOST_MAX];
	size_t n_hosts;
	uint64_t timeout_ms;
	unsigned max_conns, max_per_addr;

	struct ctl_slot *slots; /* [max_conns], owned; control thread only */
	unsigned n_open;
	struct ctl_slot *adding; /* the slot MHD_add_connection is taking */

	struct {
		char path[64];
		ctl_route_h *h;
		void *arg;
	} routes[CTL_MAX_ROUTES];
	size_t n_routes;
};

/* ---- token ---- */

static bool token68_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       strchr("-._~+/=", ch) != NULL;
}

int ctl_token_check(const char *t)
{
	size_t l = strlen(t);
	if (l < CTL_TOKEN_MIN || l > CTL_TOKEN_MAX)
		return EINVAL;
	for (size_t i = 0; i < l; i++)
		if (!token68_char(t[i]))
			return EINVAL;
	return 0;
}

int ctl_token_read(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno;
	char line[CTL_TOKEN_MAX + 64];
	bool got = fgets(line, sizeof line, f) != NULL;
	fclose(f);
	if (!got)
		return EINVAL;
	struct slice s = slice_trim(slice_cstr(line));
	if (s.l >= cap)
		return EINVAL;
	slice_to_cstr(s, out, cap);
	return ctl_token_check(out);
}

/* Compares in time that depends on the lengths only, not on where they differ. */
static bool token_eq(const char *want, size_t wl, const char *got, size_t gl)
{
	unsigned diff = wl != gl;
	for (size_t i = 0; i < wl; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? got[i] : 0);
	return diff == 0;
}

/* ---- configuration ---- */

static int conf_token(struct ctl *c, const struct conf *conf)
{
	const char *t = conf_str(conf, "control", "token");
	const char *tf = conf_str(conf, "control", "token_file");
	if (t[0] && tf[0]) {
		LOG_E("ctl", "[control] token and token_file are both set: keep one");
		return EINVAL;
	}
	if (tf[0]) {
		int err = ctl_token_read(tf, c->token, sizeof c->token);
		if (err) {
			LOG_E("ctl", "[control] token_file %s: %s", tf,
			      err == EINVAL ? "want one line of 16-256 token68 characters"
					    : strerror(err));
			return EINVAL;
		}
	} else if (t[0]) {
		if (ctl_token_check(t)) {
			LOG_E("ctl",
			      "[control] token: want 16-256 characters of A-Z a-z 0-9 -._~+/=");
			return EINVAL;
		}
		snprintf(c->token, sizeof c->token, "%s", t);
	}
	c->token_len = strlen(c->token);
	if (!c->token_len && !net_addr_is_loopback(&c->addr)) {
		char a[NET_ADDR_STRLEN];
		LOG_E("ctl",
		      "[control] listen = %s is beyond loopback: refusing to start without "
		      "[control] token or token_file (clients send it as a bearer token; pinhole "
		      "ctl reads PINHOLE_CTL_TOKEN or --token-file)",
		      net_addr_fmt(&c->addr, a, sizeof a));
		return EINVAL;
	}
	return 0;
}

static int conf_hosts(struct ctl *c, const struct conf *conf)
{
	struct slice rest = slice_cstr(conf_str(conf, "control", "hosts")), h;
	while (slice_next_item(&rest, ',', &h)) {
		if (!h.l)
			continue;
		if (c->n_hosts == CTL_MAX_HOSTS || h.l >= CTL_HOST_MAX) {
			LOG_E("ctl", "[control] hosts: at most %d names of under %d characters",
			      CTL_MAX_HOSTS, CTL_HOST_MAX);
			return EINVAL;
		}
		slice_to_cstr(h, c->hosts[c->n_hosts++], CTL_HOST_MAX);
	}
	return 0;
}

/* ---- the Host header ---- */

/* Host is "name[:port]", "v4[:port]" or "[v6][:port]" (RFC 9110 7.2). */
static bool host_ok(const struct ctl *c, const struct ctl_slot *s, const char *host)
{
	struct slice h = slice_cstr(host), name;
	size_t rest;
	if (h.l && h.p[0] == '[') {
		size_t close = slice_find(h, ']');
		if (close == h.l)
			return false;
		name = (struct slice){h.p, close + 1};
		rest = close + 1;
	} else {
		size_t colon = slice_find(h, ':');
		name = (struct slice){h.p, colon};
		rest = colon;
	}
	if (rest < h.l) {
		uint32_t port;
		if (h.p[rest] != ':' ||
		    slice_to_u32((struct slice){h.p + rest + 1, h.l - rest - 1}, 65535, &port))
			return false;
	}
	if (name.l && name.p[name.l - 1] == '.')
		name.l--; /* "localhost." is the same name */
	if (!name.l)
		return false;
	struct net_addr ip;
	if (net_addr_from_host(name, 0, &ip) == 0) {
		/* an IP literal names no one a rebinding page could control: accept the
		 * address this connection came to, and loopback on loopback */
		if (s && net_addr_ip_eq(&ip, &s->local))
			return true;
		return s && net_addr_is_loopback(&ip) && net_addr_is_loopback(&s->local);
	}
	if (slice_eq_cstr_nocase(name, "localhost"))
		return true;
	for (size_t i = 0; i < c->n_hosts; i++)
		if (slice_eq_cstr_nocase(name, c->hosts[i]))
			return true;
	return false;
}

struct host_count {
	unsigned n;
	const char *value;
};

static enum MHD_Result count_host(void *cls, enum MHD_ValueKind kind, const char *key,
				  const char *value)
{
	(void)kind;
	struct host_count *hc = cls;
	if (strcasecmp(key, "Host") == 0) {
		hc->n++;
		hc->value = value ? value : "";
	}
	return MHD_YES;
}

/* ---- requests ---- */

struct query_ctx {
	char *q;
	size_t len;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
			       const char *value)
{
	(void)kind;
	struct query_ctx *x = cls;
	int n = snprintf(x->q + x->len, CTL_QUERY_MAX - x->len, "%s%s%s%s", x->len ? "&" : "", key,
			 value ? "=" : "", value ? value : "");
	if (n < 0 || (size_t)n >= CTL_QUERY_MAX - x->len)
		return MHD_NO; /* the rest does not fit: the route sees what did */
	x->len += (size_t)n;
	return MHD_YES;
}

static bool authorized(const struct ctl *c, struct MHD_Connection *conn)
{
	if (!c->token_len)
		return true;
	const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	if (!a || strncasecmp(a, "Bearer ", 7) != 0)
		return false;
	a += 7;
	while (*a == ' ')
		a++;
	size_t l = strlen(a);
	while (l && a[l - 1] == ' ')
		l--;
	return token_eq(c->token, c->token_len, a, l);
}

static struct ctl_slot *conn_slot(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *i =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return i ? i->socket_context : NULL;
}

/* Decides the status of one request; fills body for routed ones. */
static int route(struct ctl *c, struct MHD_Connection *conn, const char *url, const char *method,
		 struct buf *body, const char **ctype)
{
	struct host_count hc = {0, NULL};
	MHD_get_connection_values(conn, MHD_HEADER_KIND, count_host, &hc);
	if (hc.n > 1)
		return MHD_HTTP_BAD_REQUEST;
	if (hc.n == 1 && !host_ok(c, conn_slot(conn), hc.value)) {
		metric_inc(&m_denied_host);
		return MHD_HTTP_MISDIRECTED_REQUEST;
	}
	if (!authorized(c, conn)) {
		metric_inc(&m_denied_token);
		return MHD_HTTP_UNAUTHORIZED;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return MHD_HTTP_METHOD_NOT_ALLOWED;
	for (size_t i = 0; i < c->n_routes; i++) {
		if (strcmp(c->routes[i].path, url) != 0)
			continue;
		char q[CTL_QUERY_MAX];
		struct query_ctx x = {q, 0};
		q[0] = '\0';
		MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_arg, &x);
		return c->routes[i].h(q, body, ctype, c->routes[i].arg);
	}
	return MHD_HTTP_NOT_FOUND;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)req_cls;
	struct ctl *c = cls;
	struct buf body;
	buf_init(&body);
	const char *ctype = "application/json";
	/* answered on the first call, headers only: a body is never read */
	int status = route(c, conn, url, method, &body, &ctype);
	if (body.failed) {
		buf_reset(&body);
		body.failed = false;
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	if (status != MHD_HTTP_OK && body.len == 0) {
		ctype = "application/json";
		buf_printf(&body, "{\"error\":%d}\n", status);
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    body.len, body.data ? body.data : (char *)"", MHD_RESPMEM_MUST_COPY);
	buf_free(&body);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"pinhole\"");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (status != MHD_HTTP_OK) /* a refused client does not keep its slot */
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- connections: our accept, MHD's protocol ---- */

static void on_conn(void *cls, struct MHD_Connection *conn, void **socket_context,
		    enum MHD_ConnectionNotificationCode code)
{
	(void)conn;
	struct ctl *c = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = c->adding;
		if (c->adding)
			c->adding->state = SLOT_LIVE;
		return;
	}
	/* MHD_CONNECTION_NOTIFY_CLOSED: called before MHD closes the socket */
	struct ctl_slot *s = *socket_context;
	if (s && s->state != SLOT_FREE) {
		s->state = SLOT_FREE;
		c->n_open--;
		metric_add(&m_open, -1);
	}
}

/* Same address, IPv6 by its /64: one host's share of the slots. */
static bool same_source(const struct net_addr *a, const struct net_addr *b)
{
	int fam = net_addr_family(a);
	if (fam != net_addr_family(b))
		return false;
	if (fam == AF_INET6)
		return memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 8) == 0;
	return net_addr_ip_eq(a, b);
}

static void take(struct ctl *c, int fd, const struct net_addr *peer, socklen_t plen)
{
	struct ctl_slot *free_slot = NULL;
	unsigned same = 0;
	for (unsigned i = 0; i < c->max_conns; i++) {
		struct ctl_slot *s = &c->slots[i];
		if (s->state == SLOT_FREE)
			free_slot = free_slot ? free_slot : s;
		else if (same_source(&s->peer, peer))
			same++;
	}
	if (!free_slot) {
		metric_inc(&m_refused_total);
		close(fd);
		return;
	}
	if (same >= c->max_per_addr) {
		metric_inc(&m_refused_addr);
		close(fd);
		return;
	}
	struct ctl_slot *s = free_slot;
	memset(s, 0, sizeof *s);
	s->state = SLOT_PENDING;
	s->fd = fd;
	s->peer = *peer;
	net_sock_addr(fd, &s->local);
	s->deadline_ms = time_mono_ms() + c->timeout_ms;
	c->n_open++;
	metric_add(&m_open, 1);
	c->adding = s;
	/* on failure MHD has closed fd; NOTIFY_CLOSED freed a slot it had started */
	if (MHD_add_connection(c->mhd, fd, &peer->u.sa, plen) != MHD_YES &&
	    s->state == SLOT_PENDING) {
		s->state = SLOT_FREE;
		c->n_open--;
		metric_add(&m_open, -1);
	}
	c->adding = NULL;
}

static void accept_some(struct ctl *c)
{
	for (int i = 0; i < CTL_ACCEPT_BATCH; i++) {
		struct net_addr peer;
		socklen_t plen = sizeof peer.u.ss;
		memset(&peer, 0, sizeof peer);
		int fd = accept4(c->lfd, &peer.u.sa, &plen, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		take(c, fd, &peer, plen);
	}
}

/* Shuts down connections past their deadline; MHD then sees EOF and closes
 * them on this thread. Returns ms until the next deadline (or cap). */
static uint64_t reap(struct ctl *c, uint64_t cap)
{
	uint64_t now = time_mono_ms(), next = cap;
	for (unsigned i = 0; i < c->max_conns; i++) {
		struct ctl_slot *s = &c->slots[i];
		if (s->state != SLOT_LIVE || s->reaped)
			continue;
		if (now >= s->deadline_ms) {
			metric_inc(&m_timeout); /* counted before anyone can see it */
			s->reaped = true;
			shutdown(s->fd, SHUT_RDWR);
		} else if (s->deadline_ms - now < next) {
			next = s->deadline_ms - now;
		}
	}
	return next;
}

static void *ctl_main(void *arg)
{
	struct ctl *c = arg;
	while (!c->stop) {
		MHD_UNSIGNED_LONG_LONG mt = 1000;
		uint64_t wait = 1000;
		if (MHD_get_timeout(c->mhd, &mt) == MHD_YES && mt < wait)
			wait = mt;
		wait = reap(c, wait);
		struct pollfd p[3] = {
		    {.fd = c->wake_fd, .events = POLLIN},
		    {.fd = c->mhd_epfd, .events = POLLIN},
		    {.fd = c->lfd, .events = POLLIN},
		};
		int n = poll(p, 3, (int)wait);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && (p[2].revents & POLLIN))
			accept_some(c);
		MHD_run(c->mhd); /* also closes what reap() shut down: it sees EOF */
	}
	return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	if (log_get_level() < LOG_DEBUG)
		return;
	char m[256];
	vsnprintf(m, sizeof m, fmt, ap);
	size_t l = strlen(m);
	if (l && m[l - 1] == '\n')
		m[l - 1] = '\0';
	LOG_D("ctl", "http: %s", m);
}

static int open_listener(struct ctl *c)
{
	c->lfd = socket(net_addr_family(&c->addr), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->lfd < 0)
		return errno;
	int one = 1;
	setsockopt(c->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(c->lfd, &c->addr.u.sa, net_addr_len(&c->addr)) < 0 || listen(c->lfd, 64) < 0)
		return errno;
	net_sock_addr(c->lfd, &c->addr);
	return 0;
}

static int start_mhd(struct ctl *c)
{
	if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES) {
		LOG_E("ctl", "libmicrohttpd was built without epoll");
		return ENOTSUP;
	}
	c->mhd = MHD_start_daemon(
	    MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request,
	    c, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, or MHD logs to stderr */
	    MHD_OPTION_NOTIFY_CONNECTION, on_conn, c, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)c->max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->max_per_addr,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(c->timeout_ms / 1000),
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CTL_REQUEST_MAX, MHD_OPTION_END);
	if (!c->mhd) {
		LOG_E("ctl", "cannot start the HTTP server");
		return ENOMEM;
	}
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(c->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!i)
		return ENOTSUP;
	c->mhd_epfd = i->epoll_fd;
	return 0;
}

int ctl_alloc(struct ctl **cp, const struct conf *conf)
{
	const char *listen_addr = conf_str(conf, "control", "listen");
	struct ctl *c = calloc(1, sizeof *c);
	if (!c)
		return ENOMEM;
	c->lfd = c->wake_fd = -1;
	int err = EINVAL;
	if (net_addr_parse(listen_addr, 5080, &c->addr)) {
		LOG_E("ctl", "[control] listen: cannot parse \"%s\"", listen_addr);
		goto out_free;
	}
	if ((err = conf_token(c, conf)) || (err = conf_hosts(c, conf)))
		goto out_free;
	c->timeout_ms = (uint64_t)conf_int(conf, "control", "timeout") * 1000;
	c->max_conns = (unsigned)conf_int(conf, "control", "max_connections");
	c->max_per_addr = (unsigned)conf_int(conf, "control", "max_per_address");
	c->slots = calloc(c->max_conns, sizeof *c->slots);
	if (!c->slots) {
		err = ENOMEM;
		goto out_free;
	}
	if ((err = open_listener(c))) {
		LOG_E("ctl", "control endpoint %s: %s", listen_addr, strerror(err));
		goto out_free;
	}
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0) {
		err = errno;
		goto out_free;
	}
	if ((err = start_mhd(c)))
		goto out_free;
	metric_register(&m_open);
	metric_register(&m_refused_total);
	metric_register(&m_refused_addr);
	metric_register(&m_timeout);
	metric_register(&m_denied_host);
	metric_register(&m_denied_token);
	*cp = c;
	return 0;
out_free:
	ctl_free(c);
	return err;
}

int ctl_route(struct ctl *c, const char *path, ctl_route_h *h, void *arg)
{
	if (c->n_routes == CTL_MAX_ROUTES)
		return ENOSPC;
	snprintf(c->routes[c->n_routes].path, sizeof c->routes[0].path, "%s", path);
	c->routes[c->n_routes].h = h;
	c->routes[c->n_routes].arg = arg;
	c->n_routes++;
	return 0;
}

int ctl_start(struct ctl *c)
{
	int err = pthread_create(&c->thread, NULL, ctl_main, c);
	if (!err)
		c->started = true;
	return err;
}

void ctl_free(struct ctl *c)
{
	if (!c)
		return;
	c->stop = true;
	if (c->started) {
		uint64_t one = 1;
		if (write(c->wake_fd, &one, sizeof one) < 0)
			LOG_W("ctl", "wake: %s", strerror(errno)); /* the poll wakes within 1 s */
		pthread_join(c->thread, NULL);
	}
	if (c->mhd)
		MHD_stop_daemon(c->mhd); /* closes its connections: NOTIFY_CLOSED frees slots */
	if (c->lfd >= 0)
		close(c->lfd);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	free(c->slots);
	free(c);
}

const struct net_addr *ctl_addr(const struct ctl *c)
{
	return &c->addr;
}
