/* This host's own addresses, kept current from netlink events (RTM_NEWADDR / RTM_DELADDR). */
#include <errno.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"

/* Compact (a thread keeps a copy of the whole set): an IPv4 address
 * uses the first 4 bytes. */
struct hostaddr {
	sa_family_t family;
	unsigned char ip[16];
	unsigned char mask[16]; /* all ones, or the prefix on a loopback interface */
};

/* The set as one block, copied whole: by the refresh into the master, and
 * by a reader's thread into its own cache when the generation moved. */
struct hostaddr_set {
	size_t n;
	struct hostaddr e[NET_HOSTADDRS_MAX];
};

struct net_hostaddrs {
	uint64_t id;	   /* unique per object: a thread's cache names whose copy it holds */
	int nl_fd;	   /* netlink socket, -1 without one */
	struct loop *loop; /* watching nl_fd, or NULL */
	pthread_mutex_t lock;
	struct hostaddr_set set; /* guarded by lock */
	_Atomic uint64_t gen;	 /* bumped after each change of set */
	_Atomic uint64_t refreshes;
};

static _Atomic uint64_t next_id = 1;

/* Per thread: a copy of one object's set, so that the packet path reads
 * it without a lock; refreshed when the object's generation moves (rare). */
static _Thread_local struct {
	uint64_t id, gen;
	struct hostaddr_set set;
} cache;

static void mask_of(unsigned bytes, unsigned plen, unsigned char *m)
{
	for (unsigned i = 0; i < bytes; i++) {
		unsigned bits = plen > 8 * i ? plen - 8 * i : 0;
		m[i] = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
	}
}

/* The prefix length of a netmask; the full length when there is none (an
 * unknown mask must never widen the set). */
static unsigned plen_of(const struct sockaddr *nm, int family)
{
	if (!nm || nm->sa_family != family)
		return family == AF_INET6 ? 128 : 32;
	const unsigned char *b =
	    nm->sa_family == AF_INET6
		? ((const struct sockaddr_in6 *)nm)->sin6_addr.s6_addr
		: (const unsigned char *)&((const struct sockaddr_in *)nm)->sin_addr;
	unsigned bytes = nm->sa_family == AF_INET6 ? 16 : 4, n = 0;
	for (unsigned i = 0; i < bytes; i++)
		n += (unsigned)__builtin_popcount(b[i]);
	return n;
}

static const unsigned char *ip_bytes(const struct net_addr *a, unsigned *bytes)
{
	if (a->u.sa.sa_family == AF_INET) {
		*bytes = 4;
		return (const unsigned char *)&a->u.in.sin_addr;
	}
	*bytes = 16;
	return a->u.in6.sin6_addr.s6_addr;
}

static bool masked_eq(const struct hostaddr *h, const struct net_addr *a)
{
	if (h->family != a->u.sa.sa_family)
		return false;
	unsigned bytes;
	const unsigned char *y = ip_bytes(a, &bytes);
	for (unsigned i = 0; i < bytes; i++)
		if ((h->ip[i] ^ y[i]) & h->mask[i])
			return false;
	return true;
}

/* Reads the kernel's view (getifaddrs asks over netlink too). An address on
 * a loopback interface stands for its whole prefix: the kernel answers for
 * all of 127.0.0.0/8 although lo holds 127.0.0.1 (so 127.0.0.2 is us);
 * elsewhere only the address itself is ours, not its subnet. */
static int snapshot(struct hostaddr_set *s)
{
	struct ifaddrs *ifs;
	if (getifaddrs(&ifs))
		return errno;
	s->n = 0;
	for (struct ifaddrs *i = ifs; i && s->n < NET_HOSTADDRS_MAX; i = i->ifa_next) {
		if (!i->ifa_addr ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		struct hostaddr *h = &s->e[s->n++];
		struct net_addr a;
		memset(&a, 0, sizeof a);
		int fam = i->ifa_addr->sa_family;
		memcpy(&a.u.sa, i->ifa_addr,
		       fam == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
		unsigned bytes;
		const unsigned char *ip = ip_bytes(&a, &bytes);
		memset(h, 0, sizeof *h);
		h->family = (sa_family_t)fam;
		memcpy(h->ip, ip, bytes);
		bool lo = (i->ifa_flags & IFF_LOOPBACK) != 0;
		mask_of(bytes, lo ? plen_of(i->ifa_netmask, fam) : 8 * bytes, h->mask);
	}
	freeifaddrs(ifs);
	return 0;
}

static void refresh(struct net_hostaddrs *h)
{
	struct hostaddr_set s;
	if (snapshot(&s))
		return; /* keep the last good view */
	pthread_mutex_lock(&h->lock);
	h->set = s;
	atomic_fetch_add(&h->gen, 1);
	pthread_mutex_unlock(&h->lock);
	atomic_fetch_add(&h->refreshes, 1);
}

/* Netlink says that an address came or went: read the whole view again
 * rather than apply the message, so that a lost event (ENOBUFS: the socket
 * overflowed) costs nothing but this. Address changes are rare. */
static void nl_readable(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct net_hostaddrs *h = arg;
	bool changed = false;
	char buf[8192] __attribute__((aligned(4)));
	for (;;) {
		ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (k < 0) {
			if (errno == ENOBUFS)
				changed = true;
			else if (errno != EINTR)
				break;
			continue;
		}
		if (k == 0)
			break;
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)k);
		     nh = NLMSG_NEXT(nh, k))
			if (nh->nlmsg_type == RTM_NEWADDR || nh->nlmsg_type == RTM_DELADDR)
				changed = true;
	}
	if (changed)
		refresh(h);
}

int net_hostaddrs_alloc(struct net_hostaddrs **hp)
{
	struct net_hostaddrs *h = calloc(1, sizeof *h);
	if (!h)
		return ENOMEM;
	h->id = atomic_fetch_add(&next_id, 1);
	pthread_mutex_init(&h->lock, NULL);
	/* subscribe before the first snapshot: a change between the two is
	 * then seen again, never missed */
	h->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (h->nl_fd >= 0) {
		struct sockaddr_nl sa = {.nl_family = AF_NETLINK,
					 .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
		if (bind(h->nl_fd, (struct sockaddr *)&sa, sizeof sa)) {
			close(h->nl_fd);
			h->nl_fd = -1;
		}
	}
	int err = snapshot(&h->set);
	if (err) {
		net_hostaddrs_free(h);
		return err;
	}
	*hp = h;
	return 0;
}

int net_hostaddrs_watch(struct net_hostaddrs *h, struct loop *l)
{
	if (h->nl_fd < 0)
		return ENOTSUP;
	int err = loop_fd_add(l, h->nl_fd, EPOLLIN, nl_readable, h);
	if (!err)
		h->loop = l;
	return err;
}

void net_hostaddrs_free(struct net_hostaddrs *h)
{
	if (!h)
		return;
	if (h->nl_fd >= 0) {
		if (h->loop)
			loop_fd_del(h->loop, h->nl_fd);
		close(h->nl_fd);
	}
	pthread_mutex_destroy(&h->lock);
	free(h);
}

bool net_hostaddrs_has(struct net_hostaddrs *h, const struct net_addr *a)
{
	uint64_t gen = atomic_load_explicit(&h->gen, memory_order_acquire);
	if (cache.id != h->id || cache.gen != gen) {
		pthread_mutex_lock(&h->lock);
		cache.set = h->set;
		cache.gen = atomic_load(&h->gen);
		cache.id = h->id;
		pthread_mutex_unlock(&h->lock);
	}
	for (size_t i = 0; i < cache.set.n; i++)
		if (masked_eq(&cache.set.e[i], a))
			return true;
	return false;
}

uint64_t net_hostaddrs_refreshes(struct net_hostaddrs *h)
{
	return atomic_load(&h->refreshes);
}

uint64_t net_hostaddrs_gen(struct net_hostaddrs *h)
{
	return atomic_load_explicit(&h->gen, memory_order_acquire);
}
