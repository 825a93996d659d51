/* A deliberately small HTTP/1.0 server and client for the control endpoint: GET only, one request per connection. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"
#include "net/net.h"

const struct conf_key ctl_conf_keys[] = {
	{"control", "listen", CONF_STR, "127.0.0.1:5080", 0, 0, NULL,
	 "address of the HTTP control endpoint (pinhole ctl, /metrics); empty = off"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

#define MAX_ROUTES 16
#define MAX_REQUEST 4096

struct ctl {
	int fd;
	pthread_t thread;
	bool started;
	_Atomic bool stop;
	struct {
		char path[64];
		ctl_route_h *h;
		void *arg;
	} routes[MAX_ROUTES];
	size_t n_routes;
};

int ctl_alloc(struct ctl **cp, const char *listen_addr)
{
	struct net_addr a;
	if (net_addr_parse(listen_addr, 5080, &a)) {
		LOG_E("ctl", "[control] listen: cannot parse \"%s\"", listen_addr);
		return EINVAL;
	}
	struct ctl *c = calloc(1, sizeof *c);
	if (!c)
		return ENOMEM;
	c->fd = socket(net_addr_family(&a), SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (c->fd >= 0)
		setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (c->fd < 0 || bind(c->fd, &a.u.sa, net_addr_len(&a)) < 0 || listen(c->fd, 64) < 0) {
		int err = errno;
		LOG_E("ctl", "control endpoint %s: %s", listen_addr, strerror(err));
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return err;
	}
	*cp = c;
	return 0;
}

int ctl_route(struct ctl *c, const char *path, ctl_route_h *h, void *arg)
{
	if (c->n_routes == MAX_ROUTES)
		return ENOSPC;
	snprintf(c->routes[c->n_routes].path, sizeof c->routes[0].path, "%s", path);
	c->routes[c->n_routes].h = h;
	c->routes[c->n_routes].arg = arg;
	c->n_routes++;
	return 0;
}

static void write_all(int fd, const char *p, size_t l)
{
	while (l) {
		ssize_t k = send(fd, p, l, MSG_NOSIGNAL);
		if (k <= 0)
			return;
		p += k;
		l -= (size_t)k;
	}
}

static void serve_one(struct ctl *c, int fd)
{
	char req[MAX_REQUEST + 1];
	size_t got = 0;
	/* a slow or silent client must not hold the endpoint */
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while (got < MAX_REQUEST) {
		ssize_t k = recv(fd, req + got, MAX_REQUEST - got, 0);
		if (k <= 0)
			break;
		got += (size_t)k;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = '\0';
	char method[8], target[512];
	int status = 400;
	struct buf body;
	buf_init(&body);
	const char *ctype = "application/json";
	if (sscanf(req, "%7s %511s", method, target) == 2) {
		char *q = strchr(target, '?');
		const char *query = "";
		if (q) {
			*q = '\0';
			query = q + 1;
		}
		status = 404;
		if (strcmp(method, "GET") != 0) {
			status = 405;
		} else {
			for (size_t i = 0; i < c->n_routes; i++) {
				if (strcmp(c->routes[i].path, target) == 0) {
					status = c->routes[i].h(query, &body, &ctype,
								c->routes[i].arg);
					break;
				}
			}
		}
	}
	if (status != 200 && body.len == 0)
		buf_printf(&body, "{\"error\":%d}\n", status);
	char head[256];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, status == 200 ? "OK" : "Error", ctype, body.len);
	write_all(fd, head, (size_t)n);
	write_all(fd, body.data ? body.data : "", body.len);
	buf_free(&body);
}

static void *ctl_main(void *arg)
{
	struct ctl *c = arg;
	while (!c->stop) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_one(c, fd);
		close(fd);
	}
	return NULL;
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
	if (c->started)
		pthread_join(c->thread, NULL);
	close(c->fd);
	free(c);
}

int ctl_get(const char *addr, const char *path, struct buf *out)
{
	struct net_addr a;
	if (net_addr_parse(addr, 5080, &a))
		return EINVAL;
	int fd = socket(net_addr_family(&a), SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, &a.u.sa, net_addr_len(&a)) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	char req[600];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: pinhole\r\n\r\n", path);
	write_all(fd, req, (size_t)n);
	struct buf resp;
	buf_init(&resp);
	char chunk[4096];
	ssize_t k;
	while ((k = recv(fd, chunk, sizeof chunk, 0)) > 0)
		buf_append(&resp, chunk, (size_t)k);
	close(fd);
	buf_append(&resp, "", 1);
	int status = 0;
	char *body = strstr(resp.data ? resp.data : "", "\r\n\r\n");
	if (!body || sscanf(resp.data, "HTTP/1.%*d %d", &status) != 1) {
		buf_free(&resp);
		return EPROTO;
	}
	buf_append_cstr(out, body + 4);
	buf_free(&resp);
	return status == 200 ? 0 : EPROTO;
}
