/* ctl: the control endpoint (HTTP on localhost) that pinhole ctl and monitoring read, and its client. */
#ifndef PINHOLE_CTL_H
#define PINHOLE_CTL_H

#include "core/core.h"

struct ctl;

extern const struct conf_key ctl_conf_keys[]; /* [control] */

/* Fills out with the body for a GET of path (query string after '?' in query,
 * may be ""). Returns an HTTP status (200, 404...). *ctype defaults to JSON. */
typedef int(ctl_route_h)(const char *query, struct buf *out, const char **ctype, void *arg);

/* Listens on "127.0.0.1:5080" and serves from a thread of its own. */
int ctl_alloc(struct ctl **cp, const char *listen);
/* Adds a route before ctl_start. */
int ctl_route(struct ctl *c, const char *path, ctl_route_h *h, void *arg);
int ctl_start(struct ctl *c);
void ctl_free(struct ctl *c);

/* Client: GET path from a control endpoint; body into out. Returns 0 when the
 * server answered 200, EPROTO for another status (body still in out), or the
 * connection's errno. */
int ctl_get(const char *addr, const char *path, struct buf *out);

#endif
