// Package proc starts the server processes a benchmark compares, each
// pinned to one CPU, checks that they stay there, reads their CPU time and
// memory from /proc, and stops them by pid.
package proc

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
var running sync.Map // *Proc → struct{}

// StopAll stops every process started here that still runs.
func StopAll() {
	running.Range(func(k, _ any) bool {
		k.(*Proc).Stop()
		return true
	})
}

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux this runs on.
const ClockTicks = 100

// Proc is a server process started here and stopped by its pid.
type Proc struct {
	Name string
	cpu  int // the CPU it is pinned to, or -1
	cmd  *exec.Cmd
	done chan struct{}
	log  string // file holding its stdout and stderr
}

// Start runs argv with env added, pinned to cpu with taskset when cpu >= 0.
// taskset execs the command, so the pid is the server's.
func Start(name string, cpu int, env []string, logFile string, argv ...string) (*Proc, error) {
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
	p := &Proc{Name: name, cpu: cpu, cmd: cmd, done: make(chan struct{}), log: logFile}
	running.Store(p, struct{}{})
	go func() { cmd.Wait(); f.Close(); running.Delete(p); close(p.done) }()
	return p, nil
}

func (p *Proc) Pid() int { return p.cmd.Process.Pid }

func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop asks the process and its children to finish (SIGTERM to its
// process group: nginx's workers too), then kills the group after a grace
// period.
func (p *Proc) Stop() {
	if p == nil || p.Exited() {
		return
	}
	pg := -p.Pid()
	syscall.Kill(pg, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(pg, syscall.SIGKILL)
		<-p.done
	}
}

// Tail returns the end of the process's log, for error messages.
func (p *Proc) Tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// CheckPinned reports a thread of the process or its children that may run
// on another CPU than the one it was started on. Some servers pin their
// own worker threads (Knot puts UDP worker i on CPU i modulo the online
// CPUs, whatever affinity it inherited); a worker that shares the load
// generator's core is no longer measured on one core of its own.
func (p *Proc) CheckPinned() error {
	if p.cpu < 0 {
		return nil
	}
	want := strconv.Itoa(p.cpu)
	for _, pid := range Tree(p.Pid()) {
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/status")
			if err != nil {
				continue // the thread has exited
			}
			for line := range strings.SplitSeq(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok && strings.TrimSpace(v) != want {
					return fmt.Errorf("thread %s of pid %d may run on CPUs %s, not only on CPU %s",
						t.Name(), pid, strings.TrimSpace(v), want)
				}
			}
		}
	}
	return nil
}

// Tree returns pid and all its descendants (nginx's workers).
func Tree(pid int) []int {
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

// CPUTicks is utime+stime of pid and its descendants, in clock ticks.
func CPUTicks(pid int) int64 {
	var sum int64
	for _, p := range Tree(pid) {
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
	for _, p := range Tree(pid) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, key+":"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += n
			}
		}
	}
	return sum
}

// RSSKB is the resident memory of pid and its descendants.
func RSSKB(pid int) int64 { return statusKB(pid, "VmRSS") }

// HWMKB is the peak resident memory of pid and its descendants since the
// last ResetPeak.
func HWMKB(pid int) int64 { return statusKB(pid, "VmHWM") }

// ResetPeak resets VmHWM to the current RSS (proc(5), clear_refs "5"), so
// each run's peak is its own.
func ResetPeak(pid int) {
	for _, p := range Tree(pid) {
		os.WriteFile("/proc/"+strconv.Itoa(p)+"/clear_refs", []byte("5"), 0)
	}
}
