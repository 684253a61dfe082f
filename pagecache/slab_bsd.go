//go:build darwin || freebsd

package pagecache

func adviseHugePages([]byte) {}
