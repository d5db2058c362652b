package vrrp

// The advertisement codec. It works on the VRRP message alone (what follows
// the IP header, and the AH header when auth_type AH is used), so the
// speaker owns sockets, TTL and AH, and this file owns the bytes.
//
// The reference is keepalived's keepalived/vrrp/vrrp.c (acassen/keepalived):
// vrrp_build_vrrp_v2 and vrrp_build_vrrp_v3 for what is sent, vrrp_check_packet
// for what is accepted. Where the RFCs and keepalived differ, keepalived wins,
// since xlbd must sit in a keepalived pair unnoticed.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ProtocolNumber is VRRP's IP protocol number, for the pseudo-header and for
// the speaker's raw sockets.
const ProtocolNumber = 112

// headerLen is the fixed part both versions share; authLen is the
// authentication data that only VRRPv2 over IPv4 carries after the addresses
// (keepalived's VRRP_AUTH_LEN; it sends no such trailer over IPv6).
const (
	headerLen = 8
	authLen   = 8
)

// typeAdvertisement is the only VRRP message type ever defined. Advert has no
// field for it: a field that can hold one valid value would only let a zero
// value slip onto the wire.
const typeAdvertisement = 1

// AuthType is VRRPv2's authentication type. RFC 3768 deprecated PASS and AH,
// but keepalived still sends them and a drop-in replacement has to as well.
type AuthType uint8

// Authentication types, numbered as on the wire.
const (
	AuthNone AuthType = 0
	AuthPass AuthType = 1 // auth_pass, at most 8 bytes, NUL padded
	AuthAH   AuthType = 2 // IPsec AH header before the VRRP message
)

func (t AuthType) String() string {
	switch t {
	case AuthNone:
		return "none"
	case AuthPass:
		return "PASS"
	case AuthAH:
		return "AH"
	}
	return fmt.Sprintf("AuthType(%d)", uint8(t))
}

// Advert is one VRRP advertisement.
type Advert struct {
	// Version is 2 or 3.
	Version int
	VRID    uint8
	// Priority 0 is a master's goodbye; 255 is the address owner.
	Priority uint8
	// AdvertInt travels in whole seconds (one byte) in version 2 and in
	// centiseconds (12 bits) in version 3; Marshal refuses anything else
	// rather than round it, so that a configured interval is never silently
	// changed into one that peers would call a mismatch.
	AdvertInt time.Duration
	// AuthType and AuthData exist only in version 2; AuthData only over
	// IPv4. Parse returns AuthData as received whatever AuthType says, so
	// that a re-marshalled advert is byte for byte the one received.
	AuthType AuthType
	AuthData [authLen]byte
	// Addrs are the virtual addresses, all of the IP header's family
	// (IPv4-mapped IPv6 addresses count as IPv6).
	Addrs []netip.Addr
}

// ChecksumForm says what a checksum covers. Only VRRPv3 over IPv4 has a
// choice: keepalived includes the IPv4 pseudo-header there by default, and
// leaves it out with v3_checksum_as_v2 (keepalived 2.2.8 and later; 2.2.7
// knows only the pseudo-header form), as Cisco and Juniper do and, says
// keepalived's manual, RFC 9568 asks.
type ChecksumForm uint8

// Checksum forms. The zero value is keepalived's default.
const (
	// ChecksumPseudoHeader covers the IP pseudo-header and the message:
	// VRRPv3 by default, and anything over IPv6.
	ChecksumPseudoHeader ChecksumForm = iota
	// ChecksumMessageOnly covers the message alone: VRRPv2 over IPv4, and
	// VRRPv3 over IPv4 with v3_checksum_as_v2.
	ChecksumMessageOnly
)

func (f ChecksumForm) String() string {
	switch f {
	case ChecksumPseudoHeader:
		return "pseudo-header"
	case ChecksumMessageOnly:
		return "message-only"
	}
	return fmt.Sprintf("ChecksumForm(%d)", uint8(f))
}

// MarshalOptions are the sender's settings that change the bytes but are not
// part of the advert.
type MarshalOptions struct {
	// V3ChecksumAsV2 is keepalived's v3_checksum_as_v2: leave the IPv4
	// pseudo-header out of a VRRPv3 checksum. It changes nothing for
	// version 2 or IPv6.
	V3ChecksumAsV2 bool
}

// Reasons Parse and Marshal fail, for errors.Is: the speaker counts and logs
// rejected adverts by reason, as keepalived's statistics do. The errors
// returned wrap these with the offending values.
var (
	ErrShort         = errors.New("vrrp: packet shorter than the VRRP header")
	ErrVersion       = errors.New("vrrp: bad version")
	ErrType          = errors.New("vrrp: not an advertisement")
	ErrCountMismatch = errors.New("vrrp: length does not match the address count")
	ErrFamily        = errors.New("vrrp: address family mismatch")
	ErrAuthType      = errors.New("vrrp: bad authentication type")
	ErrChecksum      = errors.New("vrrp: bad checksum")
	ErrInterval      = errors.New("vrrp: advert interval not representable")
)

// Marshal returns the VRRP message for a sent from src to dst, checksum
// included. src and dst are the IP header's addresses: they pick the
// family, and the pseudo-header when the checksum covers one.
func Marshal(a Advert, src, dst netip.Addr, opts MarshalOptions) ([]byte, error) {
	return Append(nil, a, src, dst, opts)
}

// Append is Marshal appending to b, so that a speaker sending hundreds of
// instances' adverts can reuse one buffer.
func Append(b []byte, a Advert, src, dst netip.Addr, opts MarshalOptions) ([]byte, error) {
	v6, err := ipFamily(src, dst)
	if err != nil {
		return b, err
	}
	if len(a.Addrs) > 255 {
		return b, fmt.Errorf("%w: %d addresses, the count field holds 255", ErrCountMismatch, len(a.Addrs))
	}
	for _, ip := range a.Addrs {
		if v6 && !ip.Is6() || !v6 && !ip.Is4() {
			return b, fmt.Errorf("%w: virtual address %v in an IPv%d advert", ErrFamily, ip, ipVersion(v6))
		}
	}

	var b4, b5 byte
	switch a.Version {
	case 2:
		if a.AdvertInt < 0 || a.AdvertInt > 255*time.Second || a.AdvertInt%time.Second != 0 {
			return b, fmt.Errorf("%w: %v in VRRPv2 (whole seconds up to 255)", ErrInterval, a.AdvertInt)
		}
		if a.AuthType > AuthAH {
			return b, fmt.Errorf("%w: %d", ErrAuthType, a.AuthType)
		}
		if v6 && a.AuthData != ([authLen]byte{}) {
			return b, fmt.Errorf("%w: VRRPv2 over IPv6 carries no authentication data", ErrAuthType)
		}
		b4, b5 = byte(a.AuthType), byte(a.AdvertInt/time.Second)
	case 3:
		cs := a.AdvertInt / (10 * time.Millisecond)
		if a.AdvertInt < 0 || cs > 0xfff || a.AdvertInt%(10*time.Millisecond) != 0 {
			return b, fmt.Errorf("%w: %v in VRRPv3 (centiseconds up to 40.95s)", ErrInterval, a.AdvertInt)
		}
		if a.AuthType != AuthNone || a.AuthData != ([authLen]byte{}) {
			return b, fmt.Errorf("%w: VRRPv3 has no authentication", ErrAuthType)
		}
		// The top 4 bits are reserved and sent as zero.
		b4, b5 = byte(cs>>8), byte(cs)
	default:
		return b, fmt.Errorf("%w: %d", ErrVersion, a.Version)
	}

	start := len(b)
	b = append(b, byte(a.Version)<<4|typeAdvertisement, a.VRID, a.Priority, byte(len(a.Addrs)), b4, b5, 0, 0)
	for _, ip := range a.Addrs {
		b = append(b, ip.AsSlice()...)
	}
	if a.Version == 2 && !v6 {
		b = append(b, a.AuthData[:]...)
	}
	msg := b[start:]
	form := formFor(a.Version, v6, opts.V3ChecksumAsV2)
	binary.BigEndian.PutUint16(msg[6:], ^fold(sum(msg, pseudoSum(form, src, dst, len(msg)))))
	return b, nil
}

// Parse decodes and checks the VRRP message b received from src to dst (the
// IP header's addresses; b must be exactly the IP payload). It reports which
// checksum form matched: for VRRPv3 over IPv4 it accepts both, so that xlbd
// hears keepalived whatever its v3_checksum_as_v2, and the speaker can count
// which form each peer uses; form means nothing when err is set. Parse
// accepts both versions: refusing the one not configured, as keepalived
// does, is the speaker's call. The checks run in vrrp_check_packet's order
// (version, length, auth type, type, checksum), so a packet wrong in two
// ways is counted under the reason keepalived would count it under.
//
// A keepalived older than 1.3.7, or one with old_unicast_checksum, computes
// a unicast VRRPv3 IPv4 checksum with the multicast group as the pseudo
// destination: to hear it, call Parse again with the group as dst.
func Parse(b []byte, src, dst netip.Addr) (Advert, ChecksumForm, error) {
	v6, err := ipFamily(src, dst)
	if err != nil {
		return Advert{}, 0, err
	}
	if len(b) < headerLen {
		return Advert{}, 0, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	a := Advert{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2]}
	if a.Version != 2 && a.Version != 3 {
		return Advert{}, 0, fmt.Errorf("%w: %d", ErrVersion, a.Version)
	}

	count := int(b[3])
	addrLen := 4
	if v6 {
		addrLen = 16
	}
	want := headerLen + count*addrLen
	if a.Version == 2 && !v6 {
		want += authLen
	}
	// Anything past the message would be left out of the checksum and lost
	// on re-marshalling. keepalived 2.2.7 refuses it too; later versions
	// let Ethernet padding through, which the kernel has already trimmed
	// off a raw socket's payload anyway.
	if len(b) != want {
		return Advert{}, 0, fmt.Errorf("%w: %d bytes, count %d needs %d", ErrCountMismatch, len(b), count, want)
	}

	if a.Version == 2 {
		a.AuthType = AuthType(b[4])
		if a.AuthType > AuthAH {
			return Advert{}, 0, fmt.Errorf("%w: %d", ErrAuthType, a.AuthType)
		}
		a.AdvertInt = time.Duration(b[5]) * time.Second
		if !v6 {
			copy(a.AuthData[:], b[want-authLen:])
		}
	} else {
		// Reserved bits are ignored on receipt (RFC 5798 5.2.6), as
		// keepalived's V3_PKT_ADVER_INT_NTOH masks them.
		a.AdvertInt = time.Duration(binary.BigEndian.Uint16(b[4:])&0xfff) * 10 * time.Millisecond
	}

	if t := b[0] & 0x0f; t != typeAdvertisement {
		return Advert{}, 0, fmt.Errorf("%w: type %d", ErrType, t)
	}

	form := formFor(a.Version, v6, false)
	msg := sum(b, 0)
	if fold(msg+pseudoSum(form, src, dst, len(b))) != 0xffff {
		if a.Version == 2 || v6 || fold(msg) != 0xffff {
			return Advert{}, 0, fmt.Errorf("%w: 0x%04x", ErrChecksum, binary.BigEndian.Uint16(b[6:]))
		}
		form = ChecksumMessageOnly
	}

	if count > 0 {
		a.Addrs = make([]netip.Addr, count)
		for i := range a.Addrs {
			p := b[headerLen+i*addrLen:]
			if v6 {
				a.Addrs[i] = netip.AddrFrom16([16]byte(p))
			} else {
				a.Addrs[i] = netip.AddrFrom4([4]byte(p))
			}
		}
	}
	return a, form, nil
}

// ipFamily reports whether src and dst are IPv6; a VRRP message has no family
// of its own, so both must agree on one.
func ipFamily(src, dst netip.Addr) (v6 bool, err error) {
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return false, fmt.Errorf("%w: source %v, destination %v", ErrFamily, src, dst)
	}
	return src.Is6(), nil
}

func ipVersion(v6 bool) int {
	if v6 {
		return 6
	}
	return 4
}

// formFor is the checksum form a sender uses. IPv6 always has a
// pseudo-header: keepalived leaves the checksum to the kernel there
// (IPV6_CHECKSUM at offset 6), even for the VRRPv2 over IPv6 it allows
// outside vrrp_strict.
func formFor(version int, v6, asV2 bool) ChecksumForm {
	if !v6 && (version == 2 || asV2) {
		return ChecksumMessageOnly
	}
	return ChecksumPseudoHeader
}

// pseudoSum is the one's complement sum of the pseudo-header for a message
// of n bytes: RFC 8200 8.1 for IPv6; for IPv4 keepalived's ipv4_phdr_t
// (source, destination, zero, protocol, 16-bit length).
func pseudoSum(form ChecksumForm, src, dst netip.Addr, n int) uint32 {
	if form != ChecksumPseudoHeader {
		return 0
	}
	s := sum(src.AsSlice(), 0)
	s = sum(dst.AsSlice(), s)
	return s + ProtocolNumber + uint32(n)
}

// sum adds b to s as big-endian 16-bit words, the odd byte padded with
// zero. Carries are folded later; a VRRP message is far too short for the
// 32-bit accumulator to overflow.
func sum(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
