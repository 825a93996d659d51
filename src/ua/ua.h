/* ua: the client side: an outbound user agent (RFC 5626 section 4) that registers over
 * one or two flows, keeps them alive and recovers a failed one.
 *
 * One call at a time hangs off the same flows (call.c, media.c): one we place
 * (conf.call_uri) or one we answer (conf.auto_answer; else INVITEs get 480).
 *
 * Who may ask: only the proxies we registered through reach us. Each flow is
 * one socket of our own: a UDP socket connect()ed to its proxy (the kernel
 * drops datagrams from anyone else) or a TCP connection we opened. What it
 * costs us: one bounded answer per request that arrives on a flow (200 to
 * OPTIONS, 480 to INVITE, 405 to the rest). What our answer costs a third
 * party: nothing; answers go back on the flow they came on. What state a
 * stranger can create: none; a TCP flow's input buffer is bounded by
 * UA_MAX_MSG, and anything malformed is counted and dropped.
 *
 * Threads: one. The ua lives on the caller's loop and every call and event
 * happens on that loop's thread.
 *
 * Ownership: struct ua is owned by its caller (ua_alloc / ua_free); it
 * borrows the loop, and copies the conf.
 */
#ifndef PINHOLE_UA_H
#define PINHOLE_UA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "net/net.h"
#include "probe/probe.h"
#include "sdp/sdp.h"
#include "rtp/rtp.h"
#include "sip/sip.h"
#include "turnc/turnc.h"

#define UA_MAX_FLOWS 2	   /* RFC 5626 4.1: one flow per outbound proxy; two give failover */
#define UA_MAX_MSG 65535   /* a SIP message over TCP larger than this closes the flow */
#define UA_INSTANCE_MAX 64 /* "urn:uuid:" + 36 */
#define UA_UUID_LEN 36

/* One outbound proxy: where a flow goes. */
struct ua_proxy {
	enum net_transport tp; /* NET_UDP, NET_TCP, NET_TLS, NET_WS or NET_WSS */
	struct net_addr addr;
	char host[256]; /* as given (name or address), for the Route header */
	uint16_t port;
};

struct ua_conf {
	char aor[256];	     /* "sip:alice@example.org" */
	char auth_user[128]; /* digest user name; "" = the AOR's user part */
	char password[256];
	struct ua_proxy proxy[UA_MAX_FLOWS];
	unsigned n_proxy;		/* 1 or 2; flow i registers with reg-id i + 1 */
	char instance[UA_INSTANCE_MAX]; /* "urn:uuid:...", from ua_state_instance() */
	uint32_t expires;		/* asked for; 0 = 600 */
	unsigned keepalive_s;		/* keepalive period override; 0 = from Flow-Timer */
	unsigned nat_refresh_s; /* plain registration: refresh period; 0 = 25 (UDP), 110 (TCP) */
	unsigned backoff_ok_s;	/* RFC 5626 4.5 base-time when another flow works; 0 = 90 */
	unsigned backoff_all_s; /* base-time when every flow failed; 0 = 30 */
	unsigned backoff_max_s; /* max-time; 0 = 1800 */
	unsigned unregister_wait_ms; /* bound on unregistration at exit; 0 = 5000 */
	/* a stream flow that fails or closes with bytes the kernel had not
	 * taken (a WebSocket close frame, a last message) sends them first, for
	 * at most this long; 0 = 2000 */
	unsigned linger_ms;
	bool once;		     /* register every flow, unregister, done */
	/* tls: flows: the server's certificate is checked against this PEM file
	 * (else the system trust store) and must name the proxy's host */
	char ca_file[256];
	/* ws:, wss: flows (ws.c): the upgrade's path (NULL = "/") and Origin
	 * (NULL = none sent, as a non-browser client); borrowed, outlive the ua */
	const char *ws_path, *ws_origin;

	/* calls (call.c) */
	char call_uri[256];   /* ua call: the URI to call once registered; "" = none */
	bool no_register;     /* call without registering first */
	bool auto_answer;     /* answer an incoming INVITE 200 + SDP instead of 480 */
	bool echo;	      /* the far end echoes our RTP (sip:echo@...): for the verdict */
	unsigned duration_s;  /* hang up after this long; 0 = 10 (calls we make), 3600 (answered) */
	unsigned answer_s;    /* CANCEL a call not answered after this; 0 = 60 */
	unsigned tone_hz;     /* 0 = 440 */
	/* hold and resume (reinvite.c): re-INVITE with a=sendonly this long after
	 * the answer, then a=sendrecv resume_s after that was answered; 0 = never */
	unsigned hold_s, resume_s;
	/* --wav: 8 kHz mono samples sent instead of the tone, looped; owned by
	 * the caller, outlives the ua */
	const int16_t *wav;
	size_t wav_n;
	/* --record: received audio to this WAV file; NULL or "" = none; owned by
	 * the caller, outlives the ua (a pointer: every flow of ua load carries a conf) */
	const char *record;
	/* --stun: the media sockets' mapped addresses from this server go in the SDP */
	struct net_addr stun;
	bool has_stun;
	/* --turn: the media sockets allocate on this TURN server (UDP) and the
	 * SDP names the relayed addresses; credentials in turn_cred */
	struct net_addr turn;
	bool has_turn;
	struct turnc_conf turn_cred;

	/* ua load (load.c): the flow's sockets (signaling and media) bind to this
	 * source address (port 0) instead of the kernel's choice */
	struct net_addr source;
	bool has_source;
	/* calls come from ua_call_place only, and a call's end leaves the ua
	 * registered (no shutdown); each call's end is one UA_EV_CALL with
	 * call_end set, placed or answered */
	bool load;
};

/* What happened, one per line of output. */
enum ua_event_kind {
	UA_EV_FLOW_UP,		/* socket open (UDP) or connected (TCP) */
	UA_EV_FLOW_DOWN,	/* the flow failed or was closed: detail says why */
	UA_EV_REGISTERED,	/* 200 to REGISTER: expires, outbound, flow timer */
	UA_EV_NO_OUTBOUND,	/* the server did not take outbound: plain registration */
	UA_EV_KEEPALIVE_OK,	/* the first keepalive answered since the flow registered:
				   the flow counts as working (RFC 5626 4.5) */
	UA_EV_KEEPALIVE_FAILED, /* no STUN answer / CRLF pong, or the mapping moved */
	UA_EV_RETRY,		/* the next attempt on a flow, retry_ms from now */
	UA_EV_REG_FAILED,	/* a final error or a timeout for REGISTER */
	UA_EV_AUTH_FAILED,	/* credentials refused (wrong user or password) */
	UA_EV_UNREGISTERED,	/* 200 to the REGISTER with expires=0 */
	UA_EV_REQUEST,		/* an incoming request answered (method, status) */
	UA_EV_BAD_MESSAGE,	/* malformed or unexpected bytes from the server: counted */
	UA_EV_CALL,		/* a call's progress: detail says which step, status the SIP status */
	UA_EV_VERDICT,		/* a call ended: the media verdict (verdict_in/out) */
	UA_EV_DONE,		/* nothing left to do; exit_code says how it went */
	UA_EV_SIP_ALG,		/* the server said what it saw (Pinhole-Seen): rewritten says
				   what a SIP ALG changed, 0 for nothing (alg.c) */
};

/* Exit codes (documented in `pinhole ua --help` and docs/ua.md). */
enum ua_exit {
	UA_EXIT_OK = 0,
	UA_EXIT_ERROR = 1, /* local trouble: sockets, state file */
	UA_EXIT_USAGE = 2,
	UA_EXIT_AUTH = 3,    /* the password or user name was refused */
	UA_EXIT_REFUSED = 4, /* a final error response (403, 404, 5xx...) on every flow */
	UA_EXIT_TIMEOUT = 5, /* no flow got an answer (unreachable proxy, timeouts), or the
				INVITE none */
	UA_EXIT_NO_AUDIO = 6,  /* the call was answered but audio did not go both ways */
	UA_EXIT_CANCELLED = 7, /* the call was cancelled (signal, no answer in time) */
	UA_EXIT_TLS = 8,       /* a tls: flow's server certificate was refused (not trusted,
				  not naming the host), on every flow */
	UA_EXIT_TURN = 9,      /* --turn: no allocation for the call's media (credentials
				  refused, another refusal, or no answer) */
};

struct ua_event {
	enum ua_event_kind kind;
	uint64_t t_ms; /* since ua_start (monotonic) */
	unsigned flow; /* 1-based flow number (= its reg-id); 0 for the ua as a whole */
	enum net_transport tp;
	const char *proxy;    /* "udp:198.18.0.1:5060" */
	const char *local;    /* our socket's address, "" when none */
	uint16_t status;      /* a SIP status when one is involved */
	uint32_t expires;     /* REGISTERED: seconds granted */
	uint32_t flow_timer;  /* REGISTERED: the server's Flow-Timer, 0 when absent */
	uint64_t interval_ms; /* REGISTERED: keepalive period (outbound) or refresh period */
	uint64_t retry_ms;    /* RETRY */
	unsigned failures;    /* RETRY: consecutive failures of this flow */
	bool outbound;	      /* REGISTERED: the server answered Require: outbound */
	bool recovered;	      /* REGISTERED: after the flow had failed */
	bool refresh;	      /* REGISTERED: a refresh of a standing registration */
	const char *method;   /* REQUEST */
	const char *detail;   /* free text: a reason phrase, a cause */
	int exit_code;	      /* DONE */
	const struct rtp_verdict_in *verdict_in; /* VERDICT */
	const struct rtp_verdict_out *verdict_out;
	unsigned rewritten; /* SIP_ALG: UA_ALG_* bits; method says of which request */
	bool call_end;	    /* CALL (conf.load only): the call is over; exit_code is its
			       outcome (0, or 3..7 as for `ua call`), uas says whether we
			       answered it */
	bool uas;
	const char *tls;  /* FLOW_UP over TLS: the version ("TLSv1.3"); NULL otherwise */
	bool tls_resumed; /* FLOW_UP over TLS: the handshake resumed a session */
};

typedef void(ua_event_h)(const struct ua_event *ev, void *arg);

struct ua;

/* Copies conf. 0, EINVAL (a conf that cannot work: no proxy, bad AOR,
 * no instance), ENOMEM. Nothing is sent before ua_start. */
int ua_alloc(struct ua **up, struct loop *l, const struct ua_conf *conf, ua_event_h *h, void *arg);
/* Opens every flow and registers it. Events follow on the loop. */
int ua_start(struct ua *ua);
/* Unregisters every registered flow (bounded by unregister_wait_ms), then
 * reports UA_EV_DONE. Idempotent. */
void ua_shutdown(struct ua *ua);
void ua_free(struct ua *ua);
/* conf.load: places a call to uri now, on the first registered flow. 0,
 * EBUSY (a call stands), ENOTCONN (no flow registered), EINVAL (uri too long),
 * ESHUTDOWN. The call's events and its end (call_end) follow. */
int ua_call_place(struct ua *ua, const char *uri);
/* Whether a call (placed or answered) stands or is being set up. */
bool ua_in_call(const struct ua *ua);

struct ua_stats {
	uint64_t registers_sent, retransmits, challenges, keepalives_sent, keepalives_answered;
	uint64_t flow_failures, requests_answered, bad_messages;
	uint64_t tls_handshakes, tls_resumed; /* TLS flows up, and those that resumed */
	uint64_t flows_lingered; /* closed with a queue the kernel had not taken: sent after */
};
void ua_stats_get(const struct ua *ua, struct ua_stats *out);

/* One line of text or one JSON object (no newline) for an event; appended to out. */
int ua_event_format(const struct ua_event *ev, bool json, struct buf *out);
const char *ua_event_name(enum ua_event_kind k); /* "registered" */

/* ---- pure parts (exposed for tests) ---- */

/* RFC 5626 4.5: the upper bound of the wait before the next attempt to form
 * a flow: min(max_s, base_s * 2^failures) seconds, with base_s the
 * all-failed base when no other flow works, else the one-works base. The
 * actual wait is uniformly random in [50 %, 100 %] of it: pass r in [0, 1)
 * (ua_backoff_ms does). Milliseconds. */
uint64_t ua_backoff_bound_ms(unsigned failures, bool other_flow_ok, unsigned base_ok_s,
			     unsigned base_all_s, unsigned max_s);
uint64_t ua_backoff_ms(uint64_t bound_ms, double r);

/* RFC 5626 4.4.1: the keepalive period for a Flow-Timer of flow_timer_s
 * seconds: uniformly random in [80 %, 100 %] of it (r in [0, 1)). With no
 * Flow-Timer (0) the RFC's recommendation for the transport: 95-120 s over
 * TCP, 24-29 s over UDP. Milliseconds, never 0. */
uint64_t ua_keepalive_ms(uint32_t flow_timer_s, enum net_transport tp, double r);

/* Reads the installation's +sip.instance from the state file at path, or
 * makes one (a random UUID, RFC 4122 version 4) and writes the file (0600,
 * parent folders made 0700) when the file does not exist. out gets
 * "urn:uuid:xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". 0, EBADMSG (a file that
 * exists but holds no valid instance: it is left alone, since a new instance
 * would strand the old bindings), or an errno from the file system. */
int ua_state_instance(const char *path, char out[UA_INSTANCE_MAX]);
/* The default state file: $XDG_STATE_HOME/pinhole/ua.state, else
 * $HOME/.local/state/pinhole/ua.state. ENOENT when neither is set. */
int ua_state_default_path(char *out, size_t cap);
/* Whether s is "urn:uuid:" and a well-formed UUID (any case). */
bool ua_instance_valid(const char *s);

/* ---- the config file (ini.c) ---- */

/* One key = value, as written (value trimmed, inline "; comment" gone).
 * Returns 0, or an errno value having written a message (without the place)
 * into the err buffer the parser was given: reach it through arg. */
typedef int(ua_ini_h)(const char *key, const char *value, unsigned line, void *arg);
/* Reads an INI text: blank lines, ; and # comments, an optional [ua] section
 * header (any other section is an error), key = value lines in order to h.
 * 0, or EINVAL (or h's error) with "NAME:LINE: message" in err. */
int ua_ini_parse(const char *name, const char *text, ua_ini_h *h, void *arg, char *err,
		 size_t errlen);

/* ---- SDP offer and answer of a call (sdp_oa.c), pure ---- */

/* Our side: the RTP socket's address and ports. */
struct ua_sdp_local {
	const char *ip; /* no brackets */
	bool ip6;
	uint16_t rtp_port, rtcp_port;
	uint64_t sess_id, version; /* version: one more for each re-INVITE (RFC 3264 8) */
	enum sdp_dir dir;	   /* what we write; SDP_DIR_NONE = sendrecv (offer) or the
				    * mirror of the offer's (answer) */
};
/* The far side's audio, from its offer or answer. */
struct ua_sdp_remote {
	char addr[64];
	bool ip6;
	uint16_t port, rtcp_port; /* rtcp_port: a=rtcp, else port + 1 */
	bool rtcp_mux;
	uint8_t pt; /* RTP_PT_PCMU or RTP_PT_PCMA: the first of them in its list */
	/* effective; the old hold form c=0.0.0.0 (null_addr) reads as sendonly,
	 * or inactive when it said recvonly: we must not send to it */
	enum sdp_dir dir;
	bool null_addr;
};
/* RFC 3264 6.1: the direction that answers an offered one (sendonly ->
 * recvonly, recvonly -> sendonly, inactive -> inactive, else sendrecv), held
 * to at most `want` (our own wish: sendonly when we hold). */
enum sdp_dir ua_sdp_answer_dir(enum sdp_dir offered, enum sdp_dir want);
/* Whether a direction, as written in the far end's SDP, lets us send to it
 * (sendrecv or recvonly on its side) or lets it send to us. */
bool ua_sdp_dir_we_send(enum sdp_dir theirs);
bool ua_sdp_dir_they_send(enum sdp_dir theirs);
/* An offer: one audio section, PCMU and PCMA, a=rtcp, a=rtcp-mux, l->dir
 * (sendonly to hold, sendrecv to resume: RFC 3264 8.4). 0, ENOMEM. */
int ua_sdp_offer(const struct ua_sdp_local *l, struct buf *out);
/* The answer to offer: its codec, rtcp-mux when it offered it, and the
 * direction ua_sdp_answer_dir(offer->dir, l->dir). 0, ENOMEM. */
int ua_sdp_answer(const struct ua_sdp_local *l, const struct ua_sdp_remote *offer,
		  struct buf *out);
/* Reads the first usable audio section (RTP/AVP, port not 0, PCMU or PCMA
 * listed, an IP literal in c=). 0, EBADMSG (malformed, no address), ENOTSUP
 * (no audio we can use). */
int ua_sdp_read(struct slice body, struct ua_sdp_remote *out);

/* ---- digest, the client's half (RFC 7616, RFC 8760) ---- */

/* One challenge of a 401/407, parsed; slices point into the header value. */
struct ua_challenge {
	int alg; /* enum store_cred_alg value */
	struct slice realm, nonce, opaque;
	bool qop_auth; /* qop offered and lists "auth" */
	bool stale;
};

/* Picks the best challenge among the WWW-Authenticate (proxy = false) or
 * Proxy-Authenticate (true) headers of a response: SHA-512-256 over SHA-256
 * over MD5 (RFC 8760 2.4 lets the client choose), qop=auth preferred over no
 * qop; -sess variants, auth-int-only and other schemes are skipped. 0,
 * ENOENT (no header), ENOTSUP (none usable). */
int ua_challenge_pick(const struct sip_msg *resp, bool proxy, struct ua_challenge *out);

/* Appends the value of an Authorization header answering ch for method and
 * uri (the Request-URI), with nonce count nc and client nonce cnonce (a
 * fresh random one when NULL): "Digest username=..., response=...". 0, EIO,
 * ENAMETOOLONG. */
int ua_digest_credentials(const struct ua_challenge *ch, const char *user, const char *password,
			  const char *method, const char *uri, uint32_t nc, const char *cnonce,
			  struct buf *out);


/* ---- ua check (check.c): register + NAT probe + echo call, one summary ---- */

struct ua_check_flow {
	char proxy[NET_ADDR_STRLEN + 8];
	bool registered; /* a 200 to the first REGISTER (or a later try) */
	bool outbound;
	uint32_t flow_timer, expires;
	uint64_t interval_ms; /* keepalive (outbound) or refresh period */
	char local[NET_ADDR_STRLEN];
	uint16_t status; /* of a failure */
	int code;	 /* the exit code its failure stands for; 0 = none seen */
	char detail[160];
};

/* What a check found; filled from the ua's events and a probe result. */
struct ua_check {
	char aor[256], call_uri[256];
	bool registering;
	unsigned n_flows;
	struct ua_check_flow flow[UA_MAX_FLOWS];
	bool probed;
	char stun_server[NET_ADDR_STRLEN + 8];
	struct probe_result pr;
	struct probe_verdict pv;
	bool call_tried, call_status_final;
	uint16_t call_status; /* the INVITE's final status, 0 = none */
	char call_detail[300];
	bool have_verdict;
	struct rtp_verdict_in vin;
	struct rtp_verdict_out vout;
	bool done;
	int ua_exit; /* UA_EV_DONE's */
	/* the SIP ALG verdict (UA_EV_SIP_ALG): what the server said it saw of our
	 * REGISTERs (over every flow) and INVITE; UA_ALG_* bits rewritten */
	bool alg_reg_seen, alg_inv_seen;
	unsigned alg_reg, alg_inv;
};

void ua_check_init(struct ua_check *c, const struct ua_conf *conf);
/* Feed every event of the ua to it. */
void ua_check_event(struct ua_check *c, const struct ua_event *ev);
void ua_check_set_probe(struct ua_check *c, const struct probe_result *r);
/* Runs src/probe's tests (blocking, before the ua starts) against spec
 * ("host[:port]", default port 3478), or when spec is NULL against the first
 * proxy's host on 3478 and then, if that is silent, on its SIP port.
 * lifetime_s > 0 measures the binding lifetime up to that long. 0, EINVAL
 * (spec does not resolve). A server that does not answer is a result, not
 * an error. */
int ua_check_probe(struct ua_check *c, const struct ua_conf *conf, const char *spec,
		   unsigned lifetime_s);
/* "no-nat", "endpoint-independent" (full cone), "address-restricted",
 * "port-restricted", "symmetric", "nat" (type unknown: no RFC 5780), "unknown". */
const char *ua_check_nat_type(const struct probe_result *r);
/* The exit status of the check: 0 when every flow registered and audio went
 * both ways; else a flow's failure (3, 4, 5, 1, in that order), else the
 * call's (4, 5, 6, 7), else 5 for a flow with no answer by the end. */
int ua_check_exit(const struct ua_check *c);
/* The summary for a person (lines), or one JSON object ({"event":"check",...},
 * no newline); appended to out. */
int ua_check_text(const struct ua_check *c, struct buf *out);
int ua_check_json(const struct ua_check *c, struct buf *out);

/* ---- the SIP ALG verdict (alg.c), pure parts ---- */

/* What the server saw, decoded from a Pinhole-Seen header: base64 (RFC 4648)
 * of "key=value" lines. A value too long for its field is left out. */
struct ua_seen {
	char src[64], via[300], contact[300], sdp_c[64];
	uint16_t sdp_m;
	bool has_src, has_via, has_contact, has_sdp_c, has_sdp_m;
};
/* 0, EBADMSG (not base64, or none of via, contact, sdp-c, sdp-m in it). */
int ua_seen_decode(struct slice value, struct ua_seen *out);

#define UA_ALG_VIA 1u	  /* Via's sent-by (host, port) or transport */
#define UA_ALG_CONTACT 2u /* the first Contact's host or port */
#define UA_ALG_SDP 4u	  /* the audio c= address or m= port */
/* Compares the request we sent (its bytes) with what the server saw: the
 * UA_ALG_* parts that differ. A key the server did not send is not compared. */
unsigned ua_alg_compare(struct slice sent_req, const struct ua_seen *seen);
/* The verdict in words: "a SIP ALG on your router rewrote Contact and SDP:
 * switch it off", or that nothing was rewritten (rewritten = 0). */
void ua_alg_words(unsigned rewritten, struct buf *out);

/* ---- ua load (load.c): many flows and calls in one process ----
 *
 * One struct ua per AOR (sip:user1@..., user2, ...), each with its own flow
 * socket(s), all on one loop: their keepalives, refreshes and calls are
 * timers in the loop's wheel, no thread per flow. Flows start at reg_rate
 * per second; once every one has registered (or given up), calls start at
 * rate per second, each held duration_s, each with its own RTP and verdict.
 * Memory: one struct ua per flow (its one call included) and four floats of
 * figures per call placed (calls is bounded by the caller). */

#define UA_LOAD_MAX_FLOWS 100000
#define UA_LOAD_MAX_CALLS 1000000

struct ua_load_conf {
	struct ua_conf base; /* proxies, password, expires, keepalive, duration_s, tone,
				echo, auto_answer...; aor and instance are per flow */
	char aor_fmt[256];   /* "sip:user%u@example.org": %u (or %d) is the flow's number */
	unsigned first, count; /* flows first .. first + count - 1 */
	/* per flow (count entries, borrowed; NULL or a NULL entry: base.password) */
	char *const *passwords;
	struct net_addr source; /* the first source address; 0 = the kernel's choice */
	unsigned n_sources;	/* flow i binds to source + (i % n_sources) (IPv4) */
	double reg_rate;	/* flows started per second; 0 = 200 */
	unsigned calls;		/* calls to place in all */
	double rate;		/* calls started per second; 0 = 10 */
	/* whom: "" = pairs (the first half of the flows call the second half,
	 * which answer); a URI; or a pattern with %u, filled with callee_first +
	 * (k % callee_count) for the k-th call */
	char call_to[256];
	unsigned callee_first, callee_count;
	unsigned run_s; /* after the ramp, run this long; 0 = until the calls are
			   done (no calls: until ua_load_stop) */
	bool verbose;	/* every ua event to the event handler too */
};

/* Every figure of a run. Percentiles are over calls (or flows) that have the figure. */
struct ua_load_pct {
	unsigned n;
	double p50, p95, p99, max;
};
struct ua_load_result {
	unsigned flows, flows_registered, flows_failed, flow_failures, flows_recovered;
	unsigned flows_unregistered, max_flows_registered;
	int flow_fail_code; /* the most telling exit code of flows that never registered */
	char flow_fail_detail[200];
	double ramp_s; /* from start until every flow registered or gave up */
	unsigned calls, calls_placed, calls_answered, calls_two_way, calls_one_way, calls_none,
	    calls_unconfirmed, calls_failed, max_calls_active, calls_not_placed;
	unsigned fail_auth, fail_refused, fail_timeout, fail_cancelled, fail_error;
	unsigned answered, answered_two_way; /* calls the flows answered */
	char example_cause[560];	     /* the first not-two-way verdict, in words */
	struct ua_load_pct reg_ms, setup_ms, loss_in_pct, loss_out_pct, jitter_ms, rtt_ms;
	uint64_t packets_sent, packets_received;
	double elapsed_s, cpu_user_s, cpu_sys_s;
	long max_rss_kb;
	int exit_code; /* 0 all ok; else a flow's failure (3, 8, 4, 5, 1), a call's
			  failure (3, 4, 5, 7, 1), 5 for a flow that failed later,
			  or 6: a call not two-way */
};

struct ua_load;
/* The run is over: res holds the figures (valid during the call). */
typedef void(ua_load_done_h)(const struct ua_load_result *res, void *arg);
/* A progress line ("ramp done ...") or, verbose, one ua's event: flow is its
 * 1-based index in the run, ev NULL for progress lines. */
typedef void(ua_load_event_h)(unsigned flow, const struct ua_event *ev, const char *progress,
			      void *arg);

/* Copies conf. EINVAL (a bad pattern: no or more than one %u, another %, too
 * long; count 0 or > UA_LOAD_MAX_FLOWS; pairs with fewer than 2 flows),
 * ENOMEM. */
int ua_load_alloc(struct ua_load **lp, struct loop *l, const struct ua_load_conf *conf,
		  ua_load_event_h *eh, ua_load_done_h *dh, void *arg);
int ua_load_start(struct ua_load *L);
/* Hangs up, unregisters every flow, then reports done. Idempotent. */
void ua_load_stop(struct ua_load *L);
void ua_load_free(struct ua_load *L);
/* The summary for a person (lines) or one JSON object ({"event":"load",...}). */
int ua_load_text(const struct ua_load_result *r, struct buf *out);
int ua_load_json(const struct ua_load_result *r, struct buf *out);
/* Pure parts, for tests. fmt with exactly one %u or %d and no other %:
 * fmt with n in its place. 0, EINVAL, ENAMETOOLONG. */
int ua_load_fmt(const char *fmt, unsigned n, char *out, size_t cap);
/* Percentiles of v[0..n) (sorted in place). */
void ua_load_pct(double *v, unsigned n, struct ua_load_pct *out);

#endif
