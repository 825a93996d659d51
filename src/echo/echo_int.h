/* echo internals: the SIP side (echo.c) and the media side (media.c) share the call. */
#ifndef PINHOLE_ECHO_INT_H
#define PINHOLE_ECHO_INT_H

#include <stdatomic.h>

#include "echo.h"
#include "rtp/rtp.h"

enum echo_state {
	ECHO_FREE = 0,
	ECHO_ANSWERED,	/* 200 sent, retransmitted until the ACK */
	ECHO_CONFIRMED, /* ACK came: media is echoed */
	ECHO_ENDING,	/* our BYE is out, sockets closed */
};

struct echo_call;

/* One media socket; worker-local (the echo's loop). */
struct echo_sock {
	int fd;	   /* -1 when closed */
	bool rtcp; /* the odd port of a pair (not muxed) */
	bool latched;
	struct net_addr peer; /* the source it latched onto */
	struct echo_call *c;  /* back-pointer, not a reference */
};

/* One call; a slot of struct echo's table, worker-local. */
struct echo_call {
	enum echo_state state;
	bool acked;	/* the first ACK came: media may be echoed (re-INVITEs keep it) */
	struct echo *e; /* back-pointer */
	char call_id[128], from_tag[64], to_tag[24];
	struct net_addr proxy;		 /* where its INVITE came from: the way back */
	struct net_src_key src;		 /* the caller's signalling source */
	struct net_addr allow[2];	 /* IPs that may latch: signalling source, SDP c= */
	char route[1024];		 /* route set: the INVITE's Record-Route values */
	char target[256];		 /* the caller's Contact URI */
	char from_hdr[256], to_hdr[256]; /* the INVITE's From and To values */
	struct buf resp;		 /* our last 2xx, for retransmission */
	struct buf bye;			 /* our BYE, for retransmission */
	struct timer t_sip;		 /* 2xx or BYE retransmission */
	struct timer t_end;		 /* max_duration */
	uint64_t sip_started_ms;
	uint32_t retx_ms;
	/* media */
	struct echo_sock rtp, rtcp_sock;
	uint16_t port;
	bool mux;
	bool send_ok; /* the offer lets us send (sendrecv/recvonly) */
	uint8_t pt;
	uint32_t ssrc, ts_off;
	uint16_t seq;
	bool ts_set;
	uint32_t last_ts;
	uint32_t out_pkts, out_octets;
	struct rtp_recv rs;
	uint32_t lsr; /* mid32 NTP of the caller's last SR */
	uint64_t lsr_at_us;
};

struct echo {
	struct net *net;
	struct loop *loop; /* worker 0's: every call lives there */
	char user[64];
	unsigned max_calls, max_per_source;
	uint32_t max_duration_ms, t1, t2;
	int sip_fd;
	struct net_addr sip_addr;   /* bound */
	struct flow to_echo;	    /* from the SIP listener to sip_addr; RO */
	struct net_addr proxy_addr; /* the listener's bound address */
	bool proxy_wild;
	struct net_addr media_addr;
	char media_ip[NET_ADDR_STRLEN];
	uint16_t port_lo;
	unsigned npairs, next_pair;
	struct echo_call *calls; /* [max_calls] */
	_Atomic int64_t active;
	uint64_t sess_version;
};

/* media.c */
/* Opens the call's port pair (RTP even, RTCP odd unless muxed) on the loop. */
int echo_media_open(struct echo *e, struct echo_call *c);
void echo_media_close(struct echo *e, struct echo_call *c);
void echo_media_register_metrics(void);

#endif
