package vrrp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

var (
	ka1     = netip.MustParseAddr("10.211.0.1")
	group4  = netip.MustParseAddr("224.0.0.18")
	ll1     = netip.MustParseAddr("fe80::1")
	group6  = netip.MustParseAddr("ff02::12")
	vip4    = netip.MustParseAddr("10.211.0.100")
	secret1 = [8]byte{'s', 'e', 'c', 'r', 'e', 't', '1'}
)

// packetCase is one advert in both directions. The hex was checked against
// a separate implementation of the checksums (a few lines of Python) and,
// for the keepalived rows, is the captured bytes from KEEPALIVED.md.
type packetCase struct {
	name     string
	hex      string
	src, dst netip.Addr
	opts     MarshalOptions
	advert   Advert
	form     ChecksumForm
}

var packetCases = []packetCase{
	{
		// KEEPALIVED.md: keepalived 2.2.7, version 2, auth_type PASS,
		// auth_pass secret1. A v2 checksum does not depend on the IP header.
		name: "keepalived v2 PASS",
		hex:  "21339601 0101cf46 0ad30064 73656372 65743100",
		src:  ka1, dst: group4,
		advert: Advert{Version: 2, VRID: 51, Priority: 150, AdvertInt: time.Second,
			AuthType: AuthPass, AuthData: secret1, Addrs: []netip.Addr{vip4}},
		form: ChecksumMessageOnly,
	},
	{
		// KEEPALIVED.md: keepalived 2.2.7, version 3, advert_int 0.1. The
		// capture omits the IP header; 0x4227 is the pseudo-header checksum
		// for any source whose two halves sum to 0x0ad4 sent to 224.0.0.18,
		// which 10.211.0.1 (beside VIP 10.211.0.100) does.
		name: "keepalived v3 IPv4",
		hex:  "31339601 000a4227 0ad30064",
		src:  ka1, dst: group4,
		advert: Advert{Version: 3, VRID: 51, Priority: 150, AdvertInt: 100 * time.Millisecond,
			Addrs: []netip.Addr{vip4}},
		form: ChecksumPseudoHeader,
	},
	{
		name: "v3 IPv4 v3_checksum_as_v2",
		hex:  "31339601 000a2d8a 0ad30064",
		src:  ka1, dst: group4,
		opts: MarshalOptions{V3ChecksumAsV2: true},
		advert: Advert{Version: 3, VRID: 51, Priority: 150, AdvertInt: 100 * time.Millisecond,
			Addrs: []netip.Addr{vip4}},
		form: ChecksumMessageOnly,
	},
	{
		// The pseudo-header holds the destination, so unicast_peer adverts
		// checksum differently from multicast ones.
		name: "v3 IPv4 unicast",
		hex:  "31339601 000a1765 0ad30064",
		src:  ka1, dst: netip.MustParseAddr("10.211.0.2"),
		advert: Advert{Version: 3, VRID: 51, Priority: 150, AdvertInt: 100 * time.Millisecond,
			Addrs: []netip.Addr{vip4}},
		form: ChecksumPseudoHeader,
	},
	{
		name: "v2 no auth two addresses",
		hex:  "21076402 0003f78c c0a8010a c0a8010b 00000000 00000000",
		src:  netip.MustParseAddr("192.168.1.2"), dst: group4,
		advert: Advert{Version: 2, VRID: 7, Priority: 100, AdvertInt: 3 * time.Second,
			Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("192.168.1.11")}},
		form: ChecksumMessageOnly,
	},
	{
		name: "v3 IPv6",
		hex: "3133c802 0064d9fc 20010db8 00000000 00000000 00000100" +
			" fe800000 00000000 00000000 00000100",
		src: ll1, dst: group6,
		advert: Advert{Version: 3, VRID: 51, Priority: 200, AdvertInt: time.Second,
			Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::100"), netip.MustParseAddr("fe80::100")}},
		form: ChecksumPseudoHeader,
	},
	{
		// keepalived allows version 2 over IPv6 outside vrrp_strict: no
		// authentication data, and the kernel's IPv6 checksum.
		name: "v2 IPv6",
		hex:  "21096401 00014f12 20010db8 00000000 00000000 00000009",
		src:  netip.MustParseAddr("fe80::2"), dst: group6,
		advert: Advert{Version: 2, VRID: 9, Priority: 100, AdvertInt: time.Second,
			Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::9")}},
		form: ChecksumPseudoHeader,
	},
	{
		// A master's goodbye with no VIPs and the longest v3 interval.
		name: "v3 priority 0 no addresses",
		hex:  "31010000 0fff3a83",
		src:  netip.MustParseAddr("192.0.2.1"), dst: netip.MustParseAddr("192.0.2.2"),
		advert: Advert{Version: 3, VRID: 1, Priority: 0, AdvertInt: 40950 * time.Millisecond},
		form:   ChecksumPseudoHeader,
	},
}

// cmpAddrs compares netip.Addr by value, and nil and empty Addrs alike.
var cmpAddrs = []cmp.Option{cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmpopts.EquateEmpty()}

func TestParse(t *testing.T) {
	for _, tc := range packetCases {
		t.Run(tc.name, func(t *testing.T) {
			got, form, err := Parse(mustHex(t, tc.hex), tc.src, tc.dst)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.advert, got, cmpAddrs...); diff != "" {
				t.Errorf("Parse advert (-want +got):\n%s", diff)
			}
			if form != tc.form {
				t.Errorf("Parse form = %v, want %v", form, tc.form)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	for _, tc := range packetCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(tc.advert, tc.src, tc.dst, tc.opts)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if diff := cmp.Diff(mustHex(t, tc.hex), got); diff != "" {
				t.Errorf("Marshal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	tc := packetCases[0]
	buf := make([]byte, 3, 64)
	copy(buf, "abc")
	got, err := Append(buf, tc.advert, tc.src, tc.dst, tc.opts)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("abc"), mustHex(t, tc.hex)...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Append (-want +got):\n%s", diff)
	}
}

// TestChecksumForms pins which form each sender setting produces and that
// Parse tells them apart: the option matters only for VRRPv3 over IPv4.
func TestChecksumForms(t *testing.T) {
	v3 := Advert{Version: 3, VRID: 51, Priority: 150, AdvertInt: 100 * time.Millisecond, Addrs: []netip.Addr{vip4}}
	v2 := Advert{Version: 2, VRID: 51, Priority: 150, AdvertInt: time.Second, Addrs: []netip.Addr{vip4}}
	v3six := Advert{Version: 3, VRID: 51, Priority: 150, AdvertInt: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}
	for _, tc := range []struct {
		name     string
		a        Advert
		src, dst netip.Addr
		asV2     bool
		want     ChecksumForm
	}{
		{"v3 IPv4 default", v3, ka1, group4, false, ChecksumPseudoHeader},
		{"v3 IPv4 as v2", v3, ka1, group4, true, ChecksumMessageOnly},
		{"v2 IPv4", v2, ka1, group4, false, ChecksumMessageOnly},
		{"v2 IPv4 option ignored", v2, ka1, group4, true, ChecksumMessageOnly},
		{"v3 IPv6", v3six, ll1, group6, false, ChecksumPseudoHeader},
		{"v3 IPv6 option ignored", v3six, ll1, group6, true, ChecksumPseudoHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Marshal(tc.a, tc.src, tc.dst, MarshalOptions{V3ChecksumAsV2: tc.asV2})
			if err != nil {
				t.Fatal(err)
			}
			_, form, err := Parse(b, tc.src, tc.dst)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if form != tc.want {
				t.Errorf("form = %v, want %v", form, tc.want)
			}
		})
	}
}

// TestOldUnicastChecksum shows the documented way to hear a keepalived that
// puts the multicast group, not the unicast peer, in the pseudo-header.
func TestOldUnicastChecksum(t *testing.T) {
	peer := netip.MustParseAddr("10.211.0.2")
	b := mustHex(t, packetCases[1].hex) // checksummed with 224.0.0.18
	if _, _, err := Parse(b, ka1, peer); !errors.Is(err, ErrChecksum) {
		t.Fatalf("Parse with the unicast destination: %v, want ErrChecksum", err)
	}
	if _, form, err := Parse(b, ka1, group4); err != nil || form != ChecksumPseudoHeader {
		t.Fatalf("Parse with the group as destination: %v, %v", form, err)
	}
}

// TestParseLenient covers input Parse accepts although Marshal would not
// send it, and what it reads it as.
func TestParseLenient(t *testing.T) {
	// Reserved bits above the v3 interval are ignored (the checksum still
	// covers them).
	b := mustHex(t, "31339601 f00a5226 0ad30064")
	a, _, err := Parse(b, ka1, group4)
	if err != nil {
		t.Fatal(err)
	}
	if a.AdvertInt != 100*time.Millisecond {
		t.Errorf("AdvertInt = %v, want 100ms", a.AdvertInt)
	}

	// Auth data is kept even where AuthType says there is none, so that the
	// speaker, not the codec, decides what to make of it.
	b = mustHex(t, "21339601 0001d046 0ad30064 73656372 65743100")
	a, _, err = Parse(b, ka1, group4)
	if err != nil {
		t.Fatal(err)
	}
	if a.AuthType != AuthNone || a.AuthData != secret1 {
		t.Errorf("auth = %v %q, want none %q", a.AuthType, a.AuthData, secret1)
	}
}

// parseErrorCases each break one rule. Where the rule is checked before the
// checksum, the checksum is left wrong on purpose: the reason reported must
// be the first rule broken, as keepalived would count it.
var parseErrorCases = []struct {
	name     string
	hex      string
	src, dst netip.Addr
	want     error
}{
	{"empty", "", ka1, group4, ErrShort},
	{"7 bytes", "21339601 010100", ka1, group4, ErrShort},
	{"version 0", "01339601 0101cf46 0ad30064 73656372 65743100", ka1, group4, ErrVersion},
	{"version 1", "11339601 0101cf46 0ad30064 73656372 65743100", ka1, group4, ErrVersion},
	{"version 4", "41339601 000a4227 0ad30064", ka1, group4, ErrVersion},
	{"type 0", "20339601 0101cf46 0ad30064 73656372 65743100", ka1, group4, ErrType},
	{"type 2", "32339601 000a4227 0ad30064", ka1, group4, ErrType},
	{"v2 without auth data", "21339601 0101cf46 0ad30064", ka1, group4, ErrCountMismatch},
	{"v2 count 2 one address", "21339602 0101cf46 0ad30064 73656372 65743100", ka1, group4, ErrCountMismatch},
	{"v2 count 0 one address", "21339600 0101cf46 0ad30064 73656372 65743100", ka1, group4, ErrCountMismatch},
	{"v3 trailing byte", "31339601 000a4227 0ad30064 00", ka1, group4, ErrCountMismatch},
	{"v3 truncated address", "31339601 000a4227 0ad300", ka1, group4, ErrCountMismatch},
	{"v3 IPv4 sized as IPv6", "31339601 000a4227 0ad30064", ll1, group6, ErrCountMismatch},
	{"v2 auth type 3", "21339601 0301cf46 0ad30064 73656372 65743100", ka1, group4, ErrAuthType},
	{"v2 checksum", "21339601 0101cf47 0ad30064 73656372 65743100", ka1, group4, ErrChecksum},
	{"v2 pass changed", "21339601 0101cf46 0ad30064 73656372 65743200", ka1, group4, ErrChecksum},
	{"v3 IPv4 other source", "31339601 000a4227 0ad30064", netip.MustParseAddr("10.211.0.2"), group4, ErrChecksum},
	{"v3 IPv4 checksum", "31339601 000a4228 0ad30064", ka1, group4, ErrChecksum},
	{"v3 IPv6 zero checksum", "3133c802 00640000 20010db8 00000000 00000000 00000100" +
		" fe800000 00000000 00000000 00000100", ll1, group6, ErrChecksum},
	{"v3 IPv6 other destination", "3133c802 0064d9fc 20010db8 00000000 00000000 00000100" +
		" fe800000 00000000 00000000 00000100", ll1, netip.MustParseAddr("ff02::1"), ErrChecksum},
	{"no source", "31339601 000a4227 0ad30064", netip.Addr{}, group4, ErrFamily},
	{"no destination", "31339601 000a4227 0ad30064", ka1, netip.Addr{}, ErrFamily},
	{"mixed families", "31339601 000a4227 0ad30064", ka1, group6, ErrFamily},
	{"IPv4-mapped source", "31339601 000a4227 0ad30064", netip.MustParseAddr("::ffff:10.211.0.1"), group4, ErrFamily},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			a, _, err := Parse(mustHex(t, tc.hex), tc.src, tc.dst)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(Advert{}, a, cmpAddrs...); diff != "" {
				t.Errorf("Parse returned a partial advert:\n%s", diff)
			}
		})
	}
}

// TestIPv6RefusesMessageOnly: v3_checksum_as_v2 is an IPv4 quirk, and
// keepalived leaves IPv6 checksums to the kernel, which always includes the
// pseudo-header.
func TestIPv6RefusesMessageOnly(t *testing.T) {
	// v3, VRID 51, priority 200, 1 s, 2001:db8::100, with the message-only
	// checksum 0xd7ad (computed separately).
	b := mustHex(t, "3133c801 0064d7ad 20010db8 00000000 00000000 00000100")
	if _, _, err := Parse(b, ll1, group6); !errors.Is(err, ErrChecksum) {
		t.Fatalf("IPv6 message-only checksum: %v, want ErrChecksum", err)
	}
}

func TestMarshalErrors(t *testing.T) {
	ok := Advert{Version: 3, VRID: 1, Priority: 100, AdvertInt: time.Second, Addrs: []netip.Addr{vip4}}
	with := func(f func(*Advert)) Advert {
		a := ok
		f(&a)
		return a
	}
	many := make([]netip.Addr, 256)
	for i := range many {
		many[i] = vip4
	}
	for _, tc := range []struct {
		name     string
		a        Advert
		src, dst netip.Addr
		want     error
	}{
		{"version 0", with(func(a *Advert) { a.Version = 0 }), ka1, group4, ErrVersion},
		{"version 4", with(func(a *Advert) { a.Version = 4 }), ka1, group4, ErrVersion},
		{"v2 fraction of a second", with(func(a *Advert) { a.Version = 2; a.AdvertInt = 1500 * time.Millisecond }), ka1, group4, ErrInterval},
		{"v2 256 s", with(func(a *Advert) { a.Version = 2; a.AdvertInt = 256 * time.Second }), ka1, group4, ErrInterval},
		{"v2 negative", with(func(a *Advert) { a.Version = 2; a.AdvertInt = -time.Second }), ka1, group4, ErrInterval},
		{"v3 5 ms", with(func(a *Advert) { a.AdvertInt = 5 * time.Millisecond }), ka1, group4, ErrInterval},
		{"v3 41 s", with(func(a *Advert) { a.AdvertInt = 41 * time.Second }), ka1, group4, ErrInterval},
		{"v3 negative", with(func(a *Advert) { a.AdvertInt = -10 * time.Millisecond }), ka1, group4, ErrInterval},
		{"v3 auth type", with(func(a *Advert) { a.AuthType = AuthPass }), ka1, group4, ErrAuthType},
		{"v3 auth data", with(func(a *Advert) { a.AuthData = secret1 }), ka1, group4, ErrAuthType},
		{"v2 auth type 3", with(func(a *Advert) { a.Version = 2; a.AuthType = 3 }), ka1, group4, ErrAuthType},
		{"v2 IPv6 auth data", Advert{Version: 2, AuthType: AuthPass, AuthData: secret1, Addrs: []netip.Addr{ll1}}, ll1, group6, ErrAuthType},
		{"256 addresses", with(func(a *Advert) { a.Addrs = many }), ka1, group4, ErrCountMismatch},
		{"IPv6 VIP over IPv4", with(func(a *Advert) { a.Addrs = []netip.Addr{vip4, ll1} }), ka1, group4, ErrFamily},
		{"IPv4 VIP over IPv6", with(func(a *Advert) {}), ll1, group6, ErrFamily},
		{"zero VIP", with(func(a *Advert) { a.Addrs = []netip.Addr{{}} }), ka1, group4, ErrFamily},
		{"mixed src dst", ok, ka1, group6, ErrFamily},
		{"no src", ok, netip.Addr{}, group4, ErrFamily},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("xy")
			b, err := Append(prefix, tc.a, tc.src, tc.dst, MarshalOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Append error = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(b, prefix) {
				t.Errorf("Append on error returned %x, want the buffer untouched", b)
			}
		})
	}
}

// TestIPv4MappedVIPOverIPv6 pins that a mapped address is an IPv6 address
// on the wire and comes back as the same netip.Addr.
func TestIPv4MappedVIPOverIPv6(t *testing.T) {
	a := Advert{Version: 3, VRID: 1, Priority: 100, AdvertInt: time.Second,
		Addrs: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}}
	b, err := Marshal(a, ll1, group6, MarshalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Parse(b, ll1, group6)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, got, cmpAddrs...); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ChecksumPseudoHeader.String(), "pseudo-header"},
		{ChecksumMessageOnly.String(), "message-only"},
		{ChecksumForm(9).String(), "ChecksumForm(9)"},
		{AuthNone.String(), "none"},
		{AuthPass.String(), "PASS"},
		{AuthAH.String(), "AH"},
		{AuthType(3).String(), "AuthType(3)"},
	} {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
}

func BenchmarkMarshal(b *testing.B) {
	tc := packetCases[1]
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Append(buf[:0], tc.advert, tc.src, tc.dst, tc.opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	tc := packetCases[1]
	pkt := mustHex(b, tc.hex)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(pkt, tc.src, tc.dst); err != nil {
			b.Fatal(err)
		}
	}
}
