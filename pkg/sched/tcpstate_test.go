package sched

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type seg struct {
	table TCPTable
	flags TCPFlags
}

func TestTCPTransitions(t *testing.T) {
	tests := []struct {
		name   string
		secure bool
		segs   []seg
		want   []TCPState
	}{
		{
			// NAT: both directions seen.
			name: "NAT handshake and client close",
			segs: []seg{
				{Input, SYN}, {Output, SYN | ACK}, {Input, ACK},
				{Input, FIN | ACK}, {Output, ACK}, {Output, FIN | ACK}, {Input, ACK},
			},
			want: []TCPState{TCPSynRecv, TCPSynRecv, TCPEstablished, TCPCloseWait, TCPCloseWait, TCPTimeWait, TCPTimeWait},
		},
		{
			name: "NAT server closes first",
			segs: []seg{{Input, SYN}, {Output, SYN | ACK}, {Input, ACK}, {Output, FIN | ACK}, {Input, ACK}, {Input, FIN | ACK}},
			want: []TCPState{TCPSynRecv, TCPSynRecv, TCPEstablished, TCPFinWait, TCPFinWait, TCPTimeWait},
		},
		{
			// DR/TUN: only the client's half.
			name: "input only",
			segs: []seg{{InputOnly, SYN}, {InputOnly, ACK}, {InputOnly, ACK}, {InputOnly, FIN | ACK}, {InputOnly, ACK}},
			want: []TCPState{TCPSynRecv, TCPEstablished, TCPEstablished, TCPFinWait, TCPFinWait},
		},
		{
			name: "RST wins over other flags",
			segs: []seg{{InputOnly, SYN}, {InputOnly, ACK}, {InputOnly, RST | ACK | SYN}},
			want: []TCPState{TCPSynRecv, TCPEstablished, TCPClose},
		},
		{
			name: "RST in SYN_RECV is ignored",
			segs: []seg{{Input, SYN}, {Input, RST}},
			want: []TCPState{TCPSynRecv, TCPSynRecv},
		},
		{
			name: "no flags closes",
			segs: []seg{{InputOnly, SYN}, {InputOnly, ACK}, {InputOnly, 0}},
			want: []TCPState{TCPSynRecv, TCPEstablished, TCPClose},
		},
		{
			name: "SYN on a closed connection reopens",
			segs: []seg{{InputOnly, SYN}, {InputOnly, ACK}, {InputOnly, RST}, {InputOnly, SYN}},
			want: []TCPState{TCPSynRecv, TCPEstablished, TCPClose, TCPSynRecv},
		},
		{
			name:   "secure_tcp: SYN alone is SYNACK until the ACK",
			secure: true,
			segs:   []seg{{InputOnly, SYN}, {InputOnly, SYN}, {InputOnly, ACK}},
			want:   []TCPState{TCPSynAck, TCPSynAck, TCPEstablished},
		},
		{
			name:   "secure_tcp NAT: server SYN+ACK makes SYNACK",
			secure: true,
			segs:   []seg{{Input, SYN}, {Output, SYN | ACK}, {Input, ACK}},
			want:   []TCPState{TCPSynRecv, TCPSynAck, TCPSynAck},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []TCPState
			s := TCPNone
			for _, sg := range tt.segs {
				s = TCPTransition(s, sg.table, sg.flags, tt.secure)
				got = append(got, s)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("states (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTCPStateActive(t *testing.T) {
	var active []TCPState
	for s := TCPNone; s < NumTCPStates; s++ {
		if s.Active() {
			active = append(active, s)
		}
	}
	if diff := cmp.Diff([]TCPState{TCPEstablished, TCPSynSent, TCPSynRecv, TCPSynAck}, active); diff != "" {
		t.Errorf("active states (-want +got):\n%s", diff)
	}
	if TCPTimeWait.String() != "TIME_WAIT" || TCPState(42).String() != "TCPState(42)" {
		t.Errorf("names: %v %v", TCPTimeWait, TCPState(42))
	}
}

func TestTimeouts(t *testing.T) {
	d := DefaultTimeouts()
	want := map[TCPState]time.Duration{
		TCPEstablished: 900 * time.Second,
		TCPSynRecv:     60 * time.Second,
		TCPFinWait:     120 * time.Second,
		TCPTimeWait:    120 * time.Second,
		TCPClose:       10 * time.Second,
		TCPCloseWait:   60 * time.Second,
		TCPLastAck:     30 * time.Second,
	}
	for s, w := range want {
		if d.TCP[s] != w {
			t.Errorf("%v timeout %v, want %v", s, d.TCP[s], w)
		}
	}
	if d.UDP != 300*time.Second {
		t.Errorf("udp timeout %v", d.UDP)
	}
	d.SetLVSTimeouts(3600*time.Second, 30*time.Second, 0)
	if d.TCP[TCPEstablished] != time.Hour || d.TCP[TCPFinWait] != 30*time.Second ||
		d.TCP[TCPTimeWait] != 120*time.Second || d.UDP != 300*time.Second {
		t.Errorf("after lvs_timeouts 3600 30 0: %+v", d)
	}
}
