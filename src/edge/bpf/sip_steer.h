/* SIP steering: what the sk_reuseport program (sip_steer.bpf.c) and user space
 * (src/edge/steer.c) share. */
#ifndef PINHOLE_SIP_STEER_H
#define PINHOLE_SIP_STEER_H

#include <linux/types.h>

#define SIP_STEER_MAX_WORKERS 256 /* [sip] workers' upper bound */
/* Bytes of a datagram searched for Call-ID (less one): it sits in the first lines of
 * every message pinhole sees; a longer head than this is left to the kernel's
 * own choice (and user space's hand-off). A power of two. */
#define SIP_STEER_SCAN 2048

/* counters (per CPU): datagrams sent to their Call-ID's worker, and ones left
 * to the kernel's default choice (no Call-ID found in the scanned head) */
enum { SIP_STEER_STEERED, SIP_STEER_DEFAULT, SIP_STEER_NCOUNT };

#endif
