package xdp

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlbd/xlbd/pkg/maps"
)

type heldRec struct {
	frame   []byte
	ifindex uint32
	raw     []byte
}

// readHeld drains the held ring.
func readHeld(t *testing.T, l *lab) []heldRec {
	t.Helper()
	rd, err := ringbuf.NewReader(l.set.Held)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []heldRec
	for {
		rd.SetDeadline(time.Now().Add(10 * time.Millisecond))
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		n := binary.NativeEndian.Uint32(rec.RawSample[0:4])
		out = append(out, heldRec{frame: rec.RawSample[8 : 8+n], ifindex: binary.NativeEndian.Uint32(rec.RawSample[4:8]),
			raw: rec.RawSample})
	}
}

// fakeOut records what the holder sends.
type fakeOut struct {
	links   []sentFrame
	kernels [][]byte
}

type sentFrame struct {
	ifindex int
	frame   []byte
}

func (f *fakeOut) link(ifindex int, frame []byte) error {
	f.links = append(f.links, sentFrame{ifindex, frame})
	return nil
}

func (f *fakeOut) kernel(d []byte) error {
	f.kernels = append(f.kernels, d)
	return nil
}

// fragPair is a datagram cut in two, and where the lab's program sends the
// later fragment once it knows where the first went.
type fragPair struct {
	name         string
	first, later []byte
	firstOn, on  func(*lab) int
	before       []byte // opens the flow a reply belongs to
	wantIfindex  func(*lab) int
}

func fragPairs(t *testing.T) []fragPair {
	nat := withPayload(fromClient(vipNAT, 53, layers.IPProtocolUDP), 2000-28)
	nat.df, nat.id = false, 0x5151
	natFirst, natLater := fragments(t, nat, 1480)
	dr := withPayload(fromClient(vipDR, 53, layers.IPProtocolUDP), 2000-28)
	dr.df, dr.id = false, 0x5252
	drFirst, drLater := fragments(t, dr, 1472)
	tun := withPayload(fromClient(vipTUN, 53, layers.IPProtocolUDP), 2000-28)
	tun.df, tun.id = false, 0x5353
	tunFirst, tunLater := fragments(t, tun, 1456)
	reply := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 5353, dport: 40000,
		proto: layers.IPProtocolUDP, ttl: 64, id: 0x5454, payload: seqPayload(2000 - 28)}
	replyFirst, replyLater := fragments(t, reply, 1480)
	return []fragPair{
		{name: "nat", first: natFirst, later: natLater, firstOn: onF0, on: onF0, wantIfindex: onB0},
		{name: "dr", first: drFirst, later: drLater, firstOn: onF0, on: onF0, wantIfindex: onF0},
		{name: "tun", first: tunFirst, later: tunLater, firstOn: onF0, on: onF0, wantIfindex: onF0},
		{name: "nat reply", first: replyFirst, later: replyLater, firstOn: onB0, on: onB0, wantIfindex: onF0,
			before: fromClient(vipNAT, 53, layers.IPProtocolUDP).bytes(t)},
	}
}

// placeFragment (Go, for held fragments) must do byte for byte what the
// program does to a later fragment whose first it has seen.
func TestPlaceFragmentMatchesProgram(t *testing.T) {
	for _, p := range fragPairs(t) {
		t.Run(p.name, func(t *testing.T) {
			l := newLab(t)
			l.apply(t, goldenState())
			if p.before != nil {
				l.run(t, l.set.Program, p.before, l.f0)
			}
			l.run(t, l.set.Program, p.first, p.firstOn(l))
			fv, r := fragEntry(t, l, p.later)
			_, want := l.run(t, l.set.Program, p.later, p.on(l))
			ifindex, got, toKernel, err := placeFragment(p.later, fv, r)
			if err != nil || toKernel {
				t.Fatalf("placeFragment: %v, to the kernel %v", err, toKernel)
			}
			if ifindex != p.wantIfindex(l) {
				t.Errorf("sent out of %d, want %d", ifindex, p.wantIfindex(l))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("frame (-program +placeFragment):\n%s", diff)
			}
		})
	}
}

func fragEntry(t *testing.T, l *lab, frame []byte) (maps.FragVal, maps.RealVal) {
	t.Helper()
	ip := frame[14:]
	k := maps.FragKey{Src: binary.NativeEndian.Uint32(ip[12:16]), Dst: binary.NativeEndian.Uint32(ip[16:20]),
		Id: binary.NativeEndian.Uint16(ip[4:6]), Proto: ip[9]}
	var fv maps.FragVal
	if err := l.set.Frags.Lookup(&k, &fv); err != nil {
		t.Fatalf("no fragment entry: %v", err)
	}
	r, err := l.set.Reals.Get(fv.RealId)
	if err != nil {
		t.Fatal(err)
	}
	return fv, r
}

// Reordered: the later fragment comes first, is held, and goes out where
// the first went as soon as the first has been placed. One whose first
// never comes is dropped after HoldWait.
func TestHolderSendsWhereTheFirstWent(t *testing.T) {
	for _, p := range fragPairs(t)[:3] {
		t.Run(p.name, func(t *testing.T) {
			l := newLab(t)
			l.apply(t, goldenState())
			now := time.Unix(1000, 0)
			out := &fakeOut{}
			h := &holder{set: l.set, log: slog.New(slog.NewTextHandler(io.Discard, nil)), isVIP: l.tables.IsVIP,
				out: out, now: func() time.Time { return now }}

			if v, _ := l.run(t, l.set.Program, p.later, p.on(l)); v != xdpDrop {
				t.Fatalf("early fragment: verdict %s, want DROP (held)", verdictName[v])
			}
			recs := readHeld(t, l)
			if len(recs) != 1 || recs[0].ifindex != uint32(p.on(l)) {
				t.Fatalf("held ring: %d records", len(recs))
			}
			h.take(recs[0].raw)
			if n := h.release(); n != 1 || len(out.links) != 0 {
				t.Fatalf("before its first: %d waiting, %d sent", n, len(out.links))
			}

			l.run(t, l.set.Program, p.first, p.firstOn(l))
			// What the program does with the later fragment, now that it
			// knows the first, is what the holder must have done.
			_, want := l.run(t, l.set.Program, p.later, p.on(l))
			if n := h.release(); n != 0 || len(out.links) != 1 {
				t.Fatalf("after its first: %d waiting, %d sent", n, len(out.links))
			}
			if out.links[0].ifindex != p.wantIfindex(l) {
				t.Errorf("sent out of %d, want %d", out.links[0].ifindex, p.wantIfindex(l))
			}
			if diff := cmp.Diff(want, out.links[0].frame); diff != "" {
				t.Errorf("sent (-program +holder):\n%s", diff)
			}

			// Lost first: a fragment of another datagram waits, then expires.
			lost := append([]byte(nil), p.later...)
			lost[14+5]++ // another IP id
			binary.BigEndian.PutUint16(lost[14+10:], 0)
			setIPChecksum(lost[14:34])
			l.run(t, l.set.Program, lost, p.on(l))
			for _, r := range readHeld(t, l) {
				h.take(r.raw)
			}
			now = now.Add(HoldWait / 2)
			if n := h.release(); n != 1 {
				t.Fatalf("lost first, half-way: %d waiting, want 1", n)
			}
			now = now.Add(HoldWait)
			if n := h.release(); n != 0 {
				t.Fatalf("lost first, after HoldWait: %d waiting", n)
			}
			if diff := cmp.Diff(map[string]uint64{"sent": 1, "expired": 1, "dropped": 0, "passed": 0}, h.Counts()); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
		})
	}
}

// A held fragment for an address that only shares a VIP's filter bucket
// is the kernel's.
func TestHolderPassesWhatIsNotForAVIP(t *testing.T) {
	out := &fakeOut{}
	h := &holder{log: slog.New(slog.NewTextHandler(io.Discard, nil)), isVIP: func(netip.Addr) bool { return false },
		out: out, now: time.Now}
	frame := fromClient(netip.MustParseAddr("10.9.9.9"), 53, layers.IPProtocolUDP).bytes(t)
	rec := make([]byte, 8+2048)
	binary.NativeEndian.PutUint32(rec[0:4], uint32(len(frame)))
	copy(rec[8:], frame)
	h.take(rec)
	if len(out.kernels) != 1 || !cmp.Equal(out.kernels[0], frame[14:]) {
		t.Fatalf("not handed to the kernel: %d", len(out.kernels))
	}
	if h.Counts()["passed"] != 1 {
		t.Errorf("counts %v", h.Counts())
	}
}
