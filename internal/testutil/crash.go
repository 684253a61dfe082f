package testutil

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
)

// CrashSeed is one seed of a crash test: the seed every random choice of
// the run derives from, and the crash options of its crashes.
type CrashSeed struct {
	Seed int64
}

// Options returns the options of the seed's n-th simulated power loss
// (n counts from 0; a test that crashes once uses Options(0)). Every crash
// test derives them here, the same way: the MemFS's own choices are seeded
// by Seed+n, and the probabilities of keeping an unsynced write, tearing
// one and keeping an unsynced directory operation are each uniform in
// [0, 1), so the seeds cover everything from "nothing unsynced survives"
// to "nearly everything does".
func (c CrashSeed) Options(n int) vfs.CrashOptions {
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x637261736800+uint64(n)))
	return vfs.CrashOptions{
		Seed:               c.Seed + int64(n),
		KeepUnsynced:       rng.Float64(),
		TearProbability:    rng.Float64(),
		KeepUnsyncedDirOps: rng.Float64(),
	}
}

// RunCrashSeeds runs a crash test over -crash.seeds consecutive seeds (def
// when the flag is not set) starting at Seed(t), each as a subtest named
// seed=N. It stops at the first seed that fails and logs the one command
// that replays it alone:
//
//	go test ./pkg -run '^TestX$' -seed=N -crash.seeds=1
func RunCrashSeeds(t *testing.T, def int, run func(t *testing.T, c CrashSeed)) {
	t.Helper()
	n := def
	if *crashSeedsFlag > 0 {
		n = *crashSeedsFlag
	}
	base := Seed(t)
	for i := range n {
		c := CrashSeed{Seed: base + int64(i)}
		if !t.Run(fmt.Sprintf("seed=%d", c.Seed), func(t *testing.T) { run(t, c) }) {
			t.Fatalf("crash test failed at seed %d (seed %d of %d); rerun it alone with:\n\tgo test %s -run '^%s$' -seed=%d -crash.seeds=1",
				c.Seed, i+1, n, packageArg(), t.Name(), c.Seed)
		}
	}
}

// packageArg is the package under test as a go test argument, ./dir
// relative to the module root ("." when that cannot be found). A test runs
// in its package's directory.
func packageArg() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			rel, err := filepath.Rel(dir, wd)
			if err != nil {
				return "."
			}
			if rel == "." {
				return "."
			}
			return "./" + filepath.ToSlash(rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "."
		}
		dir = parent
	}
}
