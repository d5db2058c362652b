package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHealthKeywords covers sorry_server_inhibit and smtp_alert per virtual
// and real server, with keepalived's resolution of smtp_alert (check_data.c:
// the server's own, else global smtp_alert_checker, else global smtp_alert,
// else off for a virtual server and on for a real server), in both syntaxes
// and through a round trip to lb.yaml.
func TestHealthKeywords(t *testing.T) {
	type got struct {
		Inhibit, VSAlert, RS1Alert, RS2Alert bool
	}
	tests := []struct {
		name       string
		conf, yaml string
		want       got
	}{
		{
			name: "defaults",
			conf: "virtual_server 10.0.0.1 80 {\n sorry_server 10.0.0.9 80\n real_server 10.0.0.2 80 {\n }\n real_server 10.0.0.3 80 {\n }\n}\n",
			yaml: "virtual_servers:\n- address: 10.0.0.1\n  port: 80\n  sorry_server: 10.0.0.9\n  real_servers:\n  - {address: 10.0.0.2, port: 80}\n  - {address: 10.0.0.3, port: 80}\n",
			want: got{RS1Alert: true, RS2Alert: true},
		},
		{
			name: "set per server",
			conf: "virtual_server 10.0.0.1 80 {\n sorry_server 10.0.0.9 80\n sorry_server_inhibit\n smtp_alert\n real_server 10.0.0.2 80 {\n  smtp_alert off\n }\n real_server 10.0.0.3 80 {\n }\n}\n",
			yaml: "virtual_servers:\n- address: 10.0.0.1\n  port: 80\n  sorry_server: 10.0.0.9\n  sorry_server_inhibit: true\n  smtp_alert: true\n  real_servers:\n  - {address: 10.0.0.2, port: 80, smtp_alert: false}\n  - {address: 10.0.0.3, port: 80}\n",
			want: got{Inhibit: true, VSAlert: true, RS2Alert: true},
		},
		{
			name: "global smtp_alert off turns the real servers' default off",
			conf: "global_defs {\n smtp_alert off\n}\nvirtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  smtp_alert\n }\n real_server 10.0.0.3 80 {\n }\n}\n",
			yaml: "global_defs: {smtp_alert: false}\nvirtual_servers:\n- address: 10.0.0.1\n  port: 80\n  real_servers:\n  - {address: 10.0.0.2, port: 80, smtp_alert: true}\n  - {address: 10.0.0.3, port: 80}\n",
			want: got{RS1Alert: true},
		},
		{
			name: "smtp_alert_checker wins over smtp_alert",
			conf: "global_defs {\n smtp_alert off\n smtp_alert_checker\n}\nvirtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n }\n real_server 10.0.0.3 80 {\n  smtp_alert no\n }\n}\n",
			yaml: "global_defs: {smtp_alert: false, smtp_alert_checker: true}\nvirtual_servers:\n- address: 10.0.0.1\n  port: 80\n  real_servers:\n  - {address: 10.0.0.2, port: 80}\n  - {address: 10.0.0.3, port: 80, smtp_alert: no}\n",
			want: got{VSAlert: true, RS1Alert: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, err := ParseKeepalived("keepalived.conf", []byte(tt.conf), nil, nil)
			if err != nil {
				t.Fatalf("keepalived.conf: %v", err)
			}
			y, err := Parse("lb.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("lb.yaml: %v", err)
			}
			out, err := MarshalYAML(ka)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse("back.yaml", out)
			if err != nil {
				t.Fatalf("round trip: %v\n%s", err, out)
			}
			for name, cfg := range map[string]*Config{"keepalived.conf": ka, "lb.yaml": y, "round trip": back} {
				vs := cfg.VirtualServers[0]
				g := got{vs.SorryServerInhibit, vs.SMTPAlert, vs.RealServers[0].SMTPAlert, vs.RealServers[1].SMTPAlert}
				if diff := cmp.Diff(tt.want, g); diff != "" {
					t.Errorf("%s (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

func TestSorryServerInhibitWithoutSorryServer(t *testing.T) {
	cfg, err := ParseKeepalived("k.conf", []byte("virtual_server 10.0.0.1 80 {\n sorry_server_inhibit\n}\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VirtualServers[0].SorryServerInhibit || len(cfg.Warnings) != 1 {
		t.Errorf("SorryServerInhibit = %v, warnings %v; want false and one warning", cfg.VirtualServers[0].SorryServerInhibit, cfg.Warnings)
	}
}
