package testbed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/stat's CPU times; Linux exports them in
// USER_HZ, 100 whatever the kernel's own HZ.
const userHZ = 100

// MachineCPU is the CPU time every CPU of the machine has spent working
// since boot: user, nice, system, irq and softirq of /proc/stat. It counts
// all namespaces and every process, because forwarding between veths is
// mostly softirq work charged to whichever CPU happens to run it, not to a
// process of the benchmark's.
func MachineCPU() (time.Duration, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	f := strings.Fields(string(line))
	// cpu user nice system idle iowait irq softirq ...
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// OwnCPU is the CPU time used so far by this process, its descendants
// (running or waited for: xlbd, iperf3 and whatever else it started) and
// the kernel's softirq threads. Unlike MachineCPU it leaves out other
// people's processes on a shared machine, yet keeps the forwarding: veth
// transmit runs the receiving side's softirq right away in the sender's
// context, charged to the sender, and what softirq defers goes to
// ksoftirqd.
func OwnCPU() (time.Duration, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	tasks := map[int]procStat{}
	children := map[int][]int{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		t, err := readProcStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		tasks[pid] = t
		children[t.ppid] = append(children[t.ppid], pid)
	}
	var ticks int64
	for _, t := range tasks {
		if strings.HasPrefix(t.comm, "ksoftirqd/") {
			ticks += t.own + t.children
		}
	}
	for todo := []int{os.Getpid()}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = append(todo[:len(todo)-1], children[pid]...)
		ticks += tasks[pid].own + tasks[pid].children
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// ProcCPU is the CPU time (user and system) process pid has used so far,
// not counting its children.
func ProcCPU(pid int) (time.Duration, error) {
	t, err := readProcStat(pid)
	return time.Duration(t.own) * time.Second / userHZ, err
}

// procStat is what the benchmarks read of /proc/PID/stat.
type procStat struct {
	comm     string
	ppid     int
	own      int64 // utime + stime, in USER_HZ ticks
	children int64 // cutime + cstime: children waited for
}

func readProcStat(pid int) (procStat, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(raw)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	// f[0] is field 3 (state): ppid is field 4, utime to cstime 14 to 17.
	f := strings.Fields(s[end+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	t := procStat{comm: s[open+1 : end]}
	var ticks [4]int64
	for i, v := range f[11:15] {
		if ticks[i], err = strconv.ParseInt(v, 10, 64); err != nil {
			return procStat{}, fmt.Errorf("/proc/%d/stat: %q: %w", pid, s, err)
		}
	}
	if t.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %q: %w", pid, s, err)
	}
	t.own, t.children = ticks[0]+ticks[1], ticks[2]+ticks[3]
	return t, nil
}

// RxPackets sums the packets the named interfaces of n have received, as
// n's /proc/net/dev counts them. /proc/thread-self, not /proc/self: the
// latter is the main thread's namespace, not the one Do entered.
func (n *Netns) RxPackets(ifaces ...string) (uint64, error) {
	var raw []byte
	err := n.Do(func() (err error) {
		raw, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, i := range ifaces {
		want[i] = true
	}
	var sum uint64
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		name, counters, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || !want[name] {
			continue
		}
		// Receive: bytes packets errs drop ...
		f := strings.Fields(counters)
		if len(f) < 2 {
			return 0, fmt.Errorf("%s /proc/net/dev: %q", n, sc.Text())
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s /proc/net/dev: %q: %w", n, sc.Text(), err)
		}
		sum += v
		delete(want, name)
	}
	if len(want) > 0 {
		return 0, fmt.Errorf("%s: no interface %v in /proc/net/dev", n, want)
	}
	return sum, nil
}

// udpBatch is how many datagrams one sendmmsg or recvmmsg moves: enough
// that the system call costs little per datagram next to the stack's work.
const udpBatch = 64

// UDPSink counts the datagrams that arrive on a UDP port of a namespace.
type UDPSink struct {
	n atomic.Int64
}

// NewUDPSink listens on port in ns and counts what arrives, reading in
// batches so that the sink itself keeps up with a flood. c's cleanups close
// it.
func NewUDPSink(c Cleanuper, ns *Netns, port int) (*UDPSink, error) {
	pc, err := ns.ListenPacket("udp4", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, err
	}
	c.Cleanup(func() { pc.Close() })
	// Room for bursts while the reader is descheduled; the kernel caps it
	// at rmem_max.
	pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	s := &UDPSink{}
	p := ipv4.NewPacketConn(pc)
	msgs := make([]ipv4.Message, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	go func() {
		for {
			n, err := p.ReadBatch(msgs, 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			s.n.Add(int64(n))
		}
	}()
	return s, nil
}

// Received is the number of datagrams read so far.
func (s *UDPSink) Received() int64 { return s.n.Load() }

// BlastUDP sends datagrams with size bytes of payload from ns to dst, from
// one connected socket in batches (sendmmsg), as fast as that socket goes,
// for d. It returns how many the kernel took and how long sending lasted.
func BlastUDP(ns *Netns, dst netip.AddrPort, size int, d time.Duration) (int64, time.Duration, error) {
	conn, err := ns.Dial(context.Background(), "udp4", dst.String())
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	p := ipv4.NewPacketConn(conn.(*net.UDPConn))
	payload := make([]byte, size)
	msgs := make([]ipv4.Message, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{payload}
	}
	var sent, failed int64
	var lastErr error
	begin := time.Now()
	deadline := begin.Add(d)
	for time.Now().Before(deadline) {
		n, err := p.WriteBatch(msgs, 0)
		sent += int64(n)
		if err != nil {
			// ENOBUFS and the like under load: go on, but give up
			// when nothing gets through at all.
			failed++
			lastErr = err
			if sent == 0 && failed > 1000 {
				break
			}
		}
	}
	elapsed := time.Since(begin)
	if sent == 0 && lastErr != nil {
		return 0, elapsed, fmt.Errorf("UDP to %s from %s: %w", dst, ns, lastErr)
	}
	return sent, elapsed, nil
}

// ServeConnect accepts TCP connections on port in ns and answers each with
// one byte and a close, so that the server side ends in TIME_WAIT and the
// client's ports stay free for Connect. It returns a count of the accepted
// connections; c's cleanups stop it.
func ServeConnect(c Cleanuper, ns *Netns, port int) (*atomic.Int64, error) {
	l, err := ns.Listen("tcp4", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, err
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	c.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	// Two acceptors: one per CPU of the test machines.
	for range 2 {
		wg.Go(func() {
			one := []byte{1}
			for {
				conn, err := l.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				accepted.Add(1)
				conn.Write(one)
				conn.Close()
			}
		})
	}
	return &accepted, nil
}

// ConnectResult is what Connect did.
type ConnectResult struct {
	Done    int64         // connections that got ServeConnect's byte
	Failed  int64         // attempts that failed or made no progress for ConnectTimeout
	Err     error         // the first failure
	Elapsed time.Duration // the run's length
}

// ConnectTimeout is how long one attempt may go without progress before
// Connect counts it as failed: longer than one SYN retransmission.
const ConnectTimeout = 2 * time.Second

// Connect opens TCP connections from ns to dst for d, workers at a time:
// each worker connects, reads ServeConnect's byte and closes, again and
// again. Each connection comes from the next address of srcs (bound with
// IP_BIND_ADDRESS_NO_PORT, so that the kernel still picks the port for the
// whole 4-tuple), or from the address the route chooses when srcs is empty;
// many sources keep the 4-tuples of a long run from repeating, so that
// every connection is a new flow for a load balancer. Attempts still
// running when d is over are dropped and not counted.
//
// The workers are threads locked into ns making plain system calls: a Go
// dialer would have to enter the namespace for every socket.
func Connect(ns *Netns, dst netip.AddrPort, srcs []netip.Addr, workers int, d time.Duration) (ConnectResult, error) {
	if !dst.Addr().Is4() {
		return ConnectResult{}, fmt.Errorf("connect to %v: only IPv4", dst)
	}
	var (
		res     ConnectResult
		next    atomic.Uint64
		done    atomic.Int64
		failed  atomic.Int64
		errOnce sync.Once
		wg      sync.WaitGroup
		nsErr   = make(chan error, workers)
	)
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	begin := time.Now()
	end := begin.Add(d)
	for range workers {
		wg.Go(func() {
			nsErr <- ns.Do(func() error {
				for time.Now().Before(end) {
					var src netip.Addr
					if len(srcs) > 0 {
						src = srcs[next.Add(1)%uint64(len(srcs))]
					}
					err := connectOnce(src, sa, end)
					switch {
					case err == nil:
						done.Add(1)
					case errors.Is(err, errRunOver):
					default:
						failed.Add(1)
						errOnce.Do(func() { res.Err = err })
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(begin)
	res.Done, res.Failed = done.Load(), failed.Load()
	close(nsErr)
	for err := range nsErr {
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

var errRunOver = errors.New("run over")

// connectOnce is one connection of Connect: non-blocking, with poll, since
// a blocking connect with a timeout can end in EINTR half-way.
func connectOnce(src netip.Addr, dst *unix.SockaddrInet4, end time.Time) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if src.IsValid() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			return fmt.Errorf("IP_BIND_ADDRESS_NO_PORT: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
	}
	if err := unix.Connect(fd, dst); err != nil && err != unix.EINPROGRESS {
		return fmt.Errorf("connect from %s: %w", src, err)
	}
	if err := pollFor(fd, unix.POLLOUT, end); err != nil {
		return fmt.Errorf("connect from %s: %w", src, err)
	}
	if soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soErr != 0 {
		return fmt.Errorf("connect from %s: %w", src, errors.Join(err, unix.Errno(soErr)))
	}
	if err := pollFor(fd, unix.POLLIN, end); err != nil {
		return fmt.Errorf("read from %s: %w", src, err)
	}
	var b [1]byte
	if n, err := unix.Read(fd, b[:]); n != 1 {
		return fmt.Errorf("read from %s: %d bytes: %v", src, n, err)
	}
	return nil
}

// pollFor waits until fd is ready for events, for at most ConnectTimeout,
// and returns errRunOver once end has passed.
func pollFor(fd int, events int16, end time.Time) error {
	limit := time.Now().Add(ConnectTimeout)
	for {
		now := time.Now()
		if !now.Before(end) {
			return errRunOver
		}
		if !now.Before(limit) {
			return fmt.Errorf("no progress in %v", ConnectTimeout)
		}
		wait := min(end.Sub(now), limit.Sub(now))
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int(wait.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}
