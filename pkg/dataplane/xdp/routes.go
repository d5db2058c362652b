package xdp

import (
	"errors"
	"log/slog"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/pkg/maps"
)

// routeGroups are the netlink groups whose messages can change what
// bpf_fib_lookup answers for a NAT packet: links (up, down, MTU),
// addresses, neighbours (a MAC learned, changed or gone), routes and
// policy rules.
var routeGroups = []uint{unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_NEIGH,
	unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV4_RULE}

// watchRoutes keeps the NAT route cache honest until stop closes: each
// batch of routing messages bumps its generation, which makes every cached
// route stale, so the next packet asks bpf_fib_lookup again. Should the
// subscription fail, the cache is turned off: every NAT packet is routed
// by the kernel's tables, as without a cache.
func watchRoutes(r *maps.Routes, stop <-chan struct{}, log *slog.Logger) {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE, routeGroups...)
	if err != nil {
		log.Warn("NAT route cache off: cannot follow routing changes", "err", err)
		r.Off()
		return
	}
	go func() {
		<-stop
		s.Close()
	}()
	// Subscribed before the first bump: no change can fall in between.
	dstOnly := routesByDestination(log)
	if _, err := r.Bump(dstOnly); err != nil {
		log.Warn("NAT route cache off", "err", err)
		r.Off()
		return
	}
	for {
		msgs, _, err := s.Receive()
		select {
		case <-stop:
			return
		default:
		}
		if err != nil && !errors.Is(err, unix.ENOBUFS) {
			log.Warn("NAT route cache off: following routing changes failed", "err", err)
			r.Off()
			return
		}
		// ENOBUFS: messages were lost, so anything may have changed.
		for _, m := range msgs {
			if t := m.Header.Type; t == unix.RTM_NEWRULE || t == unix.RTM_DELRULE {
				dstOnly = routesByDestination(log)
				break
			}
		}
		if _, err := r.Bump(dstOnly); err != nil {
			log.Warn("NAT route cache: bump", "err", err)
		}
	}
}

// routesByDestination reports whether IPv4 routing depends on the
// destination alone: the kernel's three rules (local, main, default) and
// no others. With policy rules a route found for one client's packet may
// not hold for another's, and the cache stays off.
func routesByDestination(log *slog.Logger) bool {
	rules, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		log.Warn("NAT route cache off: cannot list routing rules", "err", err)
		return false
	}
	want := map[int]int{0: unix.RT_TABLE_LOCAL, 32766: unix.RT_TABLE_MAIN, 32767: unix.RT_TABLE_DEFAULT}
	for _, ru := range rules {
		if want[ru.Priority] != ru.Table || ru.Src != nil || ru.Dst != nil || ru.Mark != 0 ||
			ru.IifName != "" || ru.OifName != "" || ru.Tos != 0 || ru.Invert {
			log.Info("NAT route cache off: policy routing rules", "priority", ru.Priority, "table", ru.Table)
			return false
		}
	}
	return len(rules) == len(want)
}
