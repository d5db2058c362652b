//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// clock lets user space read the kernel's jiffies and CLOCK_MONOTONIC together,
// to find the tick that turns jiffies into the balancer's clock (see now_ns in
// xlb_maps.h).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct clock_sample {
	__u64 jiffies;
	__u64 ns;
};

/* jiffies first: the first sample that sees a new jiffy then has a time at
 * most one sample after the tick that made it. */
SEC("syscall")
int sample(struct clock_sample *s)
{
	s->jiffies = bpf_jiffies64();
	s->ns = bpf_ktime_get_ns();
	return 0;
}

char _license[] SEC("license") = "GPL";
