package ipvs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/sched"
)

// Name is the IPVS backend's name in the registry and --dataplane.
const Name = "ipvs"

// Capabilities are what IPVS on this kernel balances. Its schedulers are
// kernel modules: where the running kernel's module tree is readable, a
// scheduler it lacks (twos before Linux 6.2) is not offered.
func Capabilities() dataplane.Capabilities {
	return dataplane.Capabilities{
		Backend:    Name,
		Schedulers: kernelSchedulers(modulesDir()),
		Kinds:      []dataplane.Kind{dataplane.NAT, dataplane.DR, dataplane.TUN},
		Protocols:  []uint8{6, 17, 132},
		FWMark:     true,
		SyncDaemon: true,
		PortZero:   true,
		// IPVS balances IPv6 too; xlbd's configuration and State are
		// IPv4 for now.
		IPv6: false,
	}
}

// Capabilities implements dataplane.Backend.
func (b *Backend) Capabilities() dataplane.Capabilities { return Capabilities() }

func modulesDir() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
}

// kernelSchedulers are IPVS's schedulers that the kernel whose modules are
// in dir has, as modules or built in; all of them when dir says nothing
// (no module tree, or a kernel without IPVS, which New reports), so that
// `xlbd check` still judges a configuration against IPVS.
func kernelSchedulers(dir string) []string {
	have := map[string]bool{}
	if ents, err := os.ReadDir(filepath.Join(dir, "kernel/net/netfilter/ipvs")); err == nil {
		for _, e := range ents {
			name, _, _ := strings.Cut(e.Name(), ".")
			have[name] = true
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for line := range strings.Lines(string(b)) {
			name, _, _ := strings.Cut(filepath.Base(strings.TrimSpace(line)), ".")
			have[name] = true
		}
	}
	var out []string
	for _, s := range sched.Schedulers {
		if have["ip_vs_"+s] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return slices.Clone(sched.Schedulers)
	}
	return out
}
