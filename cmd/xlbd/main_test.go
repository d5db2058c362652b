package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlbd/xlbd/pkg/config"
)

// repoRoot is the repository's root, found from the package directory the
// test starts in.
var repoRoot = func() string {
	d, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return d
}()

// runIn runs the command in-process from the repository root, so that
// file names in the output read "testdata/...".
func runIn(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Chdir(repoRoot)
	var o, e bytes.Buffer
	err = run(args, &o, &e)
	return o.String(), e.String(), err
}

func lines(s ...string) string {
	if len(s) == 0 {
		return ""
	}
	return strings.Join(s, "\n") + "\n"
}

const (
	ka  = "testdata/keepalived/"
	yml = "testdata/config/"
)

var notImplementedWarnings = []string{
	ka + `20-not-implemented.conf:5: warning: global_defs.vrrp_skip_check_adv_addr: keyword "vrrp_skip_check_adv_addr" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:6: warning: global_defs.enable_snmp_vrrp: keyword "enable_snmp_vrrp" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:9: warning: static_ipaddress: keyword "static_ipaddress" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:13: warning: SSL: keyword "SSL" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:20: warning: vrrp_instance[VI_1].use_vmac: keyword "use_vmac" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:22: warning: vrrp_instance[VI_1].virtual_ipaddress: virtual_ipaddress option "brd" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:25: warning: vrrp_instance[VI_1].unicast_peer: unicast_peer option "min_ttl" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:27: warning: vrrp_instance[VI_1].virtual_routes: keyword "virtual_routes" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:33: warning: virtual_server[10.50.1.100 80].hashed: keyword "hashed" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:35: warning: virtual_server[10.50.1.100 80].real_server[10.50.2.11 80].snmp_name: keyword "snmp_name" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:36: warning: virtual_server[10.50.1.100 80].real_server[10.50.2.11 80].BFD_CHECK: keyword "BFD_CHECK" is not implemented by xlbd; ignored`,
	ka + `20-not-implemented.conf:40: warning: virtual_server[10.50.1.100 80].real_server[10.50.2.11 80].TCP_CHECK.bind_if: keyword "bind_if" is not implemented by xlbd; ignored`,
}

var exampleAsKeepalived = []string{
	yml + `example.yaml:1: virtual_servers:: unknown keyword "virtual_servers:"`,
	yml + `example.yaml:2: -: unknown keyword "-"`,
	yml + `example.yaml:3: port:: unknown keyword "port:"`,
	yml + `example.yaml:4: protocol:: unknown keyword "protocol:"`,
	yml + `example.yaml:5: lb_algo:: unknown keyword "lb_algo:"`,
	yml + `example.yaml:6: lb_kind:: unknown keyword "lb_kind:"`,
	yml + `example.yaml:7: real_servers:: unknown keyword "real_servers:"`,
	yml + `example.yaml:8: -: unknown keyword "-"`,
	yml + `example.yaml:9: -: unknown keyword "-"`,
	yml + `example.yaml: read as keepalived.conf because of --config-format keepalived, although its name says lb.yaml; is that the right syntax?`,
	yml + `example.yaml: 9 errors`,
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stdout []string
		stderr []string
		err    error  // errReported, or nil
		errMsg string // the returned error's text, for errors that are not reported by the command
	}{
		{
			name:   "good keepalived.conf",
			args:   []string{"--config", ka + "01-minimal.conf"},
			stdout: []string{ka + "01-minimal.conf: OK, 1 virtual server (1 service), 0 warnings"},
		},
		{
			name:   "good lb.yaml",
			args:   []string{"--config", yml + "example.yaml"},
			stdout: []string{yml + "example.yaml: OK, 1 virtual server (1 service), 0 warnings"},
		},
		{
			name:   "keepalived.conf with includes",
			args:   []string{"--config", ka + "06-include.conf"},
			stdout: []string{ka + "06-include.conf: OK, 2 virtual servers (2 services), 0 warnings"},
		},
		{
			name:   "warnings only: exit 0",
			args:   []string{"--config", ka + "20-not-implemented.conf"},
			stdout: []string{ka + "20-not-implemented.conf: OK, 1 virtual server (1 service), 12 warnings"},
			stderr: notImplementedWarnings,
		},
		{
			name:   "fwmark virtual server: the data plane's warning, no service",
			args:   []string{"--config", ka + "12-fwmark.conf"},
			stdout: []string{ka + "12-fwmark.conf: OK, 1 virtual server (0 services), 1 warning"},
			stderr: []string{
				ka + "12-fwmark.conf:3: warning: fwmark:5: the XDP data plane cannot match firewall marks; this one is only checked",
			},
		},
		{
			name:   "group virtual server: expanded, with the data plane's notes as warnings",
			args:   []string{"--config", ka + "11-virtual-server-group.conf"},
			stdout: []string{ka + "11-virtual-server-group.conf: OK, 1 virtual server (78 services), 2 warnings"},
			stderr: []string{
				ka + `11-virtual-server-group.conf:10: warning: group:WEB/TCP: fwmark 7 of virtual_server_group "WEB" skipped: the XDP data plane cannot match firewall marks`,
				ka + `11-virtual-server-group.conf:10: warning: group:WEB/TCP: 10.50.4.1 of virtual_server_group "WEB" balances nothing: it has no port (every port), which IPVS schedules only with persistence_timeout`,
			},
		},
		{
			name:   "lb.yaml with warnings",
			args:   []string{"--config", yml + "full.yaml"},
			stdout: []string{yml + "full.yaml: OK, 2 virtual servers (4 services), 1 warning"},
			stderr: []string{
				yml + `full.yaml:65: warning: group:DNS/UDP: fwmark 9 of virtual_server_group "DNS" skipped: the XDP data plane cannot match firewall marks`,
			},
		},
		{
			name: "bad lb.yaml: every error, then a count",
			args: []string{"--config", yml + "bad-lb-algo.yaml"},
			stderr: []string{
				yml + `bad-lb-algo.yaml:7: virtual_servers[1].lvs_sched: unknown scheduler "foo"`,
				yml + "bad-lb-algo.yaml: 1 error",
			},
			err: errReported,
		},
		{
			name: "bad lb.yaml, many errors",
			args: []string{"--config", yml + "bad-many.yaml"},
			stderr: []string{
				yml + `bad-many.yaml:3: virtual_servers[0].address: "10.50.1.256" is not a valid IPv4 address`,
				yml + `bad-many.yaml:5: virtual_servers[0].protocol: unknown protocol "ICMP" (want TCP, UDP or SCTP)`,
				yml + `bad-many.yaml:9: virtual_servers[0].real_servers[1]: duplicate real server 10.50.2.11:8080 (first at line 8)`,
				yml + `bad-many.yaml:11: virtual_servers[1].port: "8o" is not an integer`,
				yml + `bad-many.yaml:12: virtual_servers[1].lb_kind: unknown lb_kind "DSR" (want NAT, DR or TUN)`,
				yml + `bad-many.yaml:13: virtual_servers[1].persistance_timeout: unknown key "persistance_timeout"`,
				yml + `bad-many.yaml:15: virtual_servers[1].real_servers[0].port: 65536 is not a valid port (0-65535; 0: every port)`,
				yml + `bad-many.yaml:16: virtual_servers[1].real_servers[1]: missing required key "address"`,
				yml + "bad-many.yaml: 8 errors",
			},
			err: errReported,
		},
		{
			name: "bad keepalived.conf",
			args: []string{"--config", ka + "bad-reference.conf"},
			stderr: []string{
				ka + `bad-reference.conf:13: vrrp_instance[VI_1].track_script: track_script "chk_dns" is not a defined vrrp_script`,
				ka + `bad-reference.conf:19: vrrp_sync_group[VG_1].group: "VI_1" is not a defined vrrp_instance`,
				ka + `bad-reference.conf:20: vrrp_sync_group[VG_1].group: "VI_2" is not a defined vrrp_instance`,
				ka + `bad-reference.conf:24: virtual_server[group NOPE]: virtual_server_group "NOPE" is not defined`,
				ka + "bad-reference.conf: 4 errors",
			},
			err: errReported,
		},
		{
			name: "errors in an included file name that file",
			args: []string{"--config", ka + "bad-include.conf"},
			stderr: []string{
				ka + `bad-include.conf:2: include: include "does-not-exist.conf": no such file`,
				ka + "cycle/b.conf:4: include: include cycle: " + ka + "cycle/a.conf -> " + ka + "cycle/b.conf -> " + ka + "cycle/a.conf",
				ka + "bad-include.conf: 2 errors",
			},
			err: errReported,
		},
		{
			name:   "--config-format keepalived on an lb.yaml: errors and a hint",
			args:   []string{"--config", yml + "example.yaml", "--config-format", "keepalived"},
			stderr: exampleAsKeepalived,
			err:    errReported,
		},
		{
			name: "--config-format yaml on a keepalived.conf: an error and a hint",
			args: []string{"--config-format", "yaml", "--config", ka + "01-minimal.conf"},
			stderr: []string{
				ka + "01-minimal.conf:3: the top level must be a mapping, got a string",
				ka + "01-minimal.conf: read as lb.yaml because of --config-format yaml, although its name says keepalived.conf; is that the right syntax?",
				ka + "01-minimal.conf: 1 error",
			},
			err: errReported,
		},
		{
			name:   "--config-format matching the name: no hint",
			args:   []string{"--config-format", "keepalived", "--config", ka + "01-minimal.conf"},
			stdout: []string{ka + "01-minimal.conf: OK, 1 virtual server (1 service), 0 warnings"},
		},
		{
			name:   "--config-format keepalived on a file not named .conf",
			args:   []string{"--config-format", "keepalived", "--config", ka + "include/web.vs"},
			stdout: []string{ka + "include/web.vs: OK, 1 virtual server (1 service), 0 warnings"},
		},
		{
			name:   "unknown --config-format",
			args:   []string{"--config", yml + "example.yaml", "--config-format", "json"},
			errMsg: `unknown config format "json" (want "yaml", "keepalived" or empty for automatic)`,
		},
		{
			name:   "missing file",
			args:   []string{"--config", yml + "does-not-exist.yaml"},
			errMsg: "open " + yml + "does-not-exist.yaml: no such file or directory",
		},
		{
			name:   "a file given without --config",
			args:   []string{yml + "example.yaml"},
			errMsg: `check: unexpected argument "` + yml + `example.yaml" (the file is given with --config)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := runIn(t, append([]string{"check"}, tt.args...)...)
			switch {
			case tt.errMsg != "":
				if err == nil || err.Error() != tt.errMsg {
					t.Errorf("err = %v, want %q", err, tt.errMsg)
				}
			case err != tt.err:
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if diff := cmp.Diff(lines(tt.stdout...), stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(lines(tt.stderr...), stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
		})
	}
}

// check -v prints the model with every default, config.Dump, before the
// summary; flags may come in any order.
func TestCheckVerbose(t *testing.T) {
	for _, args := range [][]string{
		{"check", "-v", "--config", ka + "13-virtual-server-options.conf"},
		{"check", "--config", ka + "13-virtual-server-options.conf", "-v"},
	} {
		stdout, stderr, err := runIn(t, args...)
		if err != nil || stderr != "" {
			t.Fatalf("%q: err = %v, stderr:\n%s", args, err, stderr)
		}
		cfg, err := config.Load(ka + "13-virtual-server-options.conf")
		if err != nil {
			t.Fatal(err)
		}
		want := config.Dump(cfg) + ka + "13-virtual-server-options.conf: OK, 2 virtual servers (2 services), 0 warnings\n"
		if diff := cmp.Diff(want, stdout); diff != "" {
			t.Errorf("%q: stdout (-want +got):\n%s", args, diff)
		}
		// What -v prints is lb.yaml itself.
		if _, err := config.Parse("dump.yaml", []byte(config.Dump(cfg))); err != nil {
			t.Errorf("the dump is not valid lb.yaml: %v", err)
		}
	}
}

var ignorePositions = cmp.Options{
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{}),
	cmpopts.IgnoreFields(config.Config{}, "File", "Warnings"),
	cmpopts.IgnoreFields(config.VirtualServer{}, "File", "Line"),
	cmpopts.IgnoreFields(config.RealServer{}, "File", "Line"),
	cmpopts.IgnoreFields(config.Checker{}, "File", "Line"),
	cmpopts.IgnoreFields(config.VRRPInstance{}, "File", "Line"),
	cmpopts.IgnoreFields(config.VRRPScript{}, "File", "Line"),
	cmpopts.IgnoreFields(config.SyncGroup{}, "File", "Line"),
	cmpopts.IgnoreFields(config.VirtualServerGroup{}, "File", "Line"),
	cmpopts.IgnoreFields(config.LVSSyncDaemon{}, "File", "Line"),
}

// convert of every good keepalived.conf writes, on stdout only, lb.yaml
// that parses into the same model; warnings go to stderr.
func TestConvertTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, ka, "*.conf"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "bad-") {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := runIn(t, "convert", ka+name)
			if err != nil {
				t.Fatalf("convert: %v\n%s", err, stderr)
			}
			want, err := config.Load(ka + name)
			if err != nil {
				t.Fatal(err)
			}
			var warns []string
			for _, w := range want.Warnings {
				warns = append(warns, w.Warning())
			}
			if diff := cmp.Diff(lines(warns...), stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			got, err := config.Parse("lb.yaml", []byte(stdout))
			if err != nil {
				t.Fatalf("the output is not valid lb.yaml: %v\n%s", err, stdout)
			}
			if diff := cmp.Diff(want, got, ignorePositions); diff != "" {
				t.Errorf("model from the converted file (-keepalived.conf +lb.yaml):\n%s", diff)
			}
		})
	}
	if n < 20 {
		t.Errorf("only %d good keepalived.conf files converted", n)
	}
}

func TestConvert(t *testing.T) {
	classic, err := config.Load(filepath.Join(repoRoot, ka, "22-classic.conf"))
	if err != nil {
		t.Fatal(err)
	}
	classicYAML, err := config.MarshalYAML(classic)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		stdout string // "-": anything but empty
		stderr []string
		err    error
		errMsg string
	}{
		{
			name:   "keepalived.conf to lb.yaml",
			args:   []string{ka + "22-classic.conf"},
			stdout: string(classicYAML),
		},
		{
			name:   "--config-format after the file",
			args:   []string{ka + "22-classic.conf", "--config-format", "keepalived"},
			stdout: string(classicYAML),
		},
		{
			name:   "warnings go to stderr, exit 0",
			args:   []string{ka + "20-not-implemented.conf"},
			stdout: "-",
			stderr: notImplementedWarnings,
		},
		{
			name:   "lb.yaml in, lb.yaml out",
			args:   []string{"--config-format=yaml", yml + "example.yaml"},
			stdout: "virtual_servers:\n  - address: 10.50.1.100\n    port: 80\n    lb_algo: rr\n    real_servers:\n      - address: 10.50.2.11\n        port: 8080\n      - address: 10.50.2.12\n        port: 8080\n",
		},
		{
			name:   "--config-format keepalived on an lb.yaml",
			args:   []string{yml + "example.yaml", "--config-format", "keepalived"},
			stderr: exampleAsKeepalived,
			err:    errReported,
		},
		{
			name: "errors to stderr, nothing on stdout",
			args: []string{ka + "bad-unknown-keyword.conf"},
			stderr: []string{
				ka + `bad-unknown-keyword.conf:3: global_defs.routerid: unknown keyword "routerid"`,
				ka + `bad-unknown-keyword.conf:6: vrrp_instanse: unknown keyword "vrrp_instanse"`,
				ka + `bad-unknown-keyword.conf:13: virtual_server[10.50.1.100 80].real_server[10.50.2.11 8080].wieght: unknown keyword "wieght"`,
				ka + `bad-unknown-keyword.conf:14: virtual_server[10.50.1.100 80].real_server[10.50.2.11 8080].TCP_CHEK: unknown keyword "TCP_CHEK"`,
				ka + "bad-unknown-keyword.conf: 4 errors",
			},
			err: errReported,
		},
		{
			name:   "missing file",
			args:   []string{ka + "does-not-exist.conf"},
			errMsg: "open " + ka + "does-not-exist.conf: no such file or directory",
		},
		{
			name:   "unknown --config-format",
			args:   []string{"--config-format", "ini", ka + "01-minimal.conf"},
			errMsg: `unknown config format "ini" (want "yaml", "keepalived" or empty for automatic)`,
		},
		{
			name:   "no file",
			args:   nil,
			stderr: convertUsage,
			errMsg: "convert: want exactly one file",
		},
		{
			name:   "two files",
			args:   []string{ka + "01-minimal.conf", ka + "22-classic.conf"},
			stderr: convertUsage,
			errMsg: "convert: want exactly one file",
		},
		{
			name:   "a file named like a flag, after --",
			args:   []string{"--", "-v"},
			errMsg: "open -v: no such file or directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := runIn(t, append([]string{"convert"}, tt.args...)...)
			switch {
			case tt.errMsg != "":
				if err == nil || err.Error() != tt.errMsg {
					t.Errorf("err = %v, want %q", err, tt.errMsg)
				}
			case err != tt.err:
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if tt.stdout == "-" {
				if stdout == "" {
					t.Error("nothing on stdout")
				}
			} else if diff := cmp.Diff(tt.stdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(lines(tt.stderr...), stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
		})
	}
}

var convertUsage = []string{
	"usage: xlbd convert [--config-format yaml|keepalived] FILE > lb.yaml",
	"  -config-format string",
	"    \tsyntax of the configuration: yaml or keepalived (default: yaml for .yaml and .yml files, keepalived otherwise)",
}

// The daemon reads --config-format and logs every warning, with file and
// line, as soon as the configuration is read: here before it fails over an
// interface that does not exist, so the test needs no privileges.
func TestDaemonConfig(t *testing.T) {
	noIf := []string{"--interface", "xlbd-test-none0", "--metrics-addr", "", "--control-socket", ""}
	t.Run("warnings logged", func(t *testing.T) {
		_, stderr, err := runIn(t, append([]string{"--config", ka + "11-virtual-server-group.conf"}, noIf...)...)
		if err == nil || err.Error() != "--interface xlbd-test-none0: no such interface" {
			t.Fatalf("err = %v, want the missing interface", err)
		}
		for _, want := range []string{
			`level=WARN msg="fwmark 7 of virtual_server_group \"WEB\" skipped: the XDP data plane cannot match firewall marks" file=testdata/keepalived/11-virtual-server-group.conf line=10 path=group:WEB/TCP`,
			`level=WARN msg="10.50.4.1 of virtual_server_group \"WEB\" balances nothing: it has no port (every port), which IPVS schedules only with persistence_timeout" file=testdata/keepalived/11-virtual-server-group.conf line=10 path=group:WEB/TCP`,
		} {
			if !strings.Contains(stderr, want+"\n") {
				t.Errorf("log lacks\n%s\nlog:\n%s", want, stderr)
			}
		}
		if n := strings.Count(stderr, "level=WARN"); n != 2 {
			t.Errorf("%d warnings logged, want 2:\n%s", n, stderr)
		}
	})
	t.Run("--config-format reaches the daemon", func(t *testing.T) {
		_, _, err := runIn(t, append([]string{"--config", yml + "example.yaml", "--config-format", "keepalived"}, noIf...)...)
		var list config.ErrorList
		if !errors.As(err, &list) || len(list) != 9 || list[0].Error() != exampleAsKeepalived[0] {
			t.Errorf("err = %v, want example.yaml's 9 errors as keepalived.conf", err)
		}
	})
	t.Run("unknown --config-format", func(t *testing.T) {
		_, _, err := runIn(t, append([]string{"--config", yml + "example.yaml", "--config-format", "xml"}, noIf...)...)
		if err == nil || !strings.Contains(err.Error(), `unknown config format "xml"`) {
			t.Errorf("err = %v, want an unknown format", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, _, err := runIn(t, append([]string{"--config", yml + "does-not-exist.yaml"}, noIf...)...)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist", err)
		}
	})
}

// The shipped configurations all check clean of errors.
func TestCheckShipped(t *testing.T) {
	for _, f := range []string{"testdata/lb.yaml", "testdata/demo-nat.yaml", "testdata/demo-dr.yaml", "testdata/demo-tun.yaml"} {
		stdout, stderr, err := runIn(t, "check", "--config", f)
		if err != nil || stderr != "" || !strings.HasPrefix(stdout, f+": OK") {
			t.Errorf("check %s: err %v\nstdout:\n%s\nstderr:\n%s", f, err, stdout, stderr)
		}
	}
}

// check accepts exactly what the daemon accepts: more services than the
// data plane holds, and a service two virtual servers give, are errors
// here as they are at start, not only there.
func TestCheckRefusesWhatTheDaemonRefuses(t *testing.T) {
	dir := t.TempDir()
	var many strings.Builder
	many.WriteString("virtual_servers:\n")
	for i := range 4097 {
		fmt.Fprintf(&many, "  - { address: 10.60.%d.%d, port: 80, lb_algo: rr, real_servers: [{ address: 10.50.2.11, port: 80 }] }\n", i/250, 1+i%250)
	}
	tooMany := filepath.Join(dir, "many.yaml")
	twice := filepath.Join(dir, "twice.conf")
	for path, text := range map[string]string{
		tooMany: many.String(),
		twice: "virtual_server 10.50.1.2 80 {\n real_server 10.50.2.11 80 {\n }\n}\n" +
			"virtual_server_group G {\n 10.50.1.1-2 80\n}\n" +
			"virtual_server group G {\n real_server 10.50.2.12 80 {\n }\n}\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		path string
		want string
	}{
		{tooMany, tooMany + ":4098: 10.60.16.97:80/TCP: 4097 services in all: the XDP data plane holds at most 4096 (this virtual server goes over)"},
		{twice, twice + ":8: group:G/TCP: service 10.50.1.2:80/TCP is given twice: virtual server 10.50.1.2:80/TCP at " +
			twice + ":1 gives it already (IPVS refuses a service twice)"},
	} {
		stdout, stderr, err := runIn(t, "check", "--config", tt.path)
		if err != errReported {
			t.Errorf("%s: err = %v, want the errors reported", tt.path, err)
		}
		if len(stdout) != 0 {
			t.Errorf("%s: stdout %q, want nothing", tt.path, stdout)
		}
		if !slices.Contains(strings.Split(stderr, "\n"), tt.want) {
			t.Errorf("%s: stderr %q lacks %q", tt.path, stderr, tt.want)
		}
	}
}
