/* proxy: routes requests to the flow that works, forks over bindings, Record-Routes dialogs with flow tokens.
 *
 * The proxy installs itself as the edge's request and response handler and
 * hands REGISTER to the registrar. A forwarded request's state (one server
 * transaction, its client branches, the best final response so far) is a
 * struct proxy_call, owned by the proxy and freed once the server transaction
 * has ended and no branch is pending.
 */
#ifndef PINHOLE_PROXY_H
#define PINHOLE_PROXY_H

#include "edge/edge.h"
#include "registrar/registrar.h"

struct proxy;

extern const struct conf_key proxy_conf_keys[]; /* [proxy] */
/* [proxy] registrar (upstream.c) */
extern const struct conf_key proxy_upstream_conf_keys[];
/* Whether this process is an edge in front of a registrar elsewhere
 * ([proxy] registrar): it then keeps no bindings. */
bool proxy_conf_edge_only(const struct conf *c);

struct relay;

/* relay: the in-process media relay, or NULL; with [proxy] relay = local the
 * proxy engages it directly, with an ng address it drives a remote one. */
int proxy_alloc(struct proxy **pp, struct edge *e, struct registrar *r, struct relay *relay,
		const struct conf *c);
void proxy_free(struct proxy *p);

/* An in-process service that answers calls itself (the echo): for a
 * Request-URI in our domains, h says whether it is the service's and gives
 * the flow that reaches it. The proxy then forwards to it as to a
 * registered phone (Record-Route, the media policy), except that the target
 * may be one of our own addresses. Any thread; set before net_start. */
typedef bool(proxy_service_h)(const struct sip_uri *ruri, struct flow *out, void *arg);
void proxy_set_service(struct proxy *p, proxy_service_h *h, void *arg);

#endif
