package registry

import (
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{name: "xdp"},
		{name: "ipvs", wantErr: `--dataplane "ipvs": unknown data plane (want xdp)`},
		{name: "", wantErr: `--dataplane "": unknown data plane`},
		{name: "XDP", wantErr: `unknown data plane`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Lookup(tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Lookup(%q) err = %v, want %q", tt.name, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != tt.name || b.New == nil || b.Capabilities == nil {
				t.Fatalf("Lookup(%q) = %+v", tt.name, b)
			}
			if c := b.Capabilities(); c.Backend != tt.name || len(c.Schedulers) == 0 {
				t.Errorf("capabilities %+v", c)
			}
		})
	}
}

// The default is a registered backend.
func TestDefault(t *testing.T) {
	if _, err := Lookup(Default); err != nil {
		t.Fatal(err)
	}
	if Names()[0] != Default {
		t.Errorf("Names() = %v, want the default %q first", Names(), Default)
	}
}
