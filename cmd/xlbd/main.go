// Command xlbd is Keepalived rebuilt for the eBPF era: a layer-4 load
// balancer forwarding with XDP.
//
//	xlbd --config lb.yaml [--interface IF]... [--pin-dir DIR] [--xdp-mode auto|native|generic]
//	xlbd check --config lb.yaml
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
	"strings"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/daemon"
	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
	"github.com/xlbd/xlbd/pkg/decap"
	"github.com/xlbd/xlbd/pkg/maps"
	"github.com/xlbd/xlbd/pkg/metrics"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "xlbd: %v\n", err)
		}
		os.Exit(1)
	}
}

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
		case "decap":
			return runDecap(args[1:], stderr)
		case "status":
			return status(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("xlbd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ifaces listFlag
	cfgPath := fs.String("config", "/etc/xlbd/lb.yaml", "configuration file (lb.yaml)")
	fs.Var(&ifaces, "interface", "interface to balance on (repeatable; default: every interface that is up, has IPv4 and is not loopback)")
	pinDir := fs.String("pin-dir", maps.DefaultPinDir, "where BPF maps and links are pinned (a bpffs is mounted there if none is)")
	mode := fs.String("xdp-mode", "auto", "auto, native or generic")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	dontRelease := fs.Bool("dont-release-dataplane", false, "on exit leave the XDP programs and maps in place for the next start to adopt (no flow is lost)")
	pidFile := fs.String("pid-file", "", "write the daemon's pid here")
	metricsAddr := fs.String("metrics-addr", metrics.DefaultAddr, "serve Prometheus /metrics here (\"\" turns it off)")
	ctlSock := fs.String("control-socket", control.DefaultSocket, "unix socket for `xlbd status` (\"\" turns it off)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	am, err := xdp.ParseAttachMode(*mode)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
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
		ConfigPath:    *cfgPath,
		Interfaces:    ifaces,
		PinDir:        *pinDir,
		XDPMode:       am,
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

func check(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xlbd check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/xlbd/lb.yaml", "configuration file to validate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: OK, %d virtual servers\n", *cfgPath, len(cfg.VirtualServers))
	return nil
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
