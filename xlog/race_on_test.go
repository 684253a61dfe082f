//go:build race

package xlog

// defaultCrashSeeds is lower under the race detector, which slows the test
// about tenfold; the full count runs without it.
const defaultCrashSeeds = 40
