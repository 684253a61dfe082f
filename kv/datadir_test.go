package kv

import (
	"bytes"
	"errors"
	iofs "io/fs"
	"strings"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
)

// snapshotFiles returns every file below dir with its contents.
func snapshotFiles(t *testing.T, fs *vfs.MemFS, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var walk func(d string)
	walk = func(d string) {
		names, err := fs.List(d)
		if err != nil {
			return // a file, not a directory
		}
		for _, n := range names {
			p := d + "/" + n
			if b, err := vfs.ReadFile(fs, p); err == nil {
				out[p] = b
			} else {
				walk(p)
			}
		}
	}
	walk(dir)
	return out
}

// A lost DIR/format must never be taken for an interrupted creation: Open
// refuses, names the file, and changes nothing (issue 11, defect 1).
func TestOpenWithoutFormatFileKeepsData(t *testing.T) {
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	for _, k := range []string{"a", "b"} {
		if err := db.Put([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	format, err := vfs.ReadFile(fs, "/db/format")
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Remove("/db/format"); err != nil {
		t.Fatal(err)
	}
	before := snapshotFiles(t, fs, "/db")
	delete(before, "/db/LOCK")

	_, err = open(fs, "/db", smallOpts())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "/db/format") || !strings.Contains(err.Error(), "base") {
		t.Fatalf("open without format file: %v; want ErrCorrupt naming /db/format and what the directory holds", err)
	}
	after := snapshotFiles(t, fs, "/db")
	delete(after, "/db/LOCK")
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s changed or went away", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}

	// Restoring the file brings the data back.
	if err := vfs.WriteFileAtomic(fs, "/db/format", format); err != nil {
		t.Fatal(err)
	}
	db = openMem(t, fs, smallOpts())
	defer db.Close()
	for _, k := range []string{"a", "b"} {
		if v, err := db.Get([]byte(k)); err != nil || string(v) != "v"+k {
			t.Fatalf("get %s after restoring format: %q, %v", k, v, err)
		}
	}
}

// A creation interrupted at any sync leaves either nothing of ours or the
// creating marker, so the next Open creates the database afresh; it never
// reports a damaged directory. A creation that finished but lost the
// marker's removal opens normally.
func TestInterruptedCreation(t *testing.T) {
	for n := 1; ; n++ {
		fs := vfs.NewMemFS()
		fs.InjectError(vfs.Injection{Op: vfs.OpSync, Nth: n})
		fs.InjectError(vfs.Injection{Op: vfs.OpSyncDir, Nth: n})
		db, err := open(fs, "/db", smallOpts())
		if err == nil {
			db.Close()
			if n == 1 {
				t.Fatal("no sync failure made creation fail")
			}
			t.Logf("creation tried with a failure at each of %d syncs", n-1)
			break
		}
		fs.Crash(vfs.CrashOptions{Seed: int64(n), KeepUnsynced: 0.5, KeepUnsyncedDirOps: 0.5})
		fs.ClearInjections()
		db, err = open(fs, "/db", smallOpts())
		if err != nil {
			t.Fatalf("sync %d failed during creation; the next Open: %v", n, err)
		}
		if err := db.Put([]byte("k"), []byte("v")); err != nil {
			t.Fatalf("sync %d: put after re-creation: %v", n, err)
		}
		db.Close()
		if _, err := fs.Stat("/db/creating"); !vfs.IsNotExist(err) {
			t.Fatalf("sync %d: creating marker left behind (%v)", n, err)
		}
	}

	t.Run("marker left after format", func(t *testing.T) {
		fs := vfs.NewMemFS()
		db := openMem(t, fs, smallOpts())
		db.Put([]byte("k"), []byte("v"))
		db.Close()
		vfs.WriteFileAtomic(fs, "/db/creating", []byte("x"))
		db = openMem(t, fs, smallOpts())
		defer db.Close()
		if v, err := db.Get([]byte("k")); err != nil || string(v) != "v" {
			t.Fatalf("get after a stale marker: %q, %v", v, err)
		}
		if _, err := fs.Stat("/db/creating"); !vfs.IsNotExist(err) {
			t.Fatal("stale marker not removed")
		}
	})
	t.Run("only heapkv.conf", func(t *testing.T) {
		fs := vfs.NewMemFS()
		fs.MkdirAll("/db")
		vfs.WriteFileAtomic(fs, "/db/heapkv.conf", []byte("shared_buffers = 1MB\n"))
		db := openMem(t, fs, smallOpts())
		db.Close()
	})
}

func FuzzParseFormat(f *testing.F) {
	f.Add(encodeFormat(1, Enabled))
	f.Add(encodeFormat(7, Disabled))
	f.Add([]byte("heapkv 1\ndata_checksums maybe\n"))
	f.Add([]byte("heapkv -1\ndata_checksums on\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, c, err := parseFormat(b)
		if err != nil {
			return
		}
		if got := encodeFormat(v, c); !bytes.Equal(got, b) {
			t.Fatalf("parse(%q) = %d, %s; encodes back as %q", b, v, c, got)
		}
	})
}

// A data directory others can write to is refused, as PostgreSQL refuses
// one; nothing in it changes.
func TestOpenRefusesWritableDirectory(t *testing.T) {
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	db.Put([]byte("k"), []byte("v"))
	db.Close()
	for _, mode := range []iofs.FileMode{0o770, 0o702, 0o777} {
		if err := fs.Chmod("/db", mode); err != nil {
			t.Fatal(err)
		}
		if _, err := open(fs, "/db", smallOpts()); !errors.Is(err, iofs.ErrPermission) || !strings.Contains(err.Error(), "chmod 0700") {
			t.Fatalf("open of a directory with mode %04o: %v, want ErrPermission with advice", mode, err)
		}
	}
	fs.Chmod("/db", 0o750) // group may read, as PostgreSQL allows
	db = openMem(t, fs, smallOpts())
	defer db.Close()
	if v, err := db.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("get after the refusals: %q, %v", v, err)
	}
	if m, err := fs.Perm("/db/base"); err != nil || m != 0o700 {
		t.Fatalf("base/ has mode %04o (%v), want 0700", m, err)
	}
}
