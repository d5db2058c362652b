package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, that it returns exactly
// one of a config and an error, and that whatever it accepts really is
// valid: the data plane trusts the model without checking it again.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(testdataDir, "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("virtual_servers: &v [*v]\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Add([]byte("a: !!binary aGVsbG8=\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("lb.yaml", data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v; want exactly one", cfg, err)
		}
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v is not a non-empty ErrorList", err)
			}
			if !slices.IsSortedFunc(list, func(a, b *Error) int { return a.Line - b.Line }) {
				t.Errorf("errors not sorted by line:\n%v", err)
			}
			for _, e := range list {
				if e.File != "lb.yaml" || e.Line < 0 || e.Msg == "" {
					t.Errorf("malformed error %#v", e)
				}
			}
			return
		}
		checkValid(t, cfg)
	})
}

func checkValid(t *testing.T, cfg *Config) {
	t.Helper()
	keys := map[string]bool{}
	for _, vs := range cfg.VirtualServers {
		if !vs.Address.Is4() || vs.Port == 0 || (vs.Protocol != TCP && vs.Protocol != UDP) ||
			vs.LBKind < NAT || vs.LBKind > TUN || !schedulers[vs.LBAlgo] || vs.DelayLoop <= 0 || vs.Line < 1 {
			t.Errorf("invalid virtual server accepted: %+v", vs)
		}
		if keys[vs.Key()] {
			t.Errorf("duplicate virtual server %s accepted", vs.Key())
		}
		keys[vs.Key()] = true
		seen := map[netip.AddrPort]bool{}
		for _, rs := range vs.RealServers {
			if !rs.Address.Is4() || rs.Port == 0 || rs.Weight < 0 || rs.Weight > 65535 || rs.Line < 1 {
				t.Errorf("invalid real server accepted: %+v", rs)
			}
			k := netip.AddrPortFrom(rs.Address, rs.Port)
			if seen[k] {
				t.Errorf("duplicate real server %v:%d accepted", rs.Address, rs.Port)
			}
			seen[k] = true
		}
	}
}
