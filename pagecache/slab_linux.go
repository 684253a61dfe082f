package pagecache

import "syscall"

func adviseHugePages(b []byte) { _ = syscall.Madvise(b, 14 /* MADV_HUGEPAGE */) }
