//go:build invariants

package pagecache

const invariants = true
