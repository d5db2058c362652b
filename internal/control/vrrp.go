package control

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// VRRPInstance is one vrrp_instance as `xlbd status` shows it.
type VRRPInstance struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	VRID      uint8  `json:"vrid"`
	Version   int    `json:"version"`
	State     string `json:"state"`
	Priority  uint8  `json:"priority"`
	// EffectivePriority is Priority after track_interface and
	// track_script weights.
	EffectivePriority uint8     `json:"effective_priority"`
	Master            string    `json:"master,omitempty"` // the master's address, ours when MASTER
	MasterPriority    uint8     `json:"master_priority"`
	Since             time.Time `json:"since"`
	Why               string    `json:"why"` // of the last transition
	SyncGroup         string    `json:"sync_group,omitempty"`
	VIPs              []string  `json:"vips"`
	Transitions       uint64    `json:"transitions"`
	AdvertsSent       uint64    `json:"adverts_sent"`
	AdvertsReceived   uint64    `json:"adverts_received"`
	// Errors counts adverts dropped or mismatching, by reason (auth, ttl,
	// interval, checksum, vip_list, ...).
	Errors map[string]uint64 `json:"errors,omitempty"`
	// Checksums counts received adverts by the checksum form that matched.
	Checksums map[string]uint64 `json:"checksums,omitempty"`
	GARPs     uint64            `json:"garps"`
}

// formatVRRP writes the instances, one line each, and their errors.
func formatVRRP(w io.Writer, r Report) error {
	if len(r.VRRP) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nVRRP instances")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Instance\tInterface\tVRID\tState\tPriority\tMaster\tSince\tWhy\tSent\tReceived\tErrors\t")
	for _, v := range r.VRRP {
		prio := fmt.Sprint(v.Priority)
		if v.EffectivePriority != v.Priority {
			prio = fmt.Sprintf("%d (base %d)", v.EffectivePriority, v.Priority)
		}
		master := "-"
		if v.Master != "" {
			master = fmt.Sprintf("%s (%d)", v.Master, v.MasterPriority)
		}
		var errs []string
		for _, k := range slices.Sorted(maps.Keys(v.Errors)) {
			errs = append(errs, fmt.Sprintf("%s %d", k, v.Errors[k]))
		}
		name := v.Name
		if v.SyncGroup != "" {
			name += " [" + v.SyncGroup + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t\n", name, v.Interface, v.VRID, v.State, prio, master,
			v.Since.Format(time.RFC3339), v.Why, v.AdvertsSent, v.AdvertsReceived, strings.Join(errs, ", "))
	}
	return tw.Flush()
}
