package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/heapkv/heapkv/bench/ycsb"
)

// loadCache keeps one loaded store per engine and record set (Workload.
// LoadKey), made the first time a workload needs it. A load always runs
// with relaxed durability, so the durable and relaxed runs of every
// workload with the same records start from the same store; each run gets
// its own fresh copy (copyLoad), as if it had loaded it itself, at the
// cost of one copy instead of one load. At a million 1 KiB records this
// turns an hour of loading into minutes.
type loadCache struct {
	f     *flags
	cache int64
	m     map[string]loaded
}

type loaded struct {
	dir  string  // the template; never opened again after its load
	ops  float64 // the load's rate
	skip string  // why the engine cannot run here, if it cannot
}

func newLoadCache(f *flags, cache int64) *loadCache {
	return &loadCache{f: f, cache: cache, m: map[string]loaded{}}
}

// get returns the template directory for d and w's record set, loading it
// first if needed; skip is set instead when the engine is unavailable.
func (c *loadCache) get(ctx context.Context, w *ycsb.Workload, d ycsb.Driver) (dir string, ops float64, skip string, err error) {
	key := d.Name + " " + w.LoadKey()
	if l, ok := c.m[key]; ok {
		return l.dir, l.ops, l.skip, nil
	}
	dir, err = newRunDir(c.f, d.Name, "load")
	if err != nil {
		return "", 0, "", err
	}
	label := fmt.Sprintf("%s (%d records)", d.Name, w.RecordCount)
	cfg := ycsb.Config{Dir: dir, Durability: ycsb.Relaxed, CacheBytes: c.cache, Threads: w.ThreadCount}
	res, err := ycsb.LoadOnly(ctx, d, cfg, w, ycsb.RunOptions{Progress: os.Stderr, Label: label, Seed: c.f.seed})
	if errors.Is(err, ycsb.ErrUnavailable) {
		fmt.Fprintf(os.Stderr, "%s: skipped: %v\n", label, err)
		os.RemoveAll(dir)
		c.m[key] = loaded{skip: err.Error()}
		return "", 0, err.Error(), nil
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", 0, "", fmt.Errorf("%s: load: %w", label, err)
	}
	fmt.Printf("\n== load of %s, relaxed, %d records, %d threads (one load, copied fresh for every run)\n",
		d.Name, w.RecordCount, w.ThreadCount)
	res.Write(os.Stdout)
	c.m[key] = loaded{dir: dir, ops: res.OPS()}
	return dir, res.OPS(), "", nil
}

// removeAll deletes every template.
func (c *loadCache) removeAll() {
	for _, l := range c.m {
		if l.dir != "" {
			os.RemoveAll(l.dir)
		}
	}
}

// copyLoad copies the template tpl into a fresh run directory.
func copyLoad(f *flags, tpl, engine, wname string) (string, error) {
	dst, err := newRunDir(f, engine, wname)
	if err != nil {
		return "", err
	}
	if err := copyTree(tpl, dst); err != nil {
		os.RemoveAll(dst)
		return "", fmt.Errorf("copy the %s load: %w", engine, err)
	}
	return dst, nil
}

// copyTree copies directory src's contents into the existing directory
// dst: directories, regular files and symlinks, keeping modes and (when
// permitted) owners, since a PostgreSQL cluster must stay its user's.
// Other files (sockets, a stale lock's pipe) are left out.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			if rel != "." {
				if err := os.Mkdir(to, info.Mode().Perm()); err != nil {
					return err
				}
			} else if err := os.Chmod(to, info.Mode().Perm()); err != nil {
				return err
			}
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case e.Type().IsRegular():
			if err := copyFile(path, to, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			return os.Lchown(to, int(st.Uid), int(st.Gid))
		}
		return nil
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil { // copy_file_range where the kernel has it
		out.Close()
		return err
	}
	return out.Close()
}
