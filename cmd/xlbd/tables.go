package main

import (
	"flag"
	"fmt"

	"github.com/xlbd/xlbd/pkg/maps"
)

// tableFlag is one --*-table-size flag and the maps.Options field it sets.
type tableFlag struct {
	name  string
	def   uint32
	usage string
	set   func(*maps.Options, uint32)
	val   *uint
}

// tableSizeFlags adds a --*-table-size flag per sizeable table of the XDP
// data plane to fs. The function returned gives the sizes after parsing:
// only those given on the command line, so that a restart adopting pinned
// maps keeps their sizes unless told otherwise.
func tableSizeFlags(fs *flag.FlagSet) func() (maps.Options, error) {
	flags := []*tableFlag{
		{name: "conn-table-size", def: maps.DefaultConnTableSize,
			usage: "entries of the connection table (IPVS's conn_tab): when it is full, new flows are refused",
			set:   func(o *maps.Options, n uint32) { o.ConnTableSize = n }},
		{name: "nat-table-size", def: 0,
			usage: "entries of the NAT reply table, one per NAT flow (default: --conn-table-size)",
			set:   func(o *maps.Options, n uint32) { o.NATTableSize = n }},
		{name: "persist-table-size", def: maps.DefaultPersistTableSize,
			usage: "entries of the persistence template table (LRU: one per client network and service)",
			set:   func(o *maps.Options, n uint32) { o.PersistTableSize = n }},
		{name: "lblc-table-size", def: maps.DefaultLBLCTableSize,
			usage: "entries of lblc's and lblcr's destination table (LRU)",
			set:   func(o *maps.Options, n uint32) { o.LBLCTableSize = n }},
		{name: "frag-table-size", def: maps.DefaultFragTableSize,
			usage: "entries of the table of fragmented datagrams in flight (LRU)",
			set:   func(o *maps.Options, n uint32) { o.FragTableSize = n }},
		{name: "pmtu-table-size", def: maps.DefaultPMTUTableSize,
			usage: "entries of the table of senders told a smaller path MTU (LRU)",
			set:   func(o *maps.Options, n uint32) { o.PMTUTableSize = n }},
	}
	for _, f := range flags {
		f.val = fs.Uint(f.name, uint(f.def), f.usage+"; fixed while the maps are pinned")
	}
	return func() (maps.Options, error) {
		var o maps.Options
		var err error
		fs.Visit(func(fl *flag.Flag) {
			for _, f := range flags {
				if f.name != fl.Name || err != nil {
					continue
				}
				n := *f.val
				if n < maps.MinTableSize || n > maps.MaxTableSize {
					err = fmt.Errorf("--%s %d: want %d to %d", f.name, n, maps.MinTableSize, maps.MaxTableSize)
					return
				}
				f.set(&o, uint32(n))
			}
		})
		return o, err
	}
}
