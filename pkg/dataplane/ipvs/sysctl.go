package ipvs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// Sysctls reads and writes IPVS's net.ipv4.vs settings of the daemon's
// network namespace.
type Sysctls interface {
	Get(name string) (string, error)
	Set(name, value string) error
}

type procSysctls struct{}

const sysctlDir = "/proc/sys/net/ipv4/vs"

func (procSysctls) Get(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(sysctlDir, name))
	return strings.TrimSpace(string(b)), err
}

func (procSysctls) Set(name, value string) error {
	return os.WriteFile(filepath.Join(sysctlDir, name), []byte(value+"\n"), 0)
}

func flag(on bool) string {
	if on {
		return "1"
	}
	return "0"
}

// setTuning writes the sysctls that differ from t, leaving the others as
// the administrator has them.
func (b *Backend) setTuning(t dataplane.Tuning) error {
	for _, s := range []struct{ name, want string }{
		{"expire_quiescent_template", flag(t.ExpireQuiescentTemplate)},
		{"conn_reuse_mode", flag(!t.NoConnReuse)},
		{"sloppy_tcp", flag(t.SloppyTCP)},
	} {
		have, err := b.sysctls.Get(s.name)
		if err != nil {
			return fmt.Errorf("IPVS: reading net.ipv4.vs.%s: %w", s.name, err)
		}
		// conn_reuse_mode has more modes than on and off (2 and 3 tune
		// it further); any of them is "on".
		if have == s.want || (s.name == "conn_reuse_mode" && s.want == "1" && have != "0") {
			continue
		}
		if err := b.sysctls.Set(s.name, s.want); err != nil {
			return fmt.Errorf("IPVS: setting net.ipv4.vs.%s to %s: %w", s.name, s.want, err)
		}
		b.log.Info("IPVS setting changed", "sysctl", "net.ipv4.vs."+s.name, "from", have, "to", s.want)
	}
	return nil
}
