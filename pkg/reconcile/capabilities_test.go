package reconcile

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

// What a backend cannot do is an error naming the file, the line of the
// virtual server and the key; a firewall mark is a note, as keepalived.conf
// files carry them.
func TestPlanForCapabilities(t *testing.T) {
	toy := dataplane.Capabilities{
		Backend:     "toy",
		Schedulers:  []string{"rr", "wlc"},
		Kinds:       []dataplane.Kind{dataplane.NAT},
		Protocols:   []uint8{6},
		MaxServices: 2,
		MaxReals:    3,
	}
	tests := []struct {
		name  string
		conf  string
		errs  []string
		notes []string
	}{
		{
			name: "all within",
			conf: "virtual_server 10.0.0.1 80 {\n lb_algo rr\n real_server 10.0.1.1 80 {\n }\n}\n",
		},
		{
			name: "a scheduler it lacks",
			conf: "virtual_server 10.0.0.1 80 {\n lb_algo mh\n}\n",
			errs: []string{`ka.conf:1: 10.0.0.1:80/TCP: lb_algo mh: the TOY data plane does not run this scheduler (it runs rr, wlc)`},
		},
		{
			name: "the default scheduler counts",
			conf: "virtual_server 10.0.0.1 80 {\n}\n",
		},
		{
			name: "forwarding and protocol",
			conf: "\nvirtual_server 10.0.0.1 53 {\n lb_kind DR\n protocol UDP\n}\n",
			errs: []string{
				`ka.conf:2: 10.0.0.1:53/UDP: lb_kind DR: the TOY data plane cannot forward this way`,
			},
			// keepalived's SCTP under XDP: a warning, as firewall marks.
			notes: []string{`ka.conf:2: 10.0.0.1:53/UDP: protocol UDP: the TOY data plane cannot balance it; this one is only checked`},
		},
		{
			name: "a group checked once, not once per service",
			conf: "virtual_server_group G {\n 10.0.0.1-2 80\n}\nvirtual_server group G {\n lb_algo sh\n}\n",
			errs: []string{`ka.conf:4: group:G/TCP: lb_algo sh: the TOY data plane does not run this scheduler (it runs rr, wlc)`},
		},
		{
			name: "a group entry without a port",
			conf: "virtual_server_group G {\n 10.0.0.1\n}\nvirtual_server group G {\n persistence_timeout 60\n}\n",
			errs: []string{`ka.conf:4: group:G/TCP: 10.0.0.1 of virtual_server_group "G": the TOY data plane cannot hold a service on every port (an entry without a port)`},
		},
		{
			name: "too many services: the virtual server that goes over is named",
			conf: "virtual_server_group G {\n 10.0.0.1-2 80\n}\nvirtual_server group G {\n}\n" +
				"virtual_server 10.0.0.9 80 {\n}\n",
			errs: []string{`ka.conf:6: 10.0.0.9:80/TCP: 3 services in all: the TOY data plane holds at most 2 (this virtual server goes over)`},
		},
		{
			name: "too many reals",
			conf: "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n real_server 10.0.1.2 80 {\n }\n}\n" +
				"virtual_server 10.0.0.2 80 {\n real_server 10.0.1.1 80 {\n }\n real_server 10.0.1.2 80 {\n }\n}\n",
			errs: []string{`ka.conf:7: 10.0.0.2:80/TCP: 4 real servers summed over services: the TOY data plane holds at most 3 (this virtual server goes over)`},
		},
		{
			name:  "fwmark: a note",
			conf:  "virtual_server fwmark 5 {\n}\n",
			notes: []string{`ka.conf:1: fwmark:5: the TOY data plane cannot match firewall marks; this one is only checked`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.ParseKeepalived("ka.conf", []byte(tt.conf), nil, nil)
			if err != nil {
				t.Fatalf("parse:\n%v", err)
			}
			_, notes, err := PlanFor(cfg, &toy)
			var errs []string
			var list config.ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					errs = append(errs, e.Error())
				}
			} else if err != nil {
				t.Fatalf("%v is not a config.ErrorList", err)
			}
			if diff := cmp.Diff(tt.errs, errs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			var got []string
			for _, n := range notes {
				got = append(got, n.Error())
			}
			if diff := cmp.Diff(tt.notes, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
			// Without a backend's limits, only firewall marks are noted.
			if _, _, err := Plan(cfg); err != nil {
				t.Errorf("Plan: %v", err)
			}
		})
	}
}
