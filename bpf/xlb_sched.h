/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IPVS's schedulers. The tables (rr/wrr sequences, sh/dh/mh lookup tables,
 * the reals in IPVS list order) are built in Go by pkg/sched, the
 * specification; what must happen per connection (counters, hashing,
 * least-connection scans) happens here, with the same arithmetic.
 */
#ifndef XLB_SCHED_H
#define XLB_SCHED_H

#include "xlb_conn.h"

struct cand {
	struct real_val *r;
	struct real_conns *rc;
};

static __always_inline int cand_get(__u32 id, struct cand *c)
{
	c->r = bpf_map_lookup_elem(&reals, &id);
	c->rc = bpf_map_lookup_elem(&real_load, &id);
	return c->r && c->rc && (c->r->flags & REAL_F_VALID);
}

/* usable is !is_unavailable: weight > 0 and not overloaded. */
static __always_inline int usable_id(__u32 id)
{
	struct cand c;
	if (!cand_get(id, &c))
		return 0;
	return c.r->weight > 0 && !c.rc->overloaded;
}

/* --- rr, wrr: NextInSequence --------------------------------------------- */

struct seq_ctx {
	__u32 base, len;
	struct rr_val *st;
	__u32 found;
};

static long seq_cb(__u64 i, struct seq_ctx *c)
{
	__u64 n = __sync_fetch_and_add(&c->st->next, 1);
	__u32 id = ring_at(c->base + (__u32)(n % c->len));
	if (id != NO_REAL && usable_id(id)) {
		c->found = id;
		return 1;
	}
	return 0;
}

/* --- hashing: hash_32 and the 64-bit kernel's hsiphash --------------------- */

static __always_inline __u32 hash_32(__u32 v, int bits)
{
	return (v * 0x61C88647u) >> (32 - bits);
}

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = ROTL64(v1, 13);                                                               \
		v1 ^= v0;                                                                          \
		v0 = ROTL64(v0, 32);                                                               \
		v2 += v3;                                                                          \
		v3 = ROTL64(v3, 16);                                                               \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = ROTL64(v3, 21);                                                               \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = ROTL64(v1, 17);                                                               \
		v1 ^= v2;                                                                          \
		v2 = ROTL64(v2, 32);                                                               \
	} while (0)

/* hsiphash_1u32 on a 64-bit kernel: SipHash-1-3 of one 4-byte word. */
static __always_inline __u32 hsiphash32(__u32 w, __u64 k0, __u64 k1)
{
	__u64 v0 = 0x736f6d6570736575ULL ^ k0;
	__u64 v1 = 0x646f72616e646f6dULL ^ k1;
	__u64 v2 = 0x6c7967656e657261ULL ^ k0;
	__u64 v3 = 0x7465646279746573ULL ^ k1;
	__u64 b = (4ULL << 56) | w;
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return (__u32)(v0 ^ v1 ^ v2 ^ v3);
}

/* The kernel's fixed mh keys (generate_hash_secret). */
#define MH_K1 2654435761ULL
#define MH_K2 2654446892ULL

/* --- sh and mh with fallback -------------------------------------------- */

struct probe_ctx {
	__u32 base, len;  /* table */
	__u32 ihash;
	__u32 key;	  /* sh: hash_32(port + fold); mh: port + fold */
	__u32 mh;
	__u32 found;
};

static long probe_cb(__u64 off, struct probe_ctx *c)
{
	__u32 roff = ((__u32)off + c->ihash) % c->len;
	__u32 b;
	if (c->mh)
		b = hsiphash32(roff + c->key, MH_K1, MH_K1) % c->len;
	else
		b = (roff + c->key) & 255;
	__u32 id = ring_at(c->base + b);
	if (id == NO_REAL)
		return 1; /* an empty bucket: IPVS gives up */
	if (usable_id(id)) {
		c->found = id;
		return 1;
	}
	return 0;
}

/* --- lc, wlc, sed, nq, fo, ovf: one pass over the reals in list order ----- */

struct pick_ctx {
	__u32 base;
	__u32 kind;
	__u32 best;
	__u32 best_w;
	__u64 best_oh;
};

/* twos's own: xlb_schedule's frame is on the hot chain, xlb_twos's is not. */
struct twos_ctx {
	__u32 base;
	__s32 rw1, rw2, w1, w2, oh1, oh2;
	__u32 choice1, choice2;
	__s32 total;
};

static long pick_cb(__u64 i, struct pick_ctx *c)
{
	__u32 id = ring_at(c->base + (__u32)i);
	struct cand d;
	if (id == NO_REAL || !cand_get(id, &d))
		return 0;
	__u32 w = d.r->weight;
	__u32 act = d.rc->active, inact = d.rc->inactive;
	int ovl = d.rc->overloaded;
	int usable = w > 0 && !ovl;
	__u64 oh;

	switch (c->kind) {
	case SCHED_LC:
		if (!usable)
			return 0;
		oh = ((__u64)act << 8) + inact;
		if (c->best == NO_REAL || oh < c->best_oh) {
			c->best = id;
			c->best_oh = oh;
		}
		return 0;
	case SCHED_WLC:
	case SCHED_SED:
	case SCHED_LBLC:
	case SCHED_LBLCR:
		oh = c->kind == SCHED_SED ? (__u64)act + 1 : ((__u64)act << 8) + inact;
		if (c->best == NO_REAL) {
			if (usable) {
				c->best = id;
				c->best_oh = oh;
				c->best_w = w;
			}
			return 0;
		}
		if (ovl)
			return 0;
		if (c->best_oh * w > oh * c->best_w) {
			c->best = id;
			c->best_oh = oh;
			c->best_w = w;
		}
		return 0;
	case SCHED_NQ:
		if (!usable)
			return 0;
		if (act == 0) {
			c->best = id;
			return 1;
		}
		oh = (__u64)act + 1;
		if (c->best == NO_REAL || c->best_oh * w > oh * c->best_w) {
			c->best = id;
			c->best_oh = oh;
			c->best_w = w;
		}
		return 0;
	case SCHED_FO:
		if (!ovl && w > c->best_w) {
			c->best = id;
			c->best_w = w;
		}
		return 0;
	case SCHED_OVF:
		if (ovl || act > w || w == 0)
			return 0;
		if (c->best == NO_REAL || w > c->best_w) {
			c->best = id;
			c->best_w = w;
		}
		return 0;
	}
	return 1;
}

/* twos, pass 1: the total weight of usable reals (plus one) and the last
 * usable one. */
static long twos_total_cb(__u64 i, struct twos_ctx *c)
{
	__u32 id = ring_at(c->base + (__u32)i);
	struct cand d;
	if (id == NO_REAL || !cand_get(id, &d))
		return 0;
	if (d.r->weight > 0 && !d.rc->overloaded) {
		c->total += (__s32)d.r->weight;
		c->choice1 = id;
	}
	return 0;
}

/* twos, pass 2: each draw walks the list subtracting weights. */
static long twos_pick_cb(__u64 i, struct twos_ctx *c)
{
	__u32 id = ring_at(c->base + (__u32)i);
	struct cand d;
	if (id == NO_REAL || !cand_get(id, &d))
		return 0;
	if (!(d.r->weight > 0 && !d.rc->overloaded))
		return 0;
	__s32 w = (__s32)d.r->weight;
	__s32 oh = (__s32)((d.rc->active << 8) + d.rc->inactive);
	c->rw1 -= w;
	c->rw2 -= w;
	if (c->rw1 <= 0 && c->w1 == -1) {
		c->choice1 = id;
		c->w1 = w;
		c->oh1 = oh;
	}
	if (c->rw2 <= 0 && c->w2 == -1) {
		c->choice2 = id;
		c->w2 = w;
		c->oh2 = oh;
	}
	return c->w1 != -1 && c->w2 != -1;
}

/* lblc's is_overloaded: more active connections than weight while some
 * real of the service is below half its weight. */
struct half_ctx {
	__u32 base;
	__u32 found;
};

static long half_cb(__u64 i, struct half_ctx *c)
{
	__u32 id = ring_at(c->base + (__u32)i);
	struct cand d;
	if (id == NO_REAL || !cand_get(id, &d))
		return 0;
	if (d.rc->active * 2 < d.r->weight) {
		c->found = 1;
		return 1;
	}
	return 0;
}

static __always_inline int lblc_overloaded(struct svc_val *sv, __u32 gen, __u32 mbase, struct cand *d)
{
	if (d->rc->active <= d->r->weight)
		return 0;
	struct tnode *root = tree_root(sv, gen);
	if (root)
		return root->half;
	struct half_ctx h = { .base = mbase };
	bpf_loop(sv->mem_len, half_cb, &h, 0);
	return h.found;
}

/* lblcr's set: members as (id, serial); one that is gone counts as absent. */
static __always_inline int member(struct lblc_val *e, int j, struct cand *d)
{
	if (j >= e->n || j >= LBLCR_SET)
		return 0;
	__u32 id = e->ids[j & (LBLCR_SET - 1)];
	return cand_get(id, d) && d->r->serial == e->serials[j & (LBLCR_SET - 1)];
}

/* ip_vs_dest_set_min: the least overhead/weight among members not
 * overloaded, seeded by the first usable one. Returns an id or NO_REAL. */
static __always_inline __u32 set_min(struct lblc_val *e)
{
	__u32 least = NO_REAL, lw = 0;
	__u64 loh = 0;
#pragma unroll
	for (int j = 0; j < LBLCR_SET; j++) {
		struct cand d;
		if (!member(e, j, &d))
			continue;
		__u64 oh = ((__u64)d.rc->active << 8) + d.rc->inactive;
		if (least == NO_REAL) {
			if (d.r->weight > 0 && !d.rc->overloaded) {
				least = e->ids[j];
				loh = oh;
				lw = d.r->weight;
			}
			continue;
		}
		if (d.rc->overloaded)
			continue;
		if (loh * d.r->weight > oh * lw) {
			least = e->ids[j];
			loh = oh;
			lw = d.r->weight;
		}
	}
	return least;
}

/* ip_vs_dest_set_max: the greatest overhead/weight among members with
 * weight > 0, ignoring overload. Returns the member's index or -1. */
static __always_inline int set_max(struct lblc_val *e)
{
	int most = -1;
	__u32 mw = 0;
	__u64 moh = 0;
#pragma unroll
	for (int j = 0; j < LBLCR_SET; j++) {
		struct cand d;
		if (!member(e, j, &d) || d.r->weight == 0)
			continue;
		__u64 oh = ((__u64)d.rc->active << 8) + d.rc->inactive;
		if (most < 0 || moh * d.r->weight < oh * mw) {
			most = j;
			moh = oh;
			mw = d.r->weight;
		}
	}
	return most;
}

static __always_inline void set_remove(struct lblc_val *e, int m)
{
#pragma unroll
	for (int j = 0; j < LBLCR_SET - 1; j++) {
		if (j >= m && j + 1 < e->n) {
			e->ids[j] = e->ids[j + 1];
			e->serials[j] = e->serials[j + 1];
		}
	}
	if (e->n > 0)
		e->n--;
}

/* New members go first (list_add_rcu); a full set drops its last. */
static __always_inline void set_insert(struct lblc_val *e, __u32 id, __u32 serial)
{
#pragma unroll
	for (int j = LBLCR_SET - 1; j > 0; j--) {
		e->ids[j] = e->ids[j - 1];
		e->serials[j] = e->serials[j - 1];
	}
	e->ids[0] = id;
	e->serials[0] = serial;
	if (e->n < LBLCR_SET)
		e->n++;
}

/* lblc_new points the destination's entry at one real. */
static __always_inline void lblc_new(struct lblc_key *k, __u32 id, __u32 serial, __u64 now)
{
	__u32 zero = 0;
	struct lblc_val *nv = bpf_map_lookup_elem(&lblc_scratch, &zero);
	if (!nv)
		return;
	__builtin_memset(nv, 0, sizeof(*nv));
	nv->last_used = now;
	nv->last_mod = now;
	nv->n = 1;
	nv->ids[0] = id;
	nv->serials[0] = serial;
	bpf_map_update_elem(&lblc_table, k, nv, BPF_ANY);
}

static __always_inline __u32 pick_pass(struct svc_val *sv, __u32 mbase, __u32 kind)
{
	struct pick_ctx c = { .base = mbase, .kind = kind, .best = NO_REAL };
	bpf_loop(sv->mem_len, pick_cb, &c, 0);
	return c.best;
}

/* tree_ok says a winner read from a tree may be taken as it is: a node
 * another CPU is updating can name a real that no longer qualifies. */
static __always_inline int tree_ok(struct svc_val *sv, __u32 id, __u32 kind)
{
	struct cand d;
	return cand_get(id, &d) && d.r->svc_id == sv->id && d.r->weight > 0 && !d.rc->overloaded &&
	       !(kind == SCHED_OVF && d.rc->active > d.r->weight);
}

/* pick_least is the least-connection family's choice: the tree's root,
 * or the scan when the service has no tree or its root is stale. */
static __always_inline __u32 pick_least(struct svc_val *sv, __u32 gen, __u32 mbase, __u32 kind)
{
	struct tnode *root = tree_root(sv, gen);
	if (root) {
		__u32 id = root->id;
		if (id == NO_REAL || tree_ok(sv, id, kind))
			return id;
	}
	return pick_pass(sv, mbase, kind);
}

static __always_inline __s32 overhead(__u32 id)
{
	struct real_conns *rc = bpf_map_lookup_elem(&real_load, &id);
	return rc ? (__s32)((rc->active << 8) + rc->inactive) : 0;
}

static __always_inline __s32 weight(__u32 id)
{
	struct real_val *r = bpf_map_lookup_elem(&reals, &id);
	return r ? (__s32)r->weight : 0;
}

/* twos through the tree of weight sums: the two draws, each a walk from
 * the root. NO_REAL - 1 when the tree cannot answer. */
static __always_inline __u32 twos_tree(struct svc_val *sv, __u32 gen, __u32 r1, __u32 r2)
{
	__u32 tb = tree_base(sv, gen);
	struct tnode *meta = tb ? tnode_at(tb) : 0;
	struct tnode *root = tb ? tnode_at(tb + 1) : 0;
	if (!meta || !root)
		return NO_REAL - 1;
	__u32 total = root->oh;
	if (total == 0)
		return NO_REAL;
	total++;
	/* IPVS takes the first real whose running sum brings the draw to 0
	 * or below: a draw of 0 is the first usable real, as is 1. */
	struct draw_ctx dc = { .base = tb, .P = meta->w };
	__u32 c1 = tree_draw(&dc, (r1 % total) ?: 1);
	__u32 c2 = tree_draw(&dc, (r2 % total) ?: 1);
	if (!tree_ok(sv, c1, SCHED_TWOS) || !tree_ok(sv, c2, SCHED_TWOS))
		return NO_REAL - 1;
	if (weight(c2) * overhead(c1) > weight(c1) * overhead(c2))
		return c2;
	return c1;
}

/* xlb_schedule picks a real for a new connection, or NO_REAL. A global
 * function: the verifier checks it once, not once per path of its caller.
 * sv is a copy on the caller's stack. */
__noinline __u32 xlb_schedule(struct svc_val *sv, __u32 gen, __be32 saddr, __be32 daddr, __u32 sport)
{
	if (!sv)
		return NO_REAL;
	struct conn_cfg *cfg = get_cfg();
	if (!cfg)
		return NO_REAL;
	/* Only the locality schedulers keep time: a clock read is a tenth of
	 * an established packet's cost. */
	__u64 now = sv->sched == SCHED_LBLC || sv->sched == SCHED_LBLCR ? now_ns() : 0;
	gen &= 1;
	__u32 tbase = gen * RING_HALF + sv->tab_off;
	__u32 mbase = gen * RING_HALF + sv->mem_off;
	__u32 port = (sv->flags & SVC_F_PORT) ? bpf_ntohs((__be16)sport) : 0;

	switch (sv->sched) {
	case SCHED_RR: {
		if (sv->tab_len == 0)
			return NO_REAL;
		__u32 sid = sv->id;
		struct seq_ctx c = { .base = tbase, .len = sv->tab_len, .found = NO_REAL };
		c.st = bpf_map_lookup_elem(&rr, &sid);
		if (!c.st)
			return NO_REAL;
		/* Usually the first candidate will do; the loop is for skipping
		 * overloaded reals. */
		seq_cb(0, &c);
		if (c.found == NO_REAL && sv->tab_len > 1)
			bpf_loop(sv->tab_len - 1, seq_cb, &c, 0);
		return c.found;
	}
	case SCHED_SH:
	case SCHED_MH: {
		if (sv->tab_len == 0)
			return NO_REAL;
		struct probe_ctx c = { .base = tbase, .len = sv->tab_len, .found = NO_REAL };
		__u32 fold = bpf_ntohl(saddr);
		if (sv->sched == SCHED_SH) {
			c.key = hash_32(port + fold, 8);
			c.ihash = c.key & 255;
		} else {
			c.mh = 1;
			c.key = port + fold;
			c.ihash = hsiphash32(c.key, MH_K1, MH_K1) % sv->tab_len;
		}
		__u32 id = ring_at(tbase + c.ihash);
		if (id == NO_REAL)
			return NO_REAL;
		if (usable_id(id))
			return id;
		if (!(sv->flags & SVC_F_FALLBACK))
			return NO_REAL;
		bpf_loop(sv->tab_len, probe_cb, &c, 0);
		return c.found;
	}
	case SCHED_DH: {
		if (sv->tab_len == 0)
			return NO_REAL;
		__u32 id = ring_at(tbase + hash_32(bpf_ntohl(daddr), 8));
		return id != NO_REAL && usable_id(id) ? id : NO_REAL;
	}
	case SCHED_LC:
	case SCHED_WLC:
	case SCHED_SED:
	case SCHED_NQ:
	case SCHED_FO:
	case SCHED_OVF:
		return pick_least(sv, gen, mbase, sv->sched);
	case SCHED_TWOS:
		return NO_REAL; /* xlb_twos */
	case SCHED_LBLC: {
		struct lblc_key k = { .svc_id = sv->id, .daddr = daddr };
		__u64 exp = (__u64)cfg->lblc_expiration_s * 1000000000ULL;
		struct lblc_val *e = bpf_map_lookup_elem(&lblc_table, &k);
		if (e && now >= e->last_used + exp)
			e = 0;
		if (e) {
			e->last_used = now;
			struct cand d;
			__u32 id = e->ids[0];
			if (cand_get(id, &d) && d.r->serial == e->serials[0] && d.r->weight > 0 &&
			    !lblc_overloaded(sv, gen, mbase, &d))
				return id;
		}
		__u32 id = pick_least(sv, gen, mbase, SCHED_LBLC);
		if (id == NO_REAL)
			return NO_REAL;
		struct cand d;
		if (!cand_get(id, &d))
			return NO_REAL;
		if (!e || e->ids[0] != id || e->serials[0] != d.r->serial)
			lblc_new(&k, id, d.r->serial, now);
		return id;
	}
	case SCHED_LBLCR: {
		struct lblc_key k = { .svc_id = sv->id, .daddr = daddr };
		__u64 exp = (__u64)cfg->lblc_expiration_s * 1000000000ULL;
		struct lblc_val *e = bpf_map_lookup_elem(&lblc_table, &k);
		if (e && now >= e->last_used + exp)
			e = 0;
		if (!e) {
			__u32 id = pick_least(sv, gen, mbase, SCHED_LBLCR);
			struct cand d;
			if (id == NO_REAL || !cand_get(id, &d))
				return NO_REAL;
			lblc_new(&k, id, d.r->serial, now);
			return id;
		}
		e->last_used = now;
		__u32 id = set_min(e);
		if (e->n > 1 && now > e->last_mod + exp) {
			int m = set_max(e);
			if (m >= 0) {
				set_remove(e, m);
				e->last_mod = now;
			}
		}
		struct cand d;
		if (id != NO_REAL && cand_get(id, &d) && !lblc_overloaded(sv, gen, mbase, &d))
			return id;
		id = pick_least(sv, gen, mbase, SCHED_LBLCR);
		if (id == NO_REAL || !cand_get(id, &d))
			return NO_REAL;
		int have = 0;
#pragma unroll
		for (int j = 0; j < LBLCR_SET; j++)
			if (j < e->n && e->ids[j] == id && e->serials[j] == d.r->serial)
				have = 1;
		if (!have) {
			set_insert(e, id, d.r->serial);
			e->last_mod = now;
		}
		return id;
	}
	}
	return NO_REAL;
}

/* xlb_twos is twos's pick. Its own global function: below xlb_schedule the
 * stack (512 bytes over all frames) has no room for it. */
__noinline __u32 xlb_twos(struct svc_val *sv, __u32 gen)
{
	if (!sv)
		return NO_REAL;
	__u32 r1 = rand_override[0], r2 = rand_override[1];
	if (!r1 && !r2) {
		r1 = bpf_get_prandom_u32();
		r2 = bpf_get_prandom_u32();
	}
	__u32 t = twos_tree(sv, gen, r1, r2);
	if (t != NO_REAL - 1)
		return t;
	struct twos_ctx c = { .base = (gen & 1) * RING_HALF + sv->mem_off, .choice1 = NO_REAL, .choice2 = NO_REAL,
			      .w1 = -1, .w2 = -1 };
	bpf_loop(sv->mem_len, twos_total_cb, &c, 0);
	if (c.choice1 == NO_REAL)
		return NO_REAL;
	c.total++;
	c.rw1 = (__s32)(r1 % (__u32)c.total);
	c.rw2 = (__s32)(r2 % (__u32)c.total);
	bpf_loop(sv->mem_len, twos_pick_cb, &c, 0);
	if (c.choice2 != NO_REAL && c.w2 * c.oh1 > c.w1 * c.oh2)
		return c.choice2;
	return c.choice1;
}

/* schedule picks a real for a new connection, or NO_REAL. */
static __always_inline __u32 schedule(struct svc_val *sv, __u32 gen, __be32 saddr, __be32 daddr, __u32 sport)
{
	if (sv->sched == SCHED_TWOS)
		return xlb_twos(sv, gen);
	return xlb_schedule(sv, gen, saddr, daddr, sport);
}

#endif
