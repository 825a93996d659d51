/* net: attaching eBPF programs at tc ingress (the relay's and the STUN server's fast paths). */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "net/net.h"

int net_ip4_ifs_read(struct net_ip4_ifs *out)
{
	struct ifaddrs *ifa0;
	out->n = 0;
	if (getifaddrs(&ifa0))
		return errno;
	for (struct ifaddrs *ifa = ifa0; ifa && out->n < NET_IP4_IFS_MAX; ifa = ifa->ifa_next) {
		if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET)
			continue;
		out->e[out->n].addr = ((struct sockaddr_in *)ifa->ifa_addr)->sin_addr.s_addr;
		out->e[out->n].ifindex = (int)if_nametoindex(ifa->ifa_name);
		out->n++;
	}
	freeifaddrs(ifa0);
	return 0;
}

int net_ip4_ifs_find(const struct net_ip4_ifs *ifs, uint32_t a)
{
	if ((ntohl(a) >> 24) == 127)
		return (int)if_nametoindex("lo");
	for (size_t i = 0; i < ifs->n; i++)
		if (ifs->e[i].addr == a)
			return ifs->e[i].ifindex;
	return 0;
}

int net_tc_attach_ip4(struct net_tc *t, int prog_fd, uint32_t a)
{
	struct net_ip4_ifs ifs;
	int err = net_ip4_ifs_read(&ifs);
	if (err)
		return err;
	if (a)
		return net_tc_attach(t, prog_fd, net_ip4_ifs_find(&ifs, a));
	for (size_t i = 0; i < ifs.n && !err; i++) /* the wildcard: every interface */
		err = net_tc_attach(t, prog_fd, ifs.e[i].ifindex);
	return err;
}

bool net_tc_has(const struct net_tc *t, int ifindex)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->dev[i].ifindex == ifindex)
			return true;
	return false;
}

#ifdef PINHOLE_HAVE_BPF

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* enum bpf_attach_type of Linux 6.6 (tcx), newer than Debian 12's headers */
#define TCX_INGRESS 46

int net_tc_attach(struct net_tc *t, int prog_fd, int ifindex)
{
	if (ifindex <= 0)
		return ENODEV;
	if (net_tc_has(t, ifindex))
		return 0;
	if (t->n == NET_TC_MAX_DEV)
		return ENOSPC;
	int link = bpf_link_create(prog_fd, ifindex, (enum bpf_attach_type)TCX_INGRESS, NULL);
	t->dev[t->n].ifindex = ifindex;
	t->dev[t->n].link_fd = link;
	if (link < 0) {
		/* before Linux 6.6: a clsact qdisc (kept: others may use it) and a filter */
		struct bpf_tc_hook hook = {
		    .sz = sizeof hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS};
		int err = bpf_tc_hook_create(&hook);
		if (err && err != -EEXIST)
			return -err;
		struct bpf_tc_opts o = {.sz = sizeof o, .prog_fd = prog_fd};
		if ((err = bpf_tc_attach(&hook, &o)))
			return -err;
		t->dev[t->n].handle = o.handle;
		t->dev[t->n].priority = o.priority;
	}
	t->n++;
	return 0;
}

void net_tc_detach(struct net_tc *t)
{
	for (unsigned i = 0; i < t->n; i++) {
		if (t->dev[i].link_fd >= 0) {
			close(t->dev[i].link_fd);
			continue;
		}
		struct bpf_tc_hook hook = {
		    .sz = sizeof hook, .ifindex = t->dev[i].ifindex, .attach_point = BPF_TC_INGRESS};
		struct bpf_tc_opts o = {
		    .sz = sizeof o, .handle = t->dev[i].handle, .priority = t->dev[i].priority};
		bpf_tc_detach(&hook, &o);
	}
	t->n = 0;
}

#else

int net_tc_attach(struct net_tc *t, int prog_fd, int ifindex)
{
	(void)t, (void)prog_fd, (void)ifindex;
	return ENOTSUP;
}

void net_tc_detach(struct net_tc *t)
{
	t->n = 0;
}

#endif
