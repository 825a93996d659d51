/* net: attaching eBPF programs at tc ingress (the relay's and the STUN server's fast paths),
 * and what every program's owner reads back (its id, per-CPU counters). */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* libbpf's messages at debug level only, through our log: its print hook is
 * process-wide, so the relay's and TURN's fast paths share this one. */
static int bpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || log_get_level() < LOG_DEBUG)
		return 0;
	char line[512];
	vsnprintf(line, sizeof line, fmt, ap);
	size_t n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[n - 1] = '\0';
	LOG_D("bpf", "libbpf: %s", line);
	return 0;
}

void net_bpf_log_init(void)
{
	libbpf_set_print(bpf_log);
}

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

uint32_t net_bpf_prog_id(int prog_fd)
{
	struct bpf_prog_info info = {0};
	uint32_t il = sizeof info;
	if (bpf_obj_get_info_by_fd(prog_fd, &info, &il))
		return 0;
	return info.id;
}

int net_bpf_percpu_sum(int map_fd, uint32_t key, uint64_t *sum)
{
	*sum = 0;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return -ncpu;
	uint64_t *v = calloc((size_t)ncpu, sizeof *v);
	if (!v)
		return ENOMEM;
	int err = bpf_map_lookup_elem(map_fd, &key, v) ? errno : 0;
	for (int c = 0; !err && c < ncpu; c++)
		*sum += v[c];
	free(v);
	return err;
}

#else

void net_bpf_log_init(void)
{
}

int net_tc_attach(struct net_tc *t, int prog_fd, int ifindex)
{
	(void)t, (void)prog_fd, (void)ifindex;
	return ENOTSUP;
}

void net_tc_detach(struct net_tc *t)
{
	t->n = 0;
}

uint32_t net_bpf_prog_id(int prog_fd)
{
	(void)prog_fd;
	return 0;
}

int net_bpf_percpu_sum(int map_fd, uint32_t key, uint64_t *sum)
{
	(void)map_fd, (void)key;
	*sum = 0;
	return ENOTSUP;
}

#endif
