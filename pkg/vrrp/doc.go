// Package vrrp implements VRRP (RFC 3768 version 2 and RFC 5798/9568
// version 3) as keepalived 2.2.7 speaks it: the advertisement codec
// (packet.go) and the state machine of one instance (fsm.go), both free of
// sockets and clocks so that the speaker that owns those can be tested
// apart from the protocol.
package vrrp
