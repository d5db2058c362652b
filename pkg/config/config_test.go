package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlbd/xlbd/pkg/sched"
)

// testdata lives at the repository root; tests name files the way an
// operator running from there would, so expected messages read naturally.
const testdataDir = "../../testdata/config"

func parseTestdata(t *testing.T, name string) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return Parse("testdata/config/"+name, data)
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// vs returns a virtual server with keepalived's defaults, so that table
// entries only spell out what a file sets.
func vs(addr string, port uint16, line int, rs ...RealServer) VirtualServer {
	v := kvs(addr, port, rs...)
	v.Line = line
	return v
}

func rs(addr string, port uint16, weight, line int) RealServer {
	return RealServer{Address: ip(addr), Port: port, Weight: weight, SMTPAlert: true, Line: line}
}

// setFile fills in the File of every item, which the tables leave out.
func setFile(cfg *Config, file string) {
	for i := range cfg.VirtualServers {
		cfg.VirtualServers[i].File = file
		for j := range cfg.VirtualServers[i].RealServers {
			cfg.VirtualServers[i].RealServers[j].File = file
		}
	}
}

func TestParseGood(t *testing.T) {
	dnsServers := []RealServer{
		rs("10.50.2.11", 53, 1, 9),
		rs("10.50.2.12", 53, 0, 11),
		rs("10.50.2.13", 53, 65535, 14),
	}
	tests := []struct {
		file string
		want []VirtualServer
	}{
		{
			file: "example.yaml",
			want: []VirtualServer{
				func() VirtualServer {
					v := vs("10.50.1.100", 80, 2,
						rs("10.50.2.11", 8080, 1, 8),
						rs("10.50.2.12", 8080, 1, 9))
					v.LBAlgo = "rr"
					return v
				}(),
			},
		},
		{
			file: "old-names.yaml",
			want: []VirtualServer{
				func() VirtualServer {
					v := vs("10.50.1.100", 53, 3, rs("10.50.2.11", 53, 3, 10))
					v.Protocol, v.LBKind, v.DelayLoop = UDP, DR, 10*time.Second
					v.LBAlgo = "rr" // lvs_sched: RR
					return v
				}(),
				func() VirtualServer {
					v := vs("10.50.1.101", 443, 13, rs("10.50.2.21", 443, 1, 19))
					v.LBKind, v.LBAlgo = TUN, "rr"
					return v
				}(),
			},
		},
		{
			file: "defaults.yaml",
			want: []VirtualServer{vs("10.50.1.100", 80, 3, rs("10.50.2.11", 8080, 1, 6))},
		},
		{
			file: "empty.yaml",
			want: nil,
		},
		{
			file: "no-real-servers.yaml",
			want: []VirtualServer{
				vs("10.50.1.100", 80, 2),
				vs("10.50.1.100", 81, 4),
				vs("10.50.1.100", 82, 7),
			},
		},
		{
			file: "mixed.yaml",
			want: []VirtualServer{
				vs("10.50.1.53", 53, 4, dnsServers...),
				func() VirtualServer {
					v := vs("10.50.1.53", 53, 17, dnsServers...)
					v.Protocol = UDP
					return v
				}(),
				vs("10.50.1.54", 65535, 21, rs("10.50.2.11", 1, 1, 21)),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := parseTestdata(t, tt.file)
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			file := "testdata/config/" + tt.file
			want := &Config{File: file, Global: defaultGlobal(), VirtualServers: slices.Clone(tt.want)}
			for i := range want.VirtualServers {
				want.VirtualServers[i].RealServers = slices.Clone(want.VirtualServers[i].RealServers)
			}
			setFile(want, file)
			if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		file string
		want []string // without the "testdata/config/FILE:" prefix
	}{
		{"bad-port.yaml", []string{
			`5: virtual_servers[0].port: 70000 is not a valid port (0-65535; 0: every port)`,
		}},
		{"bad-port-value.yaml", []string{
			`3: virtual_servers[0].port: 65536 is not a valid port (0-65535; 0: every port)`,
			`5: virtual_servers[0].real_servers[0].port: "http" is not an integer`,
			`6: virtual_servers[0].real_servers[1].port: "80.5" is not an integer`,
			`7: virtual_servers[0].real_servers[2].port: -1 is not a valid port (0-65535; 0: every port)`,
			`8: virtual_servers[0].real_servers[3].port: "8080" is not an integer`,
			`9: virtual_servers[0].real_servers[4].port: 99999999999999999999999 is not a valid port (0-65535; 0: every port)`,
		}},
		{"bad-unknown-key.yaml", []string{
			`3: virtual_servers[0].lb_algoo: unknown key "lb_algoo"`,
			`6: virtual_servers[0].real_servers[0].wieght: unknown key "wieght"`,
			`7: virtual_server: unknown key "virtual_server" (lb.yaml lists these under "virtual_servers")`,
		}},
		{"bad-syntax.yaml", []string{
			`5: syntax error: could not find flow mapping end token '}'`,
		}},
		{"bad-tab.yaml", []string{
			`3: syntax error: found character '\t' that cannot start any token`,
		}},
		{"bad-address.yaml", []string{
			`2: virtual_servers[0].address: "10.50.1.300" is not a valid IPv4 address`,
			`5: virtual_servers[0].real_servers[0].address: "2001:db8::1" is not an IPv4 address (IPv6 is not supported yet)`,
			`6: virtual_servers[0].real_servers[1].address: "example.com" is not a valid IPv4 address`,
			`7: virtual_servers[0].real_servers[2].address: "10" is not a valid IPv4 address`,
			`8: virtual_servers[0].real_servers[3].address: "10.50.2.11/24" is not a valid IPv4 address`,
		}},
		{"bad-dup-real-server.yaml", []string{
			`7: virtual_servers[0].real_servers[2]: duplicate real server 10.50.2.11:8080 (first at line 5)`,
		}},
		{"bad-dup-virtual-server.yaml", []string{
			`7: virtual_servers[2]: duplicate virtual server 10.50.1.100:80/TCP (first at line 2)`,
		}},
		{"bad-missing.yaml", []string{
			`2: virtual_servers[0]: missing required key "address"`,
			`4: virtual_servers[0].real_servers[0]: missing required key "port"`,
			`5: virtual_servers[0].real_servers[1]: missing required key "address"`,
			`6: virtual_servers[0].real_servers[2]: missing required key "address"`,
			`6: virtual_servers[0].real_servers[2]: missing required key "port"`,
			`7: virtual_servers[1]: missing required key "port"`,
		}},
		{"bad-protocol.yaml", []string{
			`4: virtual_servers[0].protocol: unknown protocol "GRE" (want TCP, UDP or SCTP)`,
		}},
		{"bad-lb-kind.yaml", []string{
			`4: virtual_servers[0].lvs_method: unknown lb_kind "FNAT" (want NAT, DR or TUN)`,
		}},
		{"bad-lb-algo.yaml", []string{
			`7: virtual_servers[1].lvs_sched: unknown scheduler "foo"`,
		}},
		{"bad-weight.yaml", []string{
			`5: virtual_servers[0].real_servers[0].weight: -1 is not a valid weight (0-65535)`,
			`6: virtual_servers[0].real_servers[1].weight: 65536 is not a valid weight (0-65535)`,
			`7: virtual_servers[0].real_servers[2].weight: "high" is not an integer`,
		}},
		{"bad-delay-loop.yaml", []string{
			`4: virtual_servers[0].delay_loop: 0 is not a valid delay_loop (at least 1 second)`,
			`7: virtual_servers[1].delay_loop: "soon" is not a number of seconds`,
		}},
		{"bad-dup-key.yaml", []string{
			`5: virtual_servers[0].port: duplicate key "port" (first at line 3)`,
			`6: virtual_servers[0].lvs_sched: duplicate key "lvs_sched" (already given as "lb_algo" at line 4)`,
		}},
		{"bad-shape.yaml", []string{
			`2: virtual_servers[0].address: expected a single value, got a list`,
			`3: virtual_servers[0].port: missing value`,
			`5: virtual_servers[0].real_servers[0]: expected a mapping, got a string`,
			`6: virtual_servers[0].real_servers[1].address: expected a single value, got a mapping`,
			`7: virtual_servers[1].real_servers: expected a list, got a mapping`,
		}},
		{"bad-top-level.yaml", []string{
			`1: the top level must be a mapping, got a list`,
		}},
		{"bad-not-list.yaml", []string{
			`2: virtual_servers: expected a list, got a mapping`,
		}},
		{"bad-multi-document.yaml", []string{
			`2: more than one YAML document; lb.yaml must be a single document`,
		}},
		{"bad-yaml-features.yaml", []string{
			`1: defaults: unknown key "defaults"`,
			`4: virtual_servers[0].<<: merge keys (<<) are not supported`,
			`4: virtual_servers[0]: missing required key "port"`,
			`6: virtual_servers[1].address: YAML tags (!!str) are not supported`,
			`8: virtual_servers[1].real_servers: alias "nope" refers to no earlier anchor`,
		}},
		{"bad-tree.yaml", []string{
			`4: vrrp_scripts[0].weight.value: 300 is not a valid weight (-253 to 253)`,
			`4: vrrp_scripts[0].weight.reverse: "maybe" is not a boolean (want true, false, yes, no, on or off)`,
			`5: vrrp_instance: unknown key "vrrp_instance" (lb.yaml lists these under "vrrp_instances")`,
			`11: vrrp_instances[0].track_script[1]: track_script "nope" is not a defined vrrp_script`,
			`13: vrrp_instances[0].virtual_ipaddress[0].colour: unknown key "colour"`,
			`14: vrrp_instances[0].authentication: missing required key "auth_pass"`,
			`15: vrrp_instances[1].name: duplicate vrrp_instance "VI_1" (first at line 8)`,
			`19: virtual_servers[0]: address and port, fwmark and group exclude one another`,
			`29: virtual_servers[1].real_servers[0].checkers[1].FOO_CHECK: unknown checker "FOO_CHECK"`,
			`30: virtual_servers[1].real_servers[0].checkers[2]: expected a checker: a mapping with one key such as TCP_CHECK, got a mapping`,
			`31: virtual_servers[1].real_servers[0].checkers[3].HTTP_GET.misc_path: misc_path does not apply to HTTP_GET`,
			`31: virtual_servers[1].real_servers[0].checkers[3].HTTP_GET.urls[0].status_code[1]: "999" is not a valid status_code (a code or range within 100-599)`,
			`32: virtual_servers[1].real_servers[0].checkers[4]: expected a checker: a mapping with one key such as TCP_CHECK, got an integer`,
		}},
		{"bad-many.yaml", []string{
			`3: virtual_servers[0].address: "10.50.1.256" is not a valid IPv4 address`,
			`5: virtual_servers[0].protocol: unknown protocol "ICMP" (want TCP, UDP or SCTP)`,
			`9: virtual_servers[0].real_servers[1]: duplicate real server 10.50.2.11:8080 (first at line 8)`,
			`11: virtual_servers[1].port: "8o" is not an integer`,
			`12: virtual_servers[1].lb_kind: unknown lb_kind "DSR" (want NAT, DR or TUN)`,
			`13: virtual_servers[1].persistance_timeout: unknown key "persistance_timeout"`,
			`15: virtual_servers[1].real_servers[0].port: 65536 is not a valid port (0-65535; 0: every port)`,
			`16: virtual_servers[1].real_servers[1]: missing required key "address"`,
		}},
	}

	// Every bad-*.yaml must have an entry, so a new file cannot go unchecked.
	files, err := filepath.Glob(filepath.Join(testdataDir, "bad-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.ContainsFunc(tests, func(tt struct {
			file string
			want []string
		}) bool {
			return tt.file == filepath.Base(f)
		}) {
			t.Errorf("%s has no expected errors in TestParseBad", f)
		}
	}

	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := parseTestdata(t, tt.file)
			if err == nil {
				t.Fatalf("Parse succeeded, want errors; got %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config along with errors")
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = "testdata/config/" + tt.file + ":" + w
			}
			if diff := cmp.Diff(strings.Join(want, "\n"), err.Error()); diff != "" {
				t.Errorf("error text mismatch (-want +got):\n%s", diff)
			}

			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			if len(list) != len(tt.want) {
				t.Errorf("got %d errors, want %d", len(list), len(tt.want))
			}
			var first *Error
			if !errors.As(err, &first) || first != list[0] {
				t.Errorf("errors.As(*Error) = %v, want the first error of the list", first)
			}
		})
	}
}

func TestErrorFields(t *testing.T) {
	_, err := parseTestdata(t, "bad-port.yaml")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) failed", err)
	}
	want := &Error{
		File: "testdata/config/bad-port.yaml",
		Line: 5,
		Path: "virtual_servers[0].port",
		Msg:  "70000 is not a valid port (0-65535; 0: every port)",
	}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("Error mismatch (-want +got):\n%s", diff)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{"lb.yaml", 3, "virtual_servers[0].port", "bad"}, "lb.yaml:3: virtual_servers[0].port: bad"},
		{Error{"lb.yaml", 3, "", "bad"}, "lb.yaml:3: bad"},
		{Error{"lb.yaml", 0, "", "bad"}, "lb.yaml: bad"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestParseInline(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // error text; empty means success
	}{
		{
			name: "empty input",
			yaml: "",
		},
		{
			name: "null list",
			yaml: "virtual_servers:\n",
		},
		{
			name: "alias refers to the latest earlier anchor",
			yaml: "virtual_servers:\n" +
				"  - {address: &a 10.0.0.1, port: 80}\n" +
				"  - {address: &a 10.0.0.2, port: 81}\n" +
				"  - {address: *a, port: 82, real_servers: [{address: *a, port: 1}]}\n" +
				"  - {address: &a 10.0.0.3, port: 83}\n",
		},
		{
			name: "alias before its anchor",
			yaml: "virtual_servers:\n  - {address: *a, port: 80}\n  - {address: &a 10.0.0.1, port: 81}\n",
			want: `lb.yaml:2: virtual_servers[0].address: alias "a" refers to no earlier anchor`,
		},
		{
			name: "anchor containing its own alias",
			yaml: "virtual_servers: &v [*v]\n",
			want: `lb.yaml:1: virtual_servers[0]: expected a mapping, got a list`,
		},
		{
			name: "weight from uint64",
			yaml: "virtual_servers: [{address: 10.0.0.1, port: 80, real_servers: [{address: 10.0.0.2, port: 1, weight: 18446744073709551615}]}]\n",
			want: `lb.yaml:1: virtual_servers[0].real_servers[0].weight: 18446744073709551615 is not a valid weight (0-65535)`,
		},
		{
			name: "huge negative",
			yaml: "virtual_servers: [{address: 10.0.0.1, port: -99999999999999999999999}]\n",
			want: `lb.yaml:1: virtual_servers[0].port: -99999999999999999999999 is not a valid port (0-65535; 0: every port)`,
		},
		{
			name: "delay_loop overflowing a Duration",
			yaml: "virtual_servers: [{address: 10.0.0.1, port: 80, delay_loop: 9223372037}]\n",
			want: `lb.yaml:1: virtual_servers[0].delay_loop: 9223372037 seconds is too long for delay_loop`,
		},
		{
			name: "item that is a scalar",
			yaml: "virtual_servers:\n  - 10.0.0.1:80\n",
			want: `lb.yaml:2: virtual_servers[0]: expected a mapping, got a string`,
		},
		{
			name: "duplicate of an invalid virtual server is not reported",
			yaml: "virtual_servers:\n  - {address: 10.0.0.1, port: 80, lb_algo: foo}\n  - {address: 10.0.0.1, port: 80}\n",
			want: `lb.yaml:2: virtual_servers[0].lb_algo: unknown scheduler "foo"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("lb.yaml", []byte(tt.yaml))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				if cfg == nil || cfg.File != "lb.yaml" {
					t.Errorf("Parse = %+v, want a config for lb.yaml", cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAliasAddresses(t *testing.T) {
	cfg, err := Parse("lb.yaml", []byte("virtual_servers:\n"+
		"  - {address: &a 10.0.0.1, port: 80}\n"+
		"  - {address: &a 10.0.0.2, port: 81}\n"+
		"  - {address: *a, port: 82}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.VirtualServers[2].Address; got != ip("10.0.0.2") {
		t.Errorf("alias resolved to %v, want the latest earlier anchor 10.0.0.2", got)
	}
}

// A few kilobytes of aliases can stand for billions of nodes; Parse must
// refuse quickly rather than expand them.
func TestAliasExpansionBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("virtual_servers:\n  - &vs\n    address: 10.0.0.1\n    port: 80\n    real_servers:\n")
	b.WriteString("      - &rs {address: 10.0.0.2, port: 1}\n")
	for range 2000 {
		b.WriteString("      - *rs\n")
	}
	for range 2000 {
		b.WriteString("  - *vs\n")
	}
	start := time.Now()
	_, err := Parse("lb.yaml", []byte(b.String()))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Msg != "document too large after expanding aliases" {
		t.Fatalf("Parse error = %v, want a single \"too large\" error", err)
	}
	// Seconds on a quiet machine; expanding the aliases would take hours.
	// The bound only tells the two apart, even on a loaded CI machine.
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(testdataDir, "example.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != path || len(cfg.VirtualServers) != 1 {
		t.Errorf("Load(%q) = %+v", path, cfg)
	}

	if _, err := Load(filepath.Join(testdataDir, "does-not-exist.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: err = %v, want fs.ErrNotExist", err)
	}
}

func TestKeyAndStrings(t *testing.T) {
	v := vs("10.50.1.100", 80, 1)
	if got, want := v.Key(), "10.50.1.100:80/TCP"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	v.Protocol = UDP
	if got, want := v.Key(), "10.50.1.100:80/UDP"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	for _, tt := range []struct{ got, want string }{
		{TCP.String(), "TCP"},
		{UDP.String(), "UDP"},
		{Protocol(1).String(), "Protocol(1)"},
		{NAT.String(), "NAT"},
		{DR.String(), "DR"},
		{TUN.String(), "TUN"},
		{Kind(0).String(), "Kind(0)"},
	} {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
	if TCP != 6 || UDP != 17 {
		t.Errorf("protocol values must be IP protocol numbers")
	}
}

// Every IPVS scheduler is accepted, in any case, whichever data plane runs
// it; a name IPVS does not have is an error.
func TestSchedulers(t *testing.T) {
	for _, name := range sched.Schedulers {
		cfg, err := Parse("lb.yaml", []byte("virtual_servers: [{address: 10.0.0.1, port: 80, lb_algo: "+strings.ToUpper(name)+"}]"))
		switch {
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case cfg.VirtualServers[0].LBAlgo != name:
			t.Errorf("%s: LBAlgo = %q, want it normalised to %q", name, cfg.VirtualServers[0].LBAlgo, name)
		}
	}
	_, err := Parse("lb.yaml", []byte("virtual_servers: [{address: 10.0.0.1, port: 80, lb_algo: rrr}]"))
	if err == nil || !strings.Contains(err.Error(), `unknown scheduler "rrr"`) {
		t.Errorf("lb_algo rrr: err = %v, want an unknown scheduler", err)
	}
	if !slices.Contains(sched.Schedulers, DefaultLBAlgo) {
		t.Errorf("default scheduler %q is not an IPVS scheduler", DefaultLBAlgo)
	}
}

// The lb.yaml shapes of the keepalived tree: warnings for what keepalived
// knows and xlbd ignores, and the scalar and mapping forms of keywords with
// several arguments.
func TestYAMLTree(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string // error text; empty means success
		warnings   []string
	}{
		{
			name: "ignored keys warn",
			yaml: "global_defs: {enable_snmp_vrrp: true}\nstatic_ipaddress: [10.0.0.1/24]\n" +
				"vrrp_instances: [{name: v, interface: e, virtual_router_id: 1, use_vmac: true, virtual_ipaddress: [10.0.0.1]}]\n" +
				"virtual_servers: [{address: 10.0.0.1, port: 80, real_servers: [{address: 10.0.0.2, port: 80, checkers: [BFD_CHECK, {TCP_CHECK: {bind_if: eth0}}]}]}]\n",
			warnings: []string{
				`lb.yaml:1: global_defs.enable_snmp_vrrp: key "enable_snmp_vrrp" is not implemented by xlbd; ignored`,
				`lb.yaml:2: static_ipaddress: key "static_ipaddress" is not implemented by xlbd; ignored`,
				`lb.yaml:3: vrrp_instances[0].use_vmac: key "use_vmac" is not implemented by xlbd; ignored`,
				`lb.yaml:4: virtual_servers[0].real_servers[0].checkers[0].BFD_CHECK: checker "BFD_CHECK" is not implemented by xlbd; ignored`,
				`lb.yaml:4: virtual_servers[0].real_servers[0].checkers[1].TCP_CHECK.bind_if: key "bind_if" is not implemented by xlbd; ignored`,
			},
		},
		{
			name: "scalar and mapping forms",
			yaml: "global_defs:\n  smtp_server: {address: mail.example.com, port: 587}\n  script_user: {user: u, group: g}\n" +
				"vrrp_scripts:\n  - {name: s, script: x, weight: {value: 5, reverse: true}, user: nobody}\n",
		},
		{
			name: "list where a value belongs",
			yaml: "global_defs: {smtp_server: [a]}\n",
			want: "lb.yaml:1: global_defs.smtp_server: expected a single value, got a list",
		},
		{
			name: "sync group member and empty notify",
			yaml: "vrrp_sync_groups: [{name: g, group: [x], notify_master: {user: root}}]\n",
			want: "lb.yaml:1: vrrp_sync_groups[0].group[0]: \"x\" is not a defined vrrp_instance\n" +
				"lb.yaml:1: vrrp_sync_groups[0].notify_master: missing required key \"script\"",
		},
		{
			name: "real server port is required outside fwmark services",
			yaml: "virtual_servers: [{fwmark: 1, real_servers: [{address: 10.0.0.2}]}, {address: 10.0.0.1, port: 80, real_servers: [{address: 10.0.0.2}]}]\n",
			want: `lb.yaml:1: virtual_servers[1].real_servers[0]: missing required key "port"`,
		},
		{
			name: "port 0 is every port; without persistence it balances nothing",
			yaml: "virtual_servers:\n" +
				"  - {address: 10.0.0.1, port: 0, persistence_timeout: 60, real_servers: [{address: 10.0.0.2, port: 0}]}\n" +
				"  - {address: 10.0.0.3, port: 0, real_servers: [{address: 10.0.0.2, port: 0}]}\n",
			warnings: []string{
				`lb.yaml:3: virtual_servers[1]: a port-0 (every port) virtual server without persistence_timeout balances nothing: IPVS schedules port-0 services only through persistence templates`,
			},
		},
		{
			name: "accept false is no_accept",
			yaml: "vrrp_instances: [{name: v, interface: e, virtual_router_id: 1, accept: false, no_accept: false}]\n",
			want: "lb.yaml:1: vrrp_instances[0].no_accept: no_accept contradicts accept",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("lb.yaml", []byte(tt.yaml))
			if tt.want != "" {
				if err == nil || err.Error() != tt.want {
					t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range cfg.Warnings {
				if !strings.Contains(w.Msg, "no virtual_ipaddress") {
					got = append(got, w.Error())
				}
			}
			if diff := cmp.Diff(tt.warnings, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}
