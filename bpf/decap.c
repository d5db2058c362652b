//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * decap: runs on a real server in TUN mode whose kernel has no ipip module.
 * IPIP packets addressed to one of this host's addresses lose their outer
 * header and go to the stack as the inner packet, which is for a VIP the
 * real holds on lo. Everything else passes untouched.
 */
#include "common.h"

enum decap_verdict {
	DECAP_PASS,
	DECAP_DONE,
	DECAP_MALFORMED,
	DECAP_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __be32);
	__type(value, __u8);
} decap_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DECAP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} decap_stats SEC(".maps");

const enum decap_verdict *unused_decap_verdict __attribute__((unused));

static __always_inline int count(enum decap_verdict v, int action)
{
	__u32 k = v;
	__u64 *c = bpf_map_lookup_elem(&decap_stats, &k);
	if (c)
		*c += 1;
	return action;
}

SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return count(DECAP_PASS, XDP_PASS);
	struct iphdr *outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end || outer->protocol != IPPROTO_IPIP)
		return count(DECAP_PASS, XDP_PASS);
	if (!bpf_map_lookup_elem(&decap_addrs, &outer->daddr))
		return count(DECAP_PASS, XDP_PASS);

	/* Only whole, well-formed datagrams: fragments and bad headers are the
	 * kernel's to judge (it answers with "protocol unreachable"). */
	int hlen = ipv4_hdr_ok(outer, data_end);
	if (!hlen || (outer->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return count(DECAP_MALFORMED, XDP_PASS);
	struct iphdr *inner = (void *)outer + hlen;
	if ((void *)(inner + 1) > data_end || inner->version != 4)
		return count(DECAP_MALFORMED, XDP_PASS);

	struct ethhdr saved;
	__builtin_memcpy(&saved, eth, sizeof(saved));
	if (bpf_xdp_adjust_head(ctx, hlen))
		return count(DECAP_MALFORMED, XDP_PASS);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return count(DECAP_MALFORMED, XDP_DROP);
	__builtin_memcpy(eth, &saved, sizeof(saved));
	return count(DECAP_DONE, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
