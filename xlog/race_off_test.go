//go:build !race

package xlog

// defaultCrashSeeds is how many seeds TestCrash runs by default.
const defaultCrashSeeds = 200
