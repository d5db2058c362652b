// Command xlbd is Keepalived rebuilt for the eBPF era: a layer-4 load
// balancer forwarding with XDP.
//
//	xlbd --config lb.yaml [--config-format yaml|keepalived] [--dataplane xdp] [--interface IF]... [--pin-dir DIR] [--xdp-mode auto|native|generic]
//	xlbd check --config FILE [--config-format yaml|keepalived] [--dataplane xdp] [-v]
//	xlbd convert [--config-format yaml|keepalived] keepalived.conf > lb.yaml
//	xlbd status [--json]
//	xlbd decap --interface IF [--xdp-mode auto|native|generic]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/daemon"
	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/registry"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
	"github.com/xlbd/xlbd/pkg/decap"
	"github.com/xlbd/xlbd/pkg/maps"
	"github.com/xlbd/xlbd/pkg/metrics"
	"github.com/xlbd/xlbd/pkg/reconcile"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errReported) {
			fmt.Fprintf(os.Stderr, "xlbd: %v\n", err)
		}
		os.Exit(1)
	}
}

// errReported makes the command exit 1 when it has already written what
// went wrong (every error in a configuration, one a line).
var errReported = errors.New("errors reported")

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})), nil
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return check(args[1:], stdout, stderr)
		case "convert":
			return convert(args[1:], stdout, stderr)
		case "decap":
			return runDecap(args[1:], stderr)
		case "status":
			return status(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("xlbd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ifaces listFlag
	cfgPath := fs.String("config", "/etc/xlbd/lb.yaml", "configuration file: lb.yaml, or keepalived.conf as is")
	cfgFormat := formatFlag(fs)
	dpName := dataplaneFlag(fs)
	fs.Var(&ifaces, "interface", "interface to balance on (repeatable; default: every interface that is up, has IPv4 and is not loopback)")
	pinDir := fs.String("pin-dir", maps.DefaultPinDir, "where BPF maps and links are pinned (a bpffs is mounted there if none is); one daemon per directory, which it locks")
	mode := fs.String("xdp-mode", "auto", "auto, native or generic")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	dontRelease := fs.Bool("dont-release-dataplane", false, "on exit leave the XDP programs and maps in place for the next start to adopt (no flow is lost)")
	pidFile := fs.String("pid-file", "", "write the daemon's pid here (a start refuses when it names a running xlbd)")
	metricsAddr := fs.String("metrics-addr", metrics.DefaultAddr, "serve Prometheus /metrics here (\"\" turns it off)")
	ctlSock := fs.String("control-socket", control.DefaultSocket, "unix socket for `xlbd status` (\"\" turns it off)")
	tableSizes := tableSizeFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	sizes, err := tableSizes()
	if err != nil {
		return err
	}
	if _, err := lookupDataplane(*dpName); err != nil {
		return err
	}
	am, err := xdp.ParseAttachMode(*mode)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	stopSignals := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return daemon.Run(ctx, daemon.Options{
		ConfigPath:   *cfgPath,
		ConfigFormat: *cfgFormat,
		StopSignals:  stopSignals,
		Interfaces:   ifaces,
		PinDir:       *pinDir,
		Dataplane:    *dpName,
		Backend: registry.Options{
			XDP: xdp.Options{Mode: am, Tables: sizes},
		},
		DontRelease:   *dontRelease,
		PidFile:       *pidFile,
		MetricsAddr:   *metricsAddr,
		ControlSocket: *ctlSock,
		Log:           log,
		Notify: func(state string) {
			if _, err := sddaemon.SdNotify(false, state); err != nil {
				log.Warn("sd_notify", "err", err)
			}
		},
	}, reload)
}

// formatFlag adds --config-format to fs.
func formatFlag(fs *flag.FlagSet) *string {
	return fs.String("config-format", config.FormatAuto, "syntax of the configuration: yaml or keepalived (default: yaml for .yaml and .yml files, keepalived otherwise)")
}

// lookupDataplane finds a --dataplane backend; tests put in backends that
// can do less.
var lookupDataplane = registry.Lookup

// dataplaneFlag adds --dataplane to fs.
func dataplaneFlag(fs *flag.FlagSet) *string {
	return fs.String("dataplane", registry.Default, "the data plane that forwards: "+strings.Join(registry.Names(), " or "))
}

// parseArgs is fs.Parse that also takes flags after positional arguments
// (`xlbd convert keepalived.conf --config-format keepalived`) and returns
// the positional ones; everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// loadConfig reads path in format. A configuration with errors has every
// one of them written to stderr, one a line, and gives errReported, with
// a hint when a forced --config-format contradicts the file's name.
func loadConfig(path, format string, stderr io.Writer) (*config.Config, error) {
	cfg, err := config.LoadFormat(path, format)
	var list config.ErrorList
	if err == nil || !errors.As(err, &list) {
		return cfg, err
	}
	for _, e := range list {
		fmt.Fprintln(stderr, e)
	}
	if hint := formatHint(path, format); hint != "" {
		fmt.Fprintln(stderr, hint)
	}
	fmt.Fprintf(stderr, "%s: %s\n", path, plural(len(list), "error"))
	return nil, errReported
}

// formatHint explains errors that come from reading a file in the syntax
// its name says it is not in.
func formatHint(path, format string) string {
	auto := config.FormatKeepalived
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		auto = config.FormatYAML
	}
	if format == config.FormatAuto || format == auto {
		return ""
	}
	return fmt.Sprintf("%s: read as %s because of --config-format %s, although its name says %s; is that the right syntax?", path, formatName(format), format, formatName(auto))
}

func formatName(format string) string {
	if format == config.FormatYAML {
		return "lb.yaml"
	}
	return "keepalived.conf"
}

// warnings are every warning about cfg: the parser's (keywords xlbd
// ignores, settings that are probably a mistake), then what the data plane
// will not be given (reconcile.PlanFor's notes).
func warnings(cfg *config.Config, caps dataplane.Capabilities) []*config.Error {
	_, notes, _ := reconcile.PlanFor(cfg, &caps)
	return slices.Concat(cfg.Warnings, notes)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// check validates a configuration: every error and warning goes to
// stderr, a summary (and with -v the resolved model) to stdout. It fails
// only on errors.
func check(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xlbd check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/xlbd/lb.yaml", "configuration file to validate: lb.yaml, or keepalived.conf")
	format := formatFlag(fs)
	dpName := dataplaneFlag(fs)
	verbose := fs.Bool("v", false, "also print the configuration as xlbd resolves it (lb.yaml with every default spelled out)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("check: unexpected argument %q (the file is given with --config)", pos[0])
	}
	dp, err := lookupDataplane(*dpName)
	if err != nil {
		return err
	}
	caps := dp.Capabilities()
	cfg, err := loadConfig(*cfgPath, *format, stderr)
	if err != nil {
		return err
	}
	warns := warnings(cfg, caps)
	for _, w := range warns {
		fmt.Fprintln(stderr, w.Warning())
	}
	if *verbose {
		fmt.Fprint(stdout, config.Dump(cfg))
	}
	// What the daemon would refuse at start, check refuses too, by the
	// same function: services given twice, and what the data plane cannot
	// run or hold.
	st, _, err := reconcile.PlanFor(cfg, &caps)
	var list config.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintf(stderr, "%s: %s\n", *cfgPath, plural(len(list), "error"))
		return errReported
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: OK, %s (%s), %s\n", *cfgPath,
		plural(len(cfg.VirtualServers), "virtual server"), plural(len(st.Services), "service"), plural(len(warns), "warning"))
	return nil
}

// convert writes a configuration (keepalived.conf, usually) as lb.yaml on
// stdout. Warnings go to stderr: what they name is not in the output.
func convert(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xlbd convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xlbd convert [--config-format yaml|keepalived] FILE > lb.yaml")
		fs.PrintDefaults()
	}
	format := formatFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("convert: want exactly one file")
	}
	cfg, err := loadConfig(pos[0], *format, stderr)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, w.Warning())
	}
	y, err := config.MarshalYAML(cfg)
	if err != nil {
		return err
	}
	_, err = stdout.Write(y)
	return err
}

func runDecap(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("xlbd decap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ifaces listFlag
	fs.Var(&ifaces, "interface", "interface receiving IPIP from the balancer (repeatable, required)")
	mode := fs.String("xdp-mode", "auto", "auto, native or generic")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(ifaces) == 0 {
		return errors.New("decap: --interface is required")
	}
	if err := daemon.CheckInterfaces(ifaces); err != nil {
		return err
	}
	am, err := xdp.ParseAttachMode(*mode)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	d, err := decap.Attach(ifaces, am, log)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("ready")
	return d.Run(ctx)
}

func status(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xlbd status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("control-socket", control.DefaultSocket, "the daemon's control socket")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := control.Fetch(ctx, *sock)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return control.Format(stdout, rep)
}
