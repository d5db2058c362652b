/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tournament trees that make the least-connection family O(1) per new flow.
 *
 * IPVS's lc, wlc, sed, nq, fo, ovf, lblc and lblcr walk the service's reals
 * in list order and keep the first that is strictly better than all before
 * it. Each of their comparisons is a total preorder on a key (overhead,
 * weight), so the same choice is the winner of a binary tournament over the
 * reals in list order in which the left side wins ties: the root of a tree
 * whose node holds its subtree's winner and key. A new flow reads the root;
 * whatever changes a real's key (a connection bound or unbound, a state
 * change between active and inactive, the overload flag) replays the matches
 * on its path to the root and stops at the first node that comes out the
 * same. twos keeps subtree sums of usable weight instead, for its two
 * weighted draws; lblc and lblcr also keep whether any real of the subtree
 * is below half its weight (is_overloaded's second scan).
 *
 * Per service and generation the tree sits in pick_tree from tree_off on:
 * node 0 says the scheduler (id), P (w: leaves, a power of two), where the
 * member list starts in ring (oh) and the service (half); nodes 1..2P-1
 * are the heap, leaf i at P+i is the i-th real of the list. real_tree says
 * where each real's leaf is in either generation.
 *
 * Updates from several CPUs can interleave and leave a node stale; a pick
 * checks the winner is still usable (else it scans as IPVS does), and user
 * space rebuilds every tree of the active generation once a second.
 */
#ifndef XLB_TREE_H
#define XLB_TREE_H

#include "xlb_maps.h"

struct bpf_map;

#define NO_REAL 0xffffffff
#define TREE_LEVELS 17 /* P <= MAX_REALS = 1 << 16 */

static __always_inline __u32 ring_at(__u32 slot)
{
	__u32 *id = bpf_map_lookup_elem(&ring, &slot);
	return id ? *id : NO_REAL;
}

static __always_inline struct tnode *tnode_at(__u32 i)
{
	return bpf_map_lookup_elem(&pick_tree, &i);
}

/* tree_leaf is real id's key for the scheduler kind. A real that cannot be
 * chosen has id NO_REAL and loses every match. */
static __always_inline void tree_leaf(__u32 kind, __u32 id, __u32 svc_id, struct tnode *n)
{
	n->id = NO_REAL;
	n->w = 0;
	n->oh = 0;
	n->half = 0;
	struct real_val *r = bpf_map_lookup_elem(&reals, &id);
	struct real_conns *rc = bpf_map_lookup_elem(&real_load, &id);
	if (!r || !rc || !(r->flags & REAL_F_VALID) || r->svc_id != svc_id)
		return;
	__u32 w = r->weight, act = rc->active, inact = rc->inactive;
	int usable = w > 0 && !rc->overloaded;
	n->half = (__u64)act * 2 < w;
	if (kind == SCHED_OVF && act > w)
		usable = 0;
	if (!usable)
		return;
	n->id = id;
	switch (kind) {
	case SCHED_LC:
		n->w = 1;
		n->oh = (act << 8) + inact;
		break;
	case SCHED_SED:
		n->w = w;
		n->oh = act + 1;
		break;
	case SCHED_NQ:
		/* An idle real beats every busy one; the first idle one wins. */
		n->w = act ? w : 1;
		n->oh = act ? act + 1 : 0;
		break;
	case SCHED_FO:
	case SCHED_OVF:
		/* The highest weight, the first of equals. */
		n->w = 1;
		n->oh = ~w;
		break;
	case SCHED_TWOS:
		n->oh = w;
		break;
	default: /* wlc, lblc, lblcr */
		n->w = w;
		n->oh = (act << 8) + inact;
	}
}

/* tree_join plays one match: b wins only when strictly better, so ties go
 * to the earlier real, as in IPVS's scans. */
static __always_inline void tree_join(__u32 kind, struct tnode *a, struct tnode *b, struct tnode *p)
{
	if (kind == SCHED_TWOS) {
		p->id = NO_REAL;
		p->w = 0;
		p->oh = a->oh + b->oh;
		p->half = 0;
		return;
	}
	int right = a->id == NO_REAL || (b->id != NO_REAL && (__u64)a->oh * b->w > (__u64)b->oh * a->w);
	p->id = right ? b->id : a->id;
	p->w = right ? b->w : a->w;
	p->oh = right ? b->oh : a->oh;
	p->half = a->half | b->half;
}

static __always_inline int tnode_same(struct tnode *a, struct tnode *b)
{
	return a->id == b->id && a->w == b->w && a->oh == b->oh && a->half == b->half;
}

/* xlb_tree_fix brings real id's leaf and the nodes above it up to date in
 * the active generation's tree, if its service has one. */
__noinline int xlb_tree_fix(__u32 id)
{
	__u32 zero = 0;
	struct ctl_val *c = bpf_map_lookup_elem(&ctl, &zero);
	struct tree_pos *tp = bpf_map_lookup_elem(&real_tree, &id);
	if (!c || !tp)
		return 0;
	__u32 g = c->gen & 1;
	__u32 base = tp->base[g];
	if (!base)
		return 0;
	struct tnode *meta = tnode_at(base);
	if (!meta)
		return 0;
	__u32 kind = meta->id, svc_id = meta->half;
	__u32 leaf = tp->leaf[g];
	/* A position can be left over from a configuration the real is no
	 * longer in: the member list says whose leaf it is. */
	if (leaf >= meta->w || ring_at(meta->oh + leaf) != id)
		return 0;
	__u32 node = meta->w + leaf;
	struct tnode n;
	tree_leaf(kind, id, svc_id, &n);
	struct tnode *cur = tnode_at(base + node);
	if (!cur || tnode_same(cur, &n))
		return 0;
	*cur = n;
	/* n is the node just written: only its sibling needs reading. */
	for (int i = 0; i < TREE_LEVELS; i++) {
		if (node <= 1)
			break;
		struct tnode *sib = tnode_at(base + (node ^ 1));
		struct tnode *p = tnode_at(base + (node >> 1));
		if (!sib || !p)
			return 0;
		struct tnode m;
		if (node & 1)
			tree_join(kind, sib, &n, &m);
		else
			tree_join(kind, &n, sib, &m);
		if (tnode_same(p, &m))
			break;
		*p = m;
		n = m;
		node >>= 1;
	}
	return 0;
}

/* --- building a whole tree from the live counts --------------------------- */

struct build_ctx {
	__u32 base, P, kind, svc_id, mbase, mlen;
};

static long build_leaf_cb(__u64 i, struct build_ctx *c)
{
	struct tnode n = { .id = NO_REAL };
	if (i < c->mlen)
		tree_leaf(c->kind, ring_at(c->mbase + (__u32)i), c->svc_id, &n);
	struct tnode *p = tnode_at(c->base + c->P + (__u32)i);
	if (p)
		*p = n;
	return 0;
}

static long build_node_cb(__u64 i, struct build_ctx *c)
{
	__u32 node = c->P - 1 - (__u32)i;
	struct tnode *l = tnode_at(c->base + 2 * node);
	struct tnode *r = tnode_at(c->base + 2 * node + 1);
	struct tnode *p = tnode_at(c->base + node);
	if (!l || !r || !p)
		return 1;
	struct tnode n;
	tree_join(c->kind, l, r, &n);
	*p = n;
	return 0;
}

/* tree_build recomputes the tree of one service of generation gen. */
static __always_inline void tree_build(__u32 gen, struct svc_val *sv)
{
	__u32 base = (gen & 1) * TREE_HALF + sv->tree_off;
	struct tnode *meta = tnode_at(base);
	if (!meta || meta->w == 0 || meta->w > MAX_REALS)
		return;
	struct build_ctx c = {
		.base = base,
		.P = meta->w,
		.kind = meta->id,
		.svc_id = meta->half,
		.mbase = meta->oh,
		.mlen = sv->mem_len,
	};
	bpf_loop(c.P, build_leaf_cb, &c, 0);
	if (c.P > 1)
		bpf_loop(c.P - 1, build_node_cb, &c, 0);
}

struct trees_ctx {
	__u32 gen;
	__u32 built;
};

static long trees_cb(struct bpf_map *map, struct svc_key *k, struct svc_val *v, struct trees_ctx *c)
{
	if (k->gen == c->gen && v->tree_off) {
		tree_build(c->gen, v);
		c->built++;
	}
	return 0;
}

/* trees_build rebuilds every tree of generation gen; returns how many. */
static __always_inline __u32 trees_build(__u32 gen)
{
	struct trees_ctx c = { .gen = gen & 1 };
	bpf_for_each_map_elem(&services, trees_cb, &c, 0);
	return c.built;
}

/* --- reading a tree ----------------------------------------------------- */

/* tree_base is where the service's tree of generation gen starts, or 0. */
static __always_inline __u32 tree_base(struct svc_val *sv, __u32 gen)
{
	if (!sv->tree_off)
		return 0;
	__u32 base = (gen & 1) * TREE_HALF + sv->tree_off;
	struct tnode *meta = tnode_at(base);
	if (!meta || meta->half != sv->id)
		return 0;
	return base;
}

/* tree_root is the root of the service's tree of generation gen, or 0. */
static __always_inline struct tnode *tree_root(struct svc_val *sv, __u32 gen)
{
	__u32 tb = tree_base(sv, gen);
	return tb ? tnode_at(tb + 1) : 0;
}

/* tree_draw finds the first usable real at which the running sum of
 * usable weights reaches r (r >= 1): twos's weighted draw. A bpf_loop, so
 * that the verifier does not follow every path down the tree. */
struct draw_ctx {
	__u32 base, P, node, r;
};

static long draw_cb(__u64 i, struct draw_ctx *c)
{
	if (c->node >= c->P)
		return 1;
	struct tnode *l = tnode_at(c->base + 2 * c->node);
	if (!l)
		return 1;
	if (l->oh >= c->r) {
		c->node = 2 * c->node;
	} else {
		c->r -= l->oh;
		c->node = 2 * c->node + 1;
	}
	return 0;
}

static __always_inline __u32 tree_draw(struct draw_ctx *c, __u32 r)
{
	c->node = 1;
	c->r = r;
	bpf_loop(TREE_LEVELS, draw_cb, c, 0);
	if (c->node < c->P)
		return NO_REAL;
	struct tnode *leaf = tnode_at(c->base + c->node);
	return leaf ? leaf->id : NO_REAL;
}

#endif
