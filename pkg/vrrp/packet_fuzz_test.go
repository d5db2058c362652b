package vrrp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse feeds Parse any bytes from any pair of addresses (4 or 16 bytes
// make an address, anything else the zero Addr). Beyond not panicking, what
// Parse accepts must survive Marshal: it re-parses to the same advert and
// form, and the bytes differ from the input only where the wire allows two
// spellings of one advert.
func FuzzParse(f *testing.F) {
	for _, tc := range packetCases {
		f.Add(mustHex(f, tc.hex), tc.src.AsSlice(), tc.dst.AsSlice())
	}
	for _, tc := range parseErrorCases {
		f.Add(mustHex(f, tc.hex), tc.src.AsSlice(), tc.dst.AsSlice())
	}
	f.Fuzz(func(t *testing.T, b, src, dst []byte) {
		s, _ := netip.AddrFromSlice(src)
		d, _ := netip.AddrFromSlice(dst)
		checkRoundTrip(t, b, s, d)
		// A random checksum is almost never right, which would leave the
		// accepting path to the seeds alone: try the input again with its
		// checksum made right in each form.
		if len(b) >= headerLen && s.IsValid() && d.IsValid() {
			for _, form := range []ChecksumForm{ChecksumPseudoHeader, ChecksumMessageOnly} {
				fixed := append([]byte(nil), b...)
				fixed[6], fixed[7] = 0, 0
				binary.BigEndian.PutUint16(fixed[6:], ^fold(sum(fixed, pseudoSum(form, s, d, len(fixed)))))
				checkRoundTrip(t, fixed, s, d)
			}
		}
	})
}

func checkRoundTrip(t *testing.T, b []byte, s, d netip.Addr) {
	t.Helper()
	in := append([]byte(nil), b...)
	a, form, err := Parse(b, s, d)
	if string(b) != string(in) {
		t.Fatal("Parse modified its input")
	}
	if err != nil {
		if !isParseError(err) {
			t.Fatalf("Parse error %v wraps no Err* reason", err)
		}
		return
	}

	out, err := Marshal(a, s, d, MarshalOptions{V3ChecksumAsV2: form == ChecksumMessageOnly})
	if err != nil {
		t.Fatalf("Marshal(Parse(%x)) = %v", b, err)
	}
	a2, form2, err := Parse(out, s, d)
	if err != nil {
		t.Fatalf("Parse(Marshal(Parse(%x))) = %v", b, err)
	}
	if diff := cmp.Diff(a, a2, cmpAddrs...); diff != "" {
		t.Fatalf("re-parse differs (-first +second):\n%s", diff)
	}
	if form2 != form {
		t.Fatalf("re-parse form %v, first %v", form2, form)
	}

	if len(out) != len(b) {
		t.Fatalf("Marshal length %d, input %d", len(out), len(b))
	}
	want := append([]byte(nil), b...)
	if a.Version == 3 && want[4]&0xf0 != 0 {
		// Reserved bits are ignored on receipt and sent as zero, which
		// changes the checksum too.
		want[4] &= 0x0f
		copy(want[6:8], out[6:8])
	}
	// One's complement has two zeros: a received 0xffff checksum is
	// as valid as the 0x0000 Marshal computes.
	if binary.BigEndian.Uint16(want[6:]) == 0xffff && binary.BigEndian.Uint16(out[6:]) == 0 {
		want[6], want[7] = 0, 0
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Fatalf("Marshal(Parse(b)) differs from b (-b +out):\n%s", diff)
	}
}

func isParseError(err error) bool {
	for _, e := range []error{ErrShort, ErrVersion, ErrType, ErrCountMismatch, ErrFamily, ErrAuthType, ErrChecksum} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
