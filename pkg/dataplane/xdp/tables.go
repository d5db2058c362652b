package xdp

import (
	"fmt"

	xbpf "github.com/xlbd/xlbd/bpf"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// tableStatus fills st's tables from set, reusing the counts st already
// has: a count walks a whole table.
func tableStatus(set *maps.Set, st *dataplane.Status) error {
	counted := map[string]int{}
	for name, n := range map[string]int{xbpf.XlbMapConns: st.Flows, xbpf.XlbMapNat: st.NATFlows,
		xbpf.XlbMapPersist: st.Templates} {
		if n >= 0 {
			counted[name] = n
		}
	}
	usage, err := set.Usage(counted)
	if err != nil {
		return fmt.Errorf("table usage: %w", err)
	}
	for _, u := range usage {
		st.Tables = append(st.Tables, dataplane.TableStatus{Name: u.Name, Size: u.Size, Used: u.Used, Memory: u.Memory})
	}
	st.TablesMemory = set.Memory()
	return nil
}
