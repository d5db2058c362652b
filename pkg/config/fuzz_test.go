package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xlbd/xlbd/pkg/sched"
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
	f.Add([]byte("virtual_servers:\n  - address: 0.0.0.0\n    port: 0"))
	f.Add([]byte("a: !!binary aGVsbG8=\n"))
	f.Add([]byte("virtual_servers: [{address: 10.0.0.1, port: 80, real_servers: [{address: 10.0.0.2, port: 1, checkers: [TCP_CHECK, {HTTP_GET: {urls: [{path: /}]}}]}]}]\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("lb.yaml", data)
		checkResult(t, cfg, err, "lb.yaml")
	})
}

// FuzzParseKeepalived does the same for keepalived.conf, with include
// directives served from a small in-memory tree that has a cycle in it.
func FuzzParseKeepalived(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(kaDir, "*.conf"))
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
	f.Add([]byte("include *.conf\n"))
	f.Add([]byte("virtual_server 10.0.0.1 80{real_server 10.0.0.2 80{TCP_CHECK{}}}\n"))
	f.Add([]byte("\"{\" { } } {\n!\"#\n"))

	includes := memFS{
		"/k/a.conf": "include b.conf\nglobal_defs {\n router_id A\n}\n",
		"/k/b.conf": "include a.conf\nvrrp_script s {\n script /bin/true\n}\n",
		"/k/c.conf": "virtual_server 10.0.0.9 80 {\n",
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseKeepalived("/k/keepalived.conf", data, includes.read, includes.glob)
		checkResult(t, cfg, err, "")
	})
}

// checkResult checks Parse's contract; file, if set, is the only file
// errors may name.
func checkResult(t *testing.T, cfg *Config, err error, file string) {
	t.Helper()
	if (cfg == nil) == (err == nil) {
		t.Fatalf("returned config %v and error %v; want exactly one", cfg, err)
	}
	if err != nil {
		var list ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("error %v is not a non-empty ErrorList", err)
		}
		if file != "" && !slices.IsSortedFunc(list, func(a, b *Error) int { return a.Line - b.Line }) {
			t.Errorf("errors not sorted by line:\n%v", err)
		}
		for _, e := range list {
			if e.File == "" || (file != "" && e.File != file) || e.Line < 0 || e.Msg == "" {
				t.Errorf("malformed error %#v", e)
			}
		}
		return
	}
	checkValid(t, cfg)
}

func checkValid(t *testing.T, cfg *Config) {
	t.Helper()
	scripts := map[string]bool{}
	for _, s := range cfg.VRRPScripts {
		if s.Name == "" || scripts[s.Name] || s.Script.Cmd == "" || s.Interval <= 0 || s.Timeout <= 0 ||
			s.Weight < -253 || s.Weight > 253 || s.Rise < 1 || s.Fall < 1 {
			t.Errorf("invalid vrrp_script accepted: %+v", s)
		}
		scripts[s.Name] = true
	}
	instances := map[string]bool{}
	type vridKey struct {
		iface string
		vrid  uint8
		v6    bool
	}
	vrids := map[vridKey]bool{}
	for _, vi := range cfg.VRRPInstances {
		if vi.Name == "" || instances[vi.Name] || vi.VirtualRouterID == 0 || vi.Priority == 0 || vi.AdvertInt <= 0 ||
			(vi.Version != 2 && vi.Version != 3) || (vi.Interface == "" && len(vi.UnicastPeers) == 0) || len(vi.AuthPass) > 8 {
			t.Errorf("invalid vrrp_instance accepted: %+v", vi)
		}
		instances[vi.Name] = true
		if vi.Interface != "" {
			k := vridKey{vi.Interface, vi.VirtualRouterID, vi.IPv6()}
			if vrids[k] {
				t.Errorf("duplicate VRID %d on %s accepted", vi.VirtualRouterID, vi.Interface)
			}
			vrids[k] = true
		}
		for _, v := range vi.VirtualIPAddresses {
			if !v.Prefix.IsValid() || v.Prefix.Addr().Is6() != vi.IPv6() || v.Dev == "" {
				t.Errorf("invalid VIP %+v accepted in %s", v, vi.Name)
			}
		}
		for _, ts := range vi.TrackScripts {
			if !scripts[ts.Name] {
				t.Errorf("track_script %q of %s is not defined", ts.Name, vi.Name)
			}
		}
	}
	for _, sg := range cfg.SyncGroups {
		for _, m := range sg.Group {
			if !instances[m] {
				t.Errorf("sync group %s member %q is not defined", sg.Name, m)
			}
		}
	}
	groups := map[string]bool{}
	for _, g := range cfg.VirtualServerGroups {
		groups[g.Name] = true
		for _, r := range g.Ranges {
			if !r.First.Is4() || !r.Last.Is4() || r.Last.Less(r.First) {
				t.Errorf("invalid range %+v accepted in %s", r, g.Name)
			}
		}
	}
	keys := map[string]bool{}
	for _, vs := range cfg.VirtualServers {
		ids := 0
		if vs.Address.IsValid() {
			ids++
			// Port 0 is IPVS's every-port service.
			if !vs.Address.Is4() {
				t.Errorf("invalid address accepted: %+v", vs)
			}
		}
		if vs.FWMark != 0 {
			ids++
		}
		if vs.Group != "" {
			ids++
			if !groups[vs.Group] {
				t.Errorf("virtual server uses undefined group %q", vs.Group)
			}
		}
		if ids != 1 || (vs.Protocol != TCP && vs.Protocol != UDP && vs.Protocol != SCTP) ||
			vs.LBKind < NAT || vs.LBKind > TUN || !slices.Contains(sched.Schedulers, vs.LBAlgo) || vs.DelayLoop <= 0 || vs.Line < 1 ||
			vs.PersistenceGranularity < 1 || vs.PersistenceGranularity > 32 || vs.Quorum < 1 {
			t.Errorf("invalid virtual server accepted: %+v", vs)
		}
		if keys[vs.Key()] {
			t.Errorf("duplicate virtual server %s accepted", vs.Key())
		}
		keys[vs.Key()] = true
		seen := map[netip.AddrPort]bool{}
		for _, rs := range vs.RealServers {
			if !rs.Address.Is4() || rs.Weight < 0 || rs.Weight > 65535 || rs.Line < 1 {
				t.Errorf("invalid real server accepted: %+v", rs)
			}
			k := netip.AddrPortFrom(rs.Address, rs.Port)
			if seen[k] {
				t.Errorf("duplicate real server %v:%d accepted", rs.Address, rs.Port)
			}
			seen[k] = true
			for _, c := range rs.Checkers {
				if _, ok := checkerTypes[c.Type]; !ok || c.DelayLoop <= 0 || c.ConnectTimeout <= 0 || c.Retry < 0 ||
					(c.HTTP != nil && len(c.HTTP.URLs) == 0) || (c.Type == CheckMisc && (c.Misc == nil || c.Misc.Path.Cmd == "")) {
					t.Errorf("invalid checker accepted: %+v", c)
				}
			}
		}
	}
}
