/* The kernel's receive time per network namespace, for bench/turn/relay.sh (loaded by
 * chan_bench when BENCH_RXTIME_OBJ names this object, built by relay.sh).
 *
 * A server's CPU per relayed packet is more than its process's time: a packet's way in (from
 * the interface to the socket, or through a tc program that relays it out again, with its
 * redirect and the transmit onto the veth) runs in softirq, in whatever task was on the CPU.
 * Here the receive work is timed per packet and added to the packet's namespace: the
 * server's (where, for the fast path, the whole relay happens) or the generator's (delivery
 * to the clients and the peer). The part of each that ran while the server's own process
 * was current is kept apart: the tick-based CPU accounting of this kernel charged that part
 * to the process already.
 *
 * Packets from a device's backlog go up the stack one after another on a CPU: one packet's
 * work runs from its net:netif_receive_skb tracepoint (the start of __netif_receive_skb_core)
 * to the next packet's on that CPU or to the end of the poll (napi:napi_poll). (fentry on
 * __netif_receive_skb would time it exactly; this kernel refuses trampolines.)
 *
 * The probe's own work is not the server's: a packet's time starts when the probe that saw
 * it is done (a second clock read), so what the probe does in between (its lookups, the
 * namespace's number, the bookkeeping) is left out of every namespace's figure, and summed
 * apart (body) for what the figure was with it. What stays in is the tracepoint's call into
 * the probe and its first clock read, once per packet.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct conf {
	__u32 srv_netns, gen_netns; /* inode numbers of the namespaces */
	__u32 srv_tgid;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct conf);
} rx_conf SEC(".maps");

/* the packet being received on this CPU, if it is one of ours */
struct frame {
	__u64 start; /* when the probe that saw it was done */
	__u32 which; /* 0: none, 1: server ns, 2: generator ns */
	__u32 in_srv; /* the server's process was current */
};

/* [0] server ns, [1] generator ns, [2] server ns in the server's process, [3] generator ns
 * in the server's process; body: the probe's own time for those packets, not in ns */
struct acc {
	__u64 ns[4], pkts[4], body[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct frame);
} frames SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct acc);
} rx_acc SEC(".maps");

static __always_inline void close_frame(struct acc *a, struct frame *f, __u64 now)
{
	if (!f->which)
		return;
	__u32 i = (f->which - 1) & 1;
	__u64 dt = now - f->start;
	a->ns[i] += dt;
	a->pkts[i]++;
	if (f->in_srv) {
		a->ns[2 + i] += dt;
		a->pkts[2 + i]++;
	}
	f->which = 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(rx_in, struct sk_buff *skb)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct frame *f = bpf_map_lookup_elem(&frames, &zero);
	struct conf *c = bpf_map_lookup_elem(&rx_conf, &zero);
	struct acc *a = bpf_map_lookup_elem(&rx_acc, &zero);
	if (!f || !c || !a)
		return 0;
	close_frame(a, f, now);
	/* tp_btf arguments are the kernel's own pointers: read directly, not with
	 * bpf_probe_read_kernel (BPF_CORE_READ), which cost about as much as the
	 * rest of the probe and is in every server's figure */
	struct net_device *dev = skb->dev;
	if (!dev)
		return 0;
	__u32 ns = dev->nd_net.net->ns.inum;
	__u32 which = ns == c->srv_netns ? 1 : ns == c->gen_netns ? 2 : 0;
	if (!which)
		return 0;
	f->which = which;
	f->in_srv = (bpf_get_current_pid_tgid() >> 32) == c->srv_tgid;
	f->start = bpf_ktime_get_ns(); /* the probe's work up to here is its own */
	__u32 i = (which - 1) & 1;
	a->body[i] += f->start - now;
	if (f->in_srv)
		a->body[2 + i] += f->start - now;
	return 0;
}

SEC("tp_btf/napi_poll")
int BPF_PROG(rx_poll_end, struct napi_struct *napi, int work, int budget)
{
	__u32 zero = 0;
	struct frame *f = bpf_map_lookup_elem(&frames, &zero);
	struct acc *a = bpf_map_lookup_elem(&rx_acc, &zero);
	if (f && a)
		close_frame(a, f, bpf_ktime_get_ns());
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
