package testutil

import (
	"flag"
	"testing"
	"time"
)

var (
	seedFlag       = flag.Int64("seed", 0, "base seed of randomized tests (0: time-based)")
	crashSeedsFlag = flag.Int("crash.seeds", 0, "number of crash-test seeds (0: the test's default)")
)

// Seed returns the seed a randomized test starts from, -seed or one taken
// from the clock, and logs it so that a failure can be replayed.
func Seed(t testing.TB) int64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		s = time.Now().UnixNano() % 1_000_000_007
	}
	t.Logf("seed %d (rerun with -seed=%d)", s, s)
	return s
}
