package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// IperfResult is the summary of one iperf3 TCP test, from its -J report.
type IperfResult struct {
	Streams int
	// Seconds, bytes and rate as the receiver counted them
	// (end.sum_received): what really arrived.
	Seconds       float64
	ReceivedBytes int64
	ReceivedBps   float64
	// SentBytes and Retransmits as the sender counted them (end.sum_sent).
	SentBytes   int64
	Retransmits int64
}

// Gbps is the receiver's rate in Gbit/s.
func (r IperfResult) Gbps() float64 { return r.ReceivedBps / 1e9 }

func (r IperfResult) String() string {
	return fmt.Sprintf("%.2f Gbit/s (%d stream(s), %.1f MB received in %.1f s, %.1f MB sent, %d retransmits)",
		r.Gbps(), r.Streams, float64(r.ReceivedBytes)/1e6, r.Seconds, float64(r.SentBytes)/1e6, r.Retransmits)
}

type iperfReport struct {
	Start struct {
		TestStart struct {
			NumStreams int `json:"num_streams"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		SumSent struct {
			Bytes       int64 `json:"bytes"`
			Retransmits int64 `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// ParseIperf reads the JSON report of an iperf3 client (iperf3 -c ... -J).
// A report carrying an "error" is returned as an error, together with what
// the report counted up to then.
func ParseIperf(b []byte) (IperfResult, error) {
	var rep iperfReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 -J report: %w: %.300q", err, b)
	}
	r := IperfResult{
		Streams:       rep.Start.TestStart.NumStreams,
		Seconds:       rep.End.SumReceived.Seconds,
		ReceivedBytes: rep.End.SumReceived.Bytes,
		ReceivedBps:   rep.End.SumReceived.BitsPerSecond,
		SentBytes:     rep.End.SumSent.Bytes,
		Retransmits:   rep.End.SumSent.Retransmits,
	}
	if rep.Error != "" {
		return r, fmt.Errorf("iperf3: %s", rep.Error)
	}
	return r, nil
}

// Iperf runs one TCP test of iperf3 for d: a one-off server (iperf3 -s -1)
// in server listening on every address at dst's port, and the client in
// client connecting to dst with the given number of parallel streams and
// any extra client arguments (-R: the server sends). Both
// processes end before Iperf returns (the server is also registered with c,
// in case); ctx bounds the client, which is killed when ctx ends.
func Iperf(ctx context.Context, c Cleanuper, client, server *Netns, dst netip.AddrPort, streams int, d time.Duration, extra ...string) (IperfResult, error) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return IperfResult{}, err
	}
	port := strconv.Itoa(int(dst.Port()))
	srv, err := Start(c, server, nil, "iperf3", "-s", "-1", "-p", port, "--forceflush")
	if err != nil {
		return IperfResult{}, err
	}
	defer srv.Stop()
	if err := srv.WaitFor("Server listening", 10*time.Second); err != nil {
		return IperfResult{}, err
	}

	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	args := append([]string{"netns", "exec", client.Name, "iperf3",
		"-c", dst.Addr().String(), "-p", port, "-t", secs, "-P", strconv.Itoa(streams),
		"-J", "--connect-timeout", "3000"}, extra...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	res, err := ParseIperf(stdout.Bytes())
	if ctx.Err() != nil {
		err = errors.Join(fmt.Errorf("iperf3 client killed: %w", context.Cause(ctx)), err)
	}
	if err == nil && runErr != nil {
		err = fmt.Errorf("iperf3 client: %w: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return res, fmt.Errorf("%w\nserver output:\n%s", err, srv.Output())
	}
	return res, nil
}
