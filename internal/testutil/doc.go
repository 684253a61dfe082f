// Package testutil holds what the engine's randomized tests share: the
// -seed and -crash.seeds flags, so every package's failures reproduce the
// same way (go test ./pkg -run TestX -seed=N). Only _test.go files import
// it.
package testutil
