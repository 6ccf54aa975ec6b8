package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// running holds every process started and not yet exited, so an
// interrupted bench stops them all (each has its own process group and
// does not get the terminal's Ctrl-C).
var running sync.Map // *proc → struct{}

// stopAll stops every process the bench started that still runs.
func stopAll() {
	running.Range(func(k, _ any) bool {
		k.(*proc).stop()
		return true
	})
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux this runs on.
const clockTicks = 100

// proc is a server process the bench started and will stop by its pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string // file holding its stdout and stderr
}

// start runs argv with env added, pinned to cpu with taskset when cpu >= 0.
func start(name string, cpu int, env []string, logFile string, argv ...string) (*proc, error) {
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
	}
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a Ctrl-C on the bench does not reach it
	// before the bench has stopped it properly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logFile}
	running.Store(p, struct{}{})
	go func() { cmd.Wait(); f.Close(); running.Delete(p); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to finish (SIGTERM; nginx and HAProxy stop their
// workers on it), then kills it by pid after a grace period.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// tree returns pid and all its descendants (nginx's workers).
func tree(pid int) []int {
	parents := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := statFields(child); err == nil && len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			parents[ppid] = append(parents[ppid], child)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, parents[out[i]]...)
	}
	return out
}

// statFields returns the fields of /proc/PID/stat after the command name,
// so that index 0 is the state (field 3 in proc(5)).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("bad stat for %d", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// cpuTicks is utime+stime of pid and its descendants, in clock ticks.
func cpuTicks(pid int) int64 {
	var sum int64
	for _, p := range tree(pid) {
		f, err := statFields(p)
		if err != nil || len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
		s, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
		sum += u + s
	}
	return sum
}

// statusKB sums a "Key: N kB" line of /proc/PID/status over the tree.
func statusKB(pid int, key string) int64 {
	var sum int64
	for _, p := range tree(pid) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, key+":"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += n
			}
		}
	}
	return sum
}

func rssKB(pid int) int64 { return statusKB(pid, "VmRSS") }
func hwmKB(pid int) int64 { return statusKB(pid, "VmHWM") }

// resetPeak resets VmHWM to the current RSS (proc(5), clear_refs "5"), so
// each run's peak is its own.
func resetPeak(pid int) {
	for _, p := range tree(pid) {
		os.WriteFile("/proc/"+strconv.Itoa(p)+"/clear_refs", []byte("5"), 0)
	}
}
