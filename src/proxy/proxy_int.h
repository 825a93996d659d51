/* proxy internals: the request router and the response context share these. */
#ifndef PINHOLE_PROXY_INT_H
#define PINHOLE_PROXY_INT_H

#include "proxy.h"

#define PROXY_MAX_BRANCHES 8

struct proxy {
	struct edge *edge;
	struct registrar *reg;
	bool record_route;
	unsigned max_branches;
};

/* Where one copy of a request goes. */
struct proxy_target {
	struct flow flow;
	char ruri[STORE_CONTACT_MAX]; /* new Request-URI, "" = unchanged */
};

/* Builds the forwarded request for one target into out: our Via on top (with
 * branch), received/rport on the previous one, Max-Forwards decremented, the
 * popped Route values removed, Record-Route when asked. */
struct route_plan {
	/* Route values of ours at the top: how many to drop from each line */
	size_t pop_lines[16];
	size_t n_pop_lines;
	size_t partial_line; /* SIZE_MAX when none */
	struct slice partial_rest;
	bool record_route;
};

int proxy_build_request(struct proxy *p, const struct edge_rx *rx, const struct route_plan *plan,
			const struct proxy_target *t, const char *branch, struct buf *out);

/* Forwards statefully to the targets (owning a proxy_call) or answers. */
void proxy_fork(struct proxy *p, const struct edge_rx *rx, const struct route_plan *plan,
		struct proxy_target *targets, size_t n);
/* Forwards a response that matched no transaction along its Via. */
void proxy_response_stateless(struct proxy *p, const struct edge_rx *rx);

#endif
