package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"gatehouse/internal/accesslog"
	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/instance"
)

// commonFlags are the flags every command that reads a config shares.
type commonFlags struct {
	config string
	data   string
	// warn receives warnings about the config (nginx conversion).
	warn io.Writer
}

func (c *commonFlags) register(flags *flag.FlagSet) {
	flags.StringVar(&c.config, "c", "", "config `file` (default ./gatehouse.yaml, else the embedded default)")
	flags.StringVar(&c.config, "config", "", "same as -c")
	flags.StringVar(&c.data, "data", "", "data `dir` for the local CA and certificates (default $GATEHOUSE_DATA, else the user's state directory)")
}

// load reads the chosen config: -c, else ./gatehouse.yaml, else the
// embedded default.
func (c *commonFlags) load() (*config.Config, error) {
	path := c.config
	if path == "" {
		if _, err := os.Stat("gatehouse.yaml"); err == nil {
			path = "gatehouse.yaml"
		}
	}
	if path == "" {
		return config.Default(), nil
	}
	warn := c.warn
	if warn == nil {
		warn = io.Discard
	}
	cfg, err := loadConfigFile(path, warn)
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("config %s has problems:\n%v", path, err)}
	}
	return cfg, nil
}

// dataDir picks the data directory: --data, GATEHOUSE_DATA, the config's
// data key, else $XDG_STATE_HOME/gatehouse or ~/.local/state/gatehouse.
func (c *commonFlags) dataDir(cfg *config.Config) (string, error) {
	if c.data != "" {
		return c.data, nil
	}
	if d := os.Getenv("GATEHOUSE_DATA"); d != "" {
		return d, nil
	}
	if cfg != nil && cfg.Data != "" {
		return cfg.Data, nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "gatehouse"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("no home directory to keep data in: pass --data DIR")
	}
	return filepath.Join(home, ".local", "state", "gatehouse"), nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	o := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

// accessFlush is how long an access-log line may wait to be written with
// others: a busy server then makes one write for hundreds of requests.
const accessFlush = 100 * time.Millisecond

// accessLogger opens the access log; file is set when it is a file that
// SIGUSR1 reopens.
func accessLogger(cfg *config.Config, stdout, stderr io.Writer) (log *accesslog.Writer, file *reopenFile, err error) {
	var w io.Writer
	switch cfg.Log.Access {
	case "off":
		return nil, nil, nil
	case "stderr":
		w = stderr
	case "stdout":
		w = stdout
	default:
		if file, err = openLogFile(cfg.Log.Access); err != nil {
			return nil, nil, fmt.Errorf("opening access log: %w", err)
		}
		w = file
	}
	return accesslog.NewWriter(w, accessFlush), file, nil
}

func cmdRun(args []string, stderr io.Writer) error {
	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cf := commonFlags{warn: stderr}
	cf.register(flags)
	watch := flags.Bool("watch", false, "reload when the config file changes")
	if err := flags.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if flags.NArg() > 0 {
		return usageErr("run takes no arguments, got %q", flags.Args())
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, w)
	}
	dir, err := cf.dataDir(cfg)
	if err != nil {
		return err
	}
	var outMu sync.Mutex
	stderr = &lockedWriter{mu: &outMu, w: stderr}
	log := newLogger(cfg, stderr)
	access, accessFile, err := accessLogger(cfg, &lockedWriter{mu: &outMu, w: os.Stdout}, stderr)
	if err != nil {
		return err
	}
	if accessFile != nil {
		defer accessFile.Close()
	}
	if access != nil {
		access.OnError = func(err error) { log.Error("writing the access log", "error", err) }
		defer access.Close() // before the file closes: deferred calls run last first
	}

	in, err := instance.New(cfg, instance.Options{
		DataDir: dir, Log: log, AccessLog: access,
		Load: func(path string) (*config.Config, error) {
			if path == config.DefaultName {
				return config.Default(), nil
			}
			return loadConfigFile(path, stderr)
		},
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := in.Start(); err != nil {
		return err
	}
	printWelcome(stderr, cfg, in, dir)
	if *watch && cfg.File != config.DefaultName {
		// Errors are logged by ReloadFile; the old config keeps serving.
		if err := watchConfig(ctx, cfg.File, log, func() { in.ReloadFile() }); err != nil {
			log.Warn("cannot watch the config file; reload with SIGHUP or gatehouse reload", "error", err.Error())
		}
	}
	log.Info("gatehouse started", "config", cfg.File)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(signals)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case s := <-signals:
			switch s {
			case syscall.SIGHUP:
				// Errors are logged by Reload; the old config keeps serving.
				in.ReloadFile()
			case syscall.SIGUSR1:
				if accessFile != nil {
					access.Flush() // what was logged before goes to the file being rotated
					if err := accessFile.Reopen(); err != nil {
						log.Error("reopening the access log", "error", err)
					}
				}
			}
		}
	}
	stop() // a second signal ends the process at once
	log.Info("shutting down: finishing in-flight requests", "timeout", cfg.Server.ShutdownTimeout.D().String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	if err := in.Shutdown(sctx); err != nil {
		log.Warn("shutdown cut requests short", "error", err)
	}
	if access != nil {
		access.Close() // its last lines before the last line of the log
	}
	log.Info("gatehouse stopped")
	return nil
}

// printWelcome tells a person where to go and how to trust the local CA.
func printWelcome(w io.Writer, cfg *config.Config, in *instance.Instance, dataDir string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\ngatehouse is running with %s\n", cfg.File)
	httpsPort := portOf(in.HTTPSAddrs())
	httpPort := portOf(in.HTTPAddrs())
	internal := false
	for i := range cfg.Sites {
		s := &cfg.Sites[i]
		src := certs.SiteSource(cfg, s)
		internal = internal || src == certs.Internal
		host := s.Hosts[0]
		if strings.HasPrefix(host, "*.") {
			host = "www" + host[1:]
		}
		if src == 0 {
			fmt.Fprintf(&b, "  http://%s%s/\n", host, portSuffix(httpPort, "80"))
		} else {
			fmt.Fprintf(&b, "  https://%s%s/   (http://%s%s/ redirects here; certificate: %s)\n", host, portSuffix(httpsPort, "443"), host, portSuffix(httpPort, "80"), src)
		}
	}
	if cfg.Demo != "" {
		fmt.Fprintf(&b, "  demo app (the backend) on http://%s/\n", cfg.Demo)
	}
	if dnsAddrs := in.DNSAddrs(); len(dnsAddrs) > 0 {
		var zones []string
		for z := range cfg.DNS.Zones {
			zones = append(zones, z)
		}
		sort.Strings(zones)
		fmt.Fprintf(&b, "  DNS for %s on %s (UDP and TCP)\n", strings.Join(zones, ", "), strings.Join(dnsAddrs, ", "))
		if cfg.File == config.DefaultName {
			fmt.Fprintf(&b, "\nWalk a request's whole journey: gatehouse trace http://www.gatehouse.test%s/ --dns %s\n", portSuffix(httpPort, "80"), dnsAddrs[0])
		}
	}
	if internal {
		root := filepath.Join(dataDir, "ca", "root.crt")
		fmt.Fprintf(&b, "\nInternal certificates are signed by gatehouse's local CA: %s\n", root)
		fmt.Fprintf(&b, "Trust it once to browse without warnings:\n")
		fmt.Fprintf(&b, "  curl:    curl --cacert %s https://localhost%s/\n", root, portSuffix(httpsPort, "443"))
		fmt.Fprintf(&b, "  Debian/Ubuntu: sudo cp %s /usr/local/share/ca-certificates/gatehouse.crt && sudo update-ca-certificates\n", root)
		fmt.Fprintf(&b, "  macOS:   sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %s\n", root)
		fmt.Fprintf(&b, "  Firefox/Chrome: import it under Settings → Certificates → Authorities\n")
		fmt.Fprintf(&b, "  ('gatehouse ca' prints it)\n")
	}
	fmt.Fprintln(&b)
	io.WriteString(w, b.String())
}

func portOf(addrs []net.Addr) string {
	if len(addrs) == 0 {
		return ""
	}
	_, p, _ := net.SplitHostPort(addrs[0].String())
	return p
}

func portSuffix(port, standard string) string {
	if port == "" || port == standard {
		return ""
	}
	return ":" + port
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("validate", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cf := commonFlags{warn: stdout}
	cf.register(flags)
	if err := flags.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if flags.NArg() == 1 && cf.config == "" {
		cf.config = flags.Arg(0)
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, w)
	}
	fmt.Fprintf(stdout, "%s: valid (%d sites)\n", cfg.File, len(cfg.Sites))
	return nil
}

func cmdCA(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("ca", flag.ContinueOnError)
	var cf commonFlags
	cf.register(flags)
	if err := flags.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	dir, err := cf.dataDir(nil)
	if err != nil {
		return err
	}
	ca, err := certs.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%v: run as the user gatehouse runs as, or pass --data", err)
		}
		return err
	}
	_, err = stdout.Write(ca.CertPEM)
	return err
}
