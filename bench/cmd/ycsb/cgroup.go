package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/heapkv/heapkv/bench/ycsb"
)

const cgroupRoot = "/sys/fs/cgroup"

// capper runs each measurement in a child process that starts inside its
// own memory cgroup whose limit is --mem-limit, so every engine gets the
// same total memory: its caches, memtables, Go heap and the page cache it
// dirties or reads all count against the limit. cgroup v2 (memory.max)
// and the v1 memory controller (memory.limit_in_bytes) both work.
type capper struct {
	limit int64
	v1    bool   // the v1 memory controller, not the v2 unified tree
	root  string // where child cgroups are made
	name  string // how results name the mode, e.g. "cgroup v1 memory.limit_in_bytes=256MB"
	n     int
}

// newCapper returns a capper, or nil and a note saying why runs are not
// capped.
func newCapper(f *flags) (*capper, string) {
	if f.memLimit == "" {
		return nil, "uncapped (no --mem-limit)"
	}
	limit, err := parseBytes(f.memLimit)
	if err != nil || limit <= 0 {
		return nil, fmt.Sprintf("uncapped (bad --mem-limit %q)", f.memLimit)
	}
	why := func(reason string) (*capper, string) {
		note := "uncapped (--mem-limit " + f.memLimit + " not applied: " + reason + ")"
		fmt.Fprintln(os.Stderr, "ycsb: "+note)
		return nil, note
	}
	c := &capper{limit: limit}
	var limitFile string
	if ctrl, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		if !strings.Contains(" "+strings.TrimSpace(string(ctrl))+" ", " memory ") {
			return why("cgroup v2 memory controller not available")
		}
		// The memory controller must be enabled for children of the root.
		_ = os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte("+memory"), 0)
		c.root, limitFile = cgroupRoot, "memory.max"
		c.name = "cgroup v2 memory.max=" + f.memLimit
	} else if _, err := os.Stat(filepath.Join(cgroupRoot, "memory", "memory.limit_in_bytes")); err == nil {
		c.v1, c.root, limitFile = true, filepath.Join(cgroupRoot, "memory"), "memory.limit_in_bytes"
		c.name = "cgroup v1 memory.limit_in_bytes=" + f.memLimit
	} else {
		return why("no cgroup v2 tree and no v1 memory controller under " + cgroupRoot)
	}
	probe := filepath.Join(c.root, fmt.Sprintf("ycsb-probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return why("cgroup not writable: " + err.Error())
	}
	defer os.Remove(probe)
	if _, err := os.Stat(filepath.Join(probe, limitFile)); err != nil {
		return why(limitFile + " not delegated to child cgroups")
	}
	return c, c.name
}

// limitFiles writes the memory limit into a new cgroup, with swap kept out
// (the limit would mean nothing if the engine could page its heap out).
func (c *capper) setLimit(cg string) error {
	lim := []byte(strconv.FormatInt(c.limit, 10))
	if !c.v1 {
		if err := os.WriteFile(filepath.Join(cg, "memory.max"), lim, 0); err != nil {
			return err
		}
		_ = os.WriteFile(filepath.Join(cg, "memory.swap.max"), []byte("0"), 0)
		return nil
	}
	if err := os.WriteFile(filepath.Join(cg, "memory.limit_in_bytes"), lim, 0); err != nil {
		return err
	}
	// memory+swap no larger than memory: no swap (absent without swapaccount).
	_ = os.WriteFile(filepath.Join(cg, "memory.memsw.limit_in_bytes"), lim, 0)
	return nil
}

// peak reads the cgroup's high-water mark of charged memory, in bytes (0
// if the kernel does not keep one).
func (c *capper) peak(cg string) int64 {
	name := "memory.peak"
	if c.v1 {
		name = "memory.max_usage_in_bytes"
	}
	b, err := os.ReadFile(filepath.Join(cg, name))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// events says why a capped child may have died: v2 memory.events, v1
// failcnt and oom_control.
func (c *capper) events(cg string) string {
	var parts []string
	for _, name := range []string{"memory.events", "memory.failcnt", "memory.oom_control"} {
		if b, err := os.ReadFile(filepath.Join(cg, name)); err == nil {
			parts = append(parts, name+": "+strings.Join(strings.Fields(string(b)), " "))
		}
	}
	return strings.Join(parts, "; ")
}

// run re-executes this program for one measurement in a fresh cgroup.
// from, when set, is a fresh copy of a load for the child to run on
// (loadOPS is that load's rate); it is the child's to remove.
func (c *capper) run(ctx context.Context, f *flags, nw namedWorkload, engine string, mode ycsb.Durability,
	from string, loadOPS float64) (Row, error) {
	c.n++
	cg := filepath.Join(c.root, fmt.Sprintf("ycsb-%d-%d", os.Getpid(), c.n))
	if err := os.Mkdir(cg, 0o755); err != nil {
		return Row{}, err
	}
	defer os.Remove(cg)
	if err := c.setLimit(cg); err != nil {
		return Row{}, err
	}
	note := c.name
	// Start each engine cold: write back and drop the OS caches.
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		note += ", caches not dropped"
	} else {
		note += ", caches dropped"
	}
	tmp, err := os.MkdirTemp("", "ycsb-child-")
	if err != nil {
		return Row{}, err
	}
	defer os.RemoveAll(tmp)
	// The workload goes to the child as a file, so a -P file and an
	// embedded workload travel the same way.
	wfile := filepath.Join(tmp, "workload"+nw.name)
	var lines []string
	for k, v := range nw.props {
		lines = append(lines, k+"="+v)
	}
	sort.Strings(lines)
	if err := os.WriteFile(wfile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return Row{}, err
	}
	out := filepath.Join(tmp, "row.json")
	args := []string{"-P", wfile, "--engines", engine, "--durability", mode.String(), "--cache", f.cache,
		"--records", fmt.Sprint(f.records), "--operations", fmt.Sprint(f.operations), "--threads", fmt.Sprint(f.threads),
		"--duration", f.duration.String(), "--seed", fmt.Sprint(f.seed), "--child-out", out, "--child-memory", note}
	if f.dir != "" {
		args = append(args, "--dir", f.dir)
	}
	if from != "" {
		defer os.RemoveAll(from) // in case the child dies first
		args = append(args, "--child-dir", from, "--child-load-ops", fmt.Sprint(loadOPS))
	}
	for _, p := range f.props {
		args = append(args, "-p", p)
	}
	exe, err := os.Executable()
	if err != nil {
		return Row{}, err
	}
	var cmd *exec.Cmd
	if c.v1 {
		// v1 cannot place a child at clone time; a shell joins the cgroup
		// and then becomes the child, so nothing of it runs outside.
		sh := `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`
		cmd = exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", sh, "sh", cg, exe}, args...)...)
	} else {
		fd, err := syscall.Open(cg, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			return Row{}, err
		}
		defer syscall.Close(fd)
		cmd = exec.CommandContext(ctx, exe, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// Every engine runs in a Go process that does not know its cgroup's
	// limit: with the default GOGC its heap may grow to twice the live data
	// before a collection and be killed for it. A soft limit at 3/4 of the
	// cap (the rest is for page cache, off-heap caches and the binary)
	// makes the collector work harder instead, for every engine alike.
	cmd.Env = os.Environ()
	if os.Getenv("GOMEMLIMIT") == "" {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMEMLIMIT=%dMiB", c.limit*3/4>>20))
	}
	err = cmd.Run()
	peak := c.peak(cg)
	if err != nil {
		return Row{Workload: nw.name, Engine: engine, Durability: mode.String(), Memory: note,
			Skipped: fmt.Sprintf("child failed under the memory cap: %v (%s)", err, c.events(cg))}, nil
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return Row{}, err
	}
	var row Row
	if err := json.Unmarshal(b, &row); err != nil {
		return Row{}, err
	}
	row.PeakMiB = float64(peak) / (1 << 20)
	return row, nil
}
