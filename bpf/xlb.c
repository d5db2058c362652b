//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * xlb: the XDP layer-4 balancer of xlbd.
 *
 * Packets for a configured virtual service (VIP, port, protocol) are sent to
 * a real server in one of IPVS's three forwarding modes: NAT (destination
 * rewritten, replies rewritten back on their way through the LB), DR (only
 * the destination MAC changes) and TUN (IPIP encapsulation). Everything else
 * goes to the kernel untouched.
 *
 * The configuration lives in two generations of tables: user space fills the
 * idle one, then flips ctl.gen with one map write, so a packet sees either
 * the old configuration or the new one, never a mix.
 */
#include "common.h"
#include <linux/tcp.h>
#include <linux/udp.h>

/* linux/icmp.h drags in libc's socket headers, which a BPF target lacks. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__be16 unused;
	__be16 mtu;
};
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4

#define MAX_SERVICES 4096
#define MAX_REALS 65536
#define RING_HALF 262144
#define AF_INET 2

enum lb_mode {
	MODE_NAT = 1,
	MODE_DR = 2,
	MODE_TUN = 3,
};

/* Why a packet got the verdict it got; counted per CPU, summed by user space. */
enum verdict {
	VERDICT_PASS_NOT_IPV4,
	VERDICT_PASS_MALFORMED,
	VERDICT_PASS_FRAGMENT,
	VERDICT_PASS_OTHER_PROTO,
	VERDICT_PASS_NOT_VIP,
	VERDICT_PASS_NO_REAL,
	VERDICT_PASS_NO_NEIGH,
	VERDICT_PASS_TTL,
	VERDICT_FWD_NAT,
	VERDICT_FWD_NAT_REPLY,
	VERDICT_FWD_DR,
	VERDICT_FWD_TUN,
	VERDICT_TX_ICMP_TOO_BIG,
	VERDICT_DROP_TOO_BIG,
	VERDICT_DROP_NO_ROUTE,
	VERDICT_DROP_ERROR,
	VERDICT_MAX,
};

struct ctl_val {
	__u32 gen;	 /* active generation of services and ring: 0 or 1 */
	__u32 pad;
};

/* A first look that costs one array read instead of a hash lookup: a byte
 * per hash bucket of IPv4 addresses says whether a VIP (as destination) or
 * a NAT real server (as source) may have an address in it. Most traffic
 * that is not ours leaves after this. */
#define FILTER_BITS 16
#define FILTER_VIP 1
#define FILTER_NAT_REAL 2

static __always_inline __u32 addr_bucket(__be32 a)
{
	return (a * 2654435761u) >> (32 - FILTER_BITS);
}

struct svc_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 gen;
};

struct svc_val {
	__u32 id;	 /* index into svc_stats and rr */
	__u32 ring_off;	 /* first slot of this service's ring in the active half */
	__u32 ring_len;	 /* 0: no real server can take new flows */
	__u32 mode;
};

#define REAL_F_VALID 1

/* One real server of one service. The id is stable for as long as the real
 * stays configured, so flows and counters survive unrelated changes. */
struct real_val {
	__be32 vip;	 /* the service it belongs to, so dumps read on their own */
	__be16 vport;
	__u8 proto;
	__u8 flags;
	__be32 ip;
	__be16 port;
	__u16 mtu;	 /* of the egress link: TUN must fit 20 more bytes */
	__u32 mode;
	__u32 serial;	 /* changes when an id is reused, so old flows let go */
	__u32 svc_id;	 /* for the service's counters */
	__u32 ifindex;	 /* egress link towards ip (or its gateway) */
	__be32 lb_ip;	 /* our address on that link: outer source for TUN */
	__u8 dmac[6];	 /* next hop's MAC: the real itself on a shared segment */
	__u8 smac[6];	 /* egress link's MAC */
};

struct conn_key {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct conn_val {
	__u32 real_id;
	__u32 serial;
};

/* Reverse entry of a NAT flow, keyed by the reply's own 5-tuple. */
struct nat_val {
	__be32 vip;
	__be16 vport;
	__u16 pad;
	__u32 svc_id;
	__u32 real_id;
	__u32 ifindex;	 /* where the client's packets came in */
	__u8 cmac[6];	 /* and from which MAC: the way back when the */
	__u8 lbmac[6];	 /* kernel has no neighbour entry for the client */
};

struct stats {
	__u64 conns;
	__u64 pkts_in;
	__u64 bytes_in;
	__u64 pkts_out;
	__u64 bytes_out;
};

struct rr_val {
	__u64 next;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ctl_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << FILTER_BITS);
	__type(key, __u32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} addr_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * RING_HALF);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_REALS);
	__type(key, __u32);
	__type(value, struct real_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} reals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct rr_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	/* Per-CPU eviction lists: inserting a new flow takes no shared lock. An
	 * entry is still one entry, seen by every CPU. */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct conn_key);
	__type(value, struct conn_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct conn_key);
	__type(value, struct nat_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_REALS);
	__type(key, __u32);
	__type(value, struct stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} real_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VERDICT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} verdicts SEC(".maps");

/* Keep the enum and the stats layout in BTF for bpf2go and bpftool. */
const enum verdict *unused_verdict __attribute__((unused));
const enum lb_mode *unused_lb_mode __attribute__((unused));

static __always_inline int count(enum verdict v, int action)
{
	__u32 k = v;
	__u64 *c = bpf_map_lookup_elem(&verdicts, &k);
	if (c)
		*c += 1;
	return action;
}

static __always_inline void account_in(__u32 map_id, void *map, __u32 bytes, int new_conn)
{
	struct stats *s = bpf_map_lookup_elem(map, &map_id);
	if (!s)
		return;
	s->pkts_in++;
	s->bytes_in += bytes;
	s->conns += new_conn;
}

static __always_inline void account_out(__u32 id, void *map, __u32 bytes)
{
	struct stats *s = bpf_map_lookup_elem(map, &id);
	if (!s)
		return;
	s->pkts_out++;
	s->bytes_out += bytes;
}

static __always_inline void ip_decrease_ttl(struct iphdr *iph)
{
	__u32 check = iph->check;
	check += bpf_htons(0x0100);
	iph->check = (__u16)(check + (check >= 0xFFFF));
	iph->ttl--;
}

/* Rewrites one address and one port of a TCP or UDP datagram and fixes both
 * checksums. */
static __always_inline void nat_rewrite(struct iphdr *iph, __u16 *l4check, __be32 *addr, __be16 *port,
					__be32 new_addr, __be16 new_port)
{
	/* A UDP checksum of zero means "none": keep it that way. */
	if (iph->protocol == IPPROTO_TCP || *l4check != 0) {
		__u16 c = csum_replace4(*l4check, *addr, new_addr);
		c = csum_replace2(c, *port, new_port);
		if (iph->protocol == IPPROTO_UDP && c == 0)
			c = 0xffff;
		*l4check = c;
	}
	iph->check = csum_replace4(iph->check, *addr, new_addr);
	*addr = new_addr;
	*port = new_port;
}

static __always_inline int xmit(struct xdp_md *ctx, __u32 ifindex)
{
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, 0);
}

/* fib_forward routes the (already rewritten) datagram. On success the frame
 * is addressed and sent; the caller decides what a missing neighbour means. */
static __always_inline int fib_forward(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *iph,
				       __be16 sport, __be16 dport, struct bpf_fib_lookup *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->family = AF_INET;
	p->tos = iph->tos;
	p->l4_protocol = iph->protocol;
	p->sport = sport;
	p->dport = dport;
	p->tot_len = bpf_ntohs(iph->tot_len);
	p->ipv4_src = iph->saddr;
	p->ipv4_dst = iph->daddr;
	p->ifindex = ctx->ingress_ifindex;
	return bpf_fib_lookup(ctx, p, sizeof(*p), 0);
}

/* The caller has made sure the TTL is above 1. */
static __always_inline int send_routed(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *iph,
				       __u32 ifindex, const __u8 *dmac, const __u8 *smac)
{
	ip_decrease_ttl(iph);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	return xmit(ctx, ifindex);
}

/* A NAT reply from a real server: source back to VIP:port, then to the
 * client. */
static __always_inline int nat_reply(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *iph,
				     __u16 *l4check, __be16 *ports, __u32 tot)
{
	struct conn_key k = {
		.src = iph->saddr,
		.dst = iph->daddr,
		.sport = ports[0],
		.dport = ports[1],
		.proto = iph->protocol,
	};
	struct nat_val *nv = bpf_map_lookup_elem(&nat, &k);
	if (!nv)
		return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
	if (iph->ttl <= 1)
		return count(VERDICT_PASS_TTL, XDP_PASS);

	nat_rewrite(iph, l4check, &iph->saddr, &ports[0], nv->vip, nv->vport);
	account_out(nv->real_id, &real_stats, tot);
	account_out(nv->svc_id, &svc_stats, tot);

	struct bpf_fib_lookup p;
	int rc = fib_forward(ctx, eth, iph, ports[0], ports[1], &p);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return count(VERDICT_FWD_NAT_REPLY, send_routed(ctx, eth, iph, p.ifindex, p.dmac, p.smac));
	/* The source is now the VIP, which the LB may hold itself: the kernel
	 * would drop such a packet as a martian, so it cannot resolve the
	 * neighbour for us. The client's packets came from cmac: go back there. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && p.ifindex == nv->ifindex)
		return count(VERDICT_FWD_NAT_REPLY,
			     send_routed(ctx, eth, iph, nv->ifindex, nv->cmac, nv->lbmac));
	return count(VERDICT_DROP_NO_ROUTE, XDP_DROP);
}

/* Turns the frame into an ICMP "fragmentation needed" from the VIP back to
 * the client, as the kernel does when a DF datagram does not fit the
 * tunnel. Only for 20-byte headers: the quoted header then sits exactly where
 * the reply needs it, after making room for 28 bytes in front. */
static __always_inline int icmp_too_big(struct xdp_md *ctx, __u16 mtu)
{
	if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct iphdr) + sizeof(struct icmphdr))))
		return count(VERDICT_DROP_ERROR, XDP_DROP);

	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	/* new eth | new ip | icmp | old eth (now unused) | quoted ip + 8 */
	if (data + 42 + 28 > data_end)
		return count(VERDICT_DROP_ERROR, XDP_DROP);

	struct ethhdr *eth = data;
	struct ethhdr *old_eth = data + 28;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct icmphdr *icmp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	struct iphdr *quoted = data + 42;

	__builtin_memcpy(eth->h_dest, old_eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, old_eth->h_dest, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	__be32 client = quoted->saddr;
	__be32 vip = quoted->daddr;

	iph->version = 4;
	iph->ihl = 5;
	iph->tos = 0;
	iph->tot_len = bpf_htons(20 + 8 + 28);
	iph->id = 0;
	iph->frag_off = 0;
	iph->ttl = 64;
	iph->protocol = IPPROTO_ICMP;
	iph->check = 0;
	iph->saddr = vip;
	iph->daddr = client;
	iph->check = ipv4_csum20(iph);

	icmp->type = ICMP_DEST_UNREACH;
	icmp->code = ICMP_FRAG_NEEDED;
	icmp->checksum = 0;
	icmp->unused = 0;
	icmp->mtu = bpf_htons(mtu);
	__u16 *w = (__u16 *)icmp;
	__u64 s = 0;
#pragma unroll
	for (int i = 0; i < 18; i++)
		s += w[i];
	icmp->checksum = csum_fold(s);

	int len = (int)(data_end - data);
	if (bpf_xdp_adjust_tail(ctx, 42 + 28 - len))
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	return count(VERDICT_TX_ICMP_TOO_BIG, XDP_TX);
}

static __always_inline int tun_encap(struct xdp_md *ctx, struct real_val *r, __u32 tot)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *inner = data + sizeof(struct ethhdr);
	if ((void *)(inner + 1) > data_end)
		return count(VERDICT_DROP_ERROR, XDP_DROP);

	if (tot + sizeof(struct iphdr) > r->mtu) {
		if ((inner->frag_off & bpf_htons(IP_DF)) && inner->ihl == 5 && r->mtu > 68)
			return icmp_too_big(ctx, r->mtu - sizeof(struct iphdr));
		return count(VERDICT_DROP_TOO_BIG, XDP_DROP);
	}

	__u8 tos = inner->tos;
	__u8 ttl = inner->ttl;
	__be16 df = inner->frag_off & bpf_htons(IP_DF);
	__be32 dst = r->ip, src = r->lb_ip;
	__u32 ifindex = r->ifindex;
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	__builtin_memcpy(dmac, r->dmac, ETH_ALEN);
	__builtin_memcpy(smac, r->smac, ETH_ALEN);

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = data + sizeof(struct ethhdr);
	if ((void *)(outer + 1) > data_end)
		return count(VERDICT_DROP_ERROR, XDP_DROP);

	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	/* As IPVS's tunnel transmitter: TOS, TTL and DF come from the inner
	 * header. */
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = tos;
	outer->tot_len = bpf_htons(tot + sizeof(struct iphdr));
	outer->id = 0;
	outer->frag_off = df;
	outer->ttl = ttl;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = src;
	outer->daddr = dst;
	outer->check = ipv4_csum20(outer);
	return count(VERDICT_FWD_TUN, xmit(ctx, ifindex));
}

static __always_inline struct real_val *pick_real(struct svc_val *sv, __u32 gen, __u32 *real_id)
{
	if (sv->ring_len == 0)
		return 0;
	__u32 sid = sv->id;
	struct rr_val *st = bpf_map_lookup_elem(&rr, &sid);
	if (!st)
		return 0;
	__u64 n = __sync_fetch_and_add(&st->next, 1);
	/* 32-bit division is cheaper; the sequence skips once every 2^32 flows. */
	__u32 slot = gen * RING_HALF + sv->ring_off + (__u32)n % sv->ring_len;
	__u32 *id = bpf_map_lookup_elem(&ring, &slot);
	if (!id)
		return 0;
	struct real_val *r = bpf_map_lookup_elem(&reals, id);
	if (!r || !(r->flags & REAL_F_VALID))
		return 0;
	*real_id = *id;
	return r;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return count(VERDICT_PASS_NOT_IPV4, XDP_PASS);

	struct iphdr *iph = (void *)(eth + 1);
	int hlen = ipv4_hdr_len(iph, data_end);
	if (!hlen)
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return count(VERDICT_PASS_FRAGMENT, XDP_PASS);

	__u32 tot = bpf_ntohs(iph->tot_len);
	void *l4 = (void *)iph + hlen;
	__u32 l4len = tot - hlen;
	/* Taken here, where the verifier knows the header is in bounds. */
	__u16 *l4check;
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end || l4len < sizeof(*th) || th->doff < 5 ||
		    th->doff * 4 > l4len)
			return count(VERDICT_PASS_MALFORMED, XDP_PASS);
		l4check = &th->check;
	} else if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end || l4len < sizeof(*uh) ||
		    bpf_ntohs(uh->len) < sizeof(*uh) || bpf_ntohs(uh->len) > l4len)
			return count(VERDICT_PASS_MALFORMED, XDP_PASS);
		l4check = &uh->check;
	} else {
		return count(VERDICT_PASS_OTHER_PROTO, XDP_PASS);
	}
	__be16 *ports = l4;

	__u32 bucket = addr_bucket(iph->daddr);
	__u8 *filter = bpf_map_lookup_elem(&addr_filter, &bucket);
	if (!filter)
		return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
	if (!(*filter & FILTER_VIP)) {
		bucket = addr_bucket(iph->saddr);
		filter = bpf_map_lookup_elem(&addr_filter, &bucket);
		if (filter && (*filter & FILTER_NAT_REAL)) {
			if (!ipv4_csum_ok(iph, hlen, data_end))
				return count(VERDICT_PASS_MALFORMED, XDP_PASS);
			return nat_reply(ctx, eth, iph, l4check, ports, tot);
		}
		return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
	}

	if (!ipv4_csum_ok(iph, hlen, data_end))
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);

	/* An established flow needs neither ctl nor services: its entry names
	 * the real, and the real's entry its service. A real removed from the
	 * configuration is invalid, so its flows fall through and reschedule. */
	struct conn_key ck = {
		.src = iph->saddr,
		.dst = iph->daddr,
		.sport = ports[0],
		.dport = ports[1],
		.proto = iph->protocol,
	};
	__u32 real_id = 0;
	struct real_val *r = 0;
	int new_conn = 0;
	struct conn_val *cv = bpf_map_lookup_elem(&conns, &ck);
	if (cv) {
		real_id = cv->real_id;
		r = bpf_map_lookup_elem(&reals, &real_id);
		if (r && (!(r->flags & REAL_F_VALID) || r->serial != cv->serial))
			r = 0;
	}
	if (!r) {
		__u32 zero = 0;
		struct ctl_val *c = bpf_map_lookup_elem(&ctl, &zero);
		if (!c)
			return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
		__u32 gen = c->gen & 1;
		struct svc_key sk = {
			.vip = iph->daddr,
			.port = ports[1],
			.proto = iph->protocol,
			.gen = gen,
		};
		struct svc_val *sv = bpf_map_lookup_elem(&services, &sk);
		if (!sv) {
			/* A VIP may also be a NAT real of another service. */
			bucket = addr_bucket(iph->saddr);
			filter = bpf_map_lookup_elem(&addr_filter, &bucket);
			if (filter && (*filter & FILTER_NAT_REAL))
				return nat_reply(ctx, eth, iph, l4check, ports, tot);
			return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
		}
		r = pick_real(sv, gen, &real_id);
		if (!r)
			return count(VERDICT_PASS_NO_REAL, XDP_PASS);
		struct conn_val nv = { .real_id = real_id, .serial = r->serial };
		/* Another CPU may have scheduled the same new flow meanwhile: its
		 * choice wins, so both see one real server. */
		if (bpf_map_update_elem(&conns, &ck, &nv, cv ? BPF_ANY : BPF_NOEXIST)) {
			cv = bpf_map_lookup_elem(&conns, &ck);
			if (!cv)
				return count(VERDICT_DROP_ERROR, XDP_DROP);
			real_id = cv->real_id;
			r = bpf_map_lookup_elem(&reals, &real_id);
			if (!r || !(r->flags & REAL_F_VALID))
				return count(VERDICT_DROP_ERROR, XDP_DROP);
		} else {
			new_conn = 1;
		}
	}

	account_in(real_id, &real_stats, tot, new_conn);
	account_in(r->svc_id, &svc_stats, tot, new_conn);

	if (r->mode == MODE_DR) {
		__builtin_memcpy(eth->h_dest, r->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, r->smac, ETH_ALEN);
		return count(VERDICT_FWD_DR, xmit(ctx, r->ifindex));
	}
	if (r->mode == MODE_TUN)
		return tun_encap(ctx, r, tot);
	if (r->mode != MODE_NAT)
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	/* Leave expiring packets to the kernel untouched: it sends the ICMP. */
	if (iph->ttl <= 1)
		return count(VERDICT_PASS_TTL, XDP_PASS);

	if (new_conn) {
		struct conn_key rk = {
			.src = r->ip,
			.dst = iph->saddr,
			.sport = r->port,
			.dport = ports[0],
			.proto = iph->protocol,
		};
		struct nat_val nv = {
			.vip = iph->daddr,
			.vport = ports[1],
			.svc_id = r->svc_id,
			.real_id = real_id,
			.ifindex = ctx->ingress_ifindex,
		};
		__builtin_memcpy(nv.cmac, eth->h_source, ETH_ALEN);
		__builtin_memcpy(nv.lbmac, eth->h_dest, ETH_ALEN);
		bpf_map_update_elem(&nat, &rk, &nv, BPF_ANY);
	}
	nat_rewrite(iph, l4check, &iph->daddr, &ports[1], r->ip, r->port);

	struct bpf_fib_lookup p;
	int rc = fib_forward(ctx, eth, iph, ports[0], ports[1], &p);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return count(VERDICT_FWD_NAT, send_routed(ctx, eth, iph, p.ifindex, p.dmac, p.smac));
	/* The source is the client's, so the kernel can forward this one and
	 * resolve the real's MAC on the way; the next packet finds it. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return count(VERDICT_PASS_NO_NEIGH, XDP_PASS);
	return count(VERDICT_DROP_NO_ROUTE, XDP_DROP);
}

char _license[] SEC("license") = "GPL";
