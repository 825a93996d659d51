/* ctl: the HTTP control endpoint that pinhole ctl and monitoring read, and its client.
 *
 * The server is libmicrohttpd driven from one thread of its own (never a SIP
 * worker), so a slow client costs a connection slot, not the others' turn.
 * Who may ask, and what it costs:
 *   - connections: at most [control] max_connections in all and
 *     max_per_address from one address (IPv6: one /64); more are closed at
 *     accept and counted (ctl_refused_total{reason});
 *   - time: a connection lives at most [control] timeout seconds in all,
 *     however slowly it trickles (ctl_timeout_closed_total);
 *   - size: request line and headers fit in CTL_REQUEST_MAX bytes, else 4xx;
 *   - Host: only the address the client connected to, "localhost", or a
 *     name in [control] hosts (DNS rebinding: a browser page served from an
 *     attacker's name that resolves to us carries that name) -> else 421;
 *   - token: with [control] token (or token_file) every request needs
 *     "Authorization: Bearer <token>" -> else 401. A listener beyond loopback
 *     without a token refuses to start.
 * Routes are GET (and HEAD) only: 405 for another method, 404 for an
 * unknown path.
 */
#ifndef PINHOLE_CTL_H
#define PINHOLE_CTL_H

#include <stddef.h>

#include "core/core.h"
#include "net/net.h"

struct ctl;

extern const struct conf_key ctl_conf_keys[]; /* [control] */

#define CTL_REQUEST_MAX 16384 /* request line and headers, bytes */
#define CTL_TOKEN_MIN 16
#define CTL_TOKEN_MAX 256

/* Fills out with the body for a GET of path (query string after '?' in query,
 * may be ""). Returns an HTTP status (200, 404...). *ctype defaults to JSON.
 * Runs on the control thread. */
typedef int(ctl_route_h)(const char *query, struct buf *out, const char **ctype, void *arg);

/* Reads [control] from c, checks it (token rules above) and binds the
 * listener. Errors are logged and returned: EINVAL for a bad or unsafe
 * config, else the socket's errno. The ctl is owned by the caller. */
int ctl_alloc(struct ctl **cp, const struct conf *c);
/* Adds a route before ctl_start. */
int ctl_route(struct ctl *c, const char *path, ctl_route_h *h, void *arg);
/* Starts the control thread. */
int ctl_start(struct ctl *c);
/* Stops the thread, closes every connection. NULL is fine. */
void ctl_free(struct ctl *c);
/* The bound address (port resolved when configured 0). */
const struct net_addr *ctl_addr(const struct ctl *c);

/* Reads a token file: its first line, surrounding whitespace stripped, into
 * out[cap]. EINVAL for an empty token, one with characters outside the
 * RFC 6750 token68 set, or one shorter than CTL_TOKEN_MIN or longer than
 * CTL_TOKEN_MAX; else errno of the file. */
int ctl_token_read(const char *path, char *out, size_t cap);
/* The same checks on a token given as text. */
int ctl_token_check(const char *token);

/* Client: GET path from a control endpoint at addr, sending token as a
 * bearer credential when not NULL; body into out. Returns 0 when the server
 * answered 200, EPROTO for another status (body still in out; *status set
 * when status is not NULL), or the connection's errno. */
int ctl_get(const char *addr, const char *token, const char *path, struct buf *out, int *status);

#endif
