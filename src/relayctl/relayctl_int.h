/* relayctl: the operations table behind a handle (not a public header). */
#ifndef PINHOLE_RELAYCTL_INT_H
#define PINHOLE_RELAYCTL_INT_H

#include "relayctl/relayctl.h"

struct relayctl_ops {
	int (*offer)(struct relayctl *rc, const struct relayctl_req *req, struct buf *out);
	int (*answer)(struct relayctl *rc, const struct relayctl_req *req, struct buf *out);
	int (*del)(struct relayctl *rc, struct slice call_id, struct slice from_tag,
		   struct slice to_tag);
	int (*query)(struct relayctl *rc, struct slice call_id, struct slice from_tag,
		     struct relayctl_query *out);
	int (*list)(struct relayctl *rc, size_t max, relayctl_list_h *h, void *arg);
	int (*ping)(struct relayctl *rc);
	void (*free)(struct relayctl *rc);
};

/* Every implementation embeds this first. */
struct relayctl {
	const struct relayctl_ops *ops;
};

#endif
