package errorfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
)

// script runs a fixed sequence of operations on fsys under dir and returns
// the first error.
func script(fsys vfs.FS, dir string) error {
	if err := fsys.MkdirAll(dir); err != nil { // 1
		return err
	}
	f, err := fsys.Create(dir + "/a") // 2
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte("hello"), 0); err != nil { // 3 grows
		return err
	}
	if _, err := f.WriteAt([]byte("J"), 0); err != nil { // 4 overwrite
		return err
	}
	if err := f.Sync(); err != nil { // 5
		return err
	}
	if err := f.Truncate(2); err != nil { // 6 shrinks
		return err
	}
	if err := f.Truncate(10); err != nil { // 7 grows
		return err
	}
	buf := make([]byte, 2)
	if _, err := f.ReadAt(buf, 0); err != nil { // 8
		return err
	}
	if _, err := f.Size(); err != nil { // 9
		return err
	}
	if err := f.Close(); err != nil { // 10
		return err
	}
	if err := fsys.Rename(dir+"/a", dir+"/b"); err != nil { // 11
		return err
	}
	if err := fsys.SyncDir(dir); err != nil { // 12
		return err
	}
	if _, err := fsys.Stat(dir + "/b"); err != nil { // 13
		return err
	}
	if _, err := fsys.List(dir); err != nil { // 14
		return err
	}
	if _, err := fsys.Perm(dir); err != nil { // 15
		return err
	}
	g, err := fsys.Open(dir + "/b") // 16
	if err != nil {
		return err
	}
	g.Close()                          // 17
	l, err := fsys.Lock(dir + "/LOCK") // 18
	if err != nil {
		return err
	}
	l.Close()                      // not an operation
	return fsys.Remove(dir + "/b") // 19
}

var scriptKinds = []Kind{OpMkdirAll, OpCreate, OpWrite, OpWrite, OpSync, OpTruncate, OpTruncate,
	OpRead, OpSize, OpClose, OpRename, OpSyncDir, OpStat, OpList, OpPerm, OpOpen, OpClose, OpLock, OpRemove}

func TestCountsEveryOperation(t *testing.T) {
	for _, tc := range []struct {
		name string
		fsys vfs.FS
		dir  string
	}{
		{"memfs", vfs.NewMemFS(), "/d"},
		{"os", vfs.Default, filepath.ToSlash(t.TempDir())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Wrap(tc.fsys, nil)
			f.Trace(true)
			if err := script(f, tc.dir); err != nil {
				t.Fatal(err)
			}
			if got := f.Ops(); got != int64(len(scriptKinds)) {
				t.Fatalf("Ops = %d, want %d", got, len(scriptKinds))
			}
			ops := f.Traced()
			var kinds []Kind
			for i, op := range ops {
				if op.Index != int64(i+1) {
					t.Errorf("op %d has index %d", i, op.Index)
				}
				kinds = append(kinds, op.Kind)
			}
			if !slices.Equal(kinds, scriptKinds) {
				t.Fatalf("kinds %v, want %v", kinds, scriptKinds)
			}
			grows := map[int]bool{2: true, 6: true} // the first write, the growing truncate
			for i, op := range ops {
				if op.Grows != grows[i] {
					t.Errorf("%v: Grows = %v", op, op.Grows)
				}
			}
			if ops[2].Off != 0 || ops[2].Len != 5 || ops[10].NewPath != tc.dir+"/b" {
				t.Errorf("op details: %v, %v", ops[2], ops[10])
			}
			if len(f.Injected()) != 0 {
				t.Fatal("count-only mode injected")
			}
		})
	}
}

// TestOnIndexFailsEachOperation is the sweep in miniature: failing each
// operation of the script stops it at exactly that one with an error that
// names it, and the script finishes once N passes its length.
func TestOnIndexFailsEachOperation(t *testing.T) {
	for n := int64(1); n <= int64(len(scriptKinds))+1; n++ {
		f := Wrap(vfs.NewMemFS(), OnIndex(n, nil))
		err := script(f, "/d")
		if n > int64(len(scriptKinds)) {
			if err != nil {
				t.Fatalf("n=%d past the end: %v", n, err)
			}
			continue
		}
		kind := scriptKinds[n-1]
		if kind == OpClose && n == 17 {
			// The script ignores the second Close's error (op 17).
			if err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			continue
		}
		var e *Error
		if !errors.Is(err, ErrInjected) || !errors.Is(err, syscall.EIO) || !errors.As(err, &e) {
			t.Fatalf("n=%d (%v): error %v, want an injected EIO", n, kind, err)
		}
		if e.Op.Index != n || e.Op.Kind != kind {
			t.Fatalf("n=%d: error names %v, want %v", n, e.Op, kind)
		}
		if got := f.Injected(); len(got) != 1 || got[0].Index != n {
			t.Fatalf("n=%d: Injected = %v", n, got)
		}
	}
}

func TestFailedWriteChangesNothing(t *testing.T) {
	m := vfs.NewMemFS()
	f := Wrap(m, OnIndex(4, nil))
	m.MkdirAll("/d")
	a, err := f.Create("/d/a") // 1
	if err != nil {
		t.Fatal(err)
	}
	a.WriteAt([]byte("abc"), 0) // 2
	a.Sync()                    // 3
	if _, err := a.WriteAt([]byte("XYZW"), 1); !errors.Is(err, ErrInjected) {
		t.Fatalf("write 4: %v", err)
	}
	got, _ := vfs.ReadFile(m, "/d/a")
	if string(got) != "abc" {
		t.Fatalf("after a failed write the file holds %q", got)
	}
}

func TestFromIndexIsPersistent(t *testing.T) {
	f := Wrap(vfs.NewMemFS(), FromIndex(3, syscall.EROFS))
	if err := f.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Create("/d/a"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := f.Stat("/d/a"); !errors.Is(err, syscall.EROFS) || !errors.Is(err, ErrInjected) {
			t.Fatalf("stat after the fault: %v", err)
		}
	}
	if n := len(f.Injected()); n != 5 {
		t.Fatalf("%d injected, want 5", n)
	}
	f.SetInjector(nil)
	if _, err := f.Stat("/d/a"); err != nil {
		t.Fatalf("after SetInjector(nil): %v", err)
	}
}

// TestFailedSyncLosesWrites checks rule 3 over MemFS: after a failed Sync
// the data stays readable, a later Sync succeeds, and a crash still loses
// what the failed Sync was to make durable.
func TestFailedSyncLosesWrites(t *testing.T) {
	m := vfs.NewMemFS()
	m.MkdirAll("/d")
	f := Wrap(m, Nth(2, func(op Op) bool { return op.Kind == OpSync }, false, nil))
	a, _ := f.Create("/d/a")
	a.WriteAt([]byte("durable "), 0)
	if err := a.Sync(); err != nil { // sync 1: fine
		t.Fatal(err)
	}
	f.SyncDir("/d")
	a.WriteAt([]byte("lost"), 8)
	if err := a.Sync(); !errors.Is(err, ErrInjected) || !errors.Is(err, syscall.EIO) { // sync 2 fails
		t.Fatalf("sync 2: %v", err)
	}
	got, _ := vfs.ReadFile(m, "/d/a")
	if string(got) != "durable lost" {
		t.Fatalf("after failed sync reads see %q", got)
	}
	if err := a.Sync(); err != nil { // sync 3: succeeds, but brings nothing back
		t.Fatal(err)
	}
	// Another file's syncs are not affected by the armed rule.
	b, _ := f.Create("/d/b")
	b.WriteAt([]byte("b"), 0)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	f.SyncDir("/d")
	m.Crash(vfs.CrashOptions{Seed: 1})
	got, _ = vfs.ReadFile(m, "/d/a")
	if string(got) != "durable " {
		t.Fatalf("after crash the file holds %q, want the part synced before the failure", got)
	}
	if got, _ := vfs.ReadFile(m, "/d/b"); string(got) != "b" {
		t.Fatalf("b after crash: %q", got)
	}
}

func TestFailedSyncOverOSFS(t *testing.T) {
	dir := filepath.ToSlash(t.TempDir())
	f := Wrap(vfs.Default, Nth(1, func(op Op) bool { return op.Kind == OpSync }, false, nil))
	a, err := f.Create(dir + "/a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.WriteAt([]byte("x"), 0)
	if err := a.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("sync: %v", err)
	}
	if err := a.Sync(); err != nil {
		t.Fatalf("second sync: %v", err)
	}
}

func TestDiskFull(t *testing.T) {
	m := vfs.NewMemFS()
	m.MkdirAll("/d")
	f := Wrap(m, DiskFull(3))
	a, _ := f.Create("/d/a")
	for i, step := range []struct {
		do   func() error
		full bool
	}{
		{func() error { _, err := a.WriteAt(make([]byte, 100), 0); return err }, false}, // 1: grows
		{func() error { _, err := a.WriteAt([]byte("x"), 5); return err }, false},       // 2: overwrite
		{func() error { _, err := a.WriteAt([]byte("y"), 6); return err }, true},        // 3: the nth, fails though it does not grow
		{func() error { _, err := a.WriteAt([]byte("z"), 7); return err }, false},       // overwrite still works
		{func() error { _, err := a.WriteAt([]byte("w"), 100); return err }, true},      // growing fails
		{func() error { return a.Truncate(200) }, true},                                 // growing truncate fails
		{func() error { return a.Truncate(50) }, false},                                 // shrinking works
		{func() error { return a.Sync() }, false},
	} {
		err := step.do()
		if step.full != (err != nil) || err != nil && (!errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrInjected)) {
			t.Fatalf("step %d: %v, want ENOSPC %v", i, err, step.full)
		}
	}
	if size, _ := a.Size(); size != 50 {
		t.Fatalf("size %d", size)
	}
}

// TestOnDoneSnapshotsAtSync is the power-loss sweep's use of the hook: a
// clone taken right after the nth sync holds what that sync made durable.
func TestOnDoneSnapshotsAtSync(t *testing.T) {
	m := vfs.NewMemFS()
	m.MkdirAll("/d")
	f := Wrap(m, nil)
	var clones []*vfs.MemFS
	var seen []Op
	f.OnDone(func(op Op, err error) {
		seen = append(seen, op)
		if op.IsSync() && err == nil {
			clones = append(clones, m.Clone())
		}
	})
	a, _ := f.Create("/d/a")
	f.SyncDir("/d")
	a.WriteAt([]byte("one"), 0)
	a.Sync()
	a.WriteAt([]byte("two"), 3)
	a.Sync()
	a.WriteAt([]byte("three"), 6)
	if len(clones) != 3 || len(seen) != 7 {
		t.Fatalf("%d clones, %d ops", len(clones), len(seen))
	}
	for i, want := range []string{"", "one", "onetwo"} {
		c := clones[i]
		c.Crash(vfs.CrashOptions{Seed: int64(i)})
		got, err := vfs.ReadFile(c, "/d/a")
		if err != nil || string(got) != want {
			t.Fatalf("clone %d after crash: %q, %v; want %q", i, got, err, want)
		}
	}
}

func TestFailedCloseReleasesFile(t *testing.T) {
	m := vfs.NewMemFS()
	m.MkdirAll("/d")
	f := Wrap(m, Nth(1, func(op Op) bool { return op.Kind == OpClose }, false, nil))
	a, _ := f.Create("/d/a")
	if err := a.Close(); !errors.Is(err, ErrInjected) {
		t.Fatalf("close: %v", err)
	}
	if _, err := a.WriteAt([]byte("x"), 0); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("write after failed close: %v, want the file closed", err)
	}
}

// TestBackgroundSequence: operations the background test claims are
// numbered apart, so the foreground numbering does not depend on them,
// and OnIndex counts only foreground ones while FromIndex kills both.
func TestBackgroundSequence(t *testing.T) {
	m := vfs.NewMemFS()
	m.MkdirAll("/d")
	f := Wrap(m, nil)
	var inBG atomic.Bool
	f.SetBackground(inBG.Load)
	f.Trace(true)
	f.Stat("/d") // fg 1
	inBG.Store(true)
	f.Stat("/d") // bg 1
	f.Stat("/d") // bg 2
	inBG.Store(false)
	f.Stat("/d") // fg 2
	var got []string
	for _, op := range f.Traced() {
		got = append(got, fmt.Sprintf("%v:%d", op.Background, op.Index))
	}
	if want := []string{"false:1", "true:1", "true:2", "false:2"}; !slices.Equal(got, want) {
		t.Fatalf("numbering %v, want %v", got, want)
	}
	if f.Ops() != 2 || f.BackgroundOps() != 2 {
		t.Fatalf("Ops %d, BackgroundOps %d", f.Ops(), f.BackgroundOps())
	}

	f = Wrap(m, FromIndex(2, nil))
	f.SetBackground(inBG.Load)
	inBG.Store(true)
	if _, err := f.Stat("/d"); err != nil { // bg 1, before the device died
		t.Fatal(err)
	}
	inBG.Store(false)
	f.Stat("/d")                            // fg 1
	if _, err := f.Stat("/d"); err == nil { // fg 2 dies
		t.Fatal("fg 2 did not fail")
	}
	inBG.Store(true)
	if _, err := f.Stat("/d"); err == nil { // bg 2, after
		t.Fatal("background op after the device died did not fail")
	}

	f = Wrap(m, OnIndex(1, nil))
	f.SetBackground(inBG.Load)
	if _, err := f.Stat("/d"); err != nil { // bg 1: OnIndex counts foreground only
		t.Fatal(err)
	}
	inBG.Store(false)
	if _, err := f.Stat("/d"); err == nil {
		t.Fatal("fg 1 did not fail")
	}
}
