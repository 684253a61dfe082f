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

// capper runs each measurement in a child process born inside its own
// cgroup v2 whose memory.max is the limit, so every engine gets the same
// total memory (its caches, memtables, Go heap and the page cache it
// dirties or reads all count against memory.max).
type capper struct {
	limit int64
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
	ctrl, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
	if err != nil {
		return why("no cgroup v2 at " + cgroupRoot)
	}
	if !strings.Contains(" "+string(ctrl)+" ", " memory ") {
		return why("cgroup v2 memory controller not available")
	}
	// The memory controller must be enabled for children of the root.
	_ = os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte("+memory"), 0)
	probe := filepath.Join(cgroupRoot, fmt.Sprintf("ycsb-probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return why("cgroup v2 not writable: " + err.Error())
	}
	defer os.Remove(probe)
	if _, err := os.Stat(filepath.Join(probe, "memory.max")); err != nil {
		return why("memory.max not delegated to child cgroups")
	}
	return &capper{limit: limit}, "cgroup v2 memory.max=" + f.memLimit
}

// run re-executes this program for one measurement in a fresh cgroup.
func (c *capper) run(ctx context.Context, f *flags, nw namedWorkload, engine string, mode ycsb.Durability) (Row, error) {
	c.n++
	cg := filepath.Join(cgroupRoot, fmt.Sprintf("ycsb-%d-%d", os.Getpid(), c.n))
	if err := os.Mkdir(cg, 0o755); err != nil {
		return Row{}, err
	}
	defer os.Remove(cg)
	if err := os.WriteFile(filepath.Join(cg, "memory.max"), []byte(strconv.FormatInt(c.limit, 10)), 0); err != nil {
		return Row{}, err
	}
	_ = os.WriteFile(filepath.Join(cg, "memory.swap.max"), []byte("0"), 0)
	note := "cgroup v2 memory.max=" + f.memLimit
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
	for _, p := range f.props {
		args = append(args, "-p", p)
	}
	exe, err := os.Executable()
	if err != nil {
		return Row{}, err
	}
	fd, err := syscall.Open(cg, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return Row{}, err
	}
	defer syscall.Close(fd)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Run(); err != nil {
		events, _ := os.ReadFile(filepath.Join(cg, "memory.events"))
		return Row{Workload: nw.name, Engine: engine, Durability: mode.String(), Memory: note,
			Skipped: fmt.Sprintf("child failed under the memory cap: %v (%s)", err, strings.Join(strings.Fields(string(events)), " "))}, nil
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return Row{}, err
	}
	var row Row
	return row, json.Unmarshal(b, &row)
}
