/* The control endpoint's client (pinhole ctl, tests): one HTTP/1.0 GET per connection. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"

#define CTL_RESPONSE_MAX (64u << 20) /* a registrations dump of a big server fits */

static int write_all(int fd, const char *p, size_t l)
{
	while (l) {
		ssize_t k = send(fd, p, l, MSG_NOSIGNAL);
		if (k <= 0)
			return k < 0 ? errno : EPIPE;
		p += k;
		l -= (size_t)k;
	}
	return 0;
}

int ctl_get(const char *addr, const char *token, const char *path, struct buf *out, int *status)
{
	struct net_addr a;
	if (net_addr_parse(addr, 5080, &a))
		return EINVAL;
	if (token && ctl_token_check(token))
		return EINVAL;
	int fd = socket(net_addr_family(&a), SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, &a.u.sa, net_addr_len(&a)) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	/* Host names the address connected to: the server accepts that one */
	char host[NET_ADDR_STRLEN], req[1024];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n%s%s%s\r\n", path,
			 net_addr_fmt(&a, host, sizeof host), token ? "Authorization: Bearer " : "",
			 token ? token : "", token ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof req) {
		close(fd);
		return EINVAL;
	}
	int err = write_all(fd, req, (size_t)n);
	struct buf resp;
	buf_init(&resp);
	char chunk[4096];
	ssize_t k = 0;
	while (!err && (k = recv(fd, chunk, sizeof chunk, 0)) > 0 && resp.len < CTL_RESPONSE_MAX)
		buf_append(&resp, chunk, (size_t)k);
	if (!err && k < 0)
		err = errno == EAGAIN ? ETIMEDOUT : errno;
	close(fd);
	if (err) {
		buf_free(&resp);
		return err;
	}
	buf_append(&resp, "", 1);
	int st = 0;
	char *body = strstr(resp.data ? resp.data : "", "\r\n\r\n");
	if (!body || sscanf(resp.data, "HTTP/1.%*d %d", &st) != 1) {
		buf_free(&resp);
		return EPROTO;
	}
	if (status)
		*status = st;
	buf_append(out, body + 4, resp.len - 1 - (size_t)(body + 4 - resp.data));
	buf_free(&resp);
	return st == 200 ? 0 : EPROTO;
}
