/* relayctl: dispatch to the implementation behind a handle, error texts, and the direct (local)
 * one. */
#include <errno.h>
#include <stdlib.h>

#include "relay/relay.h"
#include "relayctl/relayctl_int.h"

int relayctl_offer(struct relayctl *rc, const struct relayctl_req *req, struct buf *out)
{
	return rc->ops->offer(rc, req, out);
}

int relayctl_answer(struct relayctl *rc, const struct relayctl_req *req, struct buf *out)
{
	return rc->ops->answer(rc, req, out);
}

int relayctl_delete(struct relayctl *rc, struct slice call_id, struct slice from_tag,
		    struct slice to_tag)
{
	return rc->ops->del(rc, call_id, from_tag, to_tag);
}

int relayctl_query(struct relayctl *rc, struct slice call_id, struct slice from_tag,
		   struct relayctl_query *out)
{
	return rc->ops->query(rc, call_id, from_tag, out);
}

int relayctl_list(struct relayctl *rc, size_t max, relayctl_list_h *h, void *arg)
{
	return rc->ops->list(rc, max, h, arg);
}

int relayctl_ping(struct relayctl *rc)
{
	return rc->ops->ping(rc);
}

void relayctl_free(struct relayctl *rc)
{
	if (rc)
		rc->ops->free(rc);
}

const char *relayctl_strerror(int err)
{
	switch (err) {
	case ETIMEDOUT:
		return "relay did not answer";
	case ECONNREFUSED:
		return "relay refused the connection";
	case EPROTO:
		return "relay answered with an error";
	default:
		return relay_strerror(err); /* the engine's own */
	}
}

/* ---- the direct implementation: calls into a relay of this process ---- */

struct relayctl_local {
	struct relayctl rc; /* first: the handle */
	struct relay *r;    /* not owned */
};

static struct relay *local_relay(struct relayctl *rc)
{
	return ((struct relayctl_local *)rc)->r;
}

static int local_offer(struct relayctl *rc, const struct relayctl_req *req, struct buf *out)
{
	return relay_offer(local_relay(rc), req, out);
}

static int local_answer(struct relayctl *rc, const struct relayctl_req *req, struct buf *out)
{
	return relay_answer(local_relay(rc), req, out);
}

static int local_del(struct relayctl *rc, struct slice cid, struct slice ft, struct slice tt)
{
	return relay_delete(local_relay(rc), cid, ft, tt);
}

static int local_query(struct relayctl *rc, struct slice cid, struct slice ft,
		       struct relayctl_query *out)
{
	return relay_query(local_relay(rc), cid, ft, out);
}

static int local_list(struct relayctl *rc, size_t max, relayctl_list_h *h, void *arg)
{
	return relay_list(local_relay(rc), max, h, arg);
}

static int local_ping(struct relayctl *rc)
{
	(void)rc;
	return 0;
}

static void local_free(struct relayctl *rc)
{
	free(rc);
}

static const struct relayctl_ops local_ops = {
    .offer = local_offer,
    .answer = local_answer,
    .del = local_del,
    .query = local_query,
    .list = local_list,
    .ping = local_ping,
    .free = local_free,
};

int relayctl_local(struct relayctl **rcp, struct relay *r)
{
	if (!r)
		return EINVAL;
	struct relayctl_local *l = calloc(1, sizeof *l);
	if (!l)
		return ENOMEM;
	l->rc.ops = &local_ops;
	l->r = r;
	*rcp = &l->rc;
	return 0;
}
