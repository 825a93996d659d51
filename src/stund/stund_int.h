/* stund: internals shared by the server and its fast path (not a public header). */
#ifndef PINHOLE_STUND_INT_H
#define PINHOLE_STUND_INT_H

#include <stdint.h>

#include "stund.h"

/* The in-kernel fast path (fastpath.c): plain IPv4 Binding requests answered
 * at tc ingress. */
struct stund_fast;

/* mode: auto (NULL *out when it cannot load), on (an error then), off.
 * views[i] with nslots[i] sockets each; rate/burst: the per-source budget. */
int stund_fast_start(struct stund_fast **out, const char *mode, const struct stund_view *views,
		     const unsigned *nslots, unsigned nlisten, uint32_t rate, uint32_t burst);
/* What the kernel did since the last call. Thread-safe. */
void stund_fast_pull(struct stund_fast *f, int64_t *requests, int64_t *responses,
		     int64_t *limited);
void stund_fast_free(struct stund_fast *f);

#endif
