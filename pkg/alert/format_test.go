package alert

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbd/xlbd/pkg/config"
)

var (
	vsTCP = config.VirtualServer{Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Protocol: config.TCP, Quorum: 3, Hysteresis: 1}
	vsUDP = config.VirtualServer{Address: netip.MustParseAddr("10.0.0.2"), Port: 53, Protocol: config.UDP}
	vsV6  = config.VirtualServer{Address: netip.MustParseAddr("2001:db8::1"), Port: 443, Protocol: config.TCP}
	vsFWM = config.VirtualServer{FWMark: 5, Protocol: config.TCP}
	vsGrp = config.VirtualServer{Group: "web", Protocol: config.TCP, Quorum: 2}
	rs1   = netip.MustParseAddrPort("192.168.1.10:8080")
)

// The expected strings are keepalived 2.2.8's, from the format strings in
// core/smtp.c (subject), check/check_data.c and lib/utils.c (FMT_VS,
// FMT_RS), check/check_*.c, check/ipwrapper.c and vrrp/vrrp_notify.c
// (bodies).
func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		name          string
		a             Alert
		subject, body string
	}{
		{"tcp down", RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckTCP, false, "timeout")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> TCP CHECK failed on service <="},
		{"tcp up", RealServerAlert(vsTCP, rs1, true, CheckerBody(config.CheckTCP, true, "")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - UP",
			"=> TCP CHECK succeed on service <="},
		{"checker up, real still down", RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckTCP, true, "")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> TCP CHECK succeed on service <="},
		{"http down", RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckHTTP, false, "status 503")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> CHECK failed on service : HTTP/SSL request failed <="},
		{"ssl up", RealServerAlert(vsTCP, rs1, true, CheckerBody(config.CheckSSL, true, "")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - UP",
			"=> CHECK succeed on service <="},
		{"smtp down with reason", RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckSMTP, false, "connection refused")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> CHECK failed on service : connection refused <="},
		{"smtp down", RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckSMTP, false, "")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> CHECK failed on service <="},
		{"misc up", RealServerAlert(vsTCP, rs1, true, CheckerBody(config.CheckMisc, true, "")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - UP",
			"=> MISC CHECK succeeded on service <="},
		{"misc failed", RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckMisc, false, "exit status 1")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> MISC CHECK failed on service <="},
		{"misc timed out", RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckMisc, false, "timeout")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> MISC CHECK timed out on service <="},
		{"dns udp", RealServerAlert(vsUDP, netip.MustParseAddrPort("192.168.1.11:53"), false, CheckerBody(config.CheckDNS, false, "")),
			"[LB1] Realserver [192.168.1.11]:udp:53 of virtual server [10.0.0.2]:udp:53 - DOWN",
			"=> DNS_CHECK: failed on service <="},
		{"dns up", RealServerAlert(vsUDP, netip.MustParseAddrPort("192.168.1.11:53"), true, CheckerBody(config.CheckDNS, true, "")),
			"[LB1] Realserver [192.168.1.11]:udp:53 of virtual server [10.0.0.2]:udp:53 - UP",
			"=> DNS_CHECK: succeed on service <="},
		{"udp", RealServerAlert(vsUDP, netip.MustParseAddrPort("192.168.1.11:53"), true, CheckerBody(config.CheckUDP, true, "")),
			"[LB1] Realserver [192.168.1.11]:udp:53 of virtual server [10.0.0.2]:udp:53 - UP",
			"=> UDP CHECK succeed on service <="},
		{"ping", RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckPing, false, "")),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> ICMP CHECK failed on service <="},
		{"generic body", RealServerAlert(vsTCP, rs1, true, ""),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - UP",
			"=> CHECK succeed on service <="},
		{"ipv6", RealServerAlert(vsV6, netip.MustParseAddrPort("[2001:db8::10]:443"), false, CheckerBody(config.CheckTCP, false, "")),
			"[LB1] Realserver [2001:db8::10]:tcp:443 of virtual server [2001:db8::1]:tcp:443 - DOWN",
			"=> TCP CHECK failed on service <="},
		{"fwmark", RealServerAlert(vsFWM, netip.MustParseAddrPort("192.168.1.10:0"), false, CheckerBody(config.CheckTCP, false, "")),
			"[LB1] Realserver [192.168.1.10]:none:0 of virtual server FWM 5 - DOWN",
			"=> TCP CHECK failed on service <="},
		{"group", RealServerAlert(vsGrp, netip.MustParseAddrPort("192.168.1.10:80"), true, CheckerBody(config.CheckHTTP, true, "")),
			"[LB1] Realserver [192.168.1.10]:tcp:80 of virtual server [web]:0 - UP",
			"=> CHECK succeed on service <="},
		{"removed at reload", RealServerRemovedAlert(vsTCP, rs1, false),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> Removing <="},
		{"removed at shutdown", RealServerRemovedAlert(vsTCP, rs1, true),
			"[LB1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
			"=> Shutting down <="},
		{"gained quorum", QuorumAlert(vsTCP, true, false, 4, 5),
			"[LB1] Virtualserver [10.0.0.1]:tcp:80 - UP",
			"=> Gained quorum 3+1=4 <= 5 <="},
		{"lost quorum", QuorumAlert(vsTCP, false, false, 2, 1),
			"[LB1] Virtualserver [10.0.0.1]:tcp:80 - DOWN",
			"=> Lost quorum 3+1=2 <= 1 <="},
		{"starting with quorum up", QuorumAlert(vsGrp, true, true, 2, 3),
			"[LB1] Virtualserver [web]:0 - UP",
			"=> Starting with quorum up 2+0=2 <= 3 <="},
		{"starting with quorum down", QuorumAlert(vsFWM, false, true, 1, 0),
			"[LB1] Virtualserver FWM 5 - DOWN",
			"=> Starting with quorum down 0+0=1 <= 0 <="},
		{"quorum shutdown", QuorumShutdownAlert(vsTCP),
			"[LB1] Virtualserver [10.0.0.1]:tcp:80 - DOWN",
			"=> Shutting down <="},
		{"vrrp master", VRRPAlert("VI_1", StateMaster),
			"[LB1] VRRP Instance VI_1 - Entering MASTER state",
			"=> VRRP Instance is now owning VRRP VIPs <="},
		{"vrrp backup", VRRPAlert("VI_1", StateBackup),
			"[LB1] VRRP Instance VI_1 - Entering BACKUP state",
			"=> VRRP Instance is no longer owning VRRP VIPs <="},
		{"vrrp fault", VRRPAlert("VI_1", StateFault),
			"[LB1] VRRP Instance VI_1 - Entering FAULT state",
			"=> VRRP Instance is no longer owning VRRP VIPs <="},
		{"vrrp stop", VRRPAlert("VI_1", StateStop),
			"[LB1] VRRP Instance VI_1 - Stopping",
			"=> VRRP Instance stopping <="},
		{"vrrp deleted", VRRPAlert("VI_1", StateDeleted),
			"[LB1] VRRP Instance VI_1 - Deleted",
			"=> VRRP Deleted at reload <="},
		{"group master", VRRPGroupAlert("G1", StateMaster),
			"[LB1] VRRP Group G1 - Entering MASTER state",
			"=> All VRRP group instances are now in MASTER state <="},
		{"group backup", VRRPGroupAlert("G1", StateBackup),
			"[LB1] VRRP Group G1 - Entering BACKUP state",
			"=> All VRRP group instances are now in BACKUP state <="},
		{"group fault", VRRPGroupAlert("G1", StateFault),
			"[LB1] VRRP Group G1 - Entering FAULT state",
			"=> All VRRP group instances are now in FAULT state <="},
		{"group stop", VRRPGroupAlert("G1", StateStop),
			"[LB1] VRRP Group G1 - Stopping",
			"=> All VRRP group instances are now stopping <="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatSubject("LB1", tc.a); got != tc.subject {
				t.Errorf("subject\n got %q\nwant %q", got, tc.subject)
			}
			if tc.a.Body != tc.body {
				t.Errorf("body\n got %q\nwant %q", tc.a.Body, tc.body)
			}
		})
	}
}

// States keepalived does not mail give the zero Alert, which Send ignores.
func TestNoMailStates(t *testing.T) {
	for _, a := range []Alert{VRRPAlert("VI_1", "INIT"), VRRPGroupAlert("G1", StateDeleted), VRRPGroupAlert("G1", "")} {
		if a != (Alert{}) {
			t.Errorf("got %+v, want the zero Alert", a)
		}
	}
}

// keepalived's buffers cut the subject at 255 bytes and the body at 511;
// the cut must not split a UTF-8 character.
func TestClip(t *testing.T) {
	long := strings.Repeat("x", 300)
	if got := formatSubject("LB1", Alert{Subject: long}); len(got) != maxSubject {
		t.Errorf("subject of %d bytes, want %d", len(got), maxSubject)
	}
	s := strings.Repeat("a", 510) + "é" // é is 2 bytes: 510..511
	if got := clip(s, maxBody); got != strings.Repeat("a", 510) {
		t.Errorf("clip split a rune: %q", got[500:])
	}
	if got := clip("short", maxBody); got != "short" {
		t.Errorf("clip(short) = %q", got)
	}
}
