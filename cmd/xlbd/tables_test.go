package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/xlbd/xlbd/pkg/maps"
)

// Only the sizes given on the command line are passed on: the others stay
// at the default, or at the size of a pinned map a restart adopts.
func TestTableSizeFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want maps.Options
		err  string
	}{
		{args: nil},
		{args: []string{"--conn-table-size", "262144", "--nat-table-size", "1024"},
			want: maps.Options{ConnTableSize: 262144, NATTableSize: 1024}},
		{args: []string{"--persist-table-size=64", "--lblc-table-size=128", "--frag-table-size=256", "--pmtu-table-size=512"},
			want: maps.Options{PersistTableSize: 64, LBLCTableSize: 128, FragTableSize: 256, PMTUTableSize: 512}},
		{args: []string{"--conn-table-size", "131072"}, want: maps.Options{ConnTableSize: 131072}},
		{args: []string{"--pmtu-table-size", "63"}, err: "--pmtu-table-size 63: want 64 to 67108864"},
		{args: []string{"--nat-table-size", "0"}, err: "--nat-table-size 0: want 64 to 67108864"},
	} {
		fs := flag.NewFlagSet("xlbd", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		sizes := tableSizeFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		got, err := sizes()
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%v: error %v, want %s", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%v: %+v, %v; want %+v", tt.args, got, err, tt.want)
		}
	}
}

func TestDaemonBadTableSize(t *testing.T) {
	var out, errOut strings.Builder
	err := run([]string{"--config", "../../testdata/lb.yaml", "--lblc-table-size", "1"}, &out, &errOut)
	if err == nil || err.Error() != "--lblc-table-size 1: want 64 to 67108864" {
		t.Errorf("run: %v", err)
	}
}
