//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// pass is the trivial XDP program: the baseline that every per-packet cost is
// measured against, and the native program that veth peers need in tests so
// that frames sent with XDP_TX or XDP_REDIRECT are delivered (XDP-NOTES rule 1).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
