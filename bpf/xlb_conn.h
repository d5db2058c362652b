/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Connection tracking as IPVS does it, for the connection counts the
 * schedulers need and for IPVS's timeouts: ip_vs_proto_tcp.c's state
 * tables, ip_vs_bind_dest/ip_vs_unbind_dest's counters and overload flag,
 * and ip_vs_sched_persist's templates. pkg/sched is the specification; its
 * tables are in conn_cfg.
 *
 * IPVS expires entries from timers. Here an entry carries its expiry time:
 * packets treat an expired entry as gone, and the gc program, which user
 * space runs every second, retires expired entries and their counts.
 */
#ifndef XLB_CONN_H
#define XLB_CONN_H

#include "xlb_tree.h"

#define TCP_S_ESTABLISHED 1
#define TCP_S_CLOSE 6
#define TCP_S_TIME_WAIT 5
#define TBL_INPUT 0
#define TBL_OUTPUT 1
#define TBL_INPUT_ONLY 2

static __always_inline struct conn_cfg *get_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&track_cfg, &zero);
}

/* ip_vs_bind_dest: a new connection counts as inactive until its first
 * state change, which the caller has already applied (active says where it
 * counts now: one atomic instead of three); a template counts in
 * persistconns. */
static __always_inline void real_bind(__u32 id, struct real_val *r, int template, int active)
{
	struct real_conns *rc = bpf_map_lookup_elem(&real_load, &id);
	if (!rc)
		return;
	if (template)
		__sync_fetch_and_add(&rc->persist, 1);
	else if (active)
		__sync_fetch_and_add(&rc->active, 1);
	else
		__sync_fetch_and_add(&rc->inactive, 1);
	int was = rc->overloaded;
	if (r->uthreshold && rc->active + rc->inactive >= r->uthreshold)
		rc->overloaded = 1;
	if (!template || was != rc->overloaded)
		xlb_tree_fix(id);
}

/* ip_vs_unbind_dest. The counts belong to the real the entry was made for:
 * once its id went to another real (serial differs) there is nothing to
 * give back. */
static __always_inline void real_unbind(__u32 id, __u32 serial, int template, int active)
{
	struct real_val *r = bpf_map_lookup_elem(&reals, &id);
	struct real_conns *rc = bpf_map_lookup_elem(&real_load, &id);
	if (!r || !rc || r->serial != serial)
		return;
	if (template)
		__sync_fetch_and_sub(&rc->persist, 1);
	else if (active)
		__sync_fetch_and_sub(&rc->active, 1);
	else
		__sync_fetch_and_sub(&rc->inactive, 1);
	__u32 total = rc->active + rc->inactive;
	int was = rc->overloaded;
	if (r->lthreshold) {
		if (total < r->lthreshold)
			rc->overloaded = 0;
	} else if (r->uthreshold) {
		if (total * 4 < r->uthreshold * 3)
			rc->overloaded = 0;
	} else {
		rc->overloaded = 0;
	}
	if (!template || was != rc->overloaded)
		xlb_tree_fix(id);
}

/* tmpl_alive says whether a template lives at now, moving its timer
 * through the firings IPVS's would have made meanwhile: a template whose
 * timer fires while connections still use it is pushed back by
 * tmpl_extension, which also becomes its timeout (ip_vs_conn_expire). */
static __always_inline int tmpl_alive(struct tmpl_val *t, __u64 now, __u64 ext)
{
	if (now < t->expires)
		return 1;
	if (ext == 0)
		return 0;
	if (t->n_control > 0) {
		__u64 k = (now - t->expires) / ext + 1;
		t->expires += k * ext;
		t->timeout = ext;
		return 1;
	}
	/* Idle since zero_since: every firing before that instant found it in
	 * use; the first at or after it (a connection expiring at the same
	 * instant goes first) removes it. */
	if (t->zero_since <= t->expires)
		return 0;
	__u64 death = t->expires + (t->zero_since - t->expires + ext - 1) / ext * ext;
	if (now >= death)
		return 0;
	t->expires = death;
	t->timeout = ext;
	return 1;
}

/* conn_retire gives back what a connection holds, once, whoever (a packet
 * finding it expired, or gc) gets there first. at is when it expired. */
static __always_inline void conn_retire(struct conn_val *cv, __u64 at)
{
	if (__sync_val_compare_and_swap(&cv->dead, 0, 1) != 0)
		return;
	real_unbind(cv->real_id, cv->serial, 0, cv->flags & CONN_F_ACTIVE);
	if (!(cv->flags & CONN_F_PERSIST))
		return;
	struct tmpl_val *t = bpf_map_lookup_elem(&persist, &cv->tk);
	if (!t || t->tag != cv->tmpl_tag)
		return;
	__sync_fetch_and_sub(&t->n_control, 1);
	if (t->zero_since < at)
		t->zero_since = at;
}

/* tcp_state_transition: RST before SYN before FIN before ACK; a segment
 * with none of them closes. */
static __always_inline int tcp_row(__u8 flags)
{
	if (flags & 0x04)
		return 3;
	if (flags & 0x02)
		return 0;
	if (flags & 0x01)
		return 1;
	if (flags & 0x10)
		return 2;
	return -1;
}

/* conn_update moves the connection's state for one packet and rearms its
 * timer. table is TBL_INPUT for client packets, TBL_OUTPUT for NAT replies.
 * bound says the connection is already counted in its real's load (a new
 * one is counted after its first transition). */
static __always_inline void conn_update(struct conn_val *cv, struct conn_cfg *cfg, __u8 proto, int table,
					__u8 tcp_flags, __u64 now, int bound)
{
	if (proto != IPPROTO_TCP) {
		/* A second packet or a reply: not a one-off from a spoofed
		 * source, so gc does not shed it under pressure. */
		if (bound)
			cv->flags |= CONN_F_ASSURED;
		cv->expires = now + cfg->udp_timeout;
		return;
	}
	if (cv->flags & CONN_F_NOOUTPUT) {
		if (table == TBL_OUTPUT)
			cv->flags &= ~CONN_F_NOOUTPUT;
		else
			table = TBL_INPUT_ONLY;
	}
	__u32 old = cv->state & (TCP_STATES - 1);
	__u32 ns = TCP_S_CLOSE;
	int row = tcp_row(tcp_flags);
	if (row >= 0)
		ns = cfg->tcp_next[table & 3][row & 3][old] & (TCP_STATES - 1);
	if (ns != old) {
		int was = cv->flags & CONN_F_ACTIVE;
		int is = cfg->tcp_active[ns];
		if (was != is && bound) {
			struct real_val *r = bpf_map_lookup_elem(&reals, &cv->real_id);
			__u32 id = cv->real_id;
			struct real_conns *rc = bpf_map_lookup_elem(&real_load, &id);
			if (r && rc && r->serial == cv->serial) {
				if (is) {
					__sync_fetch_and_add(&rc->active, 1);
					__sync_fetch_and_sub(&rc->inactive, 1);
				} else {
					__sync_fetch_and_sub(&rc->active, 1);
					__sync_fetch_and_add(&rc->inactive, 1);
				}
				xlb_tree_fix(id);
			}
		}
		if (is)
			cv->flags |= CONN_F_ACTIVE;
		else
			cv->flags &= ~CONN_F_ACTIVE;
		cv->state = ns;
		/* The handshake states count as active too; only a
		 * handshake completed says the client is real. */
		if (ns == TCP_S_ESTABLISHED)
			cv->flags |= CONN_F_ASSURED;
	}
	cv->expires = now + cfg->tcp_timeout[ns];
}

#endif
