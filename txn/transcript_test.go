package txn

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
)

// TestWaitForTranscript runs testdata/waitfor: the lock manager's xid
// locks, waits, deadlock checks and the wait-for graph, in a synctest
// bubble with a manual clock, so that every waiter is asleep (or has
// returned) before the next command and a deadlock check runs exactly when
// the transcript says.
//
//	new                        a fresh lock manager
//	acquire xids=(...)         Acquire each
//	acquire-sub sub=S top=T    AcquireSub(S, T)
//	release xids=(...)         Release each, in order
//	wait waiter=W holder=H     start Wait(W, H) in a goroutine
//	check waiter=W             fire W's deadlock timer: W runs the check
//	graph                      WaitsFor, sorted by waiter
//	stats                      the counters
//
// Every command but graph and stats prints the Waits that returned during
// it (sorted by waiter), or that the waiter is still waiting.
func TestWaitForTranscript(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type waiting struct {
			holder base.XID
			timer  *manualTimer
		}
		type result struct {
			waiter base.XID
			err    error
		}
		var (
			lm      *LockManager
			clk     *manualClock
			waiters map[base.XID]waiting
			results = make(chan result, 100)
			held    []base.XID
		)
		releaseAll := func() {
			if lm != nil {
				for _, x := range held {
					lm.Release(x)
				}
				synctest.Wait()
			}
		}
		defer releaseAll()
		xid := func(c *testutil.Case, key string) base.XID {
			v, err := strconv.ParseUint(c.Str(key, ""), 10, 64)
			if err != nil {
				t.Fatalf("%s: %s: %v", c.Pos, key, err)
			}
			return base.XID(v)
		}
		// returned drains the results of the Waits that have returned, all
		// of them: synctest.Wait has let every goroutine run until it
		// blocks.
		returned := func(out *strings.Builder) {
			synctest.Wait()
			var rs []result
			for len(results) > 0 {
				rs = append(rs, <-results)
			}
			slices.SortFunc(rs, func(a, b result) int { return int(a.waiter) - int(b.waiter) })
			for _, r := range rs {
				w := waiters[r.waiter]
				delete(waiters, r.waiter)
				res := "nil"
				if r.err != nil {
					res = r.err.Error()
				}
				fmt.Fprintf(out, "xid %d's wait for %d returned: %s\n", r.waiter, w.holder, res)
			}
		}
		testutil.RunTranscript(t, "testdata/waitfor", func(t *testing.T, c *testutil.Case) string {
			if c.Cmd != "new" && lm == nil {
				t.Fatalf("%s: %s before new", c.Pos, c.Cmd)
			}
			var out strings.Builder
			switch c.Cmd {
			case "new":
				releaseAll()
				clk = &manualClock{timers: make(chan *manualTimer, 100)}
				lm = NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second, Clock: clk})
				waiters, held = map[base.XID]waiting{}, nil
			case "acquire", "release":
				for _, v := range c.Vals("xids") {
					x, err := strconv.ParseUint(v, 10, 64)
					if err != nil {
						t.Fatalf("%s: xid %q: %v", c.Pos, v, err)
					}
					if c.Cmd == "acquire" {
						lm.Acquire(base.XID(x))
						held = append(held, base.XID(x))
					} else {
						lm.Release(base.XID(x))
					}
				}
				returned(&out)
			case "acquire-sub":
				sub := xid(c, "sub")
				lm.AcquireSub(sub, xid(c, "top"))
				held = append(held, sub)
			case "wait":
				w, h := xid(c, "waiter"), xid(c, "holder")
				waiters[w] = waiting{holder: h}
				go func() { results <- result{w, lm.Wait(context.Background(), w, h)} }()
				returned(&out)
				if _, ok := waiters[w]; ok {
					// Asleep: it armed its deadlock timer before it slept.
					select {
					case tm := <-clk.timers:
						waiters[w] = waiting{holder: h, timer: tm}
					default:
						t.Fatalf("%s: xid %d waits but armed no timer", c.Pos, w)
					}
					fmt.Fprintf(&out, "xid %d waits for %d\n", w, h)
				}
			case "check":
				w := xid(c, "waiter")
				ws, ok := waiters[w]
				if !ok {
					t.Fatalf("%s: xid %d is not waiting", c.Pos, w)
				}
				ws.timer.fire()
				returned(&out)
				if _, ok := waiters[w]; ok {
					fmt.Fprintf(&out, "no deadlock: xid %d sleeps on, waiting for %d\n", w, ws.holder)
				}
			case "graph":
				g := lm.WaitsFor()
				for _, w := range slices.Sorted(maps.Keys(g)) {
					fmt.Fprintf(&out, "%d -> %d\n", w, g[w])
				}
				if len(g) == 0 {
					out.WriteString("(no edges)\n")
				}
			case "stats":
				s := lm.Stats()
				fmt.Fprintf(&out, "held %d waiting %d waits %d checks %d deadlocks %d\n",
					s.Held, s.Waiting, s.Waits, s.DeadlockChecks, s.Deadlocks)
			default:
				t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
			}
			return out.String()
		})
	})
}
