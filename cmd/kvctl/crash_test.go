package main

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/testutil"
)

var (
	sigkillCycles      = flag.Int("sigkill.cycles", 20, "TestSIGKILL: how many times to kill crashload")
	sigkillBudget      = flag.Duration("sigkill.budget", 40*time.Second, "TestSIGKILL: stop starting cycles after this long (a slow disk); 0: no limit; not applied when -sigkill.cycles is given and this is not")
	sigkillCkpt        = flag.Int("sigkill.checkpoint-every", 40, "TestSIGKILL: crashload --checkpoint-every (0: none)")
	sigkillKeep        = flag.String("sigkill.keep", "", "TestSIGKILL: on a failure, copy the data directory to `DIR`/data and write DIR/failure.txt")
	sigkillDDL         = flag.Bool("sigkill.ddl", true, "TestSIGKILL: transactions also create, write and drop keyspaces")
	sigkillPreparedDDL = flag.Bool("sigkill.prepared-ddl", true, "TestSIGKILL: prepared transactions also create and drop keyspaces")
)

// crashCfg is the load TestSIGKILL runs: two workers (group commit), three
// fresh keys at most per transaction deleted three transactions later, two
// hot keys per worker, two shared keyspaces, keyspace DDL and two-phase
// commits, a millisecond between Prepare and CommitPrepared so that kills
// find prepared transactions. The worker forces a checkpoint every -sigkill.checkpoint-every
// commits, so kills land before, during and after online checkpoints.
// (This found recovery misreading a checkpoint's sections when they
// aliased the WAL reader's buffer; fixed in xlog.)
// With keyspace DDL on it found a drop during a checkpoint's fsync stopping
// the engine (fixed in pagecache) and a keyspace created by a prepared
// transaction losing its files at the next Open (fixed in kv).
var crashCfg = crashConfig{keys: 3, hot: 2, lag: 3, workers: 2, shared: []string{"c0", "c1"}, twoPhase: true, prepared: time.Millisecond}

// args are crashload's flags for cfg.
func (cfg *crashConfig) args() []string {
	a := []string{"--keys", strconv.Itoa(cfg.keys), "--hot", strconv.Itoa(cfg.hot), "--delete-lag", strconv.Itoa(cfg.lag),
		"--workers", strconv.Itoa(cfg.workers), "--shared", strings.Join(cfg.shared, ",")}
	if cfg.ddl {
		a = append(a, "--ddl")
	}
	if cfg.twoPhase {
		a = append(a, "--2pc", "--prepare-pause", cfg.prepared.String())
	}
	if cfg.preparedDDL {
		a = append(a, "--prepared-ddl")
	}
	return a
}

// crashSettings draws the settings of one process on the directory: pool
// sizes from constant eviction to roomy, FPI compression, and sometimes
// size- and time-triggered checkpoints, a busy background writer and
// group-commit delays.
func crashSettings(rng *rand.Rand) []string {
	a := []string{"--shared-buffers", []string{"128kB", "512kB", "512kB", "4MB"}[rng.IntN(4)]}
	c := func(s string) { a = append(a, "-c", s) }
	if r := rng.IntN(4); r >= 2 {
		c("wal_compression=" + []string{"s2", "zstd"}[r-2])
	}
	if rng.IntN(4) == 0 {
		c("max_wal_size=2MB")
	}
	if rng.IntN(4) == 0 {
		c("checkpoint_timeout=1s")
	}
	if rng.IntN(4) == 0 {
		c("bgwriter_delay=10ms")
	}
	if rng.IntN(8) == 0 {
		c("commit_delay=500us")
		c("commit_siblings=1")
	}
	return a
}

// TestSIGKILL kills crashload (crashload.go) with SIGKILL again and again on
// one data directory. After a kill, crashload --dump opens the directory
// (crash recovery, timed), prints its contents and commits a probe key, and
// kvctl check must pass; the contents must be exactly what the committed
// prefix of every worker's planned transactions leaves: every acknowledged
// transaction whole, with its values, the one in flight all or nothing, no
// rolled-back write, prepared transactions invisible until a later run
// commits them, and every earlier probe. Once seen, a run's state must stay.
//
// The kill time varies: most kills land while transactions commit, some
// early, during process start or Open, and one cycle in four leaves the
// directory crashed for the next crashload, so its Open is crash recovery,
// which half of those kills interrupt. Some runs stop after a few
// transactions and close the directory, so kills land in Close too.
func TestSIGKILL(t *testing.T) {
	seed := testutil.Seed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	cycles, budget := *sigkillCycles, *sigkillBudget
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["sigkill.cycles"] && !set["sigkill.budget"] {
		budget = 0
	}
	if testing.Short() {
		cycles = min(cycles, 5)
	}
	cfg := crashCfg
	cfg.ddl = *sigkillDDL
	cfg.preparedDDL = *sigkillPreparedDDL
	dir := t.TempDir()
	for _, ks := range cfg.shared {
		ok(t, dir, "keyspace", "create", ks)
	}
	chk := newCrashChecker(&cfg)

	var (
		log        []string // the last cycles' outputs, for a failure report
		phases     = map[string]int{}
		totalAcks  int
		resolved   int
		recoveries []time.Duration // Open after a kill
		maxCheck   time.Duration
		reach      []time.Duration // from exec to the end of Open after a kill
		crashed    bool            // the last process on dir was killed; none opened it since
		unverified int             // kills since the last verification
		failures   int
	)
	var kept string // where the data directory was kept, once it was
	keep := func(msg string) {
		if *sigkillKeep == "" || kept != "" {
			return
		}
		if err := keepFailure(*sigkillKeep, dir, msg, log); err != nil {
			t.Errorf("keep the failure: %v", err)
			return
		}
		kept = *sigkillKeep
	}
	fail := func(cycle int, format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf("cycle %d (seed %d): %s", cycle, seed, fmt.Sprintf(format, args...))
		keep(msg)
		if kept != "" {
			msg += "\ndata directory (as the failure left it) and report kept in " + kept
		}
		failures++
		t.Fatal(msg)
	}
	note := func(format string, args ...any) {
		log = append(log, fmt.Sprintf(format, args...))
		if len(log) > 40 {
			log = log[len(log)-40:]
		}
	}
	// earlyWindow is the span an early kill is drawn from: a little more
	// than the recent time from exec to the end of a recovering Open.
	earlyWindow := func() time.Duration {
		w := 100 * time.Millisecond
		if len(reach) > 0 {
			w = slices.Max(reach[max(0, len(reach)-10):]) * 3 / 2
		}
		return min(max(w, 20*time.Millisecond), time.Second)
	}

	verify := func(cycle int) {
		t.Helper()
		settings := crashSettings(rng)
		began := time.Now()
		cmd := kvctlCmd(dir, append(append(settings, "crashload", "--dump", "--probe", strconv.Itoa(cycle)), cfg.args()...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		note("cycle %d: dump %v: err %v, stderr %q, %d bytes of output", cycle, settings, err, stderr.String(), stdout.Len())
		if err != nil {
			fail(cycle, "crashload --dump %v: %v; stderr:\n%s", settings, err, stderr.String())
		}
		out, perr := parseCrashOutput(stdout.String(), -1)
		if perr != nil {
			fail(cycle, "crashload --dump: %v", perr)
		}
		if !out.closed || out.probe != cycle {
			fail(cycle, "crashload --dump ended without its probe or close")
		}
		recoveries = append(recoveries, out.openDur)
		reach = append(reach, out.openAt.Sub(began))
		if problems := chk.verify(out.dump); len(problems) > 0 {
			if len(problems) > 30 {
				problems = append(problems[:30], fmt.Sprintf("... and %d more", len(problems)-30))
			}
			fail(cycle, "after %d kills since the last check:\n%s", unverified+1, strings.Join(problems, "\n"))
		}
		chk.probes = append(chk.probes, cycle)
		began = time.Now()
		r := kvctl(t, dir, "", "check")
		maxCheck = max(maxCheck, time.Since(began))
		if r.code != 0 || r.stdout != "ok\n" {
			fail(cycle, "kvctl check: %v", r)
		}
		crashed, unverified = false, 0
	}

	began := time.Now()
	ran := 0
	for cycle := range cycles {
		if budget > 0 && time.Since(began) > budget {
			t.Logf("stopping after %d of %d cycles: -sigkill.budget %v spent", cycle, cycles, budget)
			break
		}
		ran++
		settings := crashSettings(rng)
		limit := 0
		if rng.IntN(10) == 0 {
			limit = 1 + rng.IntN(60)
		}
		early := rng.IntN(100) < 15
		if crashed {
			early = rng.IntN(2) == 0
		}
		delay := 50*time.Millisecond + time.Duration(rng.Int64N(int64(250*time.Millisecond)))
		if early {
			delay = time.Duration(rng.Int64N(int64(earlyWindow())))
		}
		args := append(settings, "crashload", "--phases", "--seed", strconv.Itoa(cycle), "--checkpoint-every", strconv.Itoa(*sigkillCkpt), "--stop-after", strconv.Itoa(limit))
		cmd := kvctlCmd(dir, append(args, cfg.args()...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		chk.start(cycle, limit)
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(t0.Add(delay)))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		note("cycle %d: crashload %v killed after %v (recovering: %v): stdout %d bytes, stderr %q, tail %q",
			cycle, args, delay, crashed, stdout.Len(), stderr.String(), tail(stdout.String(), 300))
		out, err := parseCrashOutput(stdout.String(), cycle)
		for w, n := range out.acks {
			chk.runs[writer{cycle, w}].acked = n
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			// Keep the directory as the failure left it, then see whether
			// recovery still brings back everything acked.
			msg := fmt.Sprintf("crashload ended before the kill: %v; stderr:\n%s", cmd.ProcessState, stderr.String())
			keep(fmt.Sprintf("cycle %d (seed %d): %s", cycle, seed, msg))
			verify(cycle)
			fail(cycle, "%s\n(recovery after it lost nothing: the contents and kvctl check passed)", msg)
		}
		if err != nil {
			fail(cycle, "crashload output: %v", err)
		}
		totalAcks += out.nacks
		resolved += len(out.resolved)
		var phase string
		switch {
		case !out.started:
			phase = "before Open"
		case !out.opened && crashed:
			phase = "in Open, recovering"
		case !out.opened:
			phase = "in Open"
		case !out.stopped:
			phase = "running"
		case !out.closed:
			phase = "in Close"
		default:
			phase = "after Close"
		}
		phases[phase]++
		line := fmt.Sprintf("cycle %d: killed at %v %s, %d acks, %d resolved", cycle, delay.Round(time.Millisecond), phase, out.nacks, len(out.resolved))
		if out.opened && crashed {
			recoveries = append(recoveries, out.openDur)
			reach = append(reach, out.openAt.Sub(t0))
			line += fmt.Sprintf(", recovery %v", out.openDur.Round(time.Millisecond))
		}
		crashed = true
		unverified++
		if cycle+1 < cycles && unverified < 4 && rng.IntN(4) == 0 {
			t.Log(line + "; next run recovers")
			continue
		}
		verify(cycle)
		t.Log(line + fmt.Sprintf("; verified, recovery %v", recoveries[len(recoveries)-1].Round(time.Millisecond)))
	}
	if unverified > 0 {
		verify(ran - 1)
	}
	wall := time.Since(began)
	slices.Sort(recoveries)
	var p50, worst time.Duration
	if len(recoveries) > 0 {
		p50, worst = recoveries[len(recoveries)/2], recoveries[len(recoveries)-1]
	}
	t.Logf("%d cycles passed in %v, %d failures: %d acked transactions, %d prepared transactions committed by a later run; kills %v; %d recoveries, median %v, max %v; longest check %v",
		ran-failures, wall.Round(time.Second), failures, totalAcks, resolved, phases, len(recoveries), p50.Round(time.Millisecond), worst.Round(time.Millisecond), maxCheck.Round(time.Millisecond))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// keepFailure copies the data directory to keep/data and writes what
// happened to keep/failure.txt.
func keepFailure(keep, dir, msg string, log []string) error {
	if err := os.MkdirAll(keep, 0o755); err != nil {
		return err
	}
	if err := os.CopyFS(filepath.Join(keep, "data"), os.DirFS(dir)); err != nil {
		return err
	}
	report := msg + "\n\nthe last processes:\n" + strings.Join(log, "\n") + "\n"
	return os.WriteFile(filepath.Join(keep, "failure.txt"), []byte(report), 0o644)
}

// crashOutput is what one crashload process printed.
type crashOutput struct {
	started, opened, stopped, closed bool
	openAt                           time.Time
	openDur                          time.Duration
	acks                             map[int]int // worker -> last acked n
	nacks                            int
	resolved                         []string
	probe                            int // --dump: the probe committed; -1: none
	dump                             *crashDump
}

// crashDump is the directory's contents as crashload --dump printed them.
type crashDump struct {
	prepared  []string
	keyspaces []string
	pairs     map[string]map[string]string // keyspace -> key -> value
}

// parseCrashOutput reads crashload's output; seed is the run's seed, -1
// for --dump. Each ack is one write of less than PIPE_BUF bytes, so a kill
// cannot cut a line short: a line without its newline is an error.
func parseCrashOutput(out string, seed int) (*crashOutput, error) {
	o := &crashOutput{acks: map[int]int{}, probe: -1}
	if seed < 0 {
		o.dump = &crashDump{pairs: map[string]map[string]string{}}
	}
	for line := range strings.Lines(out) {
		body, complete := strings.CutSuffix(line, "\n")
		verb, rest, _ := strings.Cut(body, " ")
		bad := func() error { return fmt.Errorf("bad output line %q", line) }
		if !complete {
			return o, bad()
		}
		switch {
		case verb == "start" && !o.started:
			o.started = true
		case verb == "open" && o.started && !o.opened:
			at, dur, _ := strings.Cut(rest, " ")
			a, err1 := strconv.ParseInt(at, 10, 64)
			d, err2 := strconv.ParseInt(dur, 10, 64)
			if err1 != nil || err2 != nil {
				return o, bad()
			}
			o.opened, o.openAt, o.openDur = true, time.Unix(0, a), time.Duration(d)
		case verb == "resolved" && o.opened && seed >= 0:
			o.resolved = append(o.resolved, rest)
		case verb == "ack" && o.opened && seed >= 0:
			r, n, ok := parseTxID(rest)
			if !ok || r.seed != seed {
				return o, bad()
			}
			want := 0
			if last, seen := o.acks[r.worker]; seen {
				want = last + 1
			}
			if n != want {
				return o, fmt.Errorf("ack %s out of order: want %d next", rest, want)
			}
			o.acks[r.worker] = n
			o.nacks++
		case verb == "stopped" && o.opened && seed >= 0:
			o.stopped = true
		case verb == "closed" && o.opened && !o.closed:
			o.closed = true
		case verb == "prepared" && o.opened && seed < 0:
			o.dump.prepared = append(o.dump.prepared, rest)
		case verb == "keyspace" && o.opened && seed < 0:
			name, err := strconv.Unquote(rest)
			if err != nil {
				return o, bad()
			}
			o.dump.keyspaces = append(o.dump.keyspaces, name)
		case verb == "pair" && o.opened && seed < 0:
			var f [3]string
			for i := range f {
				q, err := strconv.QuotedPrefix(rest)
				if err != nil {
					return o, bad()
				}
				f[i], _ = strconv.Unquote(q)
				rest = strings.TrimPrefix(rest[len(q):], " ")
			}
			if rest != "" {
				return o, bad()
			}
			if o.dump.pairs[f[0]] == nil {
				o.dump.pairs[f[0]] = map[string]string{}
			}
			o.dump.pairs[f[0]][f[1]] = f[2]
		case verb == "probe" && o.opened && seed < 0:
			n, err := strconv.Atoi(rest)
			if err != nil {
				return o, bad()
			}
			o.probe = n
		default:
			return o, bad()
		}
	}
	return o, nil
}

// crashState is one writer's part of a directory: keyspace -> key -> value
// for the keys it owns (in the default and the shared keyspaces, and its
// own keyspaces, which are there even when empty).
type crashState map[string]map[string]string

func (s crashState) ks(name string) map[string]string {
	if s[name] == nil {
		s[name] = map[string]string{}
	}
	return s[name]
}

// crashPlans returns the first k planned transactions of writer r.
func crashPlans(cfg *crashConfig, r writer, k int) []*crashTx {
	p := newCrashPlanner(cfg, int64(r.seed), r.worker)
	plans := make([]*crashTx, k)
	for i := range plans {
		plans[i] = p.next()
	}
	return plans
}

// crashModel returns writer r's state after the transactions of plans up
// to m that commit.
func crashModel(cfg *crashConfig, plans []*crashTx, m int) crashState {
	s := crashState{"": {}}
	for _, ks := range cfg.shared {
		s[ks] = map[string]string{}
	}
	for _, t := range plans[:m+1] {
		if t.rollback {
			continue
		}
		for _, name := range t.create {
			s[name] = map[string]string{}
		}
		for _, op := range t.ops {
			if op.del {
				delete(s[op.ks], op.key)
			} else {
				s[op.ks][op.key] = op.value
			}
		}
		for _, name := range t.drop {
			delete(s, name)
		}
	}
	return s
}

// crashRun is what the checker knows of one worker of one run.
type crashRun struct {
	acked   int // the last acked transaction; -1: none
	limit   int // --stop-after; 0: none
	checked bool
	// After a check:
	m       int        // the last committed transaction
	pending string     // the gid of transaction m+1, prepared and not decided
	state   crashState // crashModel after m
}

// crashChecker follows the runs on one directory and checks its contents.
type crashChecker struct {
	cfg    *crashConfig
	runs   map[writer]*crashRun
	seeds  int   // runs 0..seeds-1 were started
	probes []int // committed probes
}

func newCrashChecker(cfg *crashConfig) *crashChecker {
	return &crashChecker{cfg: cfg, runs: map[writer]*crashRun{}}
}

// start records that run seed (the next one) was started.
func (c *crashChecker) start(seed, limit int) {
	for w := range c.cfg.workers {
		c.runs[writer{seed, w}] = &crashRun{acked: -1, limit: limit}
	}
	c.seeds = seed + 1
}

// crashOwner says which writer owns key in keyspace ks, or that it is a
// probe; ok is false for a key no writer could have written.
func (c *crashChecker) crashOwner(ks, key string) (r writer, probe, ok bool) {
	if strings.HasPrefix(key, "p/") && (ks == "" || ks == c.cfg.shared[0]) {
		return writer{}, true, true
	}
	if ks != "" && !slices.Contains(c.cfg.shared, ks) {
		r, _, ok = crashKeyspaceOwner(ks)
		return r, false, ok
	}
	var id string
	if ks == "" {
		kind, rest, _ := strings.Cut(key, "/")
		switch kind {
		case "m":
			r, _, ok = parseTxID(rest)
			return r, false, ok
		case "f":
			id, _, _ = strings.Cut(rest, "/")
		case "h":
			owner, _, _ := strings.Cut(rest, "/")
			id = owner + "-0"
		default:
			return writer{}, false, false
		}
	} else {
		owner, _, _ := strings.Cut(key, "/")
		id = owner + "-0"
	}
	r, _, ok = parseTxID(id)
	return r, false, ok
}

// verify checks dump against everything acked and seen so far, and returns
// the problems. It records each run's state as seen, which later checks
// hold it to.
func (c *crashChecker) verify(d *crashDump) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	cfg := c.cfg

	// Split the contents by writer.
	actual := map[writer]crashState{}
	probes := map[string]map[string]string{}
	stray := func(r writer) bool {
		return r.seed >= c.seeds || r.worker >= cfg.workers
	}
	for _, name := range cfg.shared {
		if !slices.Contains(d.keyspaces, name) {
			bad("shared keyspace %s missing", name)
		}
	}
	for _, name := range d.keyspaces {
		if slices.Contains(cfg.shared, name) {
			continue
		}
		r, _, ok := crashKeyspaceOwner(name)
		if !ok || stray(r) {
			bad("stray keyspace %q", name)
			continue
		}
		if actual[r] == nil {
			actual[r] = crashState{}
		}
		actual[r].ks(name)
	}
	for _, ks := range slices.Sorted(maps.Keys(d.pairs)) {
		if ks != "" && !slices.Contains(d.keyspaces, ks) {
			bad("pairs in keyspace %q, which is not listed", ks)
		}
		for key, v := range d.pairs[ks] {
			r, probe, ok := c.crashOwner(ks, key)
			switch {
			case probe:
				if probes[ks] == nil {
					probes[ks] = map[string]string{}
				}
				probes[ks][key] = v
			case !ok || stray(r):
				bad("keyspace %q: stray key %q = %s", ks, key, short(v))
			default:
				if actual[r] == nil {
					actual[r] = crashState{}
				}
				actual[r].ks(ks)[key] = v
			}
		}
	}

	// Each writer's last transaction present: its highest marker.
	last := map[writer]int{}
	swept := map[int]int{} // worker -> the last run whose transaction 0 is present
	for r := range c.runs {
		last[r] = -1
		for key := range actual[r][""] {
			if rest, ok := strings.CutPrefix(key, "m/"); ok {
				if _, n, ok := parseTxID(rest); ok {
					last[r] = max(last[r], n)
				}
			}
		}
		if last[r] >= 0 {
			swept[r.worker] = max(swept[r.worker], r.seed)
		}
	}

	claimed := map[string]bool{}
	for _, r := range slices.SortedFunc(maps.Keys(c.runs), func(a, b writer) int {
		return 2*(a.seed-b.seed) + a.worker - b.worker
	}) {
		run, m := c.runs[r], last[r]
		name := fmt.Sprintf("run %d-%d", r.seed, r.worker)
		var want crashState
		var plans []*crashTx
		if !run.checked || run.pending != "" {
			plans = crashPlans(cfg, r, run.acked+2)
		}
		// The transactions that may be the last one present: the last
		// committing one acked, and the one in flight (after the last ack,
		// if the run went on to it and it commits).
		acked := run.m
		if plans != nil {
			acked = -1
			for n := run.acked; n >= 0; n-- {
				if !plans[n].rollback {
					acked = n
					break
				}
			}
		}
		flight, gid, prepared := -1, "", false
		if n := run.acked + 1; plans != nil && (run.limit == 0 || n < run.limit) && !plans[n].rollback {
			flight = n
			if plans[n].prepare {
				gid = crashGID(plans[n].id)
				prepared = slices.Contains(d.prepared, gid)
				claimed[gid] = prepared
			}
		}
		allowed := []int{acked}
		switch {
		case run.checked && run.pending == "":
			// Held to what the last check saw.
		case prepared:
			// Prepared and not decided: invisible.
		case run.pending != "":
			// It was prepared; now decided, and runs only commit.
			allowed = []int{flight}
		case flight >= 0:
			allowed = append(allowed, flight)
		}
		if !slices.Contains(allowed, m) {
			switch {
			case run.checked && run.pending != "":
				bad("%s: transaction %d was prepared (%s) at the last check and is no longer, but the last present is %d", name, flight, run.pending, m)
			case run.checked:
				bad("%s: transaction %d was the last present at the last check, now %d is", name, run.m, m)
			case prepared && m == flight:
				bad("%s: transaction %d is prepared (%s), yet its marker is visible", name, m, gid)
			case m < acked:
				bad("%s: transaction %d acked, but the last present is %d", name, acked, m)
			default:
				bad("%s: transaction %d present, but the last acked is %d", name, m, run.acked)
			}
		}
		// Compare with the state after m, if m is a transaction the run
		// could have reached, or else after the last one allowed.
		mm := m
		if !slices.Contains(allowed, m) && (m > run.acked+1 || plans == nil) {
			mm = slices.Max(allowed)
		}
		if run.checked && run.pending == "" && mm == run.m && run.state != nil {
			want = run.state
		} else {
			if plans == nil {
				plans = crashPlans(cfg, r, mm+1)
			}
			want = crashModel(cfg, plans, mm)
		}
		got := actual[r]
		if got == nil {
			got = crashState{}
		}
		if cfg.ddl && swept[r.worker] > r.seed+1 {
			// The transaction 0 of a run after the next dropped this
			// run's keyspaces.
			want = maps.Clone(want)
			maps.DeleteFunc(want, func(ks string, _ map[string]string) bool { return strings.HasPrefix(ks, "x") })
		}
		problems = append(problems, compareCrashState(name, got, want)...)
		run.checked, run.m, run.pending, run.state = true, m, "", want
		if prepared {
			run.pending = gid
		}
		if mm != m {
			run.state = nil // not the model after m (a failed check)
		}
	}
	for _, gid := range d.prepared {
		if !claimed[gid] {
			bad("prepared transaction %s: no run can have left it undecided", gid)
		}
	}

	// Every probe committed, in both keyspaces.
	for _, ks := range []string{"", cfg.shared[0]} {
		want := map[string]string{}
		for _, p := range c.probes {
			want[fmt.Sprintf("p/%d", p)] = fmt.Sprintf("probe %d", p)
		}
		problems = append(problems, compareCrashState("probes", crashState{ks: probes[ks]}, crashState{ks: want})...)
	}
	return problems
}

// compareCrashState lists how got differs from want.
func compareCrashState(name string, got, want crashState) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, name+": "+fmt.Sprintf(format, args...)) }
	for _, ks := range slices.Sorted(maps.Keys(want)) {
		if got[ks] == nil && ks != "" && strings.HasPrefix(ks, "x") {
			bad("keyspace %q missing", ks)
			continue
		}
		for _, key := range slices.Sorted(maps.Keys(want[ks])) {
			v, ok := got[ks][key]
			switch {
			case !ok:
				bad("keyspace %q: key %q missing, want %s", ks, key, short(want[ks][key]))
			case v != want[ks][key]:
				bad("keyspace %q: key %q = %s, want %s", ks, key, short(v), short(want[ks][key]))
			}
		}
	}
	for _, ks := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[ks]; !ok {
			bad("keyspace %q present, but no committed transaction left it (%d keys)", ks, len(got[ks]))
			continue
		}
		for _, key := range slices.Sorted(maps.Keys(got[ks])) {
			if _, ok := want[ks][key]; !ok {
				bad("keyspace %q: key %q = %s present, but no committed transaction left it", ks, key, short(got[ks][key]))
			}
		}
	}
	return problems
}

// short quotes a value, cut to its first 40 bytes.
func short(v string) string {
	if len(v) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", v[:40], len(v))
	}
	return strconv.Quote(v)
}

// TestVerifyCrash feeds the checker states a broken engine could leave, to
// show that it catches them, and states a sound one may leave, to show that
// it accepts them.
func TestVerifyCrash(t *testing.T) {
	cfg := crashConfig{keys: 3, hot: 2, lag: 3, workers: 1, shared: []string{"c0", "c1"}, ddl: true, twoPhase: true}
	r := writer{0, 0}
	plans := crashPlans(&cfg, r, 400)
	// find returns the first n > from whose transaction pred accepts.
	find := func(from int, pred func(t *crashTx) bool) int {
		t.Helper()
		for n := from + 1; n < len(plans); n++ {
			if pred(plans[n]) {
				return n
			}
		}
		t.Fatal("no such transaction planned")
		return 0
	}
	commits := func(t *crashTx) bool { return !t.rollback && !t.prepare }
	fresh := func(t *crashTx) bool {
		return commits(t) && slices.ContainsFunc(t.ops, func(op crashOp) bool { return strings.HasPrefix(op.key, "f/") && !op.del })
	}
	// dumpOf lays out states as crashload --dump prints them.
	dumpOf := func(states map[writer]crashState, probes []int, prepared ...string) *crashDump {
		d := &crashDump{prepared: prepared, keyspaces: slices.Clone(cfg.shared), pairs: map[string]map[string]string{}}
		for _, s := range states {
			for ks, kv := range s {
				if strings.HasPrefix(ks, "x") {
					d.keyspaces = append(d.keyspaces, ks)
				}
				if d.pairs[ks] == nil {
					d.pairs[ks] = map[string]string{}
				}
				maps.Copy(d.pairs[ks], kv)
			}
		}
		for _, p := range probes {
			for _, ks := range []string{"", cfg.shared[0]} {
				if d.pairs[ks] == nil {
					d.pairs[ks] = map[string]string{}
				}
				d.pairs[ks][fmt.Sprintf("p/%d", p)] = fmt.Sprintf("probe %d", p)
			}
		}
		return d
	}
	model := func(m int) crashState { return crashModel(&cfg, plans, m) }
	checker := func(acked int) *crashChecker {
		c := newCrashChecker(&cfg)
		c.start(0, 0)
		c.runs[r].acked = acked
		return c
	}
	expect := func(name string, problems []string, want string) {
		t.Helper()
		got := strings.Join(problems, "\n")
		switch {
		case want == "" && got != "":
			t.Errorf("%s: a sound state, yet problems:\n%s", name, got)
		case want != "" && !strings.Contains(got, want):
			t.Errorf("%s: problems %q, want one containing %q", name, problems, want)
		}
	}
	one := func(s crashState) map[writer]crashState { return map[writer]crashState{r: s} }

	// A transaction with fresh keys in flight after the ack of the one
	// before it (itself a commit).
	flight := find(find(5, commits), func(t *crashTx) bool { return fresh(t) && commits(plans[t.n-1]) })
	acked := flight - 1
	for _, m := range []int{acked, flight} {
		expect(fmt.Sprintf("%d of %d..%d present", m, acked, flight), checker(acked).verify(dumpOf(one(model(m)), nil)), "")
	}
	expect("acked lost", checker(acked).verify(dumpOf(one(model(acked-1)), nil)), fmt.Sprintf("transaction %d acked, but the last present is %d", acked, acked-1))
	expect("two unacked", checker(acked-1).verify(dumpOf(one(model(flight)), nil)), fmt.Sprintf("transaction %d present, but the last acked is %d", flight, acked-1))

	part := model(flight)
	var gone string
	for _, op := range plans[flight].ops {
		if strings.HasPrefix(op.key, "f/") && !op.del {
			gone = op.key
			delete(part[""], gone)
			break
		}
	}
	expect("part of the flight", checker(acked).verify(dumpOf(one(part), nil)), fmt.Sprintf("key %q missing", gone))
	part = model(acked)
	part[""][gone] = "x"
	expect("a write of the flight without its marker", checker(acked).verify(dumpOf(one(part), nil)), fmt.Sprintf("key %q = \"x\" present, but no committed", gone))

	hole := model(acked)
	delete(hole[""], "m/"+crashTxID(0, 0, 2))
	expect("a hole", checker(acked).verify(dumpOf(one(hole), nil)), `key "m/0-0-2" missing`)

	// A key deleted by a committed transaction, back again.
	s := model(acked)
	old := fmt.Sprintf("f/%s/0", crashTxID(0, 0, find(0, fresh)))
	if _, ok := s[""][old]; ok {
		t.Fatalf("%s not deleted by transaction %d", old, acked)
	}
	s[""][old] = "0"
	expect("delete lost", checker(acked).verify(dumpOf(one(s), nil)), fmt.Sprintf("key %q = \"0\" present", old))

	s = model(acked)
	hot := fmt.Sprintf("h/0-0/%d", 0)
	s[""][hot] = "0-0-0:hot"
	expect("old hot value", checker(acked).verify(dumpOf(one(s), nil)), fmt.Sprintf("key %q", hot))

	rb := find(0, func(t *crashTx) bool { return t.rollback })
	s = model(max(acked, rb))
	s[""]["m/"+crashTxID(0, 0, rb)] = "rollback"
	expect("rolled back yet visible", checker(max(acked, rb)).verify(dumpOf(one(s), nil)), fmt.Sprintf(`key "m/%s"`, crashTxID(0, 0, rb)))

	s = model(acked)
	s["c1"]["zzz"] = ""
	expect("stranger", checker(acked).verify(dumpOf(one(s), nil)), `stray key "zzz"`)
	d := dumpOf(one(model(acked)), nil)
	d.keyspaces = append(d.keyspaces, "users")
	expect("stray keyspace", checker(acked).verify(d), `stray keyspace "users"`)

	// Seen, then gone.
	c := checker(acked)
	expect("flight committed", c.verify(dumpOf(one(model(flight)), nil)), "")
	expect("flight later gone", c.verify(dumpOf(one(model(acked)), nil)), fmt.Sprintf("transaction %d was the last present at the last check, now %d is", flight, acked))
	c.probes = []int{7}
	expect("probe lost", c.verify(dumpOf(one(model(flight)), nil)), `probes: keyspace "": key "p/7" missing`)
	expect("probe kept", c.verify(dumpOf(one(model(flight)), []int{7})), "")

	// A prepared transaction in flight.
	pf := find(5, func(t *crashTx) bool { return t.prepare && commits(plans[t.n-1]) })
	gid := crashGID(plans[pf].id)
	expect("prepared, invisible", checker(pf-1).verify(dumpOf(one(model(pf-1)), nil, gid)), "")
	expect("prepared, visible", checker(pf-1).verify(dumpOf(one(model(pf)), nil, gid)), fmt.Sprintf("transaction %d is prepared (%s), yet its marker is visible", pf, gid))
	expect("prepared lost before commit", checker(pf-1).verify(dumpOf(one(model(pf-1)), nil)), "")
	c = checker(pf - 1)
	expect("prepared", c.verify(dumpOf(one(model(pf-1)), nil, gid)), "")
	expect("still prepared", c.verify(dumpOf(one(model(pf-1)), nil, gid)), "")
	fork := &crashChecker{cfg: c.cfg, runs: map[writer]*crashRun{}, seeds: c.seeds}
	for w, run := range c.runs {
		fork.runs[w] = new(*run)
	}
	expect("decided but invisible", fork.verify(dumpOf(one(model(pf-1)), nil)), fmt.Sprintf("transaction %d was prepared (%s) at the last check and is no longer", pf, gid))
	expect("committed by a later run", c.verify(dumpOf(one(model(pf)), nil)), "")
	expect("stray prepared", checker(acked).verify(dumpOf(one(model(acked)), nil, "crash-0-0-999")), "crash-0-0-999: no run can have left it")

	// Keyspaces.
	cr := find(0, func(t *crashTx) bool { return commits(t) && len(t.create) > 0 })
	ks := plans[cr].create[0]
	s = model(cr)
	delete(s, ks)
	expect("created keyspace lost", checker(cr).verify(dumpOf(one(s), nil)), fmt.Sprintf("keyspace %q missing", ks))
	dr := find(0, func(t *crashTx) bool { return commits(t) && len(t.drop) > 0 })
	ks = plans[dr].drop[0]
	s = model(dr)
	s[ks] = map[string]string{}
	expect("dropped keyspace back", checker(dr).verify(dumpOf(one(s), nil)), fmt.Sprintf("keyspace %q present, but no committed", ks))

	// The transaction 0 of the run after the next drops the keyspaces a
	// run left.
	lv := find(0, func(t *crashTx) bool { return commits(t) && len(crashModel(&cfg, plans, t.n)) > 3 })
	c = newCrashChecker(&cfg)
	c.start(0, 0)
	c.runs[r].acked = lv
	expect("left a keyspace", c.verify(dumpOf(one(model(lv)), nil)), "")
	swept := model(lv)
	maps.DeleteFunc(swept, func(ks string, _ map[string]string) bool { return strings.HasPrefix(ks, "x") })
	states := map[writer]crashState{r: swept}
	for seed := 1; seed <= 2; seed++ {
		c.start(seed, 0)
		rn := writer{seed, 0}
		c.runs[rn].acked = 0
		states[rn] = crashModel(&cfg, crashPlans(&cfg, rn, 1), 0)
		fork := &crashChecker{cfg: c.cfg, runs: map[writer]*crashRun{}, seeds: c.seeds}
		for w, run := range c.runs {
			fork.runs[w] = new(*run)
		}
		if seed == 1 {
			expect("swept a run early", fork.verify(dumpOf(states, nil)), "keyspace \"x0-0-")
			states[r] = model(lv)
		} else {
			expect("not swept", fork.verify(dumpOf(states, nil)), "keyspace \"x0-0-")
			states[r] = swept
		}
		expect(fmt.Sprintf("run %d", seed), c.verify(dumpOf(states, nil)), "")
	}
}
