package testbed

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ServeRealsUDP runs, in every real, a UDP server on port answering "NAME:"
// followed by the query, as ServeReals' does, but for datagrams of any size
// (ServeReals reads into 2048 bytes and would cut a large query short). As
// there, in L2 topologies the server binds the VIP. Its socket does not set
// DF, so an answer larger than the path MTU leaves the real in fragments.
func ServeRealsUDP(c Cleanuper, top *Topology, port int) error {
	for i, r := range top.Reals {
		name := fmt.Sprintf("r%d", i+1)
		addr := fmt.Sprintf(":%d", port)
		if top.Mode == L2 {
			addr = netip.AddrPortFrom(top.VIP, uint16(port)).String()
		}
		pc, err := r.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		c.Cleanup(func() { pc.Close() })
		if err := NoDF(pc.(*net.UDPConn)); err != nil {
			return fmt.Errorf("%s: %w", r, err)
		}
		go func() {
			buf := make([]byte, 1<<16)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				reply := make([]byte, 0, len(name)+1+n)
				reply = append(append(append(reply, name...), ':'), buf[:n]...)
				pc.WriteTo(reply, from)
			}
		}()
	}
	return nil
}

// NoDF sets IP_MTU_DISCOVER to IP_PMTUDISC_DONT on c: datagrams larger than
// the path MTU are fragmented by the sending kernel, and no datagram or
// fragment carries DF.
func NoDF(c *net.UDPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("IP_MTU_DISCOVER: %w", serr)
	}
	return nil
}
