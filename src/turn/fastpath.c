/* TURN: the in-kernel fast path for ChannelData (bpf/turn_fast.bpf.c); user space decides which
 * channels the kernel relays and stays the fallback for everything else.
 *
 * A channel goes to the kernel when all of these hold, and leaves it as soon
 * as one does not (checked on every ChannelBind, CreatePermission and sweep):
 * the channel and its peer's permission are live; the allocation is over UDP
 * from an IPv4 client to a listener bound to a specific IPv4 address; the
 * peer is IPv4 and passes the peer filter by itself (not only as another
 * allocation's relayed address: that exception is asked per packet in user
 * space); both destinations are reached out of an interface the program is
 * attached to, or are on this host with the sender on this host too (then
 * the packet is delivered up the stack, as the relay's fast path does).
 *
 * Bandwidth ([turn] bandwidth) is enforced in the kernel for what the kernel
 * carries: each allocation's entry holds a token bucket of the same rate. The
 * user-space bucket of the allocation keeps counting what user space carries
 * (Send/Data indications, padded ChannelData), so an allocation that uses
 * both paths at once can reach the limit on each. A user's budget ([turn]
 * bandwidth_per_user) is one bucket for both: it lives in the kernel's
 * per-user array (turn_user, mapped here), from which user space takes too.
 *
 * Each entry also carries its next hop, from the routing table (next_hop), so
 * that the program's redirect does not look the route up for every packet; it
 * is asked again every HOP_REFRESH_S seconds.
 *
 * Every channel has its two hash entries (turn_chan, turn_peer). A channel
 * in its home slot of turn_chan_slot counts there; its counts are added to
 * the allocation's on every pull and, when it leaves the slot, exactly its
 * last ones (the slot's owner generation moves in the same atomic step that
 * reads them; turn_fast.h). The first
 * channel of an allocation also has its way to the client in the relayed
 * port's entry of turn_port (an array this file maps and writes in place,
 * under the entry's sequence lock), with the allocation's counters: its
 * peer's datagrams then cost the program one cache line instead of a hash
 * bucket, an element and a counters slot. The entry is cleared before the
 * channel's hash entries go and before the port's socket is closed, so that a
 * port's next owner never finds the last one's client there.
 */
#include <errno.h>
#include <string.h>

#include "turn_int.h"

struct metric turn_m_fast_to_peer = {.name = "turn_fast_relayed_packets_total",
				     .help = "packets relayed by the in-kernel fast path",
				     .labels = "direction=\"to_peer\""};
struct metric turn_m_fast_to_client = {.name = "turn_fast_relayed_packets_total",
				       .help = "packets relayed by the in-kernel fast path",
				       .labels = "direction=\"to_client\""};
struct metric turn_m_fast_full = {.name = "turn_fast_full_total",
				  .help = "times a channel stayed in user space because the fast "
					  "path's maps were full (tried again each second)"};

#ifdef PINHOLE_HAVE_BPF

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "turn/bpf/turn_fast.h"
#include "turn_fast.skel.h"

struct turn_fast_state {
	struct turn_fast *skel;
	int chan_fd, peer_fd;
	struct net_tc tc;
	struct net_ip4_ifs ifs; /* at start: which destinations are local, and where */
	/* turn_port, mapped: one entry per relayed port (port - port_lo) */
	struct turn_fast_port *ports;
	size_t nports, map_len;
	struct turn_fast_chan_slot *slots; /* turn_chan_slot, mapped */
	uint32_t chan_bits;		   /* 1 << chan_bits slots */
	struct turn_fast_user *users;	   /* turn_user, mapped: [nusers] */
	size_t nusers, users_len;
	uint32_t *ufree; /* the free entries of users, a stack of nufree (under mu) */
	size_t nufree;
	uint64_t seed;			   /* turn_fast_chan_home's */
	/* The lock: the role may call in from more than one thread; writers of
	 * turn_port's entries and the rtnetlink socket take it. */
	pthread_mutex_t mu;
	int nl_fd; /* rtnetlink, for next hops (-1: none; the kernel then looks up per packet) */
	uint32_t nl_seq;
};

static void fast_free(struct turn_fast_state *f)
{
	if (!f)
		return;
	net_tc_detach(&f->tc);
	if (f->ports)
		munmap(f->ports, f->map_len);
	if (f->slots)
		munmap(f->slots, sizeof *f->slots << f->chan_bits);
	if (f->users)
		munmap(f->users, f->users_len);
	free(f->ufree);
	turn_fast__destroy(f->skel);
	if (f->nl_fd >= 0)
		close(f->nl_fd);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* a's entry in turn_port, NULL when its relayed port has none */
static struct turn_fast_port *port_of(const struct turn *t, const struct turn_alloc *a)
{
	uint32_t i = (uint32_t)ntohs(a->relay[0].addr.u.in.sin_port) - t->cf.port_lo;
	return i < t->fast->nports ? &t->fast->ports[i] : NULL;
}

static bool specific_ip4(const struct net_addr *a)
{
	return net_addr_family(a) == AF_INET && !net_addr_is_any(a);
}

/* [turn] bandwidth's full bucket, bytes (a second's worth; the program's
 * bucket holds 32 bits) */
static uint32_t bw_full(const struct turn *t)
{
	return t->cf.bandwidth < UINT32_MAX ? (uint32_t)t->cf.bandwidth : UINT32_MAX;
}

static int fast_open(struct turn *t, struct turn_fast_state **out)
{
	struct turn_fast_state *f = calloc(1, sizeof *f);
	if (!f)
		return ENOMEM;
	pthread_mutex_init(&f->mu, NULL);
	f->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	struct timeval tv = {0, 200000}; /* the kernel answers at once; never hang the role */
	if (f->nl_fd >= 0)
		setsockopt(f->nl_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	net_bpf_log_init();
	int err = 0;
	f->nports = (size_t)t->cf.port_hi - t->cf.port_lo + 1;
	/* twice as many channel slots as relayed ports (one channel each, the
	 * media case, fills half): no larger than that, so that the slots in use
	 * sit in few pages (each page another TLB entry; a miss costs most in a VM) */
	for (f->chan_bits = 10; f->chan_bits < TURN_FAST_CHAN_BITS &&
				(1u << f->chan_bits) < 2 * f->nports;
	     f->chan_bits++)
		;
	/* one entry per user with an allocation: at most max_allocations */
	f->nusers = t->cf.max_allocs < 65536 ? t->cf.max_allocs : 65536;
	f->ufree = calloc(f->nusers, sizeof *f->ufree);
	if (!f->ufree) {
		err = ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < f->nusers; i++)
		f->ufree[f->nufree++] = (uint32_t)(f->nusers - 1 - i);
	f->skel = turn_fast__open();
	if (!f->skel || bpf_map__set_max_entries(f->skel->maps.turn_port, (uint32_t)f->nports) ||
	    bpf_map__set_max_entries(f->skel->maps.turn_chan_slot, 1u << f->chan_bits) ||
	    bpf_map__set_max_entries(f->skel->maps.turn_user, (uint32_t)f->nusers) ||
	    turn_fast__load(f->skel)) {
		err = errno ? errno : EINVAL;
		goto fail;
	}
	f->chan_fd = bpf_map__fd(f->skel->maps.turn_chan);
	f->peer_fd = bpf_map__fd(f->skel->maps.turn_peer);
	long page = sysconf(_SC_PAGESIZE);
	f->map_len = (f->nports * sizeof *f->ports + (size_t)page - 1) & ~((size_t)page - 1);
	void *m = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		       bpf_map__fd(f->skel->maps.turn_port), 0);
	if (m == MAP_FAILED) {
		err = errno;
		goto fail;
	}
	f->ports = m;
	m = mmap(NULL, sizeof *f->slots << f->chan_bits, PROT_READ | PROT_WRITE, MAP_SHARED,
		 bpf_map__fd(f->skel->maps.turn_chan_slot), 0);
	if (m == MAP_FAILED) {
		err = errno;
		goto fail;
	}
	f->slots = m;
	f->users_len = (f->nusers * sizeof *f->users + (size_t)page - 1) & ~((size_t)page - 1);
	m = mmap(NULL, f->users_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		 bpf_map__fd(f->skel->maps.turn_user), 0);
	if (m == MAP_FAILED) {
		err = errno;
		goto fail;
	}
	f->users = m;
	/* a seed of its own: clients cannot choose numbers that share slots */
	f->seed = (uint64_t)rand_u32() << 32 | rand_u32();
	struct turn_fast_conf c = {.relay_lo = t->cf.port_lo,
				   .relay_hi = t->cf.port_hi,
				   .chan_bits = f->chan_bits,
				   .seed = f->seed,
				   .bw_full = bw_full(t),
				   .bw_piece = bw_full(t) / 64,
				   /* bytes per tick, x 2^16: rate x 2^(16 + TICK_SHIFT) / 10^9 */
				   .bw_tick_q16 = (uint64_t)(((unsigned __int128)t->cf.bandwidth
							       << (16 + TURN_FAST_TICK_SHIFT)) /
							      1000000000u)};
	if (specific_ip4(&t->cf.relay_ip[0]))
		c.relay_addr = t->cf.relay_ip[0].u.in.sin_addr.s_addr;
#if defined(__x86_64__) || defined(__i386__)
	c.port_first = 1; /* the program's sequence lock relies on loads in order (TSO) */
#endif
	for (unsigned i = 0; i < t->nudp && c.nlisten < TURN_FAST_LISTEN; i++)
		if (specific_ip4(&t->udp_addr[i]))
			c.listen_port[c.nlisten++] = t->udp_addr[i].u.in.sin_port;
	uint32_t zero = 0;
	if (bpf_map_update_elem(bpf_map__fd(f->skel->maps.turn_conf), &zero, &c, BPF_ANY)) {
		err = errno;
		goto fail;
	}
	if ((err = net_ip4_ifs_read(&f->ifs)))
		goto fail;
	/* where clients' and peers' packets come in: the interfaces of the
	 * listeners and of the relay address, and loopback for this host */
	int prog = bpf_program__fd(f->skel->progs.turn_fast);
	err = net_tc_attach_ip4(&f->tc, prog, htonl(INADDR_LOOPBACK));
	for (unsigned i = 0; !err && i < t->nudp; i++)
		if (specific_ip4(&t->udp_addr[i]))
			err = net_tc_attach_ip4(&f->tc, prog, t->udp_addr[i].u.in.sin_addr.s_addr);
	if (!err && specific_ip4(&t->cf.relay_ip[0]))
		err = net_tc_attach_ip4(&f->tc, prog, t->cf.relay_ip[0].u.in.sin_addr.s_addr);
	if (err)
		goto fail;
	*out = f;
	return 0;
fail:
	fast_free(f);
	return err;
}

int turn_fast_start(struct turn *t, const char *mode)
{
	if (strcmp(mode, "off") == 0)
		return 0;
	int err = fast_open(t, &t->fast);
	if (!err) {
		LOG_I(
		    "turn",
		    "fast path: ChannelData of bound channels relayed in the kernel (tc ingress on "
		    "%u interface%s, bpf prog id %u)",
		    t->fast->tc.n, t->fast->tc.n == 1 ? "" : "s",
		    net_bpf_prog_id(bpf_program__fd(t->fast->skel->progs.turn_fast)));
		return 0;
	}
	if (strcmp(mode, "on") == 0) {
		LOG_E("turn", "fast path: cannot load or attach the tc program: %s", strerror(err));
		return err;
	}
	LOG_W("turn",
	      "fast path unavailable (%s; needs CAP_BPF and CAP_NET_ADMIN): all relaying in "
	      "user space",
	      strerror(err));
	return 0;
}

void turn_fast_stop(struct turn *t)
{
	fast_free(t->fast);
	t->fast = NULL;
}

bool turn_fast_on(const struct turn *t)
{
	return t->fast != NULL;
}

static void keys(const struct turn *t, const struct turn_alloc *a, const struct turn_chan *ch,
		 struct turn_fast_chan_key *ck, struct turn_fast_peer_key *pk)
{
	const struct net_addr *l = &t->udp_addr[a->li];
	*ck = (struct turn_fast_chan_key){.srv_addr = l->u.in.sin_addr.s_addr,
					  .client_addr = a->client.u.in.sin_addr.s_addr,
					  .srv_port = l->u.in.sin_port,
					  .client_port = a->client.u.in.sin_port,
					  .num = ch->num};
	*pk = (struct turn_fast_peer_key){.relay_addr = a->relay[0].addr.u.in.sin_addr.s_addr,
					  .peer_addr = ch->peer.u.in.sin_addr.s_addr,
					  .relay_port = a->relay[0].addr.u.in.sin_port,
					  .peer_port = ch->peer.u.in.sin_port};
}

/* How a packet from sender reaches dst out of the interface of src: false
 * when the kernel cannot take it there (user space then). */
static bool route(const struct turn_fast_state *f, uint32_t src, uint32_t sender, uint32_t dst,
		  struct turn_fast_out *o)
{
	if (net_ip4_ifs_find(&f->ifs, dst)) {
		/* on this host: up the stack, but only for a sender on this host
		 * too (arriving elsewhere, a 127/8 destination is a martian) */
		if (!net_ip4_ifs_find(&f->ifs, sender))
			return false;
		o->flags |= TURN_FAST_LOCAL;
		return true;
	}
	int ifindex = net_ip4_ifs_find(&f->ifs, src);
	if (ifindex <= 0 || !net_tc_has(&f->tc, ifindex) || (ntohl(src) >> 24) == 127)
		return false;
	o->ifindex = (uint32_t)ifindex;
	return true;
}

#define HOP_REFRESH_S 10

static void nl_attr(struct nlmsghdr *h, uint16_t type, const void *v, uint16_t len)
{
	struct rtattr *ra = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
	ra->rta_type = type;
	ra->rta_len = (uint16_t)RTA_LENGTH(len);
	memcpy(RTA_DATA(ra), v, len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(ra->rta_len);
}

/* Sends rq on the rtnetlink socket and returns its answer (in rx), or NULL on
 * none within the socket's timeout. Under f->mu. */
static const struct nlmsghdr *nl_ask(struct turn_fast_state *f, struct nlmsghdr *rq, void *rx,
				     size_t cap)
{
	rq->nlmsg_seq = ++f->nl_seq;
	if (f->nl_fd < 0 || send(f->nl_fd, rq, rq->nlmsg_len, 0) < 0)
		return NULL;
	for (;;) {
		ssize_t n = recv(f->nl_fd, rx, cap, 0);
		if (n <= 0)
			return NULL;
		for (struct nlmsghdr *h = rx; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n))
			if (h->nlmsg_seq == rq->nlmsg_seq)
				return h; /* else an answer to an earlier question that timed out */
	}
}

/* The next hop the routing table gives from src to dst out of ifindex (as
 * `ip route get DST from SRC oif IF`): its gateway, or dst on a link. 0 when
 * it cannot tell, or the route leaves by another interface: the program then
 * has the kernel look the route up for each packet, as before. The hop is
 * asked for when a channel goes to the kernel and again every HOP_REFRESH_S
 * seconds (turn_fast_sync): a route change reaches the kernel's relaying
 * within that. */
static uint32_t next_hop(struct turn_fast_state *f, uint32_t src, uint32_t dst, uint32_t ifindex)
{
	struct {
		struct nlmsghdr h;
		struct rtmsg rt;
		char attrs[64];
	} rq;
	memset(&rq, 0, sizeof rq);
	rq.h.nlmsg_len = NLMSG_LENGTH(sizeof rq.rt);
	rq.h.nlmsg_type = RTM_GETROUTE;
	rq.h.nlmsg_flags = NLM_F_REQUEST;
	rq.rt.rtm_family = AF_INET;
	rq.rt.rtm_dst_len = 32;
	rq.rt.rtm_src_len = 32;
	nl_attr(&rq.h, RTA_DST, &dst, 4);
	nl_attr(&rq.h, RTA_SRC, &src, 4);
	nl_attr(&rq.h, RTA_OIF, &ifindex, 4);
	uint32_t hop = 0;
	uint32_t rx[2048];
	pthread_mutex_lock(&f->mu);
	const struct nlmsghdr *h = nl_ask(f, &rq.h, rx, sizeof rx);
	if (!h || h->nlmsg_type != RTM_NEWROUTE) /* NLMSG_ERROR: no route */
		goto out;
	const struct rtmsg *rt = NLMSG_DATA(h);
	if (rt->rtm_type != RTN_UNICAST)
		goto out;
	uint32_t gw = 0, oif = 0;
	int len = (int)RTM_PAYLOAD(h);
	for (const struct rtattr *ra = RTM_RTA(rt); RTA_OK(ra, len); ra = RTA_NEXT(ra, len)) {
		if (ra->rta_type == RTA_GATEWAY && RTA_PAYLOAD(ra) == 4)
			memcpy(&gw, RTA_DATA(ra), 4);
		else if (ra->rta_type == RTA_OIF && RTA_PAYLOAD(ra) == 4)
			memcpy(&oif, RTA_DATA(ra), 4);
	}
	if (oif == ifindex)
		hop = gw ? gw : dst;
out:
	pthread_mutex_unlock(&f->mu);
	return hop;
}

/* The MAC of ifindex (an Ethernet interface), false if it has none. */
static bool if_mac(uint32_t ifindex, uint8_t mac[6])
{
	struct ifreq ifr = {0};
	if (!if_indextoname(ifindex, ifr.ifr_name))
		return false;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool ok = ioctl(fd, SIOCGIFHWADDR, &ifr) == 0 && ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER;
	close(fd);
	if (ok)
		memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return ok;
}

/* Whether this thread may change the neighbour table (CAP_NET_ADMIN): not
 * once [process] user has taken root away. */
static bool may_admin_net(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d))
		return false;
	return d[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32));
}

/* The neighbour table's MAC for hop on ifindex (as `ip neigh get HOP dev IF`),
 * false when it has none that was resolved. A stale entry's MAC is taken, and
 * the kernel is asked to check it again (NTF_USE, as if a packet had used it:
 * the fast path's packets do not), so that a hop that moved or went is seen
 * by the next refresh; until then packets go to the MAC the hop had. Without
 * the right to ask (after [process] user), a stale entry counts as not
 * resolved: packets take the kernel's neighbour output, which checks it. */
static bool neigh_mac(struct turn_fast_state *f, uint32_t hop, uint32_t ifindex, uint8_t mac[6])
{
	struct {
		struct nlmsghdr h;
		struct ndmsg nd;
		char attrs[32];
	} rq;
	memset(&rq, 0, sizeof rq);
	rq.h.nlmsg_len = NLMSG_LENGTH(sizeof rq.nd);
	rq.h.nlmsg_type = RTM_GETNEIGH;
	rq.h.nlmsg_flags = NLM_F_REQUEST;
	rq.nd.ndm_family = AF_INET;
	rq.nd.ndm_ifindex = (int)ifindex;
	nl_attr(&rq.h, NDA_DST, &hop, 4);
	bool ok = false;
	uint32_t rx[2048];
	pthread_mutex_lock(&f->mu);
	const struct nlmsghdr *h = nl_ask(f, &rq.h, rx, sizeof rx);
	if (!h || h->nlmsg_type != RTM_NEWNEIGH)
		goto out;
	const struct ndmsg *nd = NLMSG_DATA(h);
	if (!(nd->ndm_state & (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT)))
		goto out;
	int len = (int)RTM_PAYLOAD(h);
	for (const struct rtattr *ra = (const struct rtattr *)(nd + 1); RTA_OK(ra, len);
	     ra = RTA_NEXT(ra, len))
		if (ra->rta_type == NDA_LLADDR && RTA_PAYLOAD(ra) == 6) {
			memcpy(mac, RTA_DATA(ra), 6);
			ok = true;
		}
	if (ok && (nd->ndm_state & NUD_STALE) && !may_admin_net())
		ok = false;
	else if (ok && (nd->ndm_state & NUD_STALE)) {
		/* no answer awaited: an error's would carry a seq no one waits for */
		rq.h.nlmsg_type = RTM_NEWNEIGH;
		rq.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_REPLACE;
		rq.h.nlmsg_seq = ++f->nl_seq;
		rq.nd.ndm_flags = NTF_USE;
		rq.nd.ndm_state = NUD_STALE;
		(void)send(f->nl_fd, &rq, rq.h.nlmsg_len, 0);
	}
out:
	pthread_mutex_unlock(&f->mu);
	return ok;
}

/* The entry's next hop and, where the neighbour table has it, the hop's MAC
 * and the interface's: the program then writes the Ethernet header itself and
 * hands the packet to the interface (bpf_redirect), no neighbour lookup. */
static void hops(struct turn_fast_state *f, struct turn_fast_out *o)
{
	o->flags &= (uint16_t)~TURN_FAST_L2;
	if (o->flags & TURN_FAST_LOCAL)
		return;
	o->hop = next_hop(f, o->src_addr, o->dst_addr, o->ifindex);
	if (o->hop && neigh_mac(f, o->hop, o->ifindex, o->l2) && if_mac(o->ifindex, o->l2 + 6))
		o->flags |= TURN_FAST_L2;
}

/* The entries ch should have now, if any. */
static bool wanted(struct turn *t, struct turn_alloc *a, struct turn_chan *ch, uint64_t now,
		   struct turn_fast_out *to_peer, struct turn_fast_out *to_client)
{
	const struct net_addr *l = &t->udp_addr[a->li];
	/* a user budget: in the kernel only where the user's bucket is there too */
	if (t->cf.bandwidth_user && (!a->user_ent || a->user_ent->fast_user < 0))
		return false;
	if (a->tp != NET_UDP || !specific_ip4(l) || net_addr_family(&a->client) != AF_INET ||
	    a->relay[0].sk.fd < 0 || ch->expire_ms <= now ||
	    net_addr_family(&ch->peer) != AF_INET || !turn_perm_find(a, &ch->peer, now) ||
	    turn_peer_check(&t->filter, &ch->peer) != TURN_PEER_OK)
		return false;
	uint32_t relay = a->relay[0].addr.u.in.sin_addr.s_addr,
		 peer = ch->peer.u.in.sin_addr.s_addr;
	uint32_t srv = l->u.in.sin_addr.s_addr, client = a->client.u.in.sin_addr.s_addr;
	*to_peer = (struct turn_fast_out){.src_addr = relay,
					  .dst_addr = peer,
					  .src_port = a->relay[0].addr.u.in.sin_port,
					  .dst_port = ch->peer.u.in.sin_port,
					  .num = ch->num,
					  .flags = a->dont_fragment ? TURN_FAST_DF : 0,
					  .peer_port = ch->peer.u.in.sin_port};
	*to_client = (struct turn_fast_out){.src_addr = srv,
					    .dst_addr = client,
					    .src_port = l->u.in.sin_port,
					    .dst_port = a->client.u.in.sin_port,
					    .num = ch->num,
					    .flags = TURN_FAST_DF,
					    .peer_port = ch->peer.u.in.sin_port};
	if (t->cf.bandwidth) {
		to_peer->flags |= TURN_FAST_BW;
		to_client->flags |= TURN_FAST_BW;
	}
	if (t->cf.bandwidth_user) {
		to_peer->flags |= TURN_FAST_UBW;
		to_client->flags |= TURN_FAST_UBW;
	}
	return port_of(t, a) && route(t->fast, relay, client, peer, to_peer) &&
	       route(t->fast, srv, peer, client, to_client);
}

/* k's home slot when it holds k. Under f->mu. */
static struct turn_fast_chan_slot *home_of(struct turn_fast_state *f,
					   const struct turn_fast_chan_key *k)
{
	struct turn_fast_chan_slot *e = &f->slots[turn_fast_chan_home(k, f->seed, f->chan_bits)];
	return (e->flags & TURN_FAST_ON) && memcmp(&e->key, k, sizeof *k) == 0 ? e : NULL;
}

/* e holds ch's way to the client. Under f->mu. */
static bool is_first(const struct turn_fast_port *e, const struct turn_chan *ch)
{
	return (e->to_client.flags & TURN_FAST_ON) && e->to_client.num == ch->num &&
	       e->peer_addr == ch->peer.u.in.sin_addr.s_addr &&
	       e->to_client.peer_port == ch->peer.u.in.sin_port;
}

/* What a slot counted for a's channel between its count words was and now,
 * to a's totals and the metrics. */
static void add_to_peer(struct turn_alloc *a, uint64_t was, uint64_t now)
{
	__u64 p, b;
	turn_fast_count_diff(was, now, &p, &b);
	a->tx_pkts += (int64_t)p;
	a->tx_bytes += (int64_t)b;
	metric_add(&turn_m_to_peer_pkts, (int64_t)p);
	metric_add(&turn_m_to_peer_bytes, (int64_t)b);
	metric_add(&turn_m_fast_to_peer, (int64_t)p);
}

void turn_fast_chan_drop(struct turn *t, struct turn_alloc *a, struct turn_chan *ch)
{
	if (!t->fast || !ch->fast)
		return;
	struct turn_fast_chan_key ck;
	struct turn_fast_peer_key pk;
	keys(t, a, ch, &ck, &pk);
	struct turn_fast_port *e = port_of(t, a);
	pthread_mutex_lock(&t->fast->mu);
	if (e && is_first(e, ch))
		/* before the hash entries: never a way the hash lacks */
		turn_fast_port_set(e, 0, NULL);
	struct turn_fast_chan_slot *cs = ch->fast_home ? home_of(t->fast, &ck) : NULL;
	uint64_t last = cs ? turn_fast_chan_set(cs, NULL, NULL) : 0;
	pthread_mutex_unlock(&t->fast->mu);
	if (cs) /* its last counts in the slot, taken as it left */
		add_to_peer(a, ch->fast_count, last);
	bpf_map_delete_elem(t->fast->chan_fd, &ck);
	bpf_map_delete_elem(t->fast->peer_fd, &pk);
	ch->fast = ch->fast_home = false;
}

/* a's counters in its port's entry, set up on first use: the counts so far
 * (a former owner's) are where a's start, the bucket starts full, as user
 * space's. The entry's index, or -1 when a's port has none. */
static int64_t stats_ensure(struct turn *t, struct turn_alloc *a)
{
	struct turn_fast_port *e = port_of(t, a);
	if (!e)
		return -1;
	if (!a->fast_stats) {
		struct timespec ts; /* the program's clock: bpf_ktime_get_coarse_ns */
		clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
		uint64_t tick = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) >>
				TURN_FAST_TICK_SHIFT;
		pthread_mutex_lock(&t->fast->mu);
		/* full, as user space's */
		e->bw = (uint64_t)bw_full(t) << 32 | (uint32_t)tick;
		const struct turn_count *u = a->user_ent;
		e->user = u && u->fast_user >= 0 ? (uint32_t)u->fast_user : 0;
		pthread_mutex_unlock(&t->fast->mu);
		a->fast_seen.tx_pkts = __atomic_load_n(&e->to_peer_pkts, __ATOMIC_RELAXED);
		a->fast_seen.tx_bytes = __atomic_load_n(&e->to_peer_bytes, __ATOMIC_RELAXED);
		a->fast_seen.rx_count = __atomic_load_n(&e->to_client_count, __ATOMIC_RELAXED);
		a->fast_seen.drop_bw = __atomic_load_n(&e->drop_bw, __ATOMIC_RELAXED);
		a->fast_seen.drop_user_bw = __atomic_load_n(&e->drop_user_bw, __ATOMIC_RELAXED);
		a->fast_stats = true;
	}
	return e - t->fast->ports;
}

/* ch's ways into the arrays: to the client into its port's entry, if that
 * has none or ch's; to the peer into its home slot, if that is empty or ch's
 * (taken: ch counts there from the slot's counts as they are) */
static void arrays_set(struct turn_fast_state *f, struct turn_fast_port *e, struct turn_chan *ch,
		       const struct turn_fast_chan_key *ck, const struct turn_fast_out *tp,
		       const struct turn_fast_out *tc)
{
	pthread_mutex_lock(&f->mu);
	if (!(e->to_client.flags & TURN_FAST_ON) || is_first(e, ch))
		turn_fast_port_set(e, ch->peer.u.in.sin_addr.s_addr, tc);
	struct turn_fast_chan_slot *cs =
	    &f->slots[turn_fast_chan_home(ck, f->seed, f->chan_bits)];
	if (ch->fast_home || !(cs->flags & TURN_FAST_ON)) {
		if (!ch->fast_home) /* empty, so no packet counts there now */
			ch->fast_count = __atomic_load_n(&cs->count, __ATOMIC_SEQ_CST);
		turn_fast_chan_set(cs, ck, tp);
		ch->fast_home = true;
	}
	pthread_mutex_unlock(&f->mu);
}

void turn_fast_sync(struct turn *t, struct turn_alloc *a, uint64_t now)
{
	if (!t->fast)
		return;
	for (size_t i = 0; i < a->nchan; i++) {
		struct turn_chan *ch = &a->chans[i];
		struct turn_fast_out tp, tc;
		if (!wanted(t, a, ch, now, &tp, &tc)) {
			turn_fast_chan_drop(t, a, ch);
			continue;
		}
		int64_t slot;
		/* a channel in the kernel: its hops asked for again now and then
		 * (spread over the allocations) */
		bool refresh = ch->fast && (now / 1000 + a->id) % HOP_REFRESH_S == 0;
		if ((ch->fast && !refresh) || (slot = stats_ensure(t, a)) < 0)
			continue;
		tp.slot = tc.slot = (uint16_t)slot;
		hops(t->fast, &tp);
		hops(t->fast, &tc);
		struct turn_fast_chan_key ck;
		struct turn_fast_peer_key pk;
		keys(t, a, ch, &ck, &pk);
		struct turn_fast_port *e = &t->fast->ports[slot];
		if (refresh) { /* both entries are there: only their hops may change */
			bpf_map_update_elem(t->fast->peer_fd, &pk, &tc, BPF_EXIST);
			bpf_map_update_elem(t->fast->chan_fd, &ck, &tp, BPF_EXIST);
			arrays_set(t->fast, e, ch, &ck, &tp, &tc);
			continue;
		}
		/* the peer's way first: a client's first ChannelData through the
		 * kernel then finds the answer's way ready too */
		if (bpf_map_update_elem(t->fast->peer_fd, &pk, &tc, BPF_ANY)) {
			metric_inc(&turn_m_fast_full); /* this channel stays in user space */
			continue;
		}
		if (bpf_map_update_elem(t->fast->chan_fd, &ck, &tp, BPF_ANY)) {
			metric_inc(&turn_m_fast_full);
			bpf_map_delete_elem(t->fast->peer_fd, &pk);
			continue;
		}
		ch->fast = true;
		ch->fast_home = false;
		arrays_set(t->fast, e, ch, &ck, &tp, &tc);
	}
}

void turn_fast_pull(struct turn *t, struct turn_alloc *a)
{
	if (!t->fast || !a->fast_stats)
		return;
	const struct turn_fast_port *e = port_of(t, a);
	if (!e)
		return;
	for (size_t i = 0; i < a->nchan; i++) { /* the channels that count in their slots */
		struct turn_chan *ch = &a->chans[i];
		if (!ch->fast || !ch->fast_home)
			continue;
		struct turn_fast_chan_key ck;
		struct turn_fast_peer_key pk;
		keys(t, a, ch, &ck, &pk);
		const struct turn_fast_chan_slot *cs =
		    &t->fast->slots[turn_fast_chan_home(&ck, t->fast->seed, t->fast->chan_bits)];
		uint64_t w = __atomic_load_n(&cs->count, __ATOMIC_RELAXED);
		add_to_peer(a, ch->fast_count, w);
		ch->fast_count = w;
	}
	struct {
		uint64_t to_peer_pkts, to_peer_bytes, to_client, drop_bw, drop_user_bw;
	} st = {__atomic_load_n(&e->to_peer_pkts, __ATOMIC_RELAXED),
		__atomic_load_n(&e->to_peer_bytes, __ATOMIC_RELAXED),
		__atomic_load_n(&e->to_client_count, __ATOMIC_RELAXED),
		__atomic_load_n(&e->drop_bw, __ATOMIC_RELAXED),
		__atomic_load_n(&e->drop_user_bw, __ATOMIC_RELAXED)};
	__u64 rp, rb;
	turn_fast_count_diff(a->fast_seen.rx_count, st.to_client, &rp, &rb);
	int64_t tp = (int64_t)(st.to_peer_pkts - a->fast_seen.tx_pkts);
	int64_t tb = (int64_t)(st.to_peer_bytes - a->fast_seen.tx_bytes);
	int64_t cp = (int64_t)rp, cb = (int64_t)rb;
	int64_t bw = (int64_t)(st.drop_bw - a->fast_seen.drop_bw);
	int64_t ubw = (int64_t)(st.drop_user_bw - a->fast_seen.drop_user_bw);
	a->tx_pkts += tp;
	a->tx_bytes += tb;
	a->rx_pkts += cp;
	a->rx_bytes += cb;
	metric_add(&turn_m_to_peer_pkts, tp);
	metric_add(&turn_m_to_peer_bytes, tb);
	metric_add(&turn_m_from_peer_pkts, cp);
	metric_add(&turn_m_from_peer_bytes, cb);
	metric_add(&turn_m_fast_to_peer, tp);
	metric_add(&turn_m_fast_to_client, cp);
	metric_add(&turn_m_drop_bw, bw);
	metric_add(&turn_m_drop_user_bw, ubw);
	a->fast_seen.tx_pkts = st.to_peer_pkts;
	a->fast_seen.tx_bytes = st.to_peer_bytes;
	a->fast_seen.rx_count = st.to_client;
	a->fast_seen.drop_bw = st.drop_bw;
	a->fast_seen.drop_user_bw = st.drop_user_bw;
}

void turn_fast_forget(struct turn *t, struct turn_alloc *a)
{
	if (!t->fast)
		return;
	for (size_t i = 0; i < a->nchan; i++)
		turn_fast_chan_drop(t, a, &a->chans[i]);
	/* entries are gone: what the counters hold now is final */
	turn_fast_pull(t, a);
	a->fast_stats = false; /* the port's entry keeps its counts: its next owner starts there */
}

static uint64_t coarse_ms(void)
{
	struct timespec ts; /* the program's clock: bpf_ktime_get_coarse_ns */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t turn_fast_user_clock(const struct turn *t, uint64_t now)
{
	return t->fast ? coarse_ms() : now;
}

void turn_fast_user_open(struct turn *t, struct turn_count *u)
{
	struct turn_fast_state *f = t->fast;
	if (!f || !t->cf.bandwidth_user)
		return;
	pthread_mutex_lock(&f->mu);
	if (f->nufree) {
		uint32_t i = f->ufree[--f->nufree];
		struct turn_fast_user *e = &f->users[i];
		/* no allocation of any user draws on a free entry: no race */
		e->rate = t->cf.bandwidth_user;
		e->bw = u->own;
		u->fast_user = (int32_t)i;
		u->bw = &e->bw;
	}
	pthread_mutex_unlock(&f->mu);
}

void turn_fast_user_close(struct turn *t, struct turn_count *u)
{
	struct turn_fast_state *f = t->fast;
	if (!f || u->fast_user < 0)
		return;
	pthread_mutex_lock(&f->mu);
	f->ufree[f->nufree++] = (uint32_t)u->fast_user;
	pthread_mutex_unlock(&f->mu);
	u->fast_user = -1;
	u->bw = &u->own;
}

_Static_assert(sizeof(struct turn_fast_chan_slot) == 64, "a slot is one cache line");

#else /* !PINHOLE_HAVE_BPF: built without clang/bpftool/libbpf */

int turn_fast_start(struct turn *t, const char *mode)
{
	(void)t;
	if (strcmp(mode, "on") == 0) {
		LOG_E("turn", "fast path: this build has no eBPF support (PINHOLE_BPF=OFF)");
		return ENOTSUP;
	}
	return 0;
}

void turn_fast_stop(struct turn *t)
{
	(void)t;
}

bool turn_fast_on(const struct turn *t)
{
	(void)t;
	return false;
}

void turn_fast_sync(struct turn *t, struct turn_alloc *a, uint64_t now)
{
	(void)t;
	(void)a;
	(void)now;
}

void turn_fast_chan_drop(struct turn *t, struct turn_alloc *a, struct turn_chan *ch)
{
	(void)t;
	(void)a;
	(void)ch;
}

void turn_fast_pull(struct turn *t, struct turn_alloc *a)
{
	(void)t;
	(void)a;
}

void turn_fast_forget(struct turn *t, struct turn_alloc *a)
{
	(void)t;
	(void)a;
}

uint64_t turn_fast_user_clock(const struct turn *t, uint64_t now)
{
	(void)t;
	return now;
}

void turn_fast_user_open(struct turn *t, struct turn_count *u)
{
	(void)t;
	(void)u;
}

void turn_fast_user_close(struct turn *t, struct turn_count *u)
{
	(void)t;
	(void)u;
}

#endif
