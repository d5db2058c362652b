package bpf

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xlbd/xlbd/internal/testenv"
)

// stackLimit is the verifier's limit on the stack of a whole call chain
// (MAX_BPF_STACK); stackHeadroom is what every chain must leave free, so
// that IPv6's longer addresses fit without moving things around again.
const (
	stackLimit    = 512
	stackHeadroom = 128
)

// The deepest call chain of every program, frames as the verifier reports
// them (each rounded up to 32 bytes, as check_max_stack_depth adds them;
// bpf_loop callbacks count as calls from the function that names them),
// leaves stackHeadroom bytes of the limit free.
func TestStackHeadroom(t *testing.T) {
	testenv.RequireRoot(t)
	for _, load := range []func() (*ebpf.CollectionSpec, error){LoadXlb, LoadDecap} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
		coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
			Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
		if err != nil {
			t.Fatal(err)
		}
		defer coll.Close()
		for name, ps := range spec.Programs {
			funcs, calls := callGraph(ps.Instructions)
			depths, err := stackDepths(coll.Programs[name].VerifierLog)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(depths) != len(funcs) {
				t.Fatalf("%s: the verifier reports %d frames for %d functions %v", name, len(depths), len(funcs), funcs)
			}
			frame := map[string]int{}
			for i, f := range funcs {
				frame[f] = depths[i]
			}
			depth, chain := deepest(funcs[0], frame, calls)
			t.Logf("%s: deepest chain %d bytes: %s", name, depth, strings.Join(chain, " → "))
			if depth > stackLimit-stackHeadroom {
				t.Errorf("%s: chain %s takes %d bytes of the stack, leaving %d free; want at least %d free",
					name, strings.Join(chain, " → "), depth, stackLimit-depth, stackHeadroom)
			}
		}
	}
}

// callGraph names the functions of a program's instructions in order and
// what each calls, bpf_loop callbacks (loads of a function's address)
// included.
func callGraph(insns asm.Instructions) ([]string, map[string][]string) {
	var funcs []string
	calls := map[string][]string{}
	cur := ""
	for _, ins := range insns {
		if s := ins.Symbol(); s != "" {
			cur = s
			funcs = append(funcs, s)
		}
		if ins.IsFunctionCall() || ins.IsLoadOfFunctionPointer() {
			if ref := ins.Reference(); ref != "" && !slices.Contains(calls[cur], ref) {
				calls[cur] = append(calls[cur], ref)
			}
		}
	}
	return funcs, calls
}

var stackDepthLine = regexp.MustCompile(`stack depth ([0-9+]+)`)

// stackDepths reads the per-function stack depths from a verifier log at
// LogLevelStats ("stack depth 184+32+..."), in the order of the functions
// in the program.
func stackDepths(log string) ([]int, error) {
	m := stackDepthLine.FindStringSubmatch(log)
	if m == nil {
		return nil, fmt.Errorf("no stack depth in the verifier's log:\n%s", log)
	}
	var out []int
	for _, f := range strings.Split(m[1], "+") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("stack depth %q: %v", m[1], err)
		}
		out = append(out, n)
	}
	return out, nil
}

// deepest is the largest sum of rounded frames over the call chains from
// f, and that chain.
func deepest(f string, frame map[string]int, calls map[string][]string) (int, []string) {
	best, chain := 0, []string(nil)
	for _, c := range calls[f] {
		if d, ch := deepest(c, frame, calls); d > best || chain == nil {
			best, chain = d, ch
		}
	}
	own := (max(frame[f], 1) + 31) &^ 31
	return own + best, append([]string{fmt.Sprintf("%s (%d)", f, frame[f])}, chain...)
}
