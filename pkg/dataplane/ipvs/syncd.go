package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// Syncd starts and stops IPVS's connection synchronisation daemon, which
// cloudflare/ipvs does not cover.
type Syncd interface {
	// Start starts the master (sending) or backup (receiving) daemon.
	Start(d dataplane.SyncDaemon) error
	// Stop stops the master or the backup daemon; one that is not
	// running is no error.
	Stop(master bool) error
	// Running lists the daemons the kernel runs.
	Running() ([]dataplane.SyncDaemon, error)
}

// IPVS's generic netlink commands and attributes for the sync daemon
// (linux/ip_vs.h).
const (
	cmdNewDaemon = 9
	cmdDelDaemon = 10
	cmdGetDaemon = 11

	cmdAttrDaemon = 3

	daemonAttrState      = 1
	daemonAttrMcastIfn   = 2
	daemonAttrSyncID     = 3
	daemonAttrSyncMaxLen = 4
	daemonAttrMcastGroup = 5
	daemonAttrMcastPort  = 7
	daemonAttrMcastTTL   = 8

	stateMaster = 1
	stateBackup = 2

	genlVersion = 1
)

type netlinkSyncd struct {
	c      *genetlink.Conn
	family genetlink.Family
}

func newNetlinkSyncd() (*netlinkSyncd, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, err
	}
	f, err := c.GetFamily("IPVS")
	if err != nil {
		c.Close()
		return nil, err
	}
	return &netlinkSyncd{c: c, family: f}, nil
}

func (s *netlinkSyncd) Close() error { return s.c.Close() }

func state(master bool) uint32 {
	if master {
		return stateMaster
	}
	return stateBackup
}

// encodeDaemon is the IPVS_CMD_ATTR_DAEMON attribute for d, as ipvsadm
// and keepalived send it: the port in host order, the group as an
// in_addr.
func encodeDaemon(d dataplane.SyncDaemon) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrDaemon, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(daemonAttrState, state(d.Master))
		nae.String(daemonAttrMcastIfn, d.Interface)
		nae.Uint32(daemonAttrSyncID, uint32(d.SyncID))
		if d.MaxLen != 0 {
			nae.Uint16(daemonAttrSyncMaxLen, d.MaxLen)
		}
		if d.Group.Is4() {
			g := d.Group.As4()
			nae.Bytes(daemonAttrMcastGroup, g[:])
		}
		if d.Port != 0 {
			nae.Uint16(daemonAttrMcastPort, d.Port)
		}
		if d.TTL != 0 {
			nae.Uint8(daemonAttrMcastTTL, d.TTL)
		}
		return nil
	})
	return ae.Encode()
}

func (s *netlinkSyncd) exec(cmd uint8, data []byte, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	return s.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: genlVersion},
		Data:   data,
	}, s.family.ID, flags)
}

func (s *netlinkSyncd) Start(d dataplane.SyncDaemon) error {
	b, err := encodeDaemon(d)
	if err != nil {
		return err
	}
	_, err = s.exec(cmdNewDaemon, b, netlink.Request|netlink.Acknowledge)
	return err
}

func (s *netlinkSyncd) Stop(master bool) error {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrDaemon, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(daemonAttrState, state(master))
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = s.exec(cmdDelDaemon, b, netlink.Request|netlink.Acknowledge)
	if errors.Is(err, syscall.ESRCH) {
		return nil // IPVS answers ESRCH for a daemon that is not running
	}
	return err
}

func (s *netlinkSyncd) Running() ([]dataplane.SyncDaemon, error) {
	msgs, err := s.exec(cmdGetDaemon, nil, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, err
	}
	var out []dataplane.SyncDaemon
	for _, m := range msgs {
		d, err := decodeDaemon(m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func decodeDaemon(b []byte) (dataplane.SyncDaemon, error) {
	var d dataplane.SyncDaemon
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return d, err
	}
	for ad.Next() {
		if ad.Type() != cmdAttrDaemon {
			continue
		}
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			for nad.Next() {
				switch nad.Type() {
				case daemonAttrState:
					d.Master = nad.Uint32() == stateMaster
				case daemonAttrMcastIfn:
					d.Interface = nad.String()
				case daemonAttrSyncID:
					d.SyncID = uint8(nad.Uint32())
				case daemonAttrSyncMaxLen:
					d.MaxLen = nad.Uint16()
				case daemonAttrMcastGroup:
					if a, ok := netip.AddrFromSlice(nad.Bytes()); ok && a.Is4() {
						d.Group = a
					}
				case daemonAttrMcastPort:
					d.Port = nad.Uint16()
				case daemonAttrMcastTTL:
					d.TTL = nad.Uint8()
				}
			}
			return nil
		})
	}
	return d, ad.Err()
}

// setSync runs the daemon want asks for, as keepalived does when its VRRP
// instance changes state: the master daemon while MASTER, the backup one
// otherwise, never both; nil stops the one this backend started.
func (b *Backend) setSync(want *dataplane.SyncDaemon) error {
	cur := b.sync
	if cur != nil && (want == nil || *cur != *want) {
		if err := b.syncd.Stop(cur.Master); err != nil {
			return fmt.Errorf("IPVS: stopping the %s sync daemon: %w", role(cur.Master), err)
		}
		b.sync = nil
		b.log.Info("IPVS sync daemon stopped", "state", role(cur.Master))
	}
	if want == nil || b.sync != nil {
		return nil
	}
	// The other role may be left running by a previous daemon or by hand;
	// keepalived stops it the same way before it starts its own.
	if err := b.syncd.Stop(!want.Master); err != nil {
		return fmt.Errorf("IPVS: stopping the %s sync daemon: %w", role(!want.Master), err)
	}
	if err := b.syncd.Stop(want.Master); err != nil {
		return fmt.Errorf("IPVS: stopping the %s sync daemon: %w", role(want.Master), err)
	}
	if err := b.syncd.Start(*want); err != nil {
		return fmt.Errorf("IPVS: starting the %s sync daemon on %s (syncid %d): %w", role(want.Master), want.Interface, want.SyncID, err)
	}
	d := *want
	b.sync = &d
	b.log.Info("IPVS sync daemon started", "state", role(d.Master), "interface", d.Interface, "syncid", d.SyncID)
	return nil
}

func role(master bool) string {
	if master {
		return "master"
	}
	return "backup"
}
