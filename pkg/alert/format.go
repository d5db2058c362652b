// Package alert sends keepalived's SMTP alerts: one plain-text mail per
// state change of a real server, a virtual server's quorum or a VRRP
// instance, worded as keepalived 2.2 words them so that mail filters and
// runbooks written for keepalived keep working.
//
// Mail goes out from a task of its own: whoever reports a state change only
// queues it and never waits for an SMTP server.
package alert

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// Alert is one mail to send.
type Alert struct {
	// Subject is what follows "[router_id] " in the mail's subject.
	Subject string
	// Body is the text of the mail, one line in keepalived's "=> ... <="
	// style.
	Body string
	// At is when the state changed, the mail's Date. Send sets it when it
	// is zero: a mail that waited in the queue still says when it happened.
	At time.Time
}

// The subjects and bodies below are keepalived 2.2.8's: keepalived/core/smtp.c
// (smtp_alert) builds the subject, the callers pass the body.

// RealServerAlert is the mail of a checker's state change
// (keepalived's SMTP_MSG_RS). up is the real server's state after the change,
// not the checker's: keepalived writes rs->alive in the subject, so with two
// checkers one that recovers while the other still fails mails "DOWN".
// body is what the checker says, from CheckerBody; empty means keepalived's
// generic "=> CHECK succeed/failed on service <=".
func RealServerAlert(vs config.VirtualServer, rs netip.AddrPort, up bool, body string) Alert {
	if body == "" {
		body = CheckerBody("", up, "")
	}
	return Alert{
		Subject: fmt.Sprintf("Realserver %s of virtual server %s - %s", FormatRS(vs, rs), FormatVS(vs), upDown(up)),
		Body:    body,
	}
}

// RealServerRemovedAlert is the mail of a real server taken out of its
// virtual server by a reload (keepalived's SMTP_MSG_RS_SHUT from
// clear_service_rs in check/ipwrapper.c) or, with shutdown, because the
// daemon stops.
func RealServerRemovedAlert(vs config.VirtualServer, rs netip.AddrPort, shutdown bool) Alert {
	body := "=> Removing <="
	if shutdown {
		body = "=> Shutting down <="
	}
	return Alert{
		Subject: fmt.Sprintf("Realserver %s of virtual server %s - DOWN", FormatRS(vs, rs), FormatVS(vs)),
		Body:    body,
	}
}

// CheckerBody is the body keepalived's checker of type t writes when it
// goes up (ok) or down, as in keepalived/check/check_*.c. reason is the
// failure's cause: SMTP_CHECK puts it in the body, and MISC_CHECK says
// "timed out" rather than "failed" when reason mentions a timeout. Other
// checkers ignore it, as keepalived does. FILE_CHECK and unknown types get
// the generic wording: keepalived's FILE_CHECK sends no mail at all.
func CheckerBody(t config.CheckerType, ok bool, reason string) string {
	switch t {
	case config.CheckTCP:
		return succeedFailed("=> TCP CHECK %s on service <=", ok)
	case config.CheckUDP:
		return succeedFailed("=> UDP CHECK %s on service <=", ok)
	case config.CheckPing:
		return succeedFailed("=> ICMP CHECK %s on service <=", ok)
	case config.CheckDNS:
		return succeedFailed("=> DNS_CHECK: %s on service <=", ok)
	case config.CheckHTTP, config.CheckSSL:
		// check_http.c has one failure text whatever went wrong.
		if !ok {
			return "=> CHECK failed on service : HTTP/SSL request failed <="
		}
	case config.CheckSMTP:
		if !ok && reason != "" {
			return "=> CHECK failed on service : " + reason + " <="
		}
	case config.CheckMisc:
		// check_misc.c's script_exit_type; note "succeeded", where the
		// other checkers say "succeed".
		what := "succeeded"
		if !ok {
			what = "failed"
			if strings.Contains(reason, "timeout") || strings.Contains(reason, "timed out") {
				what = "timed out"
			}
		}
		return "=> MISC CHECK " + what + " on service <="
	}
	return succeedFailed("=> CHECK %s on service <=", ok)
}

func succeedFailed(format string, ok bool) string {
	if ok {
		return fmt.Sprintf(format, "succeed")
	}
	return fmt.Sprintf(format, "failed")
}

// QuorumAlert is the mail of a virtual server gaining (up) or losing its
// quorum (keepalived's SMTP_MSG_VS from do_vs_notifies in
// check/ipwrapper.c). starting is the first decision after start or
// reload ("Starting with quorum up/down"). threshold is the value the
// live weight was compared with: quorum+hysteresis when gaining,
// quorum-hysteresis when losing. keepalived writes "quorum+hysteresis"
// in both cases; so does this, so that filters match.
func QuorumAlert(vs config.VirtualServer, up, starting bool, threshold, weightSum int64) Alert {
	var what string
	switch {
	case up && starting:
		what = "Starting with quorum up"
	case up:
		what = "Gained quorum"
	case starting:
		what = "Starting with quorum down"
	default:
		what = "Lost quorum"
	}
	return Alert{
		Subject: fmt.Sprintf("Virtualserver %s - %s", FormatVS(vs), upDown(up)),
		Body:    fmt.Sprintf("=> %s %d+%d=%d <= %d <=", what, vs.Quorum, vs.Hysteresis, threshold, weightSum),
	}
}

// QuorumShutdownAlert is the mail keepalived sends for a virtual server
// with omega when the daemon stops.
func QuorumShutdownAlert(vs config.VirtualServer) Alert {
	return Alert{
		Subject: fmt.Sprintf("Virtualserver %s - DOWN", FormatVS(vs)),
		Body:    "=> Shutting down <=",
	}
}

// VRRP states as notify scripts name them, for VRRPAlert and
// VRRPGroupAlert. StateDeleted is an instance removed by a reload.
const (
	StateMaster  = "MASTER"
	StateBackup  = "BACKUP"
	StateFault   = "FAULT"
	StateStop    = "STOP"
	StateDeleted = "DELETED"
)

// VRRPAlert is the mail of a VRRP instance entering state (keepalived's
// vrrp_smtp_notifier in vrrp/vrrp_notify.c). Other states (INIT) send no
// mail in keepalived: the Alert is then the zero Alert, which Send ignores.
func VRRPAlert(instance, state string) Alert {
	var subject, body string
	switch state {
	case StateMaster:
		subject, body = "Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="
	case StateBackup:
		subject, body = "Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="
	case StateFault:
		subject, body = "Entering FAULT state", "=> VRRP Instance is no longer owning VRRP VIPs <="
	case StateStop:
		subject, body = "Stopping", "=> VRRP Instance stopping <="
	case StateDeleted:
		subject, body = "Deleted", "=> VRRP Deleted at reload <="
	default:
		return Alert{}
	}
	return Alert{Subject: "VRRP Instance " + instance + " - " + subject, Body: body}
}

// VRRPGroupAlert is the mail of a vrrp_sync_group entering state
// (vrrp_sync_smtp_notifier in vrrp/vrrp_notify.c); the zero Alert for
// states keepalived does not mail.
func VRRPGroupAlert(group, state string) Alert {
	var subject, body string
	switch state {
	case StateMaster:
		subject, body = "Entering MASTER state", "=> All VRRP group instances are now in MASTER state <="
	case StateBackup:
		subject, body = "Entering BACKUP state", "=> All VRRP group instances are now in BACKUP state <="
	case StateFault:
		subject, body = "Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="
	case StateStop:
		subject, body = "Stopping", "=> All VRRP group instances are now stopping <="
	default:
		return Alert{}
	}
	return Alert{Subject: "VRRP Group " + group + " - " + subject, Body: body}
}

// FormatVS writes a virtual server as keepalived's FMT_VS (format_vs in
// check/check_data.c): "[10.0.0.1]:tcp:80", "FWM 5", or "[NAME]:0" for a
// group, whose address keepalived leaves unset.
func FormatVS(vs config.VirtualServer) string {
	switch {
	case vs.Group != "":
		return "[" + vs.Group + "]:0"
	case vs.FWMark != 0:
		return fmt.Sprintf("FWM %d", vs.FWMark)
	}
	return trio(vs.Address, protoName(vs), vs.Port)
}

// FormatRS writes a real server as keepalived's FMT_RS: its address with
// the virtual server's protocol, "[192.168.1.10]:tcp:8080".
func FormatRS(vs config.VirtualServer, rs netip.AddrPort) string {
	return trio(rs.Addr(), protoName(vs), rs.Port())
}

// trio is keepalived's inet_sockaddrtotrio (lib/utils.c).
func trio(a netip.Addr, proto string, port uint16) string {
	return fmt.Sprintf("[%s]:%s:%d", a.WithZone(""), proto, port)
}

// protoName is the protocol as inet_sockaddrtotrio names it. keepalived
// clears the protocol of a fwmark service, so its reals say "none".
func protoName(vs config.VirtualServer) string {
	if vs.FWMark != 0 {
		return "none"
	}
	switch vs.Protocol {
	case config.TCP:
		return "tcp"
	case config.UDP:
		return "udp"
	case 0:
		return "none"
	}
	return "?"
}

func upDown(up bool) string {
	if up {
		return "UP"
	}
	return "DOWN"
}
