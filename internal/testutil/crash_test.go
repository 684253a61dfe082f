package testutil

import (
	"testing"
)

func TestCrashOptionsDerivedFromSeed(t *testing.T) {
	a, b := CrashSeed{Seed: 42}, CrashSeed{Seed: 43}
	if a.Options(0) != a.Options(0) {
		t.Fatal("the same seed and crash number gave different options")
	}
	if a.Options(0) == a.Options(1) || a.Options(0) == b.Options(0) {
		t.Fatalf("different crashes share options: %+v %+v %+v", a.Options(0), a.Options(1), b.Options(0))
	}
	if o := a.Options(2); o.Seed != 44 {
		t.Fatalf("Options(2).Seed = %d, want seed+2", o.Seed)
	}
	for i := range 100 {
		o := CrashSeed{Seed: int64(i)}.Options(i % 3)
		for _, p := range []float64{o.KeepUnsynced, o.TearProbability, o.KeepUnsyncedDirOps} {
			if p < 0 || p >= 1 {
				t.Fatalf("seed %d: probability %v out of [0, 1)", i, p)
			}
		}
	}
}

func TestRunCrashSeedsRunsEachSeedOnce(t *testing.T) {
	var seen []int64
	RunCrashSeeds(t, 5, func(t *testing.T, c CrashSeed) { seen = append(seen, c.Seed) })
	want := 5
	if *crashSeedsFlag > 0 {
		want = *crashSeedsFlag
	}
	if len(seen) != want {
		t.Fatalf("ran %d seeds, want %d", len(seen), want)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] != seen[0]+int64(i) {
			t.Fatalf("seeds %v are not consecutive", seen)
		}
	}
}

func TestPackageArg(t *testing.T) {
	if got := packageArg(); got != "./internal/testutil" {
		t.Fatalf("packageArg() = %q", got)
	}
}
