package vrrp

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/config"
)

// Notify arguments reach the script as keepalived passes them, whatever
// the instance's name holds.
func TestWithArgs(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		args []string
		want []string
	}{
		{"/bin/notify.sh", Notify{Instance: "VI_1", State: Master, Priority: 150}.Args(),
			[]string{"/bin/notify.sh", "INSTANCE", "VI_1", "MASTER", "150"}},
		{`/bin/n "a b"`, []string{"INSTANCE", "web front", "BACKUP", "0"},
			[]string{"/bin/n", "a b", "INSTANCE", "web front", "BACKUP", "0"}},
		{"/bin/n", []string{`it's`, `"q"`, `back\slash`, ""},
			[]string{"/bin/n", `it's`, `"q"`, `back\slash`, ""}},
	} {
		got := WithArgs(config.Script{Cmd: tc.cmd, User: "u"}, tc.args...)
		if d := cmp.Diff(tc.want, got.Args()); d != "" {
			t.Errorf("WithArgs(%q, %q).Args() (-want +got):\n%s", tc.cmd, tc.args, d)
		}
		if got.User != "u" {
			t.Errorf("user lost: %+v", got)
		}
	}
}
