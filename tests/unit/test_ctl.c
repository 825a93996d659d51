/* The control endpoint under attack on loopback: trickling and idle clients, foreign Host, tokens.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "net/net.h"
#include "testenv.h"

#define TOKEN "s3cret-token-0123456789"
#define WAIT_MS 5000 /* a safety cap on any one wait; never what a test checks */

struct fixture {
	struct conf *conf;
	struct ctl *ctl;
	char addr[NET_ADDR_STRLEN];
};

static struct fixture fx; /* static: a failed assertion (a longjmp) leaks nothing */

static int route_metrics(const char *query, struct buf *out, const char **ctype, void *arg)
{
	(void)query;
	(void)arg;
	*ctype = "text/plain; version=0.0.4";
	metrics_write_prometheus(out);
	return 200;
}

static int route_echo(const char *query, struct buf *out, const char **ctype, void *arg)
{
	(void)arg;
	*ctype = "text/plain";
	buf_printf(out, "q=%s", query);
	return 200;
}

/* Allocates and starts a ctl on ini; returns ctl_alloc's error. */
static int start(const char *ini)
{
	memset(&fx, 0, sizeof fx);
	const struct conf_key *const tables[] = {ctl_conf_keys, NULL};
	assert_int_equal(conf_alloc(&fx.conf, tables), 0);
	char err[256];
	assert_int_equal(conf_load_string(fx.conf, "test", ini, err, sizeof err), 0);
	int e = ctl_alloc(&fx.ctl, fx.conf);
	if (e)
		return e;
	assert_int_equal(ctl_route(fx.ctl, "/metrics", route_metrics, NULL), 0);
	assert_int_equal(ctl_route(fx.ctl, "/echo", route_echo, NULL), 0);
	assert_int_equal(ctl_start(fx.ctl), 0);
	net_addr_fmt(ctl_addr(fx.ctl), fx.addr, sizeof fx.addr);
	return 0;
}

static void stop(void)
{
	ctl_free(fx.ctl);
	conf_free(fx.conf);
	fx.ctl = NULL;
	fx.conf = NULL;
}

/* A TCP connection to the server from src_ip. */
static int dial(const char *src_ip)
{
	struct net_addr src;
	assert_int_equal(net_addr_parse(src_ip, 0, &src), 0);
	int fd = socket(net_addr_family(&src), SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, &src.u.sa, net_addr_len(&src)), 0);
	const struct net_addr *to = ctl_addr(fx.ctl);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	return fd;
}

/* Reads until the server closes (or the cap); returns bytes read, -1 on error. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, WAIT_MS) != 1)
			return -1;
		ssize_t k = recv(fd, buf + got, cap - 1 - got, 0);
		if (k < 0)
			return errno == ECONNRESET && got == 0 ? 0 : -1;
		if (k == 0)
			break;
		got += (size_t)k;
		if (got == cap - 1)
			break;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

/* Sends req on fd and returns the status (0: no answer), the response in resp. */
static int exchange(int fd, const char *req, char *resp, size_t cap)
{
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	ssize_t n = read_all(fd, resp, cap);
	int status = 0;
	if (n > 0 && sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
		status = 0;
	return status;
}

/* One request on a new connection from src_ip. */
static int request(const char *src_ip, const char *req, char *resp, size_t cap)
{
	int fd = dial(src_ip);
	int st = exchange(fd, req, resp, cap);
	close(fd);
	return st;
}

static const char *get_from = "127.0.0.1"; /* source of get() */

static int get(const char *path, const char *host, const char *extra)
{
	char req[512], resp[65536];
	snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n%s%s%s%s\r\n", path, host ? "Host: " : "",
		 host ? host : "", host ? "\r\n" : "", extra ? extra : "");
	return request(get_from, req, resp, sizeof resp);
}

static void test_routes(void **state)
{
	(void)state;
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\n"), 0);
	char resp[65536];
	assert_int_equal(request("127.0.0.1", "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp),
			 200);
	assert_non_null(strstr(resp, "pinhole_ctl_connections"));
	assert_non_null(strstr(resp, "Content-Type: text/plain; version=0.0.4"));
	assert_int_equal(
	    request("127.0.0.1", "GET /echo?format=text HTTP/1.0\r\n\r\n", resp, sizeof resp), 200);
	assert_non_null(strstr(resp, "\r\n\r\nq=format=text"));
	assert_int_equal(request("127.0.0.1", "GET /nope HTTP/1.0\r\n\r\n", resp, sizeof resp),
			 404);
	assert_non_null(strstr(resp, "{\"error\":404}"));
	assert_int_equal(request("127.0.0.1",
				 "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", resp,
				 sizeof resp),
			 405);
	assert_int_equal(request("127.0.0.1", "HEAD /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp),
			 200);
	/* the client, as pinhole ctl uses it */
	struct buf out;
	buf_init(&out);
	int status = 0;
	assert_int_equal(ctl_get(fx.addr, NULL, "/echo?a=1", &out, &status), 0);
	assert_int_equal(status, 200);
	assert_int_equal(out.len, 5);
	assert_memory_equal(out.data, "q=a=1", 5);
	buf_reset(&out);
	assert_int_equal(ctl_get(fx.addr, NULL, "/nope", &out, &status), EPROTO);
	assert_int_equal(status, 404);
	buf_free(&out);
	stop();
}

/* request line and headers past CTL_REQUEST_MAX: refused, and the server goes on */
static void test_request_too_big(void **state)
{
	(void)state;
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\n"), 0);
	size_t n = CTL_REQUEST_MAX * 2;
	char *req = malloc(n + 64), resp[4096];
	assert_non_null(req);
	int k = snprintf(req, 64, "GET /metrics HTTP/1.0\r\nX-Pad: ");
	memset(req + k, 'a', n);
	strcpy(req + k + n, "\r\n\r\n");
	int fd = dial("127.0.0.1");
	/* the server may answer and close before it has read it all */
	ssize_t sent = send(fd, req, strlen(req), MSG_NOSIGNAL);
	assert_true(sent > 0);
	free(req);
	ssize_t got = read_all(fd, resp, sizeof resp);
	close(fd);
	int status = 0;
	if (got > 0)
		sscanf(resp, "HTTP/1.%*d %d", &status);
	assert_true(got == 0 || (status >= 400 && status < 500));
	assert_int_equal(get("/metrics", NULL, NULL), 200);
	stop();
}

struct trickler {
	int fd;
	const char *msg;
	unsigned interval_ms;
	_Atomic size_t sent;
	_Atomic bool stop;
	_Atomic bool closed; /* the server closed it while we were still sending */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

/* Sends msg one byte per interval until told to stop, msg ends, or the server closes. */
static void *trickle(void *arg)
{
	struct trickler *t = arg;
	size_t len = strlen(t->msg);
	for (size_t i = 0; i < len && !t->stop; i++) {
		if (send(t->fd, t->msg + i, 1, MSG_NOSIGNAL) != 1) {
			t->closed = true;
			break;
		}
		pthread_mutex_lock(&t->lock);
		t->sent = i + 1;
		pthread_cond_broadcast(&t->cond);
		pthread_mutex_unlock(&t->lock);
		struct pollfd p = {.fd = t->fd, .events = POLLIN | POLLRDHUP};
		if (poll(&p, 1, (int)t->interval_ms) == 1) {
			char c;
			if (recv(t->fd, &c, 1, MSG_DONTWAIT) <= 0) {
				t->closed = true;
				break;
			}
		}
	}
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void trickle_start(struct trickler *t, pthread_t *th, const char *msg, unsigned ms)
{
	memset(t, 0, sizeof *t);
	t->fd = dial("127.0.0.1");
	t->msg = msg;
	t->interval_ms = ms;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	assert_int_equal(pthread_create(th, NULL, trickle, t), 0);
	/* wait for the first byte: the server has the slow client before the next one */
	pthread_mutex_lock(&t->lock);
	while (t->sent == 0 && !t->stop)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

static void trickle_end(struct trickler *t, pthread_t th)
{
	t->stop = true;
	pthread_join(th, NULL);
	close(t->fd);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
}

#define SLOW_REQUEST "GET /metrics HTTP/1.0\r\nHost: localhost\r\nX-Slow: 0123456789\r\n\r\n"

/* The attack from the issue: one client trickling a byte a second held the old
 * single-threaded server in recv(), and /metrics of everyone else waited. */
static void test_trickler_does_not_block_metrics(void **state)
{
	(void)state;
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\ntimeout = 600\n"), 0);
	struct trickler t;
	pthread_t th;
	trickle_start(&t, &th, SLOW_REQUEST, 1000);
	struct buf out;
	buf_init(&out);
	int status = 0;
	assert_int_equal(ctl_get(fx.addr, NULL, "/metrics", &out, &status), 0);
	assert_int_equal(status, 200);
	assert_non_null(strstr(buf_slice(&out).p, "pinhole_ctl_connections"));
	/* served while the trickler was still in the middle of its request */
	assert_false(t.stop);
	assert_true(t.sent < strlen(SLOW_REQUEST));
	buf_free(&out);
	trickle_end(&t, th);
	stop();
}

/* A trickler that never ends its headers is closed at [control] timeout, even
 * though it is never idle long enough for an idle timeout. */
static void test_trickler_closed_at_deadline(void **state)
{
	(void)state;
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\ntimeout = 1\n"), 0);
	int64_t before = test_metric("ctl_timeout_closed_total", NULL);
	static char endless[1200];
	memcpy(endless, "GET /metrics HTTP/1.0\r\nX-Slow: ", 31);
	memset(endless + 31, 'a', sizeof endless - 32);
	struct trickler t;
	pthread_t th;
	trickle_start(&t, &th, endless, 50); /* a minute of bytes, 20 a second */
	pthread_mutex_lock(&t.lock);
	while (!t.stop)
		pthread_cond_wait(&t.cond, &t.lock);
	pthread_mutex_unlock(&t.lock);
	assert_true(t.closed);
	assert_true(t.sent < sizeof endless - 1);
	assert_int_equal(test_metric("ctl_timeout_closed_total", NULL), before + 1);
	trickle_end(&t, th);
	stop();
}

/* True when the server closed fd without answering anything. */
static bool closed_unanswered(int fd)
{
	char buf[256];
	return read_all(fd, buf, sizeof buf) == 0;
}

/* Many idle connections from one address: the ones past max_per_address are
 * closed at once and counted, and a client from elsewhere is served. */
static void test_idle_connections_per_address(void **state)
{
	(void)state;
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\ntimeout = 600\n"
			       "max_per_address = 3\nmax_connections = 16\n"),
			 0);
	int64_t before = test_metric("ctl_refused_total", "reason=\"address\"");
	int idle[3];
	for (int i = 0; i < 3; i++)
		idle[i] = dial("127.0.0.1");
	int extra = dial("127.0.0.1");
	assert_true(closed_unanswered(extra));
	close(extra);
	assert_int_equal(test_metric("ctl_refused_total", "reason=\"address\""), before + 1);
	/* another address is served while the three idle ones stay open */
	char resp[65536];
	assert_int_equal(request("127.0.0.2", "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp),
			 200);
	/* and the idle ones still hold working connections */
	assert_int_equal(exchange(idle[0], "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp),
			 200);
	for (int i = 0; i < 3; i++)
		close(idle[i]);
	stop();
}

/* max_connections in all, from several addresses: the next one is closed and counted. */
static void test_idle_connections_total(void **state)
{
	(void)state;
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\ntimeout = 600\n"
			       "max_per_address = 2\nmax_connections = 4\n"),
			 0);
	int64_t before = test_metric("ctl_refused_total", "reason=\"total\"");
	const char *src[4] = {"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"};
	int idle[4];
	for (int i = 0; i < 4; i++)
		idle[i] = dial(src[i]);
	int extra = dial("127.0.0.3");
	assert_true(closed_unanswered(extra));
	close(extra);
	assert_int_equal(test_metric("ctl_refused_total", "reason=\"total\""), before + 1);
	char resp[65536];
	assert_int_equal(exchange(idle[3], "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp),
			 200);
	for (int i = 0; i < 4; i++)
		close(idle[i]);
	stop();
}

/* DNS rebinding: a page from evil.example whose name now resolves to us sends
 * Host: evil.example. */
static void test_host_check(void **state)
{
	(void)state;
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\nhosts = ctl.example.net\n"), 0);
	int64_t before = test_metric("ctl_denied_total", "reason=\"host\"");
	char self[NET_ADDR_STRLEN + 8];
	snprintf(self, sizeof self, "%s", fx.addr);
	assert_int_equal(get("/metrics", "evil.example", NULL), 421);
	assert_int_equal(get("/metrics", "evil.example:5080", NULL), 421);
	assert_int_equal(get("/metrics", "localhost.evil.example", NULL), 421);
	assert_int_equal(get("/metrics", "198.18.0.1", NULL), 421);
	assert_int_equal(get("/metrics", "localhost:80:80", NULL), 421);
	assert_int_equal(get("/metrics", "", NULL), 421);
	assert_int_equal(test_metric("ctl_denied_total", "reason=\"host\""), before + 6);
	assert_int_equal(get("/metrics", self, NULL), 200);
	assert_int_equal(get("/metrics", "127.0.0.1", NULL), 200);
	assert_int_equal(get("/metrics", "localhost", NULL), 200);
	assert_int_equal(get("/metrics", "LocalHost.:5080", NULL), 200);
	assert_int_equal(get("/metrics", "[::1]:5080", NULL), 200);
	assert_int_equal(get("/metrics", "ctl.example.net", NULL), 200);
	assert_int_equal(get("/metrics", NULL, NULL), 200); /* HTTP/1.0 without Host */
	assert_int_equal(get("/metrics", "localhost", "Host: evil.example\r\n"), 400);
	stop();
}

static void test_token_required_beyond_loopback(void **state)
{
	(void)state;
	/* nothing is bound: the check comes first */
	assert_int_equal(start("[control]\nlisten = 0.0.0.0:0\n"), EINVAL);
	stop();
	assert_int_equal(start("[control]\nlisten = 198.18.0.1:5080\n"), EINVAL);
	stop();
	assert_int_equal(start("[control]\nlisten = [::]:0\n"), EINVAL);
	stop();
	assert_int_equal(start("[control]\nlisten = 0.0.0.0:0\ntoken = short\n"), EINVAL);
	stop();
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\ntoken = has spaces in it!!\n"),
			 EINVAL);
	stop();
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\ntoken = " TOKEN
			       "\ntoken_file = /nonexistent\n"),
			 EINVAL);
	stop();
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\ntoken_file = /nonexistent\n"),
			 EINVAL);
	stop();
	/* loopback without a token: as before */
	assert_int_equal(start("[control]\nlisten = 127.0.0.2:0\n"), 0);
	assert_int_equal(get("/metrics", NULL, NULL), 200);
	stop();
}

static void check_token_enforced(void)
{
	int64_t before = test_metric("ctl_denied_total", "reason=\"token\"");
	char resp[65536];
	assert_int_equal(request(get_from, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp),
			 401);
	assert_non_null(strstr(resp, "WWW-Authenticate: Bearer"));
	assert_int_equal(get("/metrics", NULL, "Authorization: Bearer wrong-token-0123456789\r\n"),
			 401);
	assert_int_equal(get("/metrics", NULL, "Authorization: Bearer " TOKEN "x\r\n"), 401);
	assert_int_equal(get("/metrics", NULL, "Authorization: Basic " TOKEN "\r\n"), 401);
	assert_int_equal(get("/nope", NULL, NULL), 401); /* nothing about routes either */
	assert_int_equal(test_metric("ctl_denied_total", "reason=\"token\""), before + 5);
	assert_int_equal(get("/metrics", NULL, "Authorization: Bearer " TOKEN "\r\n"), 200);
	assert_int_equal(get("/metrics", NULL, "authorization: bearer " TOKEN "\r\n"), 200);
	struct buf out;
	buf_init(&out);
	int status = 0;
	assert_int_equal(ctl_get(fx.addr, NULL, "/metrics", &out, &status), EPROTO);
	assert_int_equal(status, 401);
	buf_reset(&out);
	assert_int_equal(ctl_get(fx.addr, TOKEN, "/metrics", &out, &status), 0);
	assert_int_equal(status, 200);
	buf_free(&out);
}

static void test_token(void **state)
{
	(void)state;
	assert_int_equal(start("[control]\nlisten = 127.0.0.1:0\ntoken = " TOKEN "\n"), 0);
	check_token_enforced();
	stop();
	char path[] = "/tmp/pinhole-ctl-token-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char line[] = "  " TOKEN "  \nsecond line ignored\n";
	assert_int_equal(write(fd, line, sizeof line - 1), (ssize_t)(sizeof line - 1));
	close(fd);
	char ini[256];
	snprintf(ini, sizeof ini, "[control]\nlisten = 127.0.0.1:0\ntoken_file = %s\n", path);
	int err = start(ini);
	unlink(path);
	assert_int_equal(err, 0);
	check_token_enforced();
	stop();
}

/* Beyond loopback for real: in a network namespace of the test's own, on a
 * veth interface with a "public" 198.18.0.0/15 address. The thread that
 * unshares carries the namespace; the ctl thread it starts inherits it. */
static void test_beyond_loopback_with_token(void **state)
{
	(void)state;
	int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	assert_true(home >= 0);
	if (unshare(CLONE_NEWNET) != 0) {
		close(home);
		skip(); /* not root */
	}
	int rc = system("ip link set lo up && ip link add phctl0 type veth peer name phctl1 && "
			"ip addr add 198.18.0.1/24 dev phctl0 && ip link set phctl0 up && "
			"ip link set phctl1 up");
	if (rc != 0) {
		assert_int_equal(setns(home, CLONE_NEWNET), 0);
		close(home);
		skip(); /* no iproute2 */
	}
	assert_int_equal(start("[control]\nlisten = 198.18.0.1:0\n"), EINVAL);
	stop();
	assert_int_equal(start("[control]\nlisten = 198.18.0.1:0\ntoken = " TOKEN "\n"), 0);
	get_from = "198.18.0.1";
	check_token_enforced();
	/* the address connected to is a fine Host; a name is not */
	assert_int_equal(get("/metrics", "198.18.0.1:5080", "Authorization: Bearer " TOKEN "\r\n"),
			 200);
	assert_int_equal(
	    get("/metrics", "pinhole.evil.example", "Authorization: Bearer " TOKEN "\r\n"), 421);
	get_from = "127.0.0.1";
	stop();
	/* the namespace and its veth pair go when nothing holds them */
	assert_int_equal(setns(home, CLONE_NEWNET), 0);
	close(home);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),
	    cmocka_unit_test(test_request_too_big),
	    cmocka_unit_test(test_trickler_does_not_block_metrics),
	    cmocka_unit_test(test_trickler_closed_at_deadline),
	    cmocka_unit_test(test_idle_connections_per_address),
	    cmocka_unit_test(test_idle_connections_total),
	    cmocka_unit_test(test_host_check),
	    cmocka_unit_test(test_token_required_beyond_loopback),
	    cmocka_unit_test(test_token),
	    cmocka_unit_test(test_beyond_loopback_with_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
