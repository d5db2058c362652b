package metrics

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

func TestTables(t *testing.T) {
	status := func(context.Context) (dataplane.Status, error) {
		return dataplane.Status{Backend: "xdp", Tables: []dataplane.TableStatus{
			{Name: "conns", Size: 131072, Used: 12, Memory: 17825792},
			{Name: "ring", Size: 1048576, Used: -1},
		}, TablesMemory: 84934656}, nil
	}
	m := New(status, nil)
	want := `
# HELP xlbd_table_entries Entries of a data-plane table in use (for services, ring and pick_tree: by the active configuration).
# TYPE xlbd_table_entries gauge
xlbd_table_entries{table="conns"} 12
# HELP xlbd_table_memory_bytes Kernel memory a data-plane table takes (the BPF map's memlock).
# TYPE xlbd_table_memory_bytes gauge
xlbd_table_memory_bytes{table="conns"} 1.7825792e+07
# HELP xlbd_table_size Entries a data-plane table can hold (for services, ring and pick_tree: one configuration generation's room).
# TYPE xlbd_table_size gauge
xlbd_table_size{table="conns"} 131072
xlbd_table_size{table="ring"} 1.048576e+06
# HELP xlbd_tables_memory_bytes Kernel memory all of the data plane's BPF maps take.
# TYPE xlbd_tables_memory_bytes gauge
xlbd_tables_memory_bytes 8.4934656e+07
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"xlbd_table_size", "xlbd_table_entries", "xlbd_table_memory_bytes", "xlbd_tables_memory_bytes"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
