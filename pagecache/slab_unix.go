//go:build linux || darwin || freebsd

package pagecache

import (
	"fmt"
	"syscall"
)

// allocSlab maps size bytes of anonymous memory outside the Go heap, so the
// garbage collector neither scans it nor counts it towards its pacing. On
// Linux it asks for transparent huge pages; the kernel may decline.
func allocSlab(size int) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("pagecache: map %d bytes of shared buffers: %w", size, err)
	}
	adviseHugePages(b)
	return b, nil
}

func freeSlab(b []byte) error { return syscall.Munmap(b) }
