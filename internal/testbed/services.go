package testbed

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServeReals runs, in every real, an HTTP server on httpPort answering with
// the real's name (r1, r2, ...) and a UDP server on udpPort answering
// "NAME:" followed by the query. In L2 topologies (DR and TUN) the UDP
// server binds the VIP, as a real DNS server would: a wildcard socket would
// answer from the real's own address, which the client never asked.
func ServeReals(c Cleanuper, top *Topology, httpPort, udpPort int) error {
	for i, r := range top.Reals {
		name := fmt.Sprintf("r%d", i+1)
		l, err := r.Listen("tcp", fmt.Sprintf(":%d", httpPort))
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, name)
		})}
		go srv.Serve(l)
		c.Cleanup(func() { srv.Close() })

		udpAddr := fmt.Sprintf(":%d", udpPort)
		if top.Mode == L2 {
			udpAddr = netip.AddrPortFrom(top.VIP, uint16(udpPort)).String()
		}
		pc, err := r.ListenPacket("udp", udpAddr)
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(name+":"+string(buf[:n])), from)
			}
		}()
		c.Cleanup(func() { pc.Close() })
	}
	return nil
}

// Process is a command running in a namespace; the topology's cleanup
// stops it (SIGTERM, then SIGKILL after 10 s).
type Process struct {
	Cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	echo   io.Writer
	exited chan struct{}
}

func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.echo != nil {
		p.echo.Write(b)
	}
	return p.out.Write(b)
}

// Output is everything the process wrote so far, stdout and stderr.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Start runs name with args in ns. When echo is not nil the output is
// copied there as well.
func Start(c Cleanuper, ns *Netns, echo io.Writer, name string, args ...string) (*Process, error) {
	p := &Process{Cmd: ns.Command(name, args...), echo: echo, exited: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p, p
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.Cmd.Wait(); close(p.exited) }()
	c.Cleanup(p.Stop)
	return p, nil
}

// Stop ends the process and waits for it.
func (p *Process) Stop() {
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.Cmd.Process.Kill()
		<-p.exited
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// WaitFor waits until the output contains s.
func (p *Process) WaitFor(s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Output(), s) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before saying %q:\n%s", p.Cmd.Path, s, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("no %q from %s within %s:\n%s", s, p.Cmd.Path, timeout, p.Output())
}
