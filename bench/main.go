// Command bench measures gatehouse side by side with nginx, HAProxy, Caddy,
// the standard library's reverse proxy and the backend itself, on loopback,
// each server on one core, and writes bench/results/.
//
//	go run ./bench            # full run, about 15 minutes
//	go run ./bench -quick     # one short round, about 2 minutes
//
// The stable figure on a shared machine is the server process's CPU time
// per request (utime+stime from /proc/PID/stat around each run, divided by
// the requests completed), so every table leads with it and with its ratio
// to nginx and to the backend measured in the same run.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gatehouse/bench/internal/proc"
)

type options struct {
	quick    bool
	rounds   int
	duration time.Duration
	warmup   time.Duration
	idle     int
	only     string
	out      string
	noProf   bool
	keep     bool
	binary   string
}

func main() {
	if len(os.Args) > 1 {
		roles := map[string]func([]string) error{"backend": roleBackend, "goproxy": roleGoProxy, "idle": roleIdle}
		if f, ok := roles[os.Args[1]]; ok {
			if err := f(os.Args[2:]); err != nil {
				log.Fatalf("%s: %v", os.Args[1], err)
			}
			return
		}
	}
	var o options
	flag.BoolVar(&o.quick, "quick", false, "one short round (about 2 minutes) for trying things")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds")
	flag.DurationVar(&o.duration, "d", 5*time.Second, "length of each measured load run")
	flag.IntVar(&o.idle, "idle", defaultIdleConns, "idle keep-alive connections in the memory scenario")
	flag.StringVar(&o.only, "only", "", "comma-separated scenario ids to run (default all)")
	flag.StringVar(&o.out, "out", "", "results folder (default bench/results in the module)")
	flag.BoolVar(&o.noProf, "no-profile", false, "skip the gatehouse CPU profile")
	flag.StringVar(&o.binary, "gatehouse", "", "measure this gatehouse binary instead of building ./cmd/gatehouse")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder with every server's config and log")
	flag.Parse()
	if o.quick {
		o.rounds, o.duration, o.idle = 1, 2*time.Second, quickIdleConns
	}
	o.warmup = time.Second
	if o.quick {
		o.warmup = 500 * time.Millisecond
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		log.Print("interrupted: stopping the servers")
		proc.StopAll()
		os.Exit(1)
	}()
	err := run(o)
	proc.StopAll()
	if err != nil {
		log.Fatal(err)
	}
}

func run(o options) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", "results")
	}
	raiseFileLimit()
	if err := install(root); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return err
	}
	os.Chmod(dir, 0o755) // nginx workers run as nobody and read the static files
	if o.keep {
		log.Printf("work folder (configs and logs of every server) %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	e := &env{dir: dir, bin: self, caddy: caddyPath(root)}
	if err := writeCert(e); err != nil {
		return err
	}
	if err := writeStatic(e); err != nil {
		return err
	}
	res := &results{Started: time.Now(), Quick: o.quick, Rounds: o.rounds, Duration: o.duration.String()}
	e.gatehouse = e.path("gatehouse")
	if o.binary != "" {
		e.gatehouse = o.binary
	} else if err := goBuild(root, e.gatehouse, "./cmd/gatehouse"); err != nil {
		// The peers are still worth measuring; the report says why
		// gatehouse is missing.
		log.Print(err)
		res.Notes = append(res.Notes, "gatehouse did not build: "+firstLines(err.Error(), 4))
		e.gatehouse = ""
	}
	res.Machine = machine()
	res.Versions = versions(e, root)
	log.Printf("machine: %s", res.Machine)

	backend, err := startBackend(e)
	if err != nil {
		return err
	}
	defer backend.Stop()
	if err := waitListen(backendAddr, startTimeout, backend); err != nil {
		return err
	}

	r := &runner{o: o, e: e, res: res}
	if err := r.mainScenarios(); err != nil {
		return err
	}
	if r.want("h1-1k-log") {
		if err := r.accessLogs(); err != nil {
			log.Printf("h1-1k-log: %v", err)
			res.Notes = append(res.Notes, "h1-1k-log failed: "+err.Error())
		}
	}
	if r.want("routes-10k") {
		if err := r.routes(); err != nil {
			log.Printf("routes-10k: %v", err)
			res.Notes = append(res.Notes, "routes-10k failed: "+err.Error())
		}
	}
	if r.want("idle-memory") {
		r.memory()
	}
	if !o.noProf && r.want("h1-1k") {
		if err := r.profile(root); err != nil {
			log.Printf("profile: %v", err)
			res.Notes = append(res.Notes, "gatehouse profile failed: "+err.Error())
		}
	}
	if r.want("dns") {
		r.dns(root)
	}
	res.Finished = time.Now()
	return res.write(o.out)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench from inside the gatehouse module")
	}
	return filepath.Dir(mod), nil
}

// raiseFileLimit lets this process and every server it starts hold the
// idle-connection scenario's sockets (root may raise the hard limit).
func raiseFileLimit() {
	lim := syscall.Rlimit{Cur: fileLimit, Max: fileLimit}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		var cur syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur)
		cur.Cur = cur.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &cur)
		log.Printf("file limit stays at %d (%v): the idle scenario may open fewer connections", cur.Max, err)
	}
}

func goBuild(root, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
