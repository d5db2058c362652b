package config

import (
	"strings"
	"testing"
)

func TestLVSSysctl(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want LVSSysctl
		err  string
	}{
		{name: "absent: IPVS's defaults", yaml: "global_defs: {router_id: a}\n",
			want: LVSSysctl{ConnReuseMode: 1}},
		{name: "all set",
			yaml: "global_defs:\n  lvs_sysctl:\n    expire_quiescent_template: true\n    conn_reuse_mode: 0\n    sloppy_tcp: yes\n",
			want: LVSSysctl{ExpireQuiescentTemplate: true, ConnReuseMode: 0, SloppyTCP: true}},
		{name: "one set, the others default", yaml: "global_defs:\n  lvs_sysctl: {sloppy_tcp: true}\n",
			want: LVSSysctl{ConnReuseMode: 1, SloppyTCP: true}},
		{name: "FIN_WAIT reuse", yaml: "global_defs:\n  lvs_sysctl:\n    conn_reuse_mode: 3\n",
			err: "lb.yaml:3: global_defs.lvs_sysctl.conn_reuse_mode: conn_reuse_mode 3: bit 2 (reusing FIN_WAIT connections of DR and TUN) is not implemented; want 0 or 1"},
		{name: "out of range", yaml: "global_defs:\n  lvs_sysctl:\n    conn_reuse_mode: 7\n",
			err: "lb.yaml:3: global_defs.lvs_sysctl.conn_reuse_mode: 7 is not a valid conn_reuse_mode (0-1)"},
		{name: "not a number", yaml: "global_defs:\n  lvs_sysctl:\n    conn_reuse_mode: always\n",
			err: `lb.yaml:3: global_defs.lvs_sysctl.conn_reuse_mode: "always" is not an integer`},
		{name: "not a boolean", yaml: "global_defs:\n  lvs_sysctl:\n    sloppy_tcp: 2\n",
			err: `lb.yaml:3: global_defs.lvs_sysctl.sloppy_tcp: "2" is not a boolean (want true, false, yes, no, on or off)`},
		{name: "a sysctl not implemented", yaml: "global_defs:\n  lvs_sysctl:\n    expire_nodest_conn: 1\n",
			err: `lb.yaml:3: global_defs.lvs_sysctl.expire_nodest_conn: unknown key "expire_nodest_conn"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("lb.yaml", []byte(tt.yaml))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error:\n got %v\nwant %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Global.LVSSysctl != tt.want {
				t.Errorf("LVSSysctl = %+v, want %+v", cfg.Global.LVSSysctl, tt.want)
			}
		})
	}
}

// keepalived has no keyword for these: it leaves them to sysctl.
func TestLVSSysctlNotInKeepalived(t *testing.T) {
	_, err := ParseKeepalived("ka.conf", []byte("global_defs {\n lvs_sysctl {\n  sloppy_tcp\n }\n}\n"), memFS{}.read, memFS{}.glob)
	want := "ka.conf:2: global_defs.lvs_sysctl: \"lvs_sysctl\" is an lb.yaml setting that keepalived has no keyword for (`xlbd convert` gives lb.yaml)"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}

func TestLVSSysctlMarshal(t *testing.T) {
	cfg, err := Parse("lb.yaml", []byte("global_defs:\n  lvs_sysctl: {conn_reuse_mode: 0, expire_quiescent_template: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	y, err := MarshalYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := "global_defs:\n  lvs_sysctl:\n    expire_quiescent_template: true\n    conn_reuse_mode: 0\n"
	if string(y) != want {
		t.Errorf("MarshalYAML:\n%s\nwant\n%s", y, want)
	}
	back, err := Parse("lb.yaml", y)
	if err != nil || back.Global.LVSSysctl != cfg.Global.LVSSysctl {
		t.Errorf("round trip: %+v, %v", back.Global.LVSSysctl, err)
	}
	// Defaults are left out, except by Dump, which spells them all out.
	def, _ := Parse("lb.yaml", nil)
	if y, _ := MarshalYAML(def); strings.Contains(string(y), "lvs_sysctl") {
		t.Errorf("defaults written:\n%s", y)
	}
	if d := Dump(def); !strings.Contains(d, "lvs_sysctl:\n    expire_quiescent_template: false\n    conn_reuse_mode: 1\n    sloppy_tcp: false\n") {
		t.Errorf("Dump lacks the defaults:\n%s", d)
	}
}
