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
#include "xlb_sched.h"
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
#define EEXIST 17
/* ipfrag_time: how long the kernel keeps a datagram's fragments. */
#define FRAG_TIMEOUT_NS (30ULL * 1000000000ULL)

/* Keep the enums in BTF for bpf2go and bpftool. */
const enum verdict *unused_verdict __attribute__((unused));
const enum lb_mode *unused_lb_mode __attribute__((unused));
const enum sched_kind *unused_sched_kind __attribute__((unused));
const enum svc_flags *unused_svc_flags __attribute__((unused));
const enum real_flags *unused_real_flags __attribute__((unused));
const enum conn_flags *unused_conn_flags __attribute__((unused));
const enum frag_flags *unused_frag_flags __attribute__((unused));
const enum filter_flags *unused_filter_flags __attribute__((unused));
const struct held_frag *unused_held_frag __attribute__((unused));

static __always_inline int count(enum verdict v, int action)
{
	__u32 k = v;
	__u64 *c = bpf_map_lookup_elem(&verdicts, &k);
	if (c)
		*c += 1;
	return action;
}

static __always_inline void account_in(__u32 map_id, void *map, __u32 bytes, int new_conn, int picked)
{
	struct stats *s = bpf_map_lookup_elem(map, &map_id);
	if (!s)
		return;
	s->pkts_in++;
	s->bytes_in += bytes;
	s->conns += new_conn;
	s->picks += picked;
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

/* pkt_key is a packet's own 5-tuple, as the flow tables key it. */
static __always_inline struct conn_key pkt_key(struct iphdr *iph, __be16 *ports)
{
	struct conn_key k = {
		.src = iph->saddr,
		.dst = iph->daddr,
		.sport = ports[0],
		.dport = ports[1],
		.proto = iph->protocol,
	};
	return k;
}

/* fib_route routes a datagram as it will be once rewritten (src, dst and
 * ports). It asks without a length: the answer's mtu_result is the route's
 * MTU, which the caller compares with what the datagram will need on the
 * wire (fit), since a GRO/GSO aggregate is longer than any of its
 * segments. */
static __always_inline int fib_route(struct xdp_md *ctx, struct iphdr *iph, __be32 src, __be32 dst,
				     __be16 sport, __be16 dport, struct bpf_fib_lookup *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->family = AF_INET;
	p->tos = iph->tos;
	p->l4_protocol = iph->protocol;
	p->sport = sport;
	p->dport = dport;
	p->ipv4_src = src;
	p->ipv4_dst = dst;
	p->ifindex = ctx->ingress_ifindex;
	return bpf_fib_lookup(ctx, p, sizeof(*p), 0);
}

/* route_gen is the route cache's generation, 0 when routes may not be
 * cached (no watcher keeps them fresh, or policy rules). */
static __always_inline __u32 route_gen(void)
{
	__u32 zero = 0;
	struct rt_ctl *c = bpf_map_lookup_elem(&route_ctl, &zero);
	return c && c->dst_only ? c->gen : 0;
}

/* rt_hit fills p from a cached route to dst when it is of generation gen. */
static __always_inline int rt_hit(struct rt_val *c, __be32 dst, __u32 gen, struct bpf_fib_lookup *p)
{
	if (!gen || !c || c->gen != gen || c->dst != dst)
		return 0;
	p->ifindex = c->ifindex;
	p->mtu_result = c->mtu;
	__builtin_memcpy(p->dmac, c->dmac, ETH_ALEN);
	__builtin_memcpy(p->smac, c->smac, ETH_ALEN);
	return 1;
}

/* rt_fill makes c the route p found to dst, in generation gen; gen is
 * written last, so that another CPU reading it meanwhile misses. */
static __always_inline void rt_fill(struct rt_val *c, __be32 dst, __u32 gen, struct bpf_fib_lookup *p)
{
	c->gen = 0;
	c->dst = dst;
	c->ifindex = p->ifindex;
	c->mtu = p->mtu_result;
	__builtin_memcpy(c->dmac, p->dmac, ETH_ALEN);
	__builtin_memcpy(c->smac, p->smac, ETH_ALEN);
	c->gen = gen;
}

#define FIT_OK 0
#define FIT_TOO_BIG 1 /* even once segmented it exceeds the egress MTU */
#define FIT_KERNEL 2  /* an aggregate for another link: only the kernel can send it */

/* Linux forgets a learned path MTU after 10 minutes (mtu_expires): the
 * balancer forgets what it told a sender before that. */
#define PMTU_KEEP_NS (300ULL * 1000000000ULL)

/* fit_slow is fit for a datagram longer than the egress MTU allows. Generic
 * XDP also sees GRO and GSO aggregates, longer than any frame of the
 * ingress link: the kernel cuts them into segments no longer than the
 * ingress MTU (their MSS was made for it), or than what the balancer told
 * the sender with ICMP, so a segment is what has to fit. The kernel sends
 * an aggregate out of the link it came in by (XDP_TX), but refuses to
 * redirect it to another whose MTU it exceeds. */
static __noinline int fit_slow(struct xdp_md *ctx, __u32 tot, __u32 extra, __u32 mtu, __u32 ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > data_end)
		return FIT_TOO_BIG;
	__u32 seg = 0;
	if (bpf_check_mtu(ctx, 0, &seg, 0, 0) < 0 || !seg || tot <= seg)
		return FIT_TOO_BIG;
	struct pmtu_key k = {.src = iph->saddr, .dst = iph->daddr};
	struct pmtu_val *pv = bpf_map_lookup_elem(&pmtu, &k);
	if (pv && now_ns() < pv->expires && pv->mtu < seg)
		seg = pv->mtu;
	if (seg + extra > mtu)
		return FIT_TOO_BIG;
	return ifindex == ctx->ingress_ifindex ? FIT_OK : FIT_KERNEL;
}

/* fit says whether a datagram of tot bytes, plus extra bytes of
 * encapsulation, can leave by ifindex, whose MTU is mtu. */
static __always_inline int fit(struct xdp_md *ctx, __u32 tot, __u32 extra, __u32 mtu, __u32 ifindex)
{
	if (tot + extra <= mtu)
		return FIT_OK;
	return fit_slow(ctx, tot, extra, mtu, ifindex);
}

/* pmtu_note remembers what a sender was told. */
static __noinline void pmtu_note(__be32 src, __be32 dst, __u32 mtu)
{
	struct pmtu_key k = {.src = src, .dst = dst};
	struct pmtu_val v = {.expires = now_ns() + PMTU_KEEP_NS, .mtu = mtu};
	bpf_map_update_elem(&pmtu, &k, &v, BPF_ANY);
}

/* lb_addr is the LB's own address towards dst, as the kernel would pick it
 * for an ICMP error it sends there (0: none). */
static __noinline __be32 lb_addr(struct xdp_md *ctx, __be32 dst)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct bpf_fib_lookup *p = &s->addr;
	__builtin_memset(p, 0, sizeof(*p));
	p->family = AF_INET;
	p->ipv4_dst = dst;
	p->ifindex = ctx->ingress_ifindex;
	if (bpf_fib_lookup(ctx, p, sizeof(*p), BPF_FIB_LOOKUP_SRC | BPF_FIB_LOOKUP_SKIP_NEIGH))
		return 0;
	return p->ipv4_src;
}

/* frag_note records where a first fragment went, so that the datagram's
 * later fragments, which carry no ports, follow it. src and dst are the
 * datagram's own, before any rewrite. */
static __always_inline void frag_note(struct iphdr *iph, __be32 src, __be32 dst, __u32 real_id, __u32 serial,
				      __be32 addr, __u32 flags, __u32 ifindex, const __u8 *dmac, const __u8 *smac)
{
	if (!(iph->frag_off & bpf_htons(IP_MF)))
		return;
	struct scratch *s = get_scratch();
	if (!s)
		return;
	struct frag_key *k = &s->fk;
	struct frag_val *v = &s->fv;
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memset(v, 0, sizeof(*v));
	k->src = src;
	k->dst = dst;
	k->id = iph->id;
	k->proto = iph->protocol;
	v->real_id = real_id;
	v->serial = serial;
	v->expires = now_ns() + FRAG_TIMEOUT_NS;
	v->addr = addr;
	v->flags = flags;
	v->ifindex = ifindex;
	if (dmac)
		__builtin_memcpy(v->dmac, dmac, ETH_ALEN);
	if (smac)
		__builtin_memcpy(v->smac, smac, ETH_ALEN);
	bpf_map_update_elem(&frags, k, v, BPF_ANY);
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

/* The headers of a packet xdp_lb has already checked, found again by the
 * subprograms that take over from it: each is verified on its own, with
 * its own stack frame, which the main one has no room to hold. */
struct hdrs {
	struct ethhdr *eth;
	struct iphdr *iph;
	__u16 *l4check;
	__be16 *ports;
};

static __always_inline int reparse(struct xdp_md *ctx, struct hdrs *h, int l4)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	h->eth = data;
	h->iph = data + sizeof(struct ethhdr);
	if ((void *)(h->iph + 1) > data_end)
		return 0;
	if (!l4)
		return 1;
	void *p = (void *)h->iph + (h->iph->ihl & 0xf) * 4;
	if (h->iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = p;
		if ((void *)(th + 1) > data_end)
			return 0;
		h->l4check = &th->check;
	} else {
		struct udphdr *uh = p;
		if ((void *)(uh + 1) > data_end)
			return 0;
		h->l4check = &uh->check;
	}
	h->ports = p;
	return 1;
}

/* Turns the frame into an ICMP "fragmentation needed" back to its sender,
 * as the kernel does when a DF datagram does not fit the next link: from
 * src, or (0) from the address it was sent to (the VIP, which IPVS answers
 * from). Only for 20-byte headers: the quoted header then sits exactly where
 * the reply needs it, after making room for 28 bytes in front. */
static __always_inline int icmp_too_big(struct xdp_md *ctx, __u16 mtu, __be32 src)
{
	{
		void *d = (void *)(long)ctx->data;
		void *de = (void *)(long)ctx->data_end;
		struct iphdr *ih = d + sizeof(struct ethhdr);
		if ((void *)(ih + 1) > de || ih->ihl != 5 || mtu < 68)
			return count(VERDICT_DROP_TOO_BIG, XDP_DROP);
		pmtu_note(ih->saddr, ih->daddr, mtu);
	}
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
	__be32 vip = src ?: quoted->daddr;

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

/* nat_real is nat_reals' entry for a real's address, port and protocol:
 * from its slot when that holds it. */
static __always_inline struct nat_real_val *nat_real(struct scratch *s, __be32 ip, __be16 port, __u8 proto)
{
	__u32 i = nat_slot_of(ip, port, proto);
	struct nat_slot *sl = bpf_map_lookup_elem(&nat_slots, &i);
	if (sl && sl->used && sl->ip == ip && sl->port == port && sl->proto == proto) {
		s->nr.real_id = sl->real_id;
		s->nr.shared = 0;
		return &s->nr;
	}
	s->nk.ip = ip;
	s->nk.port = port;
	s->nk.proto = proto;
	s->nk.pad = 0;
	return bpf_map_lookup_elem(&nat_reals, &s->nk);
}

/* reply_conn is the connection a NAT reply belongs to, had it come from
 * vip:vport: the client's packets' own 5-tuple, built in k. */
static __always_inline struct conn_val *reply_conn(struct conn_key *k, struct iphdr *iph, __be16 *ports, __be32 vip,
						   __be16 vport)
{
	k->src = iph->daddr;
	k->dst = vip;
	k->sport = ports[1];
	k->dport = vport;
	return bpf_map_lookup_elem(&conns, k);
}

/* A NAT reply from a real server: source back to VIP:port, then to the
 * client. */
static __noinline int nat_reply(struct xdp_md *ctx, __u32 tot, __u8 tcp_flags)
{
	struct hdrs h;
	if (!reparse(ctx, &h, 1))
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	struct ethhdr *eth = h.eth;
	struct iphdr *iph = h.iph;
	__u16 *l4check = h.l4check;
	__be16 *ports = h.ports;
	struct scratch *s = get_scratch();
	if (!s)
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	struct conn_key *k = &s->rk;
	*k = pkt_key(iph, ports);
	/* Its real, when it is the only one of its address, port and
	 * protocol, names the VIP; otherwise the flow's reverse entry does. */
	struct nat_real_val *nr = nat_real(s, iph->saddr, ports[0], iph->protocol);
	struct nat_val *nv = 0;
	if (!nr || nr->shared)
		nv = bpf_map_lookup_elem(&nat, k);
	struct real_val *r = 0;
	struct conn_val *cv = 0;
	if (!nv && nr) {
		__u32 id = nr->real_id;
		r = bpf_map_lookup_elem(&reals, &id);
		if (r && (r->flags & REAL_F_VALID) && r->mode == MODE_NAT && r->ip == iph->saddr &&
		    r->port == ports[0] && r->proto == iph->protocol)
			cv = reply_conn(k, iph, ports, r->vip, r->vport);
		if (cv && cv->real_id == id && cv->serial == r->serial) {
			/* What the reverse entry would say, for the rest of the
			 * way. */
			nv = &s->nv;
			nv->vip = r->vip;
			nv->vport = r->vport;
			nv->svc_id = r->svc_id;
			nv->real_id = id;
		} else {
			/* Not a connection of that real's: one of a real with no
			 * port (it answers from any) may have a reverse entry. */
			r = 0;
			cv = 0;
			*k = pkt_key(iph, ports);
			nv = bpf_map_lookup_elem(&nat, k);
		}
	}
	if (!nv)
		return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
	/* The reply moves its connection's state (IPVS's output table); a
	 * reply whose connection is gone is not ours any more. */
	if (!cv)
		cv = reply_conn(k, iph, ports, nv->vip, nv->vport);
	struct conn_cfg *cfg = get_cfg();
	__u64 now = now_ns();
	/* A reply from a real the connection has left (its entry was reused
	 * for a new connection elsewhere) is not the connection's: ip_vs_out
	 * would not find it either. */
	if (!cv || !cfg || now >= cv->expires || cv->dead || cv->real_id != nv->real_id)
		return count(VERDICT_PASS_NO_CONN, XDP_PASS);
	if (r) {
		if (cv->flags & CONN_F_L2) {
			struct conn_l2 *l2 = (struct conn_l2 *)&cv->tk;
			nv->ifindex = cv->l2_ifindex;
			__builtin_memcpy(nv->cmac, l2->cmac, ETH_ALEN);
			__builtin_memcpy(nv->lbmac, l2->lbmac, ETH_ALEN);
		} else {
			/* Made with a reverse entry (persistent, or before its real
			 * was in nat_reals): that holds the way back. */
			*k = pkt_key(iph, ports);
			struct nat_val *rev = bpf_map_lookup_elem(&nat, k);
			if (!rev || rev->real_id != nv->real_id)
				return count(VERDICT_PASS_NO_CONN, XDP_PASS);
			nv = rev;
		}
	}
	if (iph->ttl <= 1)
		return count(VERDICT_PASS_TTL, XDP_PASS);
	conn_update(cv, cfg, iph->protocol, TBL_OUTPUT, tcp_flags, now, 1);

	struct bpf_fib_lookup *p = &s->fib;
	int rc = BPF_FIB_LKUP_RET_SUCCESS;
	__u32 gen = route_gen();
	/* nv holds the connection's conn_l2 when r is set and it has one. */
	int l2 = r && (cv->flags & CONN_F_L2);
	/* gen and MTU in one load: CPUs refreshing it after a bump never leave
	 * one generation's MTU under another's. */
	__u64 crt = *(volatile __u64 *)&cv->rt_gen;
	if (l2 && gen && (__u32)crt == gen) {
		/* Routed back the way the client came, in this generation: the
		 * connection's own entry has the route, one lookup fewer. */
		p->ifindex = nv->ifindex;
		p->mtu_result = crt >> 32;
		__builtin_memcpy(p->dmac, nv->cmac, ETH_ALEN);
		__builtin_memcpy(p->smac, nv->lbmac, ETH_ALEN);
	} else {
		/* Keyed by the packet's own destination field, which the
		 * rewrite leaves alone. */
		struct rt_val *rt = gen ? bpf_map_lookup_elem(&client_rt, &iph->daddr) : 0;
		if (!rt_hit(rt, iph->daddr, gen, p)) {
			rc = fib_route(ctx, iph, nv->vip, iph->daddr, nv->vport, ports[1], p);
			if (gen && rc == BPF_FIB_LKUP_RET_SUCCESS) {
				if (rt) {
					rt_fill(rt, iph->daddr, gen, p);
				} else {
					rt_fill(&s->rt, iph->daddr, gen, p);
					bpf_map_update_elem(&client_rt, &iph->daddr, &s->rt, BPF_ANY);
				}
			}
		}
		/* The usual case (a client, or its router, on the link its
		 * packets came in by) is remembered in the connection. */
		if (l2 && gen && rc == BPF_FIB_LKUP_RET_SUCCESS && p->ifindex == nv->ifindex &&
		    mac_eq(p->dmac, nv->cmac) && mac_eq(p->smac, nv->lbmac))
			*(volatile __u64 *)&cv->rt_gen = (__u64)gen | ((__u64)p->mtu_result << 32);
	}
	int f = FIT_OK;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		f = fit(ctx, tot, 0, p->mtu_result, p->ifindex);
		/* The real's own packet, quoted, from the LB's address, as the
		 * kernel forwarding it would answer. */
		if (f == FIT_TOO_BIG && (iph->frag_off & bpf_htons(IP_DF))) {
			__u16 mtu = p->mtu_result;
			return icmp_too_big(ctx, mtu, lb_addr(ctx, iph->saddr));
		}
	}
	__be32 real = iph->saddr;
	nat_rewrite(iph, l4check, &iph->saddr, &ports[0], nv->vip, nv->vport);
	account_out(nv->real_id, &real_stats, tot);
	account_out(nv->svc_id, &svc_stats, tot);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (f != FIT_OK) {
			/* The kernel forwards (segments, fragments) what the
			 * program cannot send. */
			int v = f == FIT_KERNEL ? VERDICT_PASS_GSO : VERDICT_PASS_TOO_BIG;
			frag_note(iph, real, iph->daddr, nv->real_id, cv->serial, nv->vip,
				  FRAG_F_REPLY | FRAG_F_PASS | (v << 8), 0, 0, 0);
			return count(v, XDP_PASS);
		}
		frag_note(iph, real, iph->daddr, nv->real_id, cv->serial, nv->vip, FRAG_F_REPLY, p->ifindex, p->dmac,
			  p->smac);
		return count(VERDICT_FWD_NAT_REPLY, send_routed(ctx, eth, iph, p->ifindex, p->dmac, p->smac));
	}
	/* The source is now the VIP, which the LB may hold itself: the kernel
	 * would drop such a packet as a martian, so it cannot resolve the
	 * neighbour for us. The client's packets came from cmac: go back there. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && p->ifindex == nv->ifindex) {
		frag_note(iph, real, iph->daddr, nv->real_id, cv->serial, nv->vip, FRAG_F_REPLY, nv->ifindex, nv->cmac,
			  nv->lbmac);
		return count(VERDICT_FWD_NAT_REPLY,
			     send_routed(ctx, eth, iph, nv->ifindex, nv->cmac, nv->lbmac));
	}
	return count(VERDICT_DROP_NO_ROUTE, XDP_DROP);
}

/* too_big answers a DF datagram that does not fit with ICMP and drops
 * any other: DR and TUN cannot hand the kernel a datagram for the VIP, and
 * the program cannot fragment. An aggregate that fits once segmented but
 * must go out of another link is dropped too: the kernel would refuse the
 * redirect. */
static __always_inline int too_big(struct xdp_md *ctx, struct iphdr *iph, int f, __u32 mtu)
{
	if (f == FIT_TOO_BIG && (iph->frag_off & bpf_htons(IP_DF)))
		return icmp_too_big(ctx, mtu, 0);
	return count(VERDICT_DROP_TOO_BIG, XDP_DROP);
}

static __always_inline int tun_encap(struct xdp_md *ctx, struct real_val *r, __u32 tot, int verdict)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *inner = data + sizeof(struct ethhdr);
	if ((void *)(inner + 1) > data_end)
		return count(VERDICT_DROP_ERROR, XDP_DROP);

	int f = fit(ctx, tot, sizeof(struct iphdr), r->mtu, r->ifindex);
	if (f != FIT_OK)
		return too_big(ctx, inner, f, r->mtu - sizeof(struct iphdr));

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
	return count(verdict, xmit(ctx, ifindex));
}

/* hold hands a later fragment to a VIP whose first has not been seen (lost,
 * or still to come) to the daemon, which sends it on where the first goes
 * when it comes, and drops it if it does not come soon. Anything else, or
 * with no room (or no daemon reading), goes to the kernel. */
static __always_inline int hold(struct xdp_md *ctx, struct iphdr *iph)
{
	__u32 b = addr_bucket(iph->daddr);
	__u8 *fl = bpf_map_lookup_elem(&addr_filter, &b);
	if (!fl || !(*fl & FILTER_VIP))
		return count(VERDICT_PASS_FRAGMENT, XDP_PASS);
	__u32 len = ctx->data_end - ctx->data;
	if (len >= HELD_MAX)
		return count(VERDICT_PASS_FRAGMENT, XDP_PASS);
	/* Bounds the verifier can follow into bpf_xdp_load_bytes. */
	asm volatile("" : "+r"(len));
	len &= HELD_MAX - 1;
	if (len < sizeof(struct ethhdr) + sizeof(struct iphdr))
		return count(VERDICT_PASS_FRAGMENT, XDP_PASS);
	struct held_frag *h = bpf_ringbuf_reserve(&held, sizeof(*h), 0);
	if (!h)
		return count(VERDICT_PASS_FRAGMENT, XDP_PASS);
	if (bpf_xdp_load_bytes(ctx, 0, h->data, len)) {
		bpf_ringbuf_discard(h, 0);
		return count(VERDICT_PASS_FRAGMENT, XDP_PASS);
	}
	h->len = len;
	h->ifindex = ctx->ingress_ifindex;
	bpf_ringbuf_submit(h, 0);
	return count(VERDICT_HOLD_FRAGMENT, XDP_DROP);
}

/* A fragment after the first: no ports, so it goes wherever its datagram's
 * first fragment went, or (first not seen) is held. */
static __noinline int later_fragment(struct xdp_md *ctx, __u32 tot)
{
	struct hdrs h;
	if (!reparse(ctx, &h, 0))
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	struct ethhdr *eth = h.eth;
	struct iphdr *iph = h.iph;
	struct frag_key k = {
		.src = iph->saddr,
		.dst = iph->daddr,
		.id = iph->id,
		.proto = iph->protocol,
	};
	struct frag_val *fv = bpf_map_lookup_elem(&frags, &k);
	if (!fv || now_ns() >= fv->expires)
		return hold(ctx, iph);
	__u32 id = fv->real_id;
	struct real_val *r = bpf_map_lookup_elem(&reals, &id);
	if (!r || !(r->flags & REAL_F_VALID) || r->serial != fv->serial)
		return count(VERDICT_PASS_FRAGMENT, XDP_PASS);
	if (fv->flags & FRAG_F_REPLY) {
		account_out(id, &real_stats, tot);
		account_out(r->svc_id, &svc_stats, tot);
	} else {
		account_in(id, &real_stats, tot, 0, 0);
		account_in(r->svc_id, &svc_stats, tot, 0, 0);
	}
	if (r->mode == MODE_DR && !(fv->flags & FRAG_F_REPLY)) {
		__builtin_memcpy(eth->h_dest, r->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, r->smac, ETH_ALEN);
		return count(VERDICT_FWD_FRAGMENT, xmit(ctx, r->ifindex));
	}
	if (r->mode == MODE_TUN && !(fv->flags & FRAG_F_REPLY))
		return tun_encap(ctx, r, tot, VERDICT_FWD_FRAGMENT);
	if (r->mode != MODE_NAT)
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	if (iph->ttl <= 1)
		return count(VERDICT_PASS_TTL, XDP_PASS);
	__be32 *a = (fv->flags & FRAG_F_REPLY) ? &iph->saddr : &iph->daddr;
	iph->check = csum_replace4(iph->check, *a, fv->addr);
	*a = fv->addr;
	if (fv->flags & FRAG_F_PASS)
		return count((fv->flags >> 8) & 0xff, XDP_PASS);
	return count(VERDICT_FWD_FRAGMENT, send_routed(ctx, eth, iph, fv->ifindex, fv->dmac, fv->smac));
}


/* nat_l2 lets a new NAT connection's replies find it through nat_reals,
 * with the way back to the client in the entry itself, when its real is
 * the only one of its address, port and protocol. A persistent one keeps
 * its template in tk, and a real without a port (port-0 services) answers
 * from whatever port the client asked for: both have reverse entries. */
static __always_inline void nat_l2(struct scratch *s, struct real_val *r, __u32 real_id, struct ethhdr *eth,
				   __u32 ifindex)
{
	struct conn_val *nc = &s->nc;
	if ((nc->flags & CONN_F_PERSIST) || !r->port)
		return;
	struct nat_real_val *nr = nat_real(s, r->ip, r->port, r->proto);
	if (!nr || nr->shared || nr->real_id != real_id)
		return;
	struct conn_l2 *l2 = (struct conn_l2 *)&nc->tk;
	__builtin_memcpy(l2->cmac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(l2->lbmac, eth->h_dest, ETH_ALEN);
	nc->l2_ifindex = ifindex;
	nc->flags |= CONN_F_L2;
}

/* NAT towards a real: the reverse entry for a new flow's replies, then the
 * rewrite and the route. */
static __noinline int nat_forward(struct xdp_md *ctx, struct real_val *r, __u32 real_id, int is_new, __u32 tot)
{
	struct hdrs h;
	if (!r || !reparse(ctx, &h, 1))
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	struct ethhdr *eth = h.eth;
	struct iphdr *iph = h.iph;
	__u16 *l4check = h.l4check;
	__be16 *ports = h.ports;
	/* A real without a port takes the packet's (port-0 services). */
	__be16 rport = r->port ?: ports[1];
	struct scratch *s = get_scratch();
	if (!s)
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	if (is_new) {
		struct conn_key *rk = &s->rk;
		struct nat_val *nv = &s->nv;
		rk->src = r->ip;
		rk->dst = iph->saddr;
		rk->sport = rport;
		rk->dport = ports[0];
		rk->proto = iph->protocol;
		__builtin_memset(rk->pad, 0, sizeof(rk->pad));
		nv->vip = iph->daddr;
		nv->vport = ports[1];
		nv->pad = 0;
		nv->svc_id = r->svc_id;
		nv->real_id = real_id;
		nv->ifindex = ctx->ingress_ifindex;
		__builtin_memcpy(nv->cmac, eth->h_source, ETH_ALEN);
		__builtin_memcpy(nv->lbmac, eth->h_dest, ETH_ALEN);
		if (bpf_map_update_elem(&nat, rk, nv, BPF_ANY)) {
			/* Its replies could not be translated: refuse it. */
			*rk = pkt_key(iph, ports);
			struct conn_val *c = bpf_map_lookup_elem(&conns, rk);
			if (c) {
				conn_retire(c, now_ns());
				bpf_map_delete_elem(&conns, rk);
			}
			return count(VERDICT_DROP_CONN_FULL, XDP_DROP);
		}
	}

	struct bpf_fib_lookup *p = &s->fib;
	int rc = BPF_FIB_LKUP_RET_SUCCESS;
	__u32 gen = route_gen();
	struct rt_val *rt = gen ? bpf_map_lookup_elem(&real_rt, &real_id) : 0;
	if (!rt_hit(rt, r->ip, gen, p)) {
		rc = fib_route(ctx, iph, iph->saddr, r->ip, ports[0], rport, p);
		if (rt && rc == BPF_FIB_LKUP_RET_SUCCESS)
			rt_fill(rt, r->ip, gen, p);
	}
	int f = FIT_OK;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		f = fit(ctx, tot, 0, p->mtu_result, p->ifindex);
		/* Before the rewrite: the client must recognise what it sent. */
		if (f == FIT_TOO_BIG && (iph->frag_off & bpf_htons(IP_DF)))
			return icmp_too_big(ctx, p->mtu_result, 0);
	}
	__be32 vip = iph->daddr;
	nat_rewrite(iph, l4check, &iph->daddr, &ports[1], r->ip, rport);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && f == FIT_OK) {
		frag_note(iph, iph->saddr, vip, real_id, r->serial, r->ip, 0, p->ifindex, p->dmac, p->smac);
		return count(VERDICT_FWD_NAT, send_routed(ctx, eth, iph, p->ifindex, p->dmac, p->smac));
	}
	/* The source is the client's, so the kernel can forward this one:
	 * resolve the real's MAC on the way (the next packet finds it),
	 * segment an aggregate, fragment what does not fit. */
	int v = VERDICT_PASS_NO_NEIGH;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		v = f == FIT_KERNEL ? VERDICT_PASS_GSO : VERDICT_PASS_TOO_BIG;
	else if (rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return count(VERDICT_DROP_NO_ROUTE, XDP_DROP);
	frag_note(iph, iph->saddr, vip, real_id, r->serial, r->ip, FRAG_F_PASS | (v << 8), 0, 0, 0);
	return count(v, XDP_PASS);
}

/* xlb_new_conn makes the connection entry for a packet that may start
 * one: through the service's persistence template if it has one, else by
 * the scheduler. It returns the real's id or NO_REAL. A global function,
 * checked once by the verifier; its pointers are copies on the caller's
 * stack. */
__noinline __u32 xlb_new_conn(struct svc_val *sv, struct conn_key *ck, __u32 gen, struct conn_val *nc, __u64 now)
{
	if (!sv || !ck || !nc)
		return NO_REAL;
	struct conn_cfg *cfg = get_cfg();
	if (!cfg)
		return NO_REAL;
	__u32 id;
	if (!sv->persist_timeout) {
		/* ip_vs_schedule: "port zero only supported in persistent
		 * services". */
		if (sv->flags & SVC_F_ALLPORTS)
			return NO_REAL;
		id = schedule(sv, gen, ck->src, ck->dst, ck->sport);
		if (id == NO_REAL)
			return NO_REAL;
		nc->flags |= CONN_F_PICKED;
	} else {
		/* ip_vs_sched_persist: one template per client network, VIP and
		 * port decides the real while it lives, even a quiesced one. */
		/* The key is the new entry's own copy. */
		struct tmpl_key *tk = &nc->tk;
		tk->client = ck->src & sv->persist_mask;
		tk->vip = ck->dst;
		tk->vport = (sv->flags & SVC_F_TMPL_NOPORT) ? 0 : ck->dport;
		tk->proto = ck->proto;
		tk->pad = 0;
		struct tmpl_val *t = bpf_map_lookup_elem(&persist, tk);
		if (t) {
			struct cand d;
			int ok = tmpl_alive(t, now, cfg->tmpl_extension) && cand_get(t->real_id, &d) &&
				 d.r->serial == t->serial && !(cfg->expire_quiescent_template && d.r->weight == 0);
			if (!ok) {
				real_unbind(t->real_id, t->serial, 1, 0);
				bpf_map_delete_elem(&persist, tk);
				t = 0;
			}
		}
		if (!t) {
			id = schedule(sv, gen, ck->src, ck->dst, ck->sport);
			if (id == NO_REAL)
				return NO_REAL;
			nc->flags |= CONN_F_PICKED;
			struct real_val *r = bpf_map_lookup_elem(&reals, &id);
			if (!r)
				return NO_REAL;
			struct scratch *s = get_scratch();
			if (!s)
				return NO_REAL;
			struct tmpl_val *nt = &s->nt;
			__builtin_memset(nt, 0, sizeof(*nt));
			nt->real_id = id;
			nt->serial = r->serial;
			nt->born = now;
			nt->timeout = sv->persist_timeout;
			/* Two templates of one key can be born in the same
			 * instant (one invalidated, its successor made). */
			nt->tag = bpf_get_prandom_u32() | 1;
			if (!bpf_map_update_elem(&persist, tk, nt, BPF_NOEXIST))
				real_bind(id, r, 1, 0);
			t = bpf_map_lookup_elem(&persist, tk);
			if (!t)
				return NO_REAL;
		}
		id = t->real_id;
		__sync_fetch_and_add(&t->n_control, 1);
		t->expires = now + t->timeout;
		nc->flags |= CONN_F_PERSIST;
		nc->tmpl_tag = t->tag;
	}
	struct real_val *r = bpf_map_lookup_elem(&reals, &id);
	if (!r)
		return NO_REAL;
	nc->real_id = id;
	nc->serial = r->serial;
	/* ip_vs_conn_new's timeout until the first transition rearms it. */
	nc->expires = now + 3000000000ULL;
	if (sv->mode != MODE_NAT)
		nc->flags |= CONN_F_NOOUTPUT;
	return id;
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
	if ((void *)(iph + 1) > data_end)
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	/* The address filter before anything else: on a shared host most
	 * packets are for no VIP and from no NAT real, and are none of the
	 * balancer's business, whole or not. */
	__u32 bucket = addr_bucket(iph->daddr);
	__u8 *filter = bpf_map_lookup_elem(&addr_filter, &bucket);
	if (!filter)
		return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
	int to_vip = *filter & FILTER_VIP;
	if (!to_vip) {
		bucket = addr_bucket(iph->saddr);
		filter = bpf_map_lookup_elem(&addr_filter, &bucket);
		if (!filter || !(*filter & FILTER_NAT_REAL))
			return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
	}
	int hlen = ipv4_hdr_len(iph, data_end);
	if (!hlen)
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	__u32 tot = bpf_ntohs(iph->tot_len);
	if (iph->frag_off & bpf_htons(IP_OFFSET)) {
		if (!ipv4_csum_ok(iph, hlen, data_end))
			return count(VERDICT_PASS_MALFORMED, XDP_PASS);
		return later_fragment(ctx, tot);
	}

	void *l4 = (void *)iph + hlen;
	__u32 l4len = tot - hlen;
	__u8 tcp_flags = 0;
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end || l4len < sizeof(*th) || th->doff < 5 ||
		    th->doff * 4 > l4len)
			return count(VERDICT_PASS_MALFORMED, XDP_PASS);
		tcp_flags = ((__u8 *)th)[13];
	} else if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		/* A first fragment holds only the start of the datagram that
		 * uh->len measures. */
		if ((void *)(uh + 1) > data_end || l4len < sizeof(*uh) || bpf_ntohs(uh->len) < sizeof(*uh) ||
		    (bpf_ntohs(uh->len) > l4len && !(iph->frag_off & bpf_htons(IP_MF))))
			return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	} else {
		return count(VERDICT_PASS_OTHER_PROTO, XDP_PASS);
	}
	__be16 *ports = l4;

	if (!to_vip) {
		/* From a NAT real (the filter said so above). */
		if (!ipv4_csum_ok(iph, hlen, data_end))
			return count(VERDICT_PASS_MALFORMED, XDP_PASS);
		return nat_reply(ctx, tot, tcp_flags);
	}
	if (!ipv4_csum_ok(iph, hlen, data_end))
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	struct conn_cfg *cfg = get_cfg();
	if (!cfg)
		return count(VERDICT_DROP_ERROR, XDP_PASS);
	__u64 now = now_ns();

	/* An established flow needs neither ctl nor services: its entry names
	 * the real, and the real's entry its service. */
	struct conn_key ck = pkt_key(iph, ports);
	__u32 real_id = 0;
	struct real_val *r = 0;
	int is_new = 0;
	int syn = (tcp_flags & 0x02) != 0;
	__u32 nc_flags = 0;
	struct conn_val *cv = bpf_map_lookup_elem(&conns, &ck);
	struct conn_val *old = 0;
	if (cv) {
		if (now >= cv->expires || cv->dead) {
			conn_retire(cv, cv->expires);
			old = cv;
			cv = 0;
		} else {
			real_id = cv->real_id;
			r = bpf_map_lookup_elem(&reals, &real_id);
			if (r && (!(r->flags & REAL_F_VALID) || r->serial != cv->serial)) {
				/* Its real was removed: the flow starts over (as IPVS with
				 * expire_nodest_conn). */
				conn_retire(cv, now);
				old = cv;
				cv = 0;
				r = 0;
			} else if (r && syn && !cfg->no_conn_reuse && iph->protocol == IPPROTO_TCP &&
				   (cv->state == TCP_S_TIME_WAIT || cv->state == TCP_S_CLOSE)) {
				/* conn_reuse_mode: a new SYN on a closing entry starts a
				 * new connection; the old one is still counted while it is
				 * scheduled, then expires. */
				old = cv;
				cv = 0;
				r = 0;
			}
		}
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
			/* A port-0 service takes every port of its address. */
			sk.port = 0;
			sv = bpf_map_lookup_elem(&services, &sk);
		}
		if (!sv) {
			/* A VIP may also be a NAT real of another service. */
			bucket = addr_bucket(iph->saddr);
			filter = bpf_map_lookup_elem(&addr_filter, &bucket);
			if (filter && (*filter & FILTER_NAT_REAL))
				return nat_reply(ctx, tot, tcp_flags);
			return count(VERDICT_PASS_NOT_VIP, XDP_PASS);
		}
		/* tcp_conn_schedule: only a SYN (any segment with sloppy_tcp),
		 * never an RST, starts a TCP connection. */
		if (iph->protocol == IPPROTO_TCP && (!(syn || cfg->sloppy_tcp) || (tcp_flags & 0x04))) {
			/* The entry it ended (expired, reused, its real gone) ends
			 * even so. */
			if (old) {
				conn_retire(old, now);
				bpf_map_delete_elem(&conns, &ck);
			}
			return count(VERDICT_PASS_NO_CONN, XDP_PASS);
		}
		struct scratch *s = get_scratch();
		if (!s)
			return count(VERDICT_DROP_ERROR, XDP_PASS);
		struct conn_val *nc = &s->nc;
		__builtin_memset(nc, 0, sizeof(*nc));
		real_id = xlb_new_conn(sv, &ck, gen, nc, now);
		if (real_id == NO_REAL) {
			/* The entry this packet ended (expired, reused, its real
			 * gone) ends even so. */
			if (old) {
				conn_retire(old, now);
				bpf_map_delete_elem(&conns, &ck);
			}
			return count(VERDICT_PASS_NO_REAL, XDP_PASS);
		}
		conn_update(nc, cfg, iph->protocol, TBL_INPUT, tcp_flags, now, 0);
		r = bpf_map_lookup_elem(&reals, &real_id);
		if (!r)
			return count(VERDICT_DROP_ERROR, XDP_DROP);
		real_bind(real_id, r, 0, nc->flags & CONN_F_ACTIVE);
		if (r->mode == MODE_NAT)
			nat_l2(s, r, real_id, eth, ctx->ingress_ifindex);
		/* IPVS expires the entry a new SYN reused at the next tick: it is
		 * still counted when the new one is bound. */
		if (old)
			conn_retire(old, now);
		/* Another CPU may have scheduled the same new flow meanwhile: its
		 * choice wins, so both see one real server. */
		nc_flags = nc->flags;
		long err = bpf_map_update_elem(&conns, &ck, nc, old ? BPF_ANY : BPF_NOEXIST);
		if (err) {
			conn_retire(nc, now);
			/* Full: refuse the new flow rather than evict a live one. */
			if (err != -EEXIST)
				return count(VERDICT_DROP_CONN_FULL, XDP_DROP);
			cv = bpf_map_lookup_elem(&conns, &ck);
			if (!cv)
				return count(VERDICT_DROP_ERROR, XDP_DROP);
			real_id = cv->real_id;
		} else {
			is_new = 1;
		}
		r = bpf_map_lookup_elem(&reals, &real_id);
		if (!r)
			return count(VERDICT_DROP_ERROR, XDP_DROP);
	} else {
		conn_update(cv, cfg, iph->protocol, TBL_INPUT, tcp_flags, now, 1);
	}

	account_in(real_id, &real_stats, tot, is_new, is_new && (nc_flags & CONN_F_PICKED));
	account_in(r->svc_id, &svc_stats, tot, is_new, is_new && (nc_flags & CONN_F_PICKED));

	if (r->mode == MODE_DR) {
		int f = fit(ctx, tot, 0, r->mtu, r->ifindex);
		if (f != FIT_OK)
			return too_big(ctx, iph, f, r->mtu);
		frag_note(iph, iph->saddr, iph->daddr, real_id, r->serial, 0, 0, 0, 0, 0);
		__builtin_memcpy(eth->h_dest, r->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, r->smac, ETH_ALEN);
		return count(VERDICT_FWD_DR, xmit(ctx, r->ifindex));
	}
	if (r->mode == MODE_TUN) {
		frag_note(iph, iph->saddr, iph->daddr, real_id, r->serial, 0, 0, 0, 0, 0);
		return tun_encap(ctx, r, tot, VERDICT_FWD_TUN);
	}
	if (r->mode != MODE_NAT)
		return count(VERDICT_DROP_ERROR, XDP_DROP);
	/* Leave expiring packets to the kernel untouched: it sends the ICMP. */
	if (iph->ttl <= 1)
		return count(VERDICT_PASS_TTL, XDP_PASS);

	/* A connection its replies find through nat_reals needs no reverse
	 * entry: the second table insert is most of a new NAT flow's cost. */
	return nat_forward(ctx, r, real_id, is_new && !(nc_flags & CONN_F_L2), tot);
}

/*
 * gc, run by user space every second (and by tests at each clock step):
 * what IPVS's timers do. Connections first, so that templates see the
 * connections they control already gone.
 */
struct bpf_map;

struct gc_ctx {
	__u64 now;
	__u64 ext;
	__u64 lblc_exp;
	__u32 conns, templates, nats, lblcs;
	__u32 live, shed, frags;
};

static long gc_conn_cb(struct bpf_map *map, struct conn_key *k, struct conn_val *v, struct gc_ctx *c)
{
	if (c->now >= v->expires || v->dead) {
		conn_retire(v, v->expires);
		bpf_map_delete_elem(&conns, k);
		c->conns++;
	} else {
		c->live++;
	}
	return 0;
}

/* How long a half-open entry may stay silent before gc sheds it from a
 * table under pressure: a handshake takes a round trip. */
#define SHED_IDLE_NS 1000000000ULL

/* gc_shed_cb is IPVS's drop_entry, for a table over three quarters full:
 * entries that never became assured (TCP: never established; UDP: one
 * packet, no reply) and have been silent for a second are retired. A flood
 * from spoofed sources is made of exactly those. */
static long gc_shed_cb(struct bpf_map *map, struct conn_key *k, struct conn_val *v, struct gc_ctx *c)
{
	struct conn_cfg *cfg = get_cfg();
	if (!cfg || v->dead || (v->flags & CONN_F_ASSURED))
		return 0;
	__u64 to = k->proto == IPPROTO_TCP ? cfg->tcp_timeout[v->state & (TCP_STATES - 1)] : cfg->udp_timeout;
	/* The last packet set expires to its time plus to. */
	if (v->expires < to || v->expires - to + SHED_IDLE_NS > c->now)
		return 0;
	conn_retire(v, c->now);
	bpf_map_delete_elem(&conns, k);
	c->shed++;
	return 0;
}

static long gc_tmpl_cb(struct bpf_map *map, struct tmpl_key *k, struct tmpl_val *t, struct gc_ctx *c)
{
	if (!tmpl_alive(t, c->now, c->ext)) {
		real_unbind(t->real_id, t->serial, 1, 0);
		bpf_map_delete_elem(&persist, k);
		c->templates++;
	}
	return 0;
}

static long gc_nat_cb(struct bpf_map *map, struct conn_key *k, struct nat_val *v, struct gc_ctx *c)
{
	struct conn_key fk = {
		.src = k->dst,
		.dst = v->vip,
		.sport = k->dport,
		.dport = v->vport,
		.proto = k->proto,
	};
	struct conn_val *cv = bpf_map_lookup_elem(&conns, &fk);
	if (!cv || cv->real_id != v->real_id) {
		bpf_map_delete_elem(&nat, k);
		c->nats++;
	}
	return 0;
}

static long gc_lblc_cb(struct bpf_map *map, struct lblc_key *k, struct lblc_val *v, struct gc_ctx *c)
{
	if (c->now >= v->last_used + c->lblc_exp) {
		bpf_map_delete_elem(&lblc_table, k);
		c->lblcs++;
	}
	return 0;
}

/* What one gc run removed, for user space's logs and metrics; conn_max is
 * the connection table's size, from user space. */
struct gc_result {
	__u32 conns, templates, nats, lblcs;
	__u32 conn_max; /* in */
	__u32 live;	/* connections left */
	__u32 shed;	/* half-open connections shed under pressure */
	__u32 frags;	/* fragment entries past the reassembly timeout */
	__s64 skew;	/* the packets' jiffy clock less gc's (0: no jiffy clock) */
};

static long gc_frag_cb(struct bpf_map *map, struct frag_key *k, struct frag_val *v, struct gc_ctx *c)
{
	if (c->now >= v->expires) {
		bpf_map_delete_elem(&frags, k);
		c->frags++;
	}
	return 0;
}

SEC("syscall")
int gc(struct gc_result *res)
{
	struct conn_cfg *cfg = get_cfg();
	if (!cfg)
		return 1;
	struct gc_ctx c = {
		.now = now_ns_gc(),
		.ext = cfg->tmpl_extension,
		.lblc_exp = (__u64)cfg->lblc_expiration_s * 1000000000ULL,
	};
	bpf_for_each_map_elem(&conns, gc_conn_cb, &c, 0);
	if (res->conn_max && (__u64)c.live * 4 > (__u64)res->conn_max * 3) {
		bpf_for_each_map_elem(&conns, gc_shed_cb, &c, 0);
		c.live -= c.shed;
	}
	bpf_for_each_map_elem(&persist, gc_tmpl_cb, &c, 0);
	bpf_for_each_map_elem(&nat, gc_nat_cb, &c, 0);
	bpf_for_each_map_elem(&lblc_table, gc_lblc_cb, &c, 0);
	bpf_for_each_map_elem(&frags, gc_frag_cb, &c, 0);
	res->lblcs = c.lblcs;
	res->frags = c.frags;
	res->conns = c.conns;
	res->templates = c.templates;
	res->nats = c.nats;
	res->live = c.live;
	res->shed = c.shed;
	__u64 tick = tick_ns;
	res->skew = tick && !now_override ? (__s64)(jiffy_ns(tick) - bpf_ktime_get_ns()) : 0;
	return 0;
}

/* trees builds every tournament tree of a generation from the live counts:
 * user space runs it on a generation it has just filled, before and after
 * switching to it, and on the active one every second, which bounds how
 * long a node that concurrent updates left stale lasts. */
struct trees_arg {
	__u32 gen;
	__u32 built;
};

SEC("syscall")
int trees(struct trees_arg *a)
{
	a->built = trees_build(a->gen);
	return 0;
}

/* clear_overload is how user space clears a real's overload flag
 * (__ip_vs_update_dest, when the upper threshold goes or rises) without
 * writing over the counters packets update at the same time. */
struct overload_arg {
	__u32 id;
};

SEC("syscall")
int clear_overload(struct overload_arg *a)
{
	__u32 id = a->id;
	struct real_conns *rc = bpf_map_lookup_elem(&real_load, &id);
	if (!rc)
		return 1;
	rc->overloaded = 0;
	xlb_tree_fix(id);
	return 0;
}

char _license[] SEC("license") = "GPL";
