package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"syscall"
	"testing"
)

// TestFSConformance runs the same checks on the OS file system and on MemFS,
// so MemFS's behaviour outside crashes is pinned to the real one.
func TestFSConformance(t *testing.T) {
	t.Run("os", func(t *testing.T) { testFSBasics(t, Default, t.TempDir()) })
	t.Run("mem", func(t *testing.T) { testFSBasics(t, NewMemFS(), "/tmp/test") })
}

func testFSBasics(t *testing.T, fsys FS, root string) {
	p := func(name string) string { return path.Join(root, name) }
	must(t, fsys.MkdirAll(p("a/b")))
	must(t, fsys.MkdirAll(p("a/b"))) // twice is fine

	if _, err := fsys.Open(p("a/missing")); !IsNotExist(err) {
		t.Errorf("Open of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := fsys.Stat(p("a/missing")); !IsNotExist(err) {
		t.Errorf("Stat of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := fsys.Create(p("nodir/f")); !IsNotExist(err) {
		t.Errorf("Create in a missing directory: %v, want fs.ErrNotExist", err)
	}
	if err := fsys.Remove(p("a/missing")); !IsNotExist(err) {
		t.Errorf("Remove of a missing file: %v, want fs.ErrNotExist", err)
	}

	// Create, write, read, size.
	f, err := fsys.Create(p("a/f"))
	must(t, err)
	if f.Name() != p("a/f") {
		t.Errorf("Name() = %q, want %q", f.Name(), p("a/f"))
	}
	if n, err := f.WriteAt([]byte("world"), 6); n != 5 || err != nil {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	writeStr(t, f, "hello ", 0)
	if n, err := f.Size(); n != 11 || err != nil {
		t.Errorf("Size() = %d, %v; want 11", n, err)
	}
	buf := make([]byte, 5)
	if n, err := f.ReadAt(buf, 6); n != 5 || err != nil || string(buf) != "world" {
		t.Errorf("ReadAt = %d, %q, %v", n, buf, err)
	}
	if n, err := f.ReadAt(buf, 8); n != 3 || err != io.EOF || string(buf[:n]) != "rld" {
		t.Errorf("ReadAt across the end = %d, %q, %v; want 3, rld, io.EOF", n, buf[:n], err)
	}
	if n, err := f.ReadAt(buf, 100); n != 0 || err != io.EOF {
		t.Errorf("ReadAt past the end = %d, %v; want 0, io.EOF", n, err)
	}
	must(t, f.Truncate(5))
	must(t, f.Sync())
	must(t, f.Close())
	if _, err := f.ReadAt(buf, 0); err == nil {
		t.Error("ReadAt after Close succeeded")
	}
	if n, err := fsys.Stat(p("a/f")); n != 5 || err != nil {
		t.Errorf("Stat = %d, %v; want 5", n, err)
	}
	must(t, fsys.SyncDir(p("a")))

	// Create truncates an existing file.
	g, err := fsys.Create(p("a/g"))
	must(t, err)
	writeStr(t, g, "gg", 0)
	must(t, g.Close())
	g, err = fsys.Create(p("a/g"))
	must(t, err)
	if n, _ := g.Size(); n != 0 {
		t.Errorf("Create of an existing file left %d bytes", n)
	}
	must(t, g.Close())

	// List, rename, remove.
	if got, err := fsys.List(p("a")); err != nil || !slices.Equal(got, []string{"b", "f", "g"}) {
		t.Errorf("List = %q, %v; want [b f g]", got, err)
	}
	must(t, fsys.Rename(p("a/f"), p("a/b/f2")))
	if got := get(t, fsys, p("a/b/f2")); string(got) != "hello" {
		t.Errorf("after Rename: %q", got)
	}
	if _, err := fsys.Open(p("a/f")); !IsNotExist(err) {
		t.Errorf("Open of a renamed file's old name: %v, want fs.ErrNotExist", err)
	}
	must(t, fsys.Rename(p("a/b/f2"), p("a/g"))) // replaces a/g
	if got := get(t, fsys, p("a/g")); string(got) != "hello" {
		t.Errorf("after Rename over a file: %q", got)
	}
	if err := fsys.Remove(p("a")); err == nil {
		t.Error("Remove of a non-empty directory succeeded")
	}
	must(t, fsys.Remove(p("a/g")))
	must(t, fsys.Remove(p("a/b")))
	if got, err := fsys.List(p("a")); err != nil || len(got) != 0 {
		t.Errorf("List after removes = %q, %v; want empty", got, err)
	}

	// WriteFileAtomic and ReadFile.
	must(t, WriteFileAtomic(fsys, p("a/atomic"), []byte("v1")))
	must(t, WriteFileAtomic(fsys, p("a/atomic"), []byte("version 2")))
	if got := get(t, fsys, p("a/atomic")); string(got) != "version 2" {
		t.Errorf("after WriteFileAtomic: %q", got)
	}

	// Modes: directories DirPerm, files FilePerm, whatever created them.
	for _, c := range []struct {
		name string
		want fs.FileMode
	}{{"a", DirPerm}, {"a/atomic", FilePerm}} {
		if got, err := fsys.Perm(p(c.name)); got != c.want || err != nil {
			t.Errorf("Perm(%s) = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if _, err := fsys.Perm(p("a/missing")); !IsNotExist(err) {
		t.Errorf("Perm of a missing file: %v, want fs.ErrNotExist", err)
	}

	// Locks conflict within one process and are released by Close.
	l1, err := fsys.Lock(p("a/LOCK"))
	must(t, err)
	if _, err := fsys.Lock(p("a/LOCK")); !errors.Is(err, ErrLocked) {
		t.Errorf("second Lock: %v, want ErrLocked", err)
	}
	must(t, l1.Close())
	l2, err := fsys.Lock(p("a/LOCK"))
	must(t, err)
	must(t, l2.Close())
}

// TestOSModesIgnoreUmask: whatever the umask, what the OS FS creates has
// exactly DirPerm or FilePerm. A umask of 0 would leave 0755/0644 with
// plain mkdir/open modes of 0777/0666, and one of 0777 would leave 0000.
// Directories and files that exist already are not made private by
// MkdirAll, but Create of an existing file is.
func TestOSModesIgnoreUmask(t *testing.T) {
	for _, mask := range []int{0, 0o777, 0o022} {
		t.Run(fmt.Sprintf("umask%04o", mask), func(t *testing.T) {
			root := t.TempDir()
			must(t, os.Chmod(root, 0o755))
			must(t, os.WriteFile(path.Join(root, "old"), []byte("x"), 0o644))
			must(t, os.Chmod(path.Join(root, "old"), 0o644))

			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			p := func(name string) string { return path.Join(root, name) }
			fsys := Default
			must(t, fsys.MkdirAll(p("data/base/sub")))
			f, err := fsys.Create(p("data/base/f"))
			must(t, err)
			must(t, f.Close())
			f, err = fsys.Create(p("old")) // exists with 0644
			must(t, err)
			must(t, f.Close())
			must(t, WriteFileAtomic(fsys, p("data/format"), []byte("v1")))
			l, err := fsys.Lock(p("data/LOCK"))
			must(t, err)
			must(t, l.Close())
			syscall.Umask(old)

			for _, c := range []struct {
				name string
				want fs.FileMode
			}{
				{"", 0o755}, // existed: left alone
				{"data", DirPerm},
				{"data/base", DirPerm},
				{"data/base/sub", DirPerm},
				{"data/base/f", FilePerm},
				{"old", FilePerm},
				{"data/format", FilePerm},
				{"data/LOCK", FilePerm},
			} {
				fi, err := os.Stat(p(c.name))
				must(t, err)
				if got := fi.Mode().Perm(); got != c.want {
					t.Errorf("umask %04o: %s has mode %04o, want %04o", mask, p(c.name), got, c.want)
				}
				if got, err := fsys.Perm(p(c.name)); got != c.want || err != nil {
					t.Errorf("umask %04o: Perm(%s) = %04o, %v; want %04o", mask, p(c.name), got, err, c.want)
				}
			}
		})
	}
}

// TestOSPermSeesChanges: Perm reports the mode as it is now, which is what
// a check for a group- or world-writable data directory needs.
func TestOSPermSeesChanges(t *testing.T) {
	dir := path.Join(t.TempDir(), "db")
	must(t, Default.MkdirAll(dir))
	must(t, os.Chmod(dir, 0o777))
	if got, err := Default.Perm(dir); got != 0o777 || err != nil {
		t.Fatalf("Perm after chmod 0777 = %04o, %v", got, err)
	}
	must(t, Default.MkdirAll(dir)) // exists: not changed
	if got, _ := Default.Perm(dir); got != 0o777 {
		t.Fatalf("MkdirAll of an existing directory changed its mode to %04o", got)
	}
}
