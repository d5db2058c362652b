/* SPDX-License-Identifier: GPL-2.0 */
/* Parsing and checksum helpers shared by the balancer and the decapsulator. */
#ifndef XLBD_COMMON_H
#define XLBD_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP_DF 0x4000

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b && *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline __u16 csum_fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* RFC 1624 incremental update, HC' = ~(~HC + ~m + m'), on raw network-order
 * words: one's-complement sums do not care about byte order as long as the
 * result is stored back the way it was read. */
static __always_inline __u16 csum_replace4(__u16 check, __be32 from, __be32 to)
{
	__u64 s = (__u16)~check;
	s += (__u32)~from;
	s += to;
	return csum_fold(s);
}

static __always_inline __u16 csum_replace2(__u16 check, __be16 from, __be16 to)
{
	__u64 s = (__u16)~check;
	s += (__u16)~from;
	s += to;
	return csum_fold(s);
}

/* Checksum of a 20-byte IPv4 header with its check field zero or current. */
static __always_inline __u16 ipv4_csum20(struct iphdr *iph)
{
	__u32 *w = (__u32 *)iph;
	__u64 s = 0;
	/* Five 32-bit words fold to the same sum as ten 16-bit ones, in half
	 * the loads (x86 does not mind that they are 2-byte aligned). */
#pragma unroll
	for (int i = 0; i < 5; i++)
		s += w[i];
	return csum_fold(s);
}

/* ipv4_hdr_len checks version, header length and total length, and that the
 * whole datagram is inside the frame. It returns the header length in bytes,
 * or 0. */
static __always_inline int ipv4_hdr_len(struct iphdr *iph, void *data_end)
{
	if ((void *)(iph + 1) > data_end)
		return 0;
	if (iph->version != 4 || iph->ihl < 5)
		return 0;
	int hlen = iph->ihl * 4;
	int tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen || (void *)iph + tot > data_end)
		return 0;
	return hlen;
}

/* ipv4_csum_ok verifies the header checksum of a header that ipv4_hdr_len
 * accepted: the kernel's ip_rcv drops what fails it, so nothing that fails
 * may be forwarded either. */
static __always_inline int ipv4_csum_ok(struct iphdr *iph, int hlen, void *data_end)
{
	__u16 *p = (__u16 *)iph;
	__u32 *w = (__u32 *)iph;
	__u64 s = 0;
	if ((void *)(iph + 1) > data_end)
		return 0;
#pragma unroll
	for (int i = 0; i < 5; i++)
		s += w[i];
	if (hlen > sizeof(*iph)) {
		/* Options: constant offsets after unrolling, which is what the
		 * verifier can follow. */
#pragma unroll
		for (int i = 10; i < 30; i++) {
			if (i < hlen / 2) {
				if ((void *)(p + i + 1) > data_end)
					return 0;
				s += p[i];
			}
		}
	}
	return csum_fold(s) == 0;
}

/* ipv4_hdr_ok is ipv4_hdr_len and ipv4_csum_ok together. */
static __always_inline int ipv4_hdr_ok(struct iphdr *iph, void *data_end)
{
	int hlen = ipv4_hdr_len(iph, data_end);
	if (!hlen || !ipv4_csum_ok(iph, hlen, data_end))
		return 0;
	return hlen;
}

#endif
