package dataplane

import (
	"slices"
	"strings"
)

// Capabilities are what a backend can forward. The configuration accepts
// everything keepalived does; these say which of it the chosen backend
// runs, so that a config asking for more is refused at start and by
// `xlbd check` alike, naming the file and line, rather than when applied.
type Capabilities struct {
	// Backend names the backend in messages: "xdp", "ipvs".
	Backend string
	// Schedulers are the IPVS scheduler names it runs.
	Schedulers []string
	Kinds      []Kind
	Protocols  []uint8 // IP protocol numbers
	// FWMark: it can balance firewall-mark virtual services.
	FWMark bool
	// SyncDaemon: it runs IPVS's connection synchronisation daemon.
	SyncDaemon bool
	// PortZero: it can hold a service on port 0, which takes every port of
	// its address.
	PortZero bool
	// IPv6: virtual and real addresses may be IPv6.
	IPv6 bool
	// MaxServices and MaxReals are the most services, and real servers
	// summed over services, it holds (0: no limit).
	MaxServices int
	MaxReals    int
}

// Title is the backend's name as messages write it: "XDP".
func (c Capabilities) Title() string { return strings.ToUpper(c.Backend) }

// Scheduler reports whether the backend runs the IPVS scheduler name.
func (c Capabilities) Scheduler(name string) bool { return slices.Contains(c.Schedulers, name) }

// Kind reports whether the backend forwards with k.
func (c Capabilities) Kind(k Kind) bool { return slices.Contains(c.Kinds, k) }

// Protocol reports whether the backend balances IP protocol p.
func (c Capabilities) Protocol(p uint8) bool { return slices.Contains(c.Protocols, p) }
