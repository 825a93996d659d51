/* The edge's WebSocket glue: hands the transport the ws codec, with the Origin list from [sip] ws_origins. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"
#include "ws/ws.h"

static int ws_upgrade_h(const struct flow *f, const char *p, size_t l, size_t *used,
			struct buf *out, unsigned *status, void *arg)
{
	struct edge *e = arg;
	struct ws_upgrade u;
	int err = ws_upgrade_parse(p, l, WS_UPGRADE_MAX, &u, used);
	if (err == ENODATA)
		return ENODATA;
	/* not HTTP, or a request too large: refused like a bad one, once */
	*status = err ? 400 : ws_upgrade_check(&u, e->ws_origins);
	if (err)
		memset(&u, 0, sizeof u);
	if (*status != 101 && log_get_level() >= LOG_DEBUG) {
		char a[NET_ADDR_STRLEN];
		LOG_D("edge", "ws upgrade from %s refused: %u",
		      net_addr_fmt(&f->remote, a, sizeof a), *status);
	}
	return ws_upgrade_answer(&u, *status, out);
}

static int ws_frame_h(char *p, size_t l, size_t max, struct net_ws_frame *out)
{
	struct ws_frame fr;
	int err = ws_frame_parse(p, l, true, max, &fr);
	if (err)
		return err;
	ws_mask(p + fr.hlen, fr.plen, fr.mask);
	out->fin = fr.fin;
	out->opcode = fr.opcode;
	out->hlen = fr.hlen;
	out->plen = fr.plen;
	return 0;
}

static size_t ws_hdr_h(uint8_t *out, bool fin, uint8_t op, size_t plen)
{
	return ws_frame_hdr(out, fin, (enum ws_opcode)op, plen, NULL);
}

int edge_ws_setup(struct edge *e, const struct conf *c)
{
	free(e->ws_origins);
	e->ws_origins = strdup(conf_str(c, "sip", "ws_origins"));
	if (!e->ws_origins)
		return ENOMEM;
	struct net_ws_hooks h = {
	    .upgrade = ws_upgrade_h,
	    .frame = ws_frame_h,
	    .frame_hdr = ws_hdr_h,
	    .close_code = ws_close_parse,
	    .utf8 = ws_utf8_valid,
	    .arg = e,
	};
	net_set_ws(e->net, &h);
	return 0;
}
