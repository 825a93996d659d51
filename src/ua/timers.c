/* ua: the numbers of RFC 5626 section 4: keepalive periods and the flow recovery backoff. */
#include "ua/ua.h"

uint64_t ua_backoff_bound_ms(unsigned failures, bool other_flow_ok, unsigned base_ok_s,
			     unsigned base_all_s, unsigned max_s)
{
	/* RFC 5626 4.5: base-time 90 s while another flow works, 30 s when all
	 * failed; max-time 1800 s; wait-time = min(max-time, base-time * 2^n) */
	uint64_t base =
	    other_flow_ok ? (base_ok_s ? base_ok_s : 90) : (base_all_s ? base_all_s : 30);
	uint64_t max = max_s ? max_s : 1800;
	uint64_t w = base;
	for (unsigned i = 0; i < failures && w < max; i++)
		w *= 2; /* stops doubling at max: no overflow for any failure count */
	return MIN(w, max) * 1000;
}

uint64_t ua_backoff_ms(uint64_t bound_ms, double r)
{
	/* 4.5: a random time between 50 % and 100 % of the bound, so that many
	 * UAs cut off together do not come back together */
	if (r < 0 || r >= 1)
		r = 0;
	return bound_ms / 2 + (uint64_t)((double)(bound_ms - bound_ms / 2) * r);
}

uint64_t ua_keepalive_ms(uint32_t flow_timer_s, enum net_transport tp, double r)
{
	if (r < 0 || r >= 1)
		r = 0;
	uint64_t lo, hi;
	if (flow_timer_s) {
		/* 4.4.1: between 80 % and 100 % of Flow-Timer */
		hi = (uint64_t)flow_timer_s * 1000;
		lo = hi * 4 / 5;
	} else if (tp == NET_UDP) {
		/* 4.4.1, no Flow-Timer: 24-29 s over connectionless transports,
		 * below the 30 s that many NATs keep an idle UDP binding */
		lo = 24000;
		hi = 29000;
	} else {
		/* 4.4.1, no Flow-Timer: 95-120 s over connection-oriented ones */
		lo = 95000;
		hi = 120000;
	}
	uint64_t ms = lo + (uint64_t)((double)(hi - lo) * r);
	return ms ? ms : 1;
}
