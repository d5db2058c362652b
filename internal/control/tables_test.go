package control

import (
	"strings"
	"testing"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

func TestFormatTables(t *testing.T) {
	rep := Report{Config: "lb.yaml", Dataplane: dataplane.Status{Backend: "xdp", Tables: []dataplane.TableStatus{
		{Name: "conns", Size: 131072, Used: 1311, Memory: 17 << 20},
		{Name: "ring", Size: 1048576, Used: 12, Memory: 16 << 20},
		{Name: "pmtu", Size: 8192, Used: -1},
	}, TablesMemory: 81 << 20}}
	var b strings.Builder
	if err := Format(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"\nTable         Used      Size   Full     Memory\n",
		"\nconns         1311    131072   1.0%   17.0 MiB\n",
		"\nring            12   1048576   0.0%   16.0 MiB\n",
		"\npmtu             ?      8192      ?          ?\n",
		"\nall maps                              81.0 MiB\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}
}
