// Package sched is a pure, deterministic Go model of the IPVS schedulers,
// persistence templates and connection accounting. It is the specification
// the XDP data plane is tested against: the same sequence of packets, pool
// changes and clock readings fed to the BPF program and to a Service here
// must pick the same real servers. Nothing in this package reads a clock,
// draws a random number or touches a socket; time is a time.Duration since an
// arbitrary epoch (the unit of bpf_ktime_get_ns), chosen by the caller.
//
// Two layers:
//
//   - Pure functions over a []Dest in IPVS list order: the pickers PickLC,
//     PickWLC, PickSED, PickNQ, PickFO, PickOVF, PickTWOS; the table builders
//     RRSequence, WRRSequence, BuildSHTable, BuildDHTable, BuildMHTable whose
//     output the daemon writes into BPF maps; and the hash functions
//     (HashSH, HashDH, HashMH, Hash32, FoldAddr, HSipHash32) whose arithmetic
//     the BPF program must reproduce bit for bit. LBLC and LBLCR hold their
//     per-destination-address tables and take the clock as an argument.
//   - Service, which ties them together the way ip_vs_in, ip_vs_schedule,
//     ip_vs_sched_persist and ip_vs_conn.c do: connections keyed by
//     (client, VIP), the TCP state machine of ip_vs_proto_tcp.c driving the
//     active/inactive counters, connection and template timers, overload
//     thresholds, quiescing, removal and re-adding of real servers.
//
// The semantics follow the Linux sources (net/netfilter/ipvs, 5.x-6.x)
// function by function; each piece cites the function it mirrors. Where the
// data plane cannot do what IPVS does, the model states the rule the data
// plane implements instead and the comment says how it differs from IPVS:
//
//   - rr and wrr are a precomputed sequence walked with a per-service counter
//     (seq[counter % len(seq)]), restarted at 0 whenever the pool changes.
//     IPVS rr keeps its list cursor across changes; IPVS wrr moves its cursor
//     back to the list head but keeps the current weight pass (cw). Without
//     pool changes the order is exactly IPVS's.
//   - LBLC/LBLCR entries expire exactly Expiration after their last use;
//     IPVS collects them from a 60 s timer that does a full sweep every
//     30 minutes, so an IPVS entry can outlive its expiration by up to that.
//   - Timers fire at their expiry instant; when a connection and the
//     template controlling it expire at the same instant the connection goes
//     first (the kernel's order for equal jiffies is unspecified).
//   - Reals are named by address and port inside LBLC/LBLCR entries; a
//     removed real in an LBLCR set counts as weight 0 (IPVS still knows its
//     weight), see LBLCR.
//
// Hash arithmetic is that of a little-endian 64-bit kernel (x86_64, arm64):
// mh's hsiphash is SipHash-1-3 there and HalfSipHash on 32-bit kernels.
//
// Not modelled: SCTP, the one-packet (ops) flag, persistence engines (SIP),
// FTP helpers beyond the FTP-port template rule, connection synchronisation,
// conntrack, expire_nodest_conn, conn_reuse_mode bit 2 (FIN_WAIT reuse), and
// the drop_entry/amemthresh defences (secure_tcp's state table is, see
// Sysctl.SecureTCP).
package sched
