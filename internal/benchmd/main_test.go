package main

import (
	"strings"
	"testing"
)

func TestParseAndWrite(t *testing.T) {
	in := `goos: linux
BenchmarkPerPacket/established/nat-2   20000  1 ns/op  401.0 ns/pkt  80.00 trivial-ns/pkt  5.0 x-trivial  321 above-trivial-ns  251 katran-ns/pkt  1.60 x-katran
BenchmarkPerPacket/established/nat-2   20000  1 ns/op  411.0 ns/pkt  80.00 trivial-ns/pkt  5.1 x-trivial  331 above-trivial-ns  250 katran-ns/pkt  1.64 x-katran
BenchmarkPerPacket/established/nat-2   20000  1 ns/op  391.0 ns/pkt  80.00 trivial-ns/pkt  4.9 x-trivial  311 above-trivial-ns  252 katran-ns/pkt  1.55 x-katran
BenchmarkNewFlowPerScheduler/rr/3-2    20000  1 ns/op  600 ns/pkt  520 above-trivial-ns
BenchmarkNewFlowPerScheduler/wlc/3-2   20000  1 ns/op  700 ns/pkt  624 above-trivial-ns
PASS
`
	res, order, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 3 || len(res["BenchmarkPerPacket/established/nat"]["x-katran"]) != 3 {
		t.Fatalf("parsed %v: %v", order, res)
	}
	var b strings.Builder
	if err := write(&b, res, order, "/src/katran"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"median of 3 runs",
		"| established/nat | 401 (391–411) | 80 | 5.00 (4.90–5.10) | 321 (311–331) | 251 (250–252) | 1.60 (1.55–1.64) | ≤ 0.75 |",
		"| wlc | 624 ns, 1.20× rr |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("BENCHMARKS.md lacks %q:\n%s", want, b.String())
		}
	}
}
