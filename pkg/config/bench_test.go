package config

import (
	"fmt"
	"strings"
	"testing"
)

// benchKeepalived is a keepalived.conf of the size a busy balancer has:
// global_defs, a VRRP pair of instances in a sync group with a tracked
// script, and services virtual servers of four reals each, their checkers
// a mix of TCP_CHECK and HTTP_GET as configurations in the wild have.
func benchKeepalived(services int) string {
	var b strings.Builder
	b.WriteString(`global_defs {
    router_id LB1
    notification_email {
        ops@example.com
    }
    smtp_server 192.0.2.25
    lvs_timeouts tcp 600 tcpfin 60 udp 60
}

vrrp_script chk_web {
    script "/usr/local/bin/check-web --quick"
    interval 2
    weight -20
    fall 3
}

vrrp_sync_group VG_1 {
    group {
        VI_1
        VI_2
    }
}
`)
	for i, nic := range []string{"eth0", "eth1"} {
		fmt.Fprintf(&b, `
vrrp_instance VI_%d {
    state MASTER
    interface %s
    virtual_router_id %d
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass s3cret
    }
    virtual_ipaddress {
        10.%d.1.100/24 dev %s
    }
    track_script {
        chk_web
    }
}
`, i+1, nic, 51+i, 50+i, nic)
	}
	for s := 0; s < services; s++ {
		fmt.Fprintf(&b, "\nvirtual_server 10.50.1.100 %d {\n    delay_loop 6\n    lb_algo %s\n    lb_kind NAT\n    protocol TCP\n",
			1000+s, []string{"wlc", "rr", "sh"}[s%3])
		if s%4 == 0 {
			b.WriteString("    persistence_timeout 300\n")
		}
		for r := 0; r < 4; r++ {
			i := 4*s + r
			fmt.Fprintf(&b, "    real_server 10.50.2.%d %d {\n        weight %d\n", 1+i%250, 8080+i/250, 1+r)
			if s%2 == 0 {
				b.WriteString("        TCP_CHECK {\n            connect_timeout 3\n            retry 2\n            delay_before_retry 2\n        }\n")
			} else {
				b.WriteString("        HTTP_GET {\n            url {\n                path /healthz\n                status_code 200\n            }\n            connect_timeout 3\n        }\n")
			}
			b.WriteString("    }\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// BenchmarkParse is what reading the configuration costs at start and on
// every reload: the same 100 virtual servers as keepalived.conf and as the
// lb.yaml `xlbd convert` makes of it.
func BenchmarkParse(b *testing.B) {
	const services = 100
	ka := []byte(benchKeepalived(services))
	cfg, err := ParseKeepalived("keepalived.conf", ka, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	if len(cfg.VirtualServers) != services {
		b.Fatalf("%d virtual servers, want %d", len(cfg.VirtualServers), services)
	}
	yaml, err := MarshalYAML(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		data  []byte
		parse func([]byte) (*Config, error)
	}{
		{"lb.yaml", yaml, func(d []byte) (*Config, error) { return Parse("lb.yaml", d) }},
		{"keepalived.conf", ka, func(d []byte) (*Config, error) { return ParseKeepalived("keepalived.conf", d, nil, nil) }},
	} {
		b.Run(fmt.Sprintf("%s/services=%d", c.name, services), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				cfg, err := c.parse(c.data)
				if err != nil {
					b.Fatal(err)
				}
				if len(cfg.VirtualServers) != services {
					b.Fatalf("%d virtual servers, want %d", len(cfg.VirtualServers), services)
				}
			}
		})
	}
}
