//go:build !(linux || darwin || freebsd)

package pagecache

// allocSlab falls back to the Go heap where anonymous mappings are not
// available; the pool works the same, only the GC sees the slab.
func allocSlab(size int) ([]byte, error) { return make([]byte, size), nil }

func freeSlab([]byte) error { return nil }
