//go:build !invariants

package pagecache

// invariants enables expensive self-checks; build with -tags invariants.
const invariants = false
