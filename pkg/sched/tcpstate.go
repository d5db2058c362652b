package sched

import (
	"fmt"
	"time"
)

// TCPState is IPVS's TCP connection state (IP_VS_TCP_S_*), in the kernel's
// numbering, which indexes the state tables.
type TCPState uint8

// The states of ip_vs_proto_tcp.c.
const (
	TCPNone TCPState = iota
	TCPEstablished
	TCPSynSent
	TCPSynRecv
	TCPFinWait
	TCPTimeWait
	TCPClose
	TCPCloseWait
	TCPLastAck
	TCPListen
	TCPSynAck
	NumTCPStates // IP_VS_TCP_S_LAST
)

var tcpStateNames = [NumTCPStates]string{
	"NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT",
	"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK",
}

func (s TCPState) String() string {
	if s < NumTCPStates {
		return tcpStateNames[s]
	}
	return fmt.Sprintf("TCPState(%d)", uint8(s))
}

// Active is tcp_state_active_table: a connection in these states counts in
// the real's activeconns, in any other in inactconns. Since Linux 4.x the
// handshake states count as active too, not only ESTABLISHED.
func (s TCPState) Active() bool {
	switch s {
	case TCPEstablished, TCPSynSent, TCPSynRecv, TCPSynAck:
		return true
	}
	return false
}

// TCPFlags are the TCP header flag bits, with the header's values so that
// the BPF side can pass the flags byte through.
type TCPFlags uint8

// TCP header flags IPVS looks at.
const (
	FIN TCPFlags = 0x01
	SYN TCPFlags = 0x02
	RST TCPFlags = 0x04
	ACK TCPFlags = 0x10
)

// TCPTable selects one of the three blocks of tcp_states (TCP_DIR_INPUT,
// TCP_DIR_OUTPUT, TCP_DIR_INPUT_ONLY).
type TCPTable uint8

// Input is for client-to-server packets of a connection whose replies pass
// through the balancer (NAT); Output for those replies; InputOnly for
// client-to-server packets when replies bypass the balancer (DR, TUN: the
// connection has IP_VS_CONN_F_NOOUTPUT). See set_tcp_state.
const (
	Input TCPTable = iota
	Output
	InputOnly
)

const (
	sNO = TCPNone
	sES = TCPEstablished
	sSS = TCPSynSent
	sSR = TCPSynRecv
	sFW = TCPFinWait
	sTW = TCPTimeWait
	sCL = TCPClose
	sCW = TCPCloseWait
	sLA = TCPLastAck
	sLI = TCPListen
	sSA = TCPSynAck
)

// tcpStates is tcp_states: [table][syn, fin, ack, rst][current state].
var tcpStates = [3][4][NumTCPStates]TCPState{
	Input: {
		//      sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA
		/*syn*/ {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
		/*fin*/ {sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW},
		/*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		/*rst*/ {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR},
	},
	Output: {
		/*syn*/ {sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR},
		/*fin*/ {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
		/*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
		/*rst*/ {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
	},
	InputOnly: {
		/*syn*/ {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
		/*fin*/ {sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW},
		/*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		/*rst*/ {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
}

// tcpStatesDOS is tcp_states_dos, used instead when secure_tcp is in
// force: a bare SYN only reaches SYNACK and needs the client's ACK of the
// SYN+ACK to count as established.
var tcpStatesDOS = [3][4][NumTCPStates]TCPState{
	Input: {
		/*syn*/ {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSA},
		/*fin*/ {sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sSA},
		/*ack*/ {sES, sES, sSS, sSR, sFW, sTW, sCL, sCW, sCL, sLI, sSA},
		/*rst*/ {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
	Output: {
		/*syn*/ {sSS, sES, sSS, sSA, sSS, sSS, sSS, sSS, sSS, sLI, sSA},
		/*fin*/ {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
		/*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
		/*rst*/ {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
	},
	InputOnly: {
		/*syn*/ {sSA, sES, sES, sSR, sSA, sSA, sSA, sSA, sSA, sSA, sSA},
		/*fin*/ {sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW},
		/*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		/*rst*/ {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
}

// TCPTransition is the state lookup of set_tcp_state. The packet's flags
// select a row with RST taking precedence over SYN, SYN over FIN, FIN over
// ACK (tcp_state_idx); a segment with none of them moves the connection to
// CLOSE. secure selects tcp_states_dos (sysctl secure_tcp in force).
func TCPTransition(state TCPState, table TCPTable, flags TCPFlags, secure bool) TCPState {
	var row int
	switch {
	case flags&RST != 0:
		row = 3
	case flags&SYN != 0:
		row = 0
	case flags&FIN != 0:
		row = 1
	case flags&ACK != 0:
		row = 2
	default:
		return TCPClose
	}
	if state >= NumTCPStates || table > InputOnly {
		return TCPClose
	}
	if secure {
		return tcpStatesDOS[table][row][state]
	}
	return tcpStates[table][row][state]
}

// Timeouts is the per-protocol timeout table of a netns (tcp_timeouts,
// udp_timeouts): how long a connection lives after its last packet, by the
// state that packet left it in.
type Timeouts struct {
	TCP [NumTCPStates]time.Duration
	UDP time.Duration // IP_VS_UDP_S_NORMAL
}

// DefaultTimeouts is the kernel's tcp_timeouts and udp_timeouts.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCP: [NumTCPStates]time.Duration{
			TCPNone:        2 * time.Second,
			TCPEstablished: 15 * time.Minute,
			TCPSynSent:     2 * time.Minute,
			TCPSynRecv:     1 * time.Minute,
			TCPFinWait:     2 * time.Minute,
			TCPTimeWait:    2 * time.Minute,
			TCPClose:       10 * time.Second,
			TCPCloseWait:   1 * time.Minute,
			TCPLastAck:     30 * time.Second,
			TCPListen:      2 * time.Minute,
			TCPSynAck:      2 * time.Minute,
		},
		UDP: 5 * time.Minute,
	}
}

// SetLVSTimeouts is ip_vs_set_timeout (ipvsadm --set, keepalived
// lvs_timeouts): tcp replaces the ESTABLISHED timeout, tcpfin the FIN_WAIT
// one (only FIN_WAIT: TIME_WAIT keeps its 2 minutes), udp the UDP one. A
// zero leaves the value as it is, as the kernel does.
func (t *Timeouts) SetLVSTimeouts(tcp, tcpfin, udp time.Duration) {
	if tcp > 0 {
		t.TCP[TCPEstablished] = tcp
	}
	if tcpfin > 0 {
		t.TCP[TCPFinWait] = tcpfin
	}
	if udp > 0 {
		t.UDP = udp
	}
}

// newConnTimeout is the timeout ip_vs_conn_new gives an entry; the first
// packet's state transition replaces it at once, and a template's is set to
// the persistence timeout.
const newConnTimeout = 3 * time.Second
