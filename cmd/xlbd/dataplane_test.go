package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/registry"
)

// withToyDataplane makes --dataplane toy a backend that runs rr and wlc
// only, for the time of the test.
func withToyDataplane(t *testing.T) {
	t.Helper()
	toy := registry.Backend{
		Name: "toy",
		Capabilities: func() dataplane.Capabilities {
			return dataplane.Capabilities{
				Backend:    "toy",
				Schedulers: []string{"rr", "wlc"},
				Kinds:      []dataplane.Kind{dataplane.NAT},
				Protocols:  []uint8{6, 17},
			}
		},
		New: func(registry.Options) (dataplane.Backend, error) { return nil, errors.New("toy: not buildable") },
	}
	old := lookupDataplane
	lookupDataplane = func(name string) (registry.Backend, error) {
		if name == toy.Name {
			return toy, nil
		}
		return old(name)
	}
	t.Cleanup(func() { lookupDataplane = old })
}

// check judges a configuration against the backend --dataplane names: what
// it cannot run is an error naming the file, the virtual server's line and
// the key.
func TestCheckDataplane(t *testing.T) {
	withToyDataplane(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(conf, []byte("virtual_servers:\n"+
		"  - { address: 10.50.1.1, port: 80, lb_algo: rr }\n"+
		"  - { address: 10.50.1.2, port: 80, lb_algo: mh }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		stdout string
		stderr string
		err    error
		errMsg string
	}{
		{
			name:   "xdp runs mh",
			args:   []string{"--config", conf, "--dataplane", "xdp"},
			stdout: conf + ": OK, 2 virtual servers (2 services), 0 warnings\n",
		},
		{
			name:   "the default is xdp",
			args:   []string{"--config", conf},
			stdout: conf + ": OK, 2 virtual servers (2 services), 0 warnings\n",
		},
		{
			name: "a backend without mh",
			args: []string{"--config", conf, "--dataplane", "toy"},
			stderr: conf + ":3: 10.50.1.2:80/TCP: lb_algo mh: the TOY data plane does not run this scheduler (it runs rr, wlc)\n" +
				conf + ": 1 error\n",
			err: errReported,
		},
		{
			name:   "ipvs runs mh",
			args:   []string{"--config", conf, "--dataplane", "ipvs"},
			stdout: conf + ": OK, 2 virtual servers (2 services), 0 warnings\n",
		},
		{
			name:   "an unknown backend",
			args:   []string{"--config", conf, "--dataplane", "dpdk"},
			errMsg: `--dataplane "dpdk": unknown data plane (want xdp or ipvs or auto)`,
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
			if diff := cmp.Diff(tt.stdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.stderr, stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
		})
	}
}

// The daemon refuses an unknown --dataplane before it reads anything.
func TestDaemonUnknownDataplane(t *testing.T) {
	_, _, err := runIn(t, "--config", "does-not-exist.yaml", "--dataplane", "ebpf", "--metrics-addr", "", "--control-socket", "")
	if err == nil || err.Error() != `--dataplane "ebpf": unknown data plane (want xdp or ipvs or auto)` {
		t.Errorf("err = %v, want the unknown data plane", err)
	}
}
