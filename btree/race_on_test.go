//go:build race

package btree

// raceEnabled is true under the race detector, which slows the tests about
// tenfold; the randomized tests scale their counts down with it.
const raceEnabled = true
