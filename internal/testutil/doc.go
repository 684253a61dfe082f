// Package testutil holds what the engine's tests share, so that every
// package's tests run and reproduce the same way. Only _test.go files
// import it.
//
//   - Seed: the -seed flag; a randomized test starts from Seed(t), which
//     logs the seed (go test ./pkg -run TestX -seed=N replays it).
//   - RunCrashSeeds: the crash-test loop of btree, heap and xlog: -crash.seeds
//     consecutive seeds from Seed(t), one subtest each, the crash options
//     derived from the seed (CrashSeed.Options), and on a failure the one
//     command that reruns the failing seed alone. TestCrash of btree, heap
//     and xlog and xlog's TestWithBufferPool use it.
//   - RunTranscript: data-driven tests (testdata/ files of command, input,
//     ----, expected output), with -rewrite to regenerate the outputs:
//     btree/testdata/split, heap/testdata/prune, xlog/testdata/torn_tail,
//     txn/testdata/waitfor.
package testutil
