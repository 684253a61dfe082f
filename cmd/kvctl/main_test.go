package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// These tests build the real binary once and run it, as an operator would.

var kvctlBin string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "kvctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kvctlBin = filepath.Join(tmp, "kvctl")
	build := exec.Command("go", "build", "-o", kvctlBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build kvctl:", err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// kvctlCmd returns kvctl with args, data directory dir (none if ""), and no
// $HEAPKV_DIR from the environment.
func kvctlCmd(dir string, args ...string) *exec.Cmd {
	if dir != "" {
		args = append([]string{"-d", dir}, args...)
	}
	cmd := exec.Command(kvctlBin, args...)
	cmd.Env = append(os.Environ(), "HEAPKV_DIR=")
	return cmd
}

// kvctl runs kvctl on dir with stdin and returns what it did.
func kvctl(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	cmd := kvctlCmd(dir, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kvctl %q: %v", args, err)
	}
	return r
}

// ok runs kvctl and fails the test unless it exits 0; it returns stdout.
func ok(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := kvctl(t, dir, "", args...)
	if r.code != 0 {
		t.Fatalf("kvctl %q: %v", args, r)
	}
	return r.stdout
}

// fails runs kvctl and fails the test unless it exits with code and its
// stderr matches pattern.
func fails(t *testing.T, dir string, code int, pattern string, args ...string) result {
	t.Helper()
	r := kvctl(t, dir, "", args...)
	if r.code != code || !regexp.MustCompile(pattern).MatchString(r.stderr) {
		t.Fatalf("kvctl %q: %v; want exit %d and stderr matching %q", args, r, code, pattern)
	}
	return r
}

func TestPutGetDel(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "put", "alpha", "one")
	if got := ok(t, dir, "get", "alpha"); got != "one\n" {
		t.Errorf("get = %q, want %q", got, "one\n")
	}
	if got := ok(t, dir, "get", "--raw", "alpha"); got != "one" {
		t.Errorf("get --raw = %q", got)
	}
	ok(t, dir, "put", "alpha", "two")
	// Flags after the arguments, and global flags after the command.
	if got := ok(t, "", "get", "alpha", "--dir", dir); got != "two\n" {
		t.Errorf("get after overwrite = %q", got)
	}
	// A value from stdin, bytes exactly, and a key beginning with "-".
	bin := "\x00\xff\n\tend"
	if r := kvctl(t, dir, bin, "put", "--", "-bin", "-"); r.code != 0 {
		t.Fatal(r)
	}
	if got := ok(t, dir, "get", "--raw", "--", "-bin"); got != bin {
		t.Errorf("binary value = %q, want %q", got, bin)
	}
	ok(t, dir, "del", "alpha", "never-there")
	r := fails(t, dir, 1, `not found`, "get", "alpha")
	if r.stdout != "" {
		t.Errorf("get of a missing key wrote %q to stdout", r.stdout)
	}
	// A key too large is a data error, named.
	fails(t, dir, 1, `key too large`, "put", strings.Repeat("k", 2000), "v")
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	fails(t, dir, 2, `unknown command "frobnicate"`, "frobnicate")
	fails(t, dir, 2, `usage: kvctl`)
	fails(t, dir, 2, `usage: kvctl get`, "get")
	fails(t, dir, 2, `usage: kvctl put`, "put", "k")
	fails(t, dir, 2, `flag provided but not defined: -bogus`, "scan", "--bogus")
	fails(t, dir, 2, `flag provided but not defined: -bogus`, "--bogus", "scan")
	fails(t, dir, 2, `--format takes text or json`, "scan", "--format", "xml")
	fails(t, dir, 2, `usage: kvctl keyspace`, "keyspace", "rename", "a", "b")
	fails(t, dir, 2, `--shared-buffers: .*invalid unit "mb"`, "--shared-buffers", "64mb", "show")
	if out := ok(t, dir, "help"); !strings.Contains(out, "scan") || strings.Contains(out, "crashload") {
		t.Errorf("help lists:\n%s", out)
	}
	if out := ok(t, dir, "help", "scan"); !strings.Contains(out, "--reverse") {
		t.Errorf("help scan:\n%s", out)
	}
}

func TestMissingDirIsNotCreatedByReaders(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	for _, args := range [][]string{{"get", "k"}, {"scan"}, {"stats"}, {"show"}, {"check"}, {"keyspace", "list"}} {
		fails(t, dir, 1, `no data directory at`, args...)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a reading command created %s", dir)
	}
	ok(t, dir, "put", "k", "v") // a writer creates it
}

// scanPairs decodes scan --format json output.
func scanPairs(t *testing.T, out string) [][2]string {
	t.Helper()
	var pairs [][2]string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, err := parseJSONLine(sc.Bytes())
		if err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		pairs = append(pairs, [2]string{string(k), string(v)})
	}
	return pairs
}

func TestScan(t *testing.T) {
	dir := t.TempDir()
	var in strings.Builder
	for i := range 20 {
		fmt.Fprintf(&in, "k%02d\tv%d\n", i, i)
	}
	if r := kvctl(t, dir, in.String(), "load", "-"); r.code != 0 {
		t.Fatal(r)
	}
	ok(t, dir, "put", "other", "x")

	lines := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
	if got := lines(ok(t, dir, "scan")); len(got) != 21 || got[0] != "k00\tv0" || got[20] != "other\tx" {
		t.Errorf("scan = %q", got)
	}
	if got := lines(ok(t, dir, "scan", "--limit", "3")); strings.Join(got, ",") != "k00\tv0,k01\tv1,k02\tv2" {
		t.Errorf("scan --limit 3 = %q", got)
	}
	if got := lines(ok(t, dir, "scan", "--reverse", "--limit", "2", "--end", "k10")); strings.Join(got, ",") != "k09\tv9,k08\tv8" {
		t.Errorf("scan --reverse --limit 2 --end k10 = %q", got)
	}
	if got := lines(ok(t, dir, "scan", "--start", "k05", "--end", "k08")); len(got) != 3 || got[0] != "k05\tv5" {
		t.Errorf("scan --start k05 --end k08 = %q", got)
	}
	if got := lines(ok(t, dir, "scan", "--prefix", "k1")); len(got) != 10 || got[9] != "k19\tv19" {
		t.Errorf("scan --prefix k1 = %q", got)
	}
	if got := ok(t, dir, "scan", "--start", "k05", "--end", "k05"); got != "" {
		t.Errorf("empty range = %q", got)
	}

	pairs := scanPairs(t, ok(t, dir, "scan", "--format", "json", "--reverse", "--limit", "4"))
	want := [][2]string{{"other", "x"}, {"k19", "v19"}, {"k18", "v18"}, {"k17", "v17"}}
	if fmt.Sprint(pairs) != fmt.Sprint(want) {
		t.Errorf("scan json reverse limit 4 = %q, want %q", pairs, want)
	}

	// Bytes that are not printable text: quoted in text, base64 in JSON
	// when not UTF-8.
	ok(t, dir, "put", "q\x01", "\"quoted")
	ok(t, dir, "put", "q\xfe", "tab\there")
	ok(t, dir, "put", "q3", "héllo wörld")
	text := ok(t, dir, "scan", "--prefix", "q")
	wantText := "\"q\\x01\"\t\"\\\"quoted\"\nq3\théllo wörld\n\"q\\xfe\"\t\"tab\\there\"\n"
	if text != wantText {
		t.Errorf("escaped text:\n%s\nwant:\n%s", text, wantText)
	}
	js := ok(t, dir, "scan", "--prefix", "q", "--format", "json")
	wantJS := `{"key":"q\u0001","value":"\"quoted"}` + "\n" +
		`{"key":"q3","value":"héllo wörld"}` + "\n" +
		`{"key_base64":"` + base64.StdEncoding.EncodeToString([]byte("q\xfe")) + `","value":"tab\there"}` + "\n"
	if js != wantJS {
		t.Errorf("escaped json:\n%s\nwant:\n%s", js, wantJS)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(t.TempDir(), "data.tsv")
	var in strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&in, "key%05d\tvalue %d\n", i, i)
	}
	in.WriteString("\n")                             // skipped
	in.WriteString("\"nul\\x00key\"\t\"a\\tb\"\r\n") // quoted, CRLF
	if err := os.WriteFile(file, []byte(in.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := kvctl(t, dir, "", "load", "--batch", "1000", file)
	if r.code != 0 || !regexp.MustCompile(`^loaded 2501 rows in [0-9.]+s \([0-9]+ rows/s\)\n$`).MatchString(r.stdout) {
		t.Fatalf("load: %v", r)
	}
	if got := strings.Count(ok(t, dir, "scan"), "\n"); got != 2501 {
		t.Errorf("scan after load: %d lines, want 2501", got)
	}
	// (An argument cannot carry a NUL byte, so look it up by scanning.)
	if got := scanPairs(t, ok(t, dir, "scan", "--prefix", "nul", "--format", "json")); len(got) != 1 || got[0] != [2]string{"nul\x00key", "a\tb"} {
		t.Errorf("quoted line loaded as %q", got)
	}
	// --progress draws a bar even into a pipe.
	r = kvctl(t, dir, "", "load", "--progress", "--batch", "700", file)
	if r.code != 0 || !strings.Contains(r.stderr, "[##############################] 100%") {
		t.Errorf("load --progress: %v", r)
	}

	// scan's output, text or JSON, loads back as it was.
	for _, format := range []string{"text", "json"} {
		if r := kvctl(t, dir, "\x00\x01", "put", "bin\xff", "-"); r.code != 0 {
			t.Fatal(r)
		}
		dump := ok(t, dir, "scan", "--format", format)
		dir2 := t.TempDir()
		if r := kvctl(t, dir2, dump, "load", "--format", format, "-"); r.code != 0 {
			t.Fatalf("load --format %s: %v", format, r)
		}
		if again := ok(t, dir2, "scan", "--format", format); again != dump {
			t.Errorf("%s round trip differs", format)
		}
	}

	// A bad line stops the load, naming the line; earlier batches stay.
	dir3 := t.TempDir()
	bad := "a\t1\nb\t2\nc\t3\nno tab here\ne\t5\n"
	r = kvctl(t, dir3, bad, "load", "--batch", "2", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "stdin line 4: no tab between key and value (the 2 rows before it were committed)") {
		t.Errorf("bad line: %v", r)
	}
	if got := ok(t, dir3, "scan"); got != "a\t1\nb\t2\n" {
		t.Errorf("after a failed load: %q", got)
	}
	r = kvctl(t, dir3, "\"unterminated\tv\n", "load", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "stdin line 1: key: bad quoted string") {
		t.Errorf("bad quoted key: %v", r)
	}
	r = kvctl(t, dir3, `{"key":"k"}`+"\n", "load", "--format", "json", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "line 1: no value or value_base64") {
		t.Errorf("bad json line: %v", r)
	}
}

func TestStats(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "put", "k", "v")
	out := ok(t, dir, "stats")
	for _, want := range []string{`(?m)^database$`, `(?m)^  commits +\d+$`, `(?m)^wal$`, `shared_buffers +134217728 \(128MB\)`, `(?m)^keyspaces$`, `(?m)^  default +\d+ +\d+ +\d+ +[1-9]\d*$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}
	var s struct {
		Database  map[string]any
		Buffers   map[string]any
		WAL       map[string]any `json:"wal"`
		Keyspaces []map[string]any
	}
	if err := json.Unmarshal([]byte(ok(t, dir, "stats", "--format", "json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Buffers["shared_buffers"] != float64(128<<20) || s.Database["blocks_read"] == nil || s.WAL["sync_time"] == nil || len(s.Keyspaces) == 0 {
		t.Errorf("stats json = %+v", s)
	}
}

func TestShow(t *testing.T) {
	dir := t.TempDir()
	out := ok(t, dir, "show")
	if !regexp.MustCompile(`(?m)^name +setting +unit +source +note\n-+ +-+ +-+ +-+ +-+\n`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^shared_buffers +128MB +8kB +default$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^work_mem +4MB +kB +default$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^maintenance_work_mem +64MB +kB +default +not in effect yet: `).MatchString(out) {
		t.Errorf("show:\n%s", out)
	}
	if got := ok(t, dir, "show", "shared_buffers"); got != "128MB\n" {
		t.Errorf("show shared_buffers = %q", got)
	}
	if got := ok(t, dir, "--shared-buffers", "64MB", "show", "shared_buffers"); got != "64MB\n" {
		t.Errorf("show with --shared-buffers 64MB = %q", got)
	}
	if got := ok(t, dir, "--shared-buffers", "2048", "show", "-v", "shared_buffers"); !regexp.MustCompile(`shared_buffers +16MB +8kB +options +buffer pool`).MatchString(got) {
		t.Errorf("show -v with --shared-buffers 2048 (pages):\n%s", got)
	}
	var settings []map[string]string
	if err := json.Unmarshal([]byte(ok(t, dir, "show", "--format", "json")), &settings); err != nil || len(settings) < 10 {
		t.Fatalf("show json: %v, %d settings", err, len(settings))
	}
	os.WriteFile(filepath.Join(dir, "heapkv.conf"), []byte("work_mem = 8MB  # more\n"), 0o644)
	if !regexp.MustCompile(`(?m)^work_mem +8MB +kB +file$`).MatchString(ok(t, dir, "show")) {
		t.Errorf("work_mem from heapkv.conf not shown as file")
	}
	fails(t, dir, 1, `unrecognized configuration parameter "nonsense"`, "show", "nonsense")
}

func TestCheckpointAndCheck(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "put", "k", "v")
	if got := ok(t, dir, "checkpoint"); got != "checkpoint complete\n" {
		t.Errorf("checkpoint = %q", got)
	}
	ok(t, dir, "keyspace", "create", "other")
	if got := ok(t, dir, "check"); got != "ok\n" {
		t.Errorf("check = %q", got)
	}
}

func TestKeyspace(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "keyspace", "create", "users")
	ok(t, dir, "keyspace", "create", "orders")
	fails(t, dir, 1, `already exists`, "keyspace", "create", "users")
	if got := ok(t, dir, "keyspace", "list"); got != "orders\nusers\n" {
		t.Errorf("keyspace list = %q", got)
	}
	ok(t, dir, "put", "--keyspace", "users", "u1", "alice")
	if got := ok(t, dir, "get", "--keyspace", "users", "u1"); got != "alice\n" {
		t.Errorf("get in keyspace = %q", got)
	}
	fails(t, dir, 1, `not found`, "get", "u1") // not in the default keyspace
	if got := ok(t, dir, "scan", "--keyspace", "users"); got != "u1\talice\n" {
		t.Errorf("scan keyspace = %q", got)
	}
	ok(t, dir, "del", "--keyspace", "users", "u1")
	fails(t, dir, 1, `not found`, "get", "--keyspace", "users", "u1")
	ok(t, dir, "keyspace", "drop", "users")
	if got := ok(t, dir, "keyspace", "list"); got != "orders\n" {
		t.Errorf("keyspace list after drop = %q", got)
	}
	fails(t, dir, 1, `keyspace does not exist`, "get", "--keyspace", "users", "u1")
	fails(t, dir, 1, `keyspace does not exist`, "keyspace", "drop", "users")
}

// TestLocked: a second process on a data directory in use fails, naming
// the process that has it.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	cmd := kvctlCmd(dir, "crashload", "--seed", "1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	// The first ack means the directory is open.
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if !strings.HasPrefix(line, "ack 1-0-0") {
			t.Fatalf("crashload's first line = %q; stderr %q", line, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("crashload did not ack within 20s")
	}
	r := fails(t, dir, 1, fmt.Sprintf(`locked by process %d\b`, cmd.Process.Pid), "get", "k")
	if !strings.Contains(r.stderr, "only one process may use a data directory") {
		t.Errorf("no advice in %q", r.stderr)
	}
}

// TestBadConf: every command fails on a heapkv.conf with a bad line, and
// names the line.
func TestBadConf(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "put", "k", "v")
	conf := "shared_buffers = 64MB\nwork_mem = plenty\n"
	if err := os.WriteFile(filepath.Join(dir, "heapkv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "in.tsv")
	os.WriteFile(file, []byte("a\tb\n"), 0o644)
	for _, args := range [][]string{
		{"get", "k"}, {"put", "k", "v"}, {"del", "k"}, {"scan"}, {"load", file},
		{"stats"}, {"show"}, {"checkpoint"}, {"check"},
		{"keyspace", "create", "x"}, {"keyspace", "drop", "x"}, {"keyspace", "list"},
		{"crashload"},
	} {
		fails(t, dir, 1, `heapkv.conf line 2: invalid value "\s*plenty" for work_mem`, args...)
	}
}

// TestSettingFlagsWinOverConf: -c and --synchronous-commit set a setting
// back to its default over a heapkv.conf that changed it.
func TestSettingFlagsWinOverConf(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "put", "k", "v")
	if err := os.WriteFile(filepath.Join(dir, "heapkv.conf"), []byte("synchronous_commit = off\nwork_mem = 8MB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := ok(t, dir, "--synchronous-commit", "on", "-c", "work_mem=4MB", "show", "--format", "json")
	for _, want := range []string{`"synchronous_commit"`, `"work_mem"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("show output lacks %s: %s", want, out)
		}
	}
	out = ok(t, dir, "--synchronous-commit", "on", "show", "synchronous_commit")
	if strings.TrimSpace(out) != "on" {
		t.Fatalf("synchronous_commit = %q with --synchronous-commit on over a file saying off", out)
	}
	out = ok(t, dir, "-c", "work_mem=4MB", "show", "work_mem")
	if strings.TrimSpace(out) != "4MB" {
		t.Fatalf("work_mem = %q with -c work_mem=4MB", out)
	}
	fails(t, dir, 2, `-c: .*unrecognized parameter`, "-c", "no_such=1", "show")
}
