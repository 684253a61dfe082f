package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	killCycles = flag.Int("kill.cycles", 20, "TestSIGKILL: how many times to kill crashload")
	killSeed   = flag.Uint64("kill.seed", 0, "TestSIGKILL: seed of the kill delays (0: from the clock)")
	killBudget = flag.Duration("kill.budget", 40*time.Second, "TestSIGKILL: stop starting cycles after this long (a slow disk); 0: no limit")
)

// The crash load the SIGKILL test runs; doc.go describes what crashload
// writes and what must hold after a kill.
const (
	crashKeys    = 3 // fresh keys per transaction
	crashHot     = 2 // keys every transaction of a worker overwrites
	crashLag     = 3 // each transaction deletes the fresh keys of the one 3 before
	crashWorkers = 2 // concurrent writers (group commit)
)

// crashCkpt makes each worker force a checkpoint every 40 commits, so kills
// land before, during and after online checkpoints. (This found recovery
// misreading a checkpoint's sections when they aliased the WAL reader's
// buffer; fixed in xlog.)
var crashCkpt = flag.Int("kill.checkpoint-every", 40, "TestSIGKILL: crashload --checkpoint-every (0: none)")

// writer is one worker of one crashload process.
type writer struct{ seed, worker int }

// TestSIGKILL kills crashload with SIGKILL at a random moment, again and
// again on one data directory, and after each kill checks the directory
// (kvctl check) and its contents: every acknowledged transaction is there
// whole, no transaction is there in part, and each worker's transactions
// are there as a prefix of its sequence.
func TestSIGKILL(t *testing.T) {
	seed := *killSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("kill delay seed %d (rerun with -kill.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	cycles := *killCycles
	if testing.Short() {
		cycles = min(cycles, 5)
	}
	dir := t.TempDir()
	lastAck := map[writer]int{} // per run, the last acked transaction number
	var totalAcks, idle int
	began := time.Now()
	for cycle := range cycles {
		if *killBudget > 0 && time.Since(began) > *killBudget {
			t.Logf("stopping after %d of %d cycles: -kill.budget %v spent", cycle, cycles, *killBudget)
			cycles = cycle
			break
		}
		delay := 50*time.Millisecond + time.Duration(rng.Int64N(int64(250*time.Millisecond)))
		cmd := kvctlCmd(dir, "--shared-buffers", "512kB", "crashload", "--seed", strconv.Itoa(cycle),
			"--keys", strconv.Itoa(crashKeys), "--hot", strconv.Itoa(crashHot), "--delete-lag", strconv.Itoa(crashLag),
			"--workers", strconv.Itoa(crashWorkers), "--checkpoint-every", strconv.Itoa(*crashCkpt))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("cycle %d: crashload ended before the kill: %v; stderr:\n%s", cycle, cmd.ProcessState, stderr.String())
		}
		n, err := readAcks(stdout.String(), cycle, lastAck)
		if err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		totalAcks += n
		if n == 0 {
			idle++
		}

		if r := kvctl(t, dir, "", "check"); r.code != 0 || r.stdout != "ok\n" {
			t.Fatalf("cycle %d (killed after %v, %d acks): check: %v", cycle, delay, n, r)
		}
		out := ok(t, dir, "scan", "--format", "json")
		if problems := verifyCrash(scanPairs(t, out), cycle+1, lastAck); len(problems) > 0 {
			if len(problems) > 20 {
				problems = append(problems[:20], fmt.Sprintf("... and %d more", len(problems)-20))
			}
			t.Fatalf("cycle %d (killed after %v, %d acks, kill seed %d):\n%s", cycle, delay, n, seed, strings.Join(problems, "\n"))
		}
	}
	t.Logf("%d cycles, %d acked transactions, %d cycles killed before the first ack", cycles, totalAcks, idle)
}

// readAcks reads crashload's output: "ack SEED-W-N" lines, each worker's N
// counting up from 0. It records the last N of each worker in lastAck and
// returns the number of acks. Each ack is one write of less than PIPE_BUF
// bytes, so a kill cannot cut one short.
func readAcks(out string, seed int, lastAck map[writer]int) (int, error) {
	n := 0
	for line := range strings.Lines(out) {
		id, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ack ")
		r, tx, ok2 := parseTxID(id)
		if !ok || !ok2 || r.seed != seed || !strings.HasSuffix(line, "\n") {
			return n, fmt.Errorf("bad output line %q", line)
		}
		want := 0
		if last, seen := lastAck[r]; seen {
			want = last + 1
		}
		if tx != want {
			return n, fmt.Errorf("ack %s out of order: want %d next", id, want)
		}
		lastAck[r] = tx
		n++
	}
	return n, nil
}

// parseTxID splits "SEED-W-N".
func parseTxID(id string) (writer, int, bool) {
	f := strings.Split(id, "-")
	if len(f) != 3 {
		return writer{}, 0, false
	}
	var v [3]int
	for i, s := range f {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || strconv.Itoa(n) != s {
			return writer{}, 0, false
		}
		v[i] = n
	}
	return writer{v[0], v[1]}, v[2], true
}

// verifyCrash checks the directory's contents after runs with seeds
// 0..seeds-1 were killed, and returns the problems.
func verifyCrash(pairs [][2]string, seeds int, lastAck map[writer]int) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	markers := map[writer]map[int]bool{}
	fresh := map[writer]map[int][]int{} // tx -> key numbers present
	hot := map[writer]map[int]string{}  // hot key number -> value
	for _, p := range pairs {
		k, v := p[0], p[1]
		switch {
		case strings.HasPrefix(k, "tx/"):
			r, n, ok := parseTxID(k[3:])
			if !ok || v != strconv.Itoa(crashKeys) {
				bad("stray marker %q = %q", k, v)
				continue
			}
			if markers[r] == nil {
				markers[r] = map[int]bool{}
			}
			markers[r][n] = true
		case strings.HasPrefix(k, "t"):
			id, num, _ := strings.Cut(k[1:], "/")
			r, n, ok := parseTxID(id)
			i, err := strconv.Atoi(num)
			if !ok || err != nil || i < 0 || i >= crashKeys || v != fmt.Sprintf("%s:%d", id, i) {
				bad("stray key %q = %q", k, v)
				continue
			}
			if fresh[r] == nil {
				fresh[r] = map[int][]int{}
			}
			fresh[r][n] = append(fresh[r][n], i)
		case strings.HasPrefix(k, "h"):
			id, num, _ := strings.Cut(k[1:], "/")
			r, _, ok := parseTxID(id + "-0")
			j, err := strconv.Atoi(num)
			if !ok || err != nil || j < 0 || j >= crashHot {
				bad("stray hot key %q = %q", k, v)
				continue
			}
			if hot[r] == nil {
				hot[r] = map[int]string{}
			}
			hot[r][j] = v
		default:
			bad("stray key %q = %q", k, v)
		}
	}
	for seed := range seeds {
		for w := range crashWorkers {
			r := writer{seed, w}
			acked, seen := lastAck[r]
			if !seen {
				acked = -1
			}
			// The transactions present: 0..m, m the last acked or the next.
			present := markers[r]
			m := -1
			for n := range present {
				m = max(m, n)
			}
			if len(present) != m+1 {
				missing := []int{}
				for n := range m {
					if !present[n] {
						missing = append(missing, n)
					}
				}
				bad("run %d-%d: transactions up to %d present but not %v", seed, w, m, missing)
			}
			if m < acked {
				bad("run %d-%d: transaction %d acked, but the last present is %d", seed, w, acked, m)
			}
			if m > acked+1 {
				bad("run %d-%d: transaction %d present, but the last acked is %d", seed, w, m, acked)
			}
			// Each present transaction's fresh keys are all there, unless
			// the transaction crashLag later (present) deleted them all.
			for n, keys := range fresh[r] {
				id := crashTxID(int64(seed), w, n)
				slices.Sort(keys)
				switch {
				case !present[n]:
					bad("transaction %s not committed, yet its keys %v are present", id, keys)
				case n+crashLag <= m:
					bad("transaction %s's keys %v present, but transaction %d deleted them", id, keys, n+crashLag)
				case len(keys) != crashKeys:
					bad("transaction %s partly present: keys %v of %d", id, keys, crashKeys)
				}
			}
			for n := range present {
				if len(fresh[r][n]) == 0 && n+crashLag > m {
					bad("transaction %s's marker present but none of its keys", crashTxID(int64(seed), w, n))
				}
			}
			// The hot keys hold the last transaction's id.
			if m < 0 {
				if len(hot[r]) > 0 {
					bad("run %d-%d: no transaction present, yet hot keys %v", seed, w, hot[r])
				}
				continue
			}
			for j := range crashHot {
				if got, want := hot[r][j], crashTxID(int64(seed), w, m); got != want {
					bad("run %d-%d: hot key %d = %q, want %q (the last transaction present)", seed, w, j, got, want)
				}
			}
		}
	}
	return problems
}

// TestVerifyCrash feeds verifyCrash states a broken engine could leave, to
// show that it catches them.
func TestVerifyCrash(t *testing.T) {
	// txs returns the pairs of worker 0 of seed 0 after transactions
	// 0..m committed.
	txs := func(m int) map[string]string {
		kv := map[string]string{}
		for n := 0; n <= m; n++ {
			id := crashTxID(0, 0, n)
			kv["tx/"+id] = strconv.Itoa(crashKeys)
			for i := range crashKeys {
				kv[fmt.Sprintf("t%s/%d", id, i)] = fmt.Sprintf("%s:%d", id, i)
			}
			if n >= crashLag {
				for i := range crashKeys {
					delete(kv, fmt.Sprintf("t%s/%d", crashTxID(0, 0, n-crashLag), i))
				}
			}
			for j := range crashHot {
				kv[fmt.Sprintf("h0-0/%d", j)] = id
			}
		}
		return kv
	}
	pairs := func(kv map[string]string) [][2]string {
		var p [][2]string
		for k, v := range kv {
			p = append(p, [2]string{k, v})
		}
		return p
	}
	acked := map[writer]int{{0, 0}: 5}
	for _, m := range []int{5, 6} {
		if p := verifyCrash(pairs(txs(m)), 1, acked); len(p) > 0 {
			t.Errorf("a good state after %d commits: %q", m+1, p)
		}
	}
	for _, c := range []struct {
		name   string
		m      int
		change func(kv map[string]string)
		want   string
	}{
		{"acked tx lost", 4, nil, "transaction 5 acked, but the last present is 4"},
		{"two unacked present", 7, nil, "transaction 7 present, but the last acked is 5"},
		{"a hole", 6, func(kv map[string]string) { delete(kv, "tx/0-0-2") }, "present but not [2]"},
		{"part of a tx", 6, func(kv map[string]string) { delete(kv, "t0-0-5/1") }, "0-0-5 partly present: keys [0 2]"},
		{"keys without marker", 6, func(kv map[string]string) { kv["t0-0-9/0"] = "0-0-9:0" }, "0-0-9 not committed"},
		{"delete lost", 6, func(kv map[string]string) { kv["t0-0-1/0"] = "0-0-1:0" }, "transaction 4 deleted them"},
		{"old hot value", 6, func(kv map[string]string) { kv["h0-0/1"] = "0-0-5" }, `hot key 1 = "0-0-5"`},
		{"wrong value", 6, func(kv map[string]string) { kv["t0-0-6/2"] = "0-0-6:1" }, "stray key"},
		{"stranger", 6, func(kv map[string]string) { kv["zzz"] = "" }, "stray key"},
	} {
		kv := txs(c.m)
		if c.change != nil {
			c.change(kv)
		}
		p := verifyCrash(pairs(kv), 1, acked)
		if !strings.Contains(strings.Join(p, "\n"), c.want) {
			t.Errorf("%s: problems %q, want one containing %q", c.name, p, c.want)
		}
	}
}
