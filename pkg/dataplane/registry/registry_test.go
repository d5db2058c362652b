package registry

import (
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{name: "xdp"},
		{name: "ipvs"},
		{name: "auto"},
		{name: "dpdk", wantErr: `--dataplane "dpdk": unknown data plane (want xdp or ipvs or auto)`},
		{name: "", wantErr: `--dataplane "": unknown data plane`},
		{name: "XDP", wantErr: `unknown data plane`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Lookup(tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Lookup(%q) err = %v, want %q", tt.name, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != tt.name || b.New == nil || b.Capabilities == nil {
				t.Fatalf("Lookup(%q) = %+v", tt.name, b)
			}
			if c := b.Capabilities(); c.Backend != tt.name || len(c.Schedulers) == 0 {
				t.Errorf("capabilities %+v", c)
			}
		})
	}
}

// The default is a registered backend.
func TestDefault(t *testing.T) {
	if _, err := Lookup(Default); err != nil {
		t.Fatal(err)
	}
	if Names()[0] != Default {
		t.Errorf("Names() = %v, want the default %q first", Names(), Default)
	}
}

// auto accepts what either backend runs (firewall marks and SCTP are
// IPVS's alone); the daemon judges the configuration again against the
// backend auto picks.
func TestAutoCapabilities(t *testing.T) {
	c := autoCapabilities()
	if !c.FWMark || !c.SyncDaemon || !c.Protocol(132) || !c.Protocol(6) || !c.Protocol(17) {
		t.Errorf("auto lacks what IPVS runs: %+v", c)
	}
	if len(c.Kinds) != 3 || !c.Scheduler("rr") || !c.Scheduler("mh") || !c.PortZero {
		t.Errorf("auto lacks what both run: %+v", c)
	}
	if c.MaxServices != 0 || c.MaxReals != 0 {
		t.Errorf("auto has XDP's limits, IPVS has none: %+v", c)
	}
}
