/* SPDX-License-Identifier: GPL-2.0 */
/* The balancer's maps and the layouts user space shares (pkg/maps). */
#ifndef XLB_MAPS_H
#define XLB_MAPS_H

#include "common.h"

#define MAX_SERVICES 4096
#define MAX_REALS 65536
#define RING_HALF 1048576
/* Tournament trees, 2P nodes per service (P < 2 reals): room for all. */
#define TREE_HALF (4 * MAX_REALS + 2 * MAX_SERVICES + 1)
#define AF_INET 2
#define TCP_STATES 16

enum lb_mode {
	MODE_NAT = 1,
	MODE_DR = 2,
	MODE_TUN = 3,
};

/* IPVS's schedulers (pkg/sched is their specification). */
enum sched_kind {
	SCHED_RR = 0, /* rr and wrr: a precomputed sequence */
	SCHED_SH = 1,
	SCHED_DH = 2,
	SCHED_MH = 3,
	SCHED_LC = 4,
	SCHED_WLC = 5,
	SCHED_SED = 6,
	SCHED_NQ = 7,
	SCHED_FO = 8,
	SCHED_OVF = 9,
	SCHED_TWOS = 10,
	SCHED_LBLC = 11,
	SCHED_LBLCR = 12,
};

/* Service flags, as IPVS numbers them where it has them. The flag sets are
 * enums so that bpf2go gives user space the same values (pkg/maps); the
 * fields that hold them stay fixed-size integers, as pinned maps expect. */
enum svc_flags {
	SVC_F_PERSIST = 0x0001,
	SVC_F_FALLBACK = 0x0008,    /* sh-fallback, mh-fallback */
	SVC_F_PORT = 0x0010,	    /* sh-port, mh-port */
	SVC_F_ALLPORTS = 0x1000,    /* port 0: every port of the VIP */
	SVC_F_TMPL_NOPORT = 0x2000, /* templates have port 0 (port-0 and FTP services) */
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
	VERDICT_PASS_NO_CONN,
	/* An aggregated (GRO/GSO) packet that generic XDP cannot redirect to
	 * another link: rewritten, then forwarded by the kernel, which
	 * segments it. */
	VERDICT_PASS_GSO,
	/* A NAT datagram without DF too big for the egress link: rewritten,
	 * then fragmented and forwarded by the kernel. */
	VERDICT_PASS_TOO_BIG,
	/* A new flow refused: the connection table is full of live entries
	 * (half-open ones are shed by gc under pressure). */
	VERDICT_DROP_CONN_FULL,
	/* A later fragment sent where its datagram's first fragment went. */
	VERDICT_FWD_FRAGMENT,
	/* A later fragment to a VIP that came before its first: handed to
	 * the daemon, which sends it on once the first has been placed. */
	VERDICT_HOLD_FRAGMENT,
	VERDICT_MAX,
};

struct ctl_val {
	__u32 gen; /* active generation of services and ring: 0 or 1 */
	__u32 pad;
};

/* Per-protocol connection tracking, built by user space from pkg/sched:
 * IPVS's TCP state tables and timeouts. */
struct conn_cfg {
	__u8 tcp_next[3][4][TCP_STATES]; /* [input, output, input-only][syn, fin, ack, rst][state] */
	__u8 tcp_active[TCP_STATES];	 /* the state counts in activeconns */
	__u64 tcp_timeout[TCP_STATES];	 /* ns */
	__u64 udp_timeout;
	__u64 tmpl_extension; /* a template still in use is pushed back by this */
	/* IPVS's sysctls of the same names (lb.yaml's lvs_sysctl). */
	__u32 expire_quiescent_template;
	/* conn_reuse_mode 0, inverted so that a track_cfg written by an older
	 * xlbd (adopted until the first apply) keeps IPVS's default, 1. */
	__u32 no_conn_reuse;
	__u32 sloppy_tcp;
	__u32 lblc_expiration_s; /* lblc_expiration, also used for lblcr */
};

/* A first look that costs one array read instead of a hash lookup: a byte
 * per hash bucket of IPv4 addresses says whether a VIP (as destination) or
 * a NAT real server (as source) may have an address in it. */
#define FILTER_BITS 16

enum filter_flags {
	FILTER_VIP = 1,
	FILTER_NAT_REAL = 2,
};

struct svc_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 gen;
};

struct svc_val {
	__u32 id;	/* index into svc_stats and rr */
	__u32 sched;	/* enum sched_kind */
	__u32 flags;	/* enum svc_flags */
	__u32 mode;	/* enum lb_mode */
	__u32 tab_off;	/* sequence or hash table in ring, from the active half */
	__u32 tab_len;	/* 0: no real server can take new flows */
	__u32 mem_off;	/* the reals in IPVS list order, in ring too */
	__u32 mem_len;
	__be32 persist_mask;
	__u32 tree_off;	/* its tournament tree in pick_tree (0: none, scan) */
	__u64 persist_timeout; /* ns; 0: not persistent */
};

enum real_flags {
	REAL_F_VALID = 1,
};

/* One real server of one service. The id is stable for as long as the real
 * stays configured, so flows and counters survive unrelated changes. */
struct real_val {
	__be32 vip; /* the service it belongs to, so dumps read on their own */
	__be16 vport;
	__u8 proto;
	__u8 flags;
	__be32 ip;
	__be16 port;
	__u16 mtu;	 /* of the egress link: TUN must fit 20 more bytes */
	__u32 mode;
	__u32 serial;	 /* changes when an id is reused, so old flows let go */
	__u32 svc_id;	 /* for the service's counters */
	__u32 weight;	 /* 0: quiesced */
	__u32 last_weight; /* last non-zero weight: mh's table keeps a quiesced real's slots */
	__u32 uthreshold; /* connections from which it is overloaded (0: none) */
	__u32 lthreshold;
	__u32 ifindex;	 /* egress link towards ip (or its gateway) */
	__be32 lb_ip;	 /* our address on that link: outer source for TUN */
	__u8 dmac[6];	 /* next hop's MAC: the real itself on a shared segment */
	__u8 smac[6];	 /* egress link's MAC */
};

/* What the schedulers count per real, shared by all CPUs. */
struct real_conns {
	__u32 active;
	__u32 inactive;
	__u32 persist;	  /* templates pointing at it */
	__u32 overloaded; /* IP_VS_DEST_F_OVERLOAD */
};

struct conn_key {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* A persistence template's key: the client masked to the granularity, the
 * VIP and the port (0 for a port-0 service). */
struct tmpl_key {
	__be32 client;
	__be32 vip;
	__be16 vport;
	__u8 proto;
	__u8 pad;
};

enum conn_flags {
	CONN_F_ACTIVE = 1,   /* counted in activeconns, else inactconns */
	CONN_F_PERSIST = 2,  /* created through a template */
	CONN_F_NOOUTPUT = 4, /* no reply seen yet: input-only state table */
	CONN_F_PICKED = 8,   /* the scheduler chose the real (no template) */
	CONN_F_ASSURED = 16, /* TCP: established once; UDP: a reply or a second packet */
	/* NAT without a reverse entry: replies find the connection through
	 * nat_reals, and l2_ifindex and tk's bytes hold the way back to the
	 * client (conn_l2), which a reverse entry would have held. */
	CONN_F_L2 = 32,
};

struct conn_val {
	__u32 real_id;
	__u32 serial;
	__u64 expires; /* ns: when the entry times out unless a packet comes */
	__u32 state;   /* IPVS TCP state; 0 for UDP */
	__u32 flags;   /* enum conn_flags */
	__u32 dead;    /* set by whoever retires the entry, once */
	__u32 l2_ifindex; /* CONN_F_L2: where the client's packets came in */
	struct tmpl_key tk; /* CONN_F_PERSIST: its template; CONN_F_L2: conn_l2 */
	__u32 tmpl_tag; /* identifies the template instance it counts in */
	/* CONN_F_L2: the route generation in which the client's replies were
	 * routed back out l2_ifindex to cmac from lbmac (0: never), and that
	 * route's MTU. A reply then needs no route lookup of its own. */
	__u32 rt_gen; /* with rt_mtu, one 8-byte word: read and written whole */
	__u32 rt_mtu;
};

struct tmpl_val {
	__u32 real_id;
	__u32 serial;
	__u64 born;	  /* creation time: tells instances of one key apart */
	__u64 expires;	  /* ns */
	__u64 timeout;	  /* persistence_timeout, later the extension */
	__u64 zero_since; /* when n_control last dropped to 0 */
	__u32 n_control;  /* connections created through it still alive */
	__u32 tag;	  /* random: tells instances of one key apart */
};

/* The client's MAC and ours, as its first packet came in: where a NAT reply
 * goes when the kernel knows no neighbour for the client (the source is
 * the VIP, which the kernel would drop as a martian, so it cannot resolve
 * one for us). In conn_val's tk when CONN_F_L2 says so. */
struct conn_l2 {
	__u8 cmac[6];
	__u8 lbmac[6];
};

/* A NAT real server by its address, port and protocol: where a reply from
 * it finds its connection without a reverse entry per flow. Written by
 * user space for the NAT reals with a port; shared when reals of several
 * services have this address (each flow then has a reverse entry, and
 * real_id is one the flows made before may still use). */
struct nat_real_key {
	__be32 ip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

_Static_assert(sizeof(struct conn_l2) <= sizeof(struct tmpl_key), "conn_l2 lives in conn_val.tk");
_Static_assert(__builtin_offsetof(struct conn_val, rt_gen) % 8 == 0, "rt_gen and rt_mtu are one aligned word");

struct nat_real_val {
	__u32 real_id;
	__u32 shared;
};

/* Reverse entry of a NAT flow, keyed by the reply's own 5-tuple. */
struct nat_val {
	__be32 vip;
	__be16 vport;
	__u16 pad;
	__u32 svc_id;
	__u32 real_id;
	__u32 ifindex; /* where the client's packets came in */
	__u8 cmac[6];  /* and from which MAC: the way back when the */
	__u8 lbmac[6]; /* kernel has no neighbour entry for the client */
};

/* lblc and lblcr: the real (set) serving a destination address. */
struct lblc_key {
	__u32 svc_id;
	__be32 daddr;
};

#define LBLCR_SET 8

struct lblc_val {
	__u64 last_used;
	__u64 last_mod; /* lblcr: when the set last changed */
	__u32 n;	/* members in ids (lblc: 1) */
	__u32 pad;
	__u32 ids[LBLCR_SET];
	__u32 serials[LBLCR_SET];
};

struct stats {
	__u64 conns;
	__u64 picks; /* connections the scheduler chose it for (not a template) */
	__u64 pkts_in;
	__u64 bytes_in;
	__u64 pkts_out;
	__u64 bytes_out;
};

struct rr_val {
	__u64 next;
};

/* A node of a tournament tree (xlb_tree.h): the winner of its subtree and
 * its key, overhead/weight; twos keeps the usable weight's sum in oh. Node
 * 0 of a tree says how to read it: id is the scheduler, w the number of
 * leaves, oh the ring slot of the member list, half the service id. */
struct tnode {
	__u32 id;
	__u32 w;
	__u32 oh;
	__u32 half; /* some real below half its weight in active connections */
};

/* Where a real's leaf is, per generation: the tree's first node (0: none)
 * and the leaf's index. */
struct tree_pos {
	__u32 base[2];
	__u32 leaf[2];
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
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct conn_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} track_cfg SEC(".maps");

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
	__uint(max_entries, MAX_REALS);
	__type(key, __u32);
	__type(value, struct real_conns);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} real_load SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * TREE_HALF);
	__type(key, __u32);
	__type(value, struct tnode);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pick_tree SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_REALS);
	__type(key, __u32);
	__type(value, struct tree_pos);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} real_tree SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct rr_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rr SEC(".maps");

/* conns, nat, persist, lblc_table, frags and pmtu have the sizes of
 * pkg/maps's defaults here; the daemon sets each at load (--*-table-size). */

/* The connection table evicts nothing: an LRU would let a flood of SYNs
 * push out idle established connections (and leak their counts). When it is
 * full, new flows are refused; gc sheds half-open entries under pressure,
 * as IPVS's drop_entry does. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct conn_key);
	__type(value, struct conn_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conns SEC(".maps");

/* The NAT route cache. bpf_fib_lookup is most of what a NAT packet costs,
 * and its answer changes only when a link, address, neighbour, route or
 * rule does: user space bumps gen on every such netlink event, which makes
 * every cached route stale at once (gen 0: no cache). dst_only says the
 * routing depends on the destination alone (no policy rules beyond the
 * kernel's three), so that a route found for one packet holds for any
 * packet to the same address. */
struct rt_ctl {
	__u32 gen;
	__u32 dst_only;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rt_ctl);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} route_ctl SEC(".maps");

/* A cached route: what bpf_fib_lookup answered for dst in generation gen. */
struct rt_val {
	__be32 dst;
	__u32 gen;
	__u32 ifindex;
	__u32 mtu;
	__u8 dmac[6];
	__u8 smac[6];
};

/* Towards each NAT real, by real id (dst tells a reused id apart). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_REALS);
	__type(key, __u32);
	__type(value, struct rt_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} real_rt SEC(".maps");

/* Towards NAT clients, for the replies, by client address. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __be32);
	__type(value, struct rt_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} client_rt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_REALS);
	__type(key, struct nat_real_key);
	__type(value, struct nat_real_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nat_reals SEC(".maps");

/* nat_reals' unshared entries, direct-mapped by address and port: an array
 * slot is one load where the hash table is a hash and a bucket walk, paid
 * by every reply and every new NAT flow. Where two reals meet in a slot,
 * the one user space wrote keeps it and the other is found in nat_reals,
 * as is any real whose slot is empty or names another: the slots only
 * ever save a lookup. Not pinned: a new program starts with them empty,
 * and the first apply fills them. */
#define NAT_SLOT_BITS 16

struct nat_slot {
	__be32 ip;
	__be16 port;
	__u8 proto;
	__u8 used;
	__u32 real_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << NAT_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct nat_slot);
} nat_slots SEC(".maps");

/* The raw network-order words, as pkg/maps.NATSlot computes them. */
static __always_inline __u32 nat_slot_of(__be32 ip, __be16 port, __u8 proto)
{
	return ((ip ^ (__u32)port ^ ((__u32)proto << 16)) * 2654435761u) >> (32 - NAT_SLOT_BITS);
}

/* One reverse entry per NAT connection whose real is shared, persistent or
 * of a port-0 service, removed by gc with its connection. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct conn_key);
	__type(value, struct nat_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nat SEC(".maps");

/* Fragments: a datagram's later fragments carry no ports, so they follow
 * wherever its first fragment went, found by (source, destination, IP id,
 * protocol) as the kernel's reassembly queues are. */
struct frag_key {
	__be32 src;
	__be32 dst;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

/* Bits 8 and up of frag_val.flags hold the first fragment's verdict. */
enum frag_flags {
	FRAG_F_REPLY = 1, /* a NAT reply: the source becomes addr */
	FRAG_F_PASS = 2,  /* the first fragment was left to the kernel: so are the rest */
};

struct frag_val {
	__u32 real_id;
	__u32 serial;
	__u64 expires; /* ns: the kernel's reassembly timeout (ipfrag_time, 30 s) */
	__be32 addr;   /* NAT: the new destination (the real), or source (the VIP) */
	__u32 flags;   /* enum frag_flags, the verdict from bit 8 */
	__u32 ifindex; /* NAT: where the first fragment was sent, and how */
	__u8 dmac[6];
	__u8 smac[6];
};

/* What the packet path builds that the stack has no room for: the
 * verifier allows 512 bytes over a whole call chain, and IPv6 will need
 * what is left. Per CPU, and a packet runs to its end on one CPU without
 * another XDP packet in between, so nothing here is shared. Each field
 * has one user at a time along any call chain. */
struct scratch {
	struct bpf_fib_lookup fib;  /* the NAT paths' route */
	struct bpf_fib_lookup addr; /* lb_addr's, asked while fib is held */
	struct conn_val nc;	    /* xdp_lb's new connection */
	struct tmpl_val nt;	    /* xlb_new_conn's new template */
	struct conn_key rk;	    /* nat_forward's reverse key, nat_reply's forward key */
	struct nat_val nv;	    /* nat_forward's reverse entry */
	struct rt_val rt;	    /* a new client_rt entry */
	struct nat_real_key nk;	    /* nat_reals' key */
	struct nat_real_val nr;	    /* what a nat_slots hit found */
	struct frag_key fk;	    /* frag_note's */
	struct frag_val fv;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	/* A size, not a type: bpf2go cannot write bpf_fib_lookup's
	 * anonymous unions in Go, and nothing outside reads this. */
	__uint(value_size, sizeof(struct scratch));
} scratch SEC(".maps");

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

/* A fragment held for the daemon (the "held" ring): the frame as it came
 * in on ifindex. */
#define HELD_MAX 2048

struct held_frag {
	__u32 len;
	__u32 ifindex;
	__u8 data[HELD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* about 2000 frames */
} held SEC(".maps");

/* What the balancer told a sender with ICMP "fragmentation needed": its
 * later aggregates are cut to that, not to the ingress link's MTU. */
struct pmtu_key {
	__be32 src;
	__be32 dst;
};

struct pmtu_val {
	__u64 expires; /* ns: before the sender's own path MTU cache forgets */
	__u32 mtu;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct pmtu_key);
	__type(value, struct pmtu_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pmtu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct tmpl_key);
	__type(value, struct tmpl_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} persist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct lblc_key);
	__type(value, struct lblc_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lblc_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_REALS);
	__type(key, __u32);
	__type(value, struct stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} real_stats SEC(".maps");

/* Room for building an lblc entry: the BPF stack (512 bytes over all
 * frames) has none to spare. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lblc_val);
} lblc_scratch SEC(".maps");

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

/* Tests replay exact clocks and random draws; zero means the real ones. */
volatile __u64 now_override;
volatile __u32 rand_override[2];

/* The packets' clock has one tick of resolution, plenty for timeouts of
 * seconds. Jiffies make it cheapest: bpf_jiffies64 is one load, where
 * bpf_ktime_get_coarse_ns was a tenth of an established packet's cost.
 * jiffies advance by whole ticks of CLOCK_MONOTONIC (tick_do_update_jiffies64),
 * so jiffies * tick_ns + tick_base is CLOCK_MONOTONIC as of the last tick,
 * as the coarse clock is. User space finds both at load (pkg/maps/clock.go)
 * and checks them against gc's clock every run (gc_result.skew): tick_ns 0
 * means it found none, or saw them drift, and the coarse clock serves.
 * Not .rodata, so that it can be turned off in flight. */
volatile __u64 tick_ns;
volatile __u64 tick_base;

static __always_inline __u64 jiffy_ns(__u64 tick)
{
	return bpf_jiffies64() * tick + tick_base;
}

static __always_inline __u64 now_ns(void)
{
	__u64 n = now_override;
	if (n)
		return n;
	__u64 tick = tick_ns;
	if (tick)
		return jiffy_ns(tick);
	return bpf_ktime_get_coarse_ns();
}

/* gc's clock (syscall programs have no coarse clock): at most a tick ahead
 * of the packets', which only retires entries that much sooner. */
static __always_inline __u64 now_ns_gc(void)
{
	__u64 n = now_override;
	return n ? n : bpf_ktime_get_ns();
}

static __always_inline __u32 addr_bucket(__be32 a)
{
	return (a * 2654435761u) >> (32 - FILTER_BITS);
}

#endif
