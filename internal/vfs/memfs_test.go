package vfs

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var seedFlag = flag.Int64("seed", 0, "seed for randomized tests; 0 picks one from the clock")

// testSeed returns the seed of a randomized test and logs it.
func testSeed(t *testing.T) int64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		s = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -seed=%d)", s, s)
	return s
}

// newTestFS returns a MemFS holding the given directories.
func newTestFS(t *testing.T, dirs ...string) *MemFS {
	t.Helper()
	m := NewMemFS()
	for _, d := range dirs {
		if err := m.MkdirAll(d); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// put makes name hold data durably: it syncs the file and its directory.
func put(t *testing.T, m *MemFS, name string, data []byte) {
	t.Helper()
	f, err := m.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir(Dir(name)); err != nil {
		t.Fatal(err)
	}
}

// get returns the contents of name.
func get(t *testing.T, m FS, name string) []byte {
	t.Helper()
	b, err := ReadFile(m, name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(t *testing.T, m FS, name string) File {
	t.Helper()
	f, err := m.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func writeStr(t *testing.T, f File, s string, off int64) {
	t.Helper()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

func exists(m FS, name string) bool {
	_, err := m.Stat(name)
	return err == nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot describes every directory and file of m, in a fixed order.
func snapshot(t *testing.T, m FS) string {
	t.Helper()
	var sb strings.Builder
	var walk func(dir string)
	walk = func(dir string) {
		names, err := m.List(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			p := strings.TrimPrefix(dir+"/"+n, "/")
			if _, err := m.List(p); err == nil {
				fmt.Fprintf(&sb, "%s/\n", p)
				walk(p)
				continue
			}
			fmt.Fprintf(&sb, "%s %q\n", p, get(t, m, p))
		}
	}
	walk("/")
	return sb.String()
}

func TestMemFSNamespace(t *testing.T) {
	m := newTestFS(t)
	notExist := []struct {
		name string
		err  error
	}{
		{"create in missing dir", func() error { _, err := m.Create("a/f"); return err }()},
		{"open missing", func() error { _, err := m.Open("f"); return err }()},
		{"stat missing", func() error { _, err := m.Stat("f"); return err }()},
		{"list missing", func() error { _, err := m.List("a"); return err }()},
		{"remove missing", m.Remove("f")},
		{"rename missing", m.Rename("f", "g")},
		{"syncdir missing", m.SyncDir("a")},
		{"lock in missing dir", func() error { _, err := m.Lock("a/LOCK"); return err }()},
	}
	for _, tc := range notExist {
		if !IsNotExist(tc.err) {
			t.Errorf("%s: got %v, want fs.ErrNotExist", tc.name, tc.err)
		}
	}

	must(t, m.MkdirAll("a/b/c"))
	must(t, m.MkdirAll("/a/b/c/")) // again, another spelling
	f, err := m.Create("a/f2")
	must(t, err)
	writeStr(t, f, "hello", 3)
	must(t, f.Close())
	put(t, m, "a/f1", nil)
	if err := m.Rename("a/f1", "nodir/f1"); !IsNotExist(err) {
		t.Errorf("rename into missing dir: got %v, want fs.ErrNotExist", err)
	}

	lists := []struct {
		dir  string
		want []string
	}{
		{"a", []string{"b", "f1", "f2"}},
		{"/a/", []string{"b", "f1", "f2"}},
		{"a/b/../b", []string{"c"}},
		{".", []string{"a"}},
		{"/", []string{"a"}},
		{"", []string{"a"}},
		{"a/b/c", []string{}},
	}
	for _, tc := range lists {
		got, err := m.List(tc.dir)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %q, %v; want %q", tc.dir, got, err, tc.want)
		}
	}

	sizes := []struct {
		name string
		want int64
	}{
		{"a/f2", 8}, // grown with zeros to cover the write at 3
		{"/a//f2", 8},
		{"a/f1", 0},
		{"a/b", 0}, // a directory
	}
	for _, tc := range sizes {
		got, err := m.Stat(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("Stat(%q) = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if got := get(t, m, "a/f2"); string(got) != "\x00\x00\x00hello" {
		t.Errorf("a/f2 = %q", got)
	}

	// Names through a file, and files where directories are wanted.
	if _, err := m.Create("a/f1/x"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("create below a file: got %v, want ENOTDIR", err)
	}
	if err := m.MkdirAll("a/f1"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("MkdirAll over a file: got %v, want ENOTDIR", err)
	}
	if _, err := m.List("a/f1"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("List of a file: got %v, want ENOTDIR", err)
	}
	if _, err := m.Create("a/b"); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("Create over a directory: got %v, want EISDIR", err)
	}
	if _, err := m.Open("a/b"); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("Open of a directory: got %v, want EISDIR", err)
	}
	if err := m.Rename("a/f1", "a/b"); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("rename of a file over a directory: got %v, want EISDIR", err)
	}

	// Rename replaces the target.
	put(t, m, "a/f1", []byte("one"))
	must(t, m.Rename("a/f1", "a/f2"))
	if got := get(t, m, "a/f2"); string(got) != "one" || exists(m, "a/f1") {
		t.Errorf("after rename over a/f2: a/f2 = %q, a/f1 exists = %v", got, exists(m, "a/f1"))
	}
	must(t, m.Rename("a/f2", "a/f2")) // onto itself: nothing happens
	if got := get(t, m, "a/f2"); string(got) != "one" {
		t.Errorf("after rename onto itself: a/f2 = %q", got)
	}

	// Directories: rename within the parent only; remove only when empty.
	must(t, m.Rename("a/b/c", "a/b/c2"))
	if got, _ := m.List("a/b"); !slices.Equal(got, []string{"c2"}) {
		t.Errorf("after directory rename: List(a/b) = %q", got)
	}
	if err := m.Rename("a/b/c2", "a/c2"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("directory rename across directories: got %v, want ErrUnsupported", err)
	}
	if err := m.Rename("a/b", "a/f2"); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("directory rename onto a file: got %v, want EEXIST", err)
	}
	if err := m.Remove("a/b"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("remove of a non-empty directory: got %v, want ENOTEMPTY", err)
	}
	must(t, m.Remove("a/b/c2"))
	must(t, m.Remove("a/b"))
	must(t, m.Remove("a/f2"))
	if got, _ := m.List("a"); len(got) != 0 {
		t.Errorf("after removes: List(a) = %q, want empty", got)
	}
	if err := m.Remove("/"); err == nil {
		t.Error("remove of the root succeeded")
	}
}

func TestMemFSReadAt(t *testing.T) {
	m := newTestFS(t)
	put(t, m, "f", []byte("0123456789"))
	f := open(t, m, "f")
	defer f.Close()
	tests := []struct {
		off     int64
		n       int
		want    string
		wantEOF bool
	}{
		{0, 10, "0123456789", false},
		{2, 3, "234", false},
		{8, 5, "89", true},
		{10, 1, "", true},
		{20, 4, "", true},
		{20, 0, "", false}, // an empty read never fails, as with os.File
	}
	for _, tc := range tests {
		p := make([]byte, tc.n)
		n, err := f.ReadAt(p, tc.off)
		if string(p[:n]) != tc.want || (err == io.EOF) != tc.wantEOF || err != nil && err != io.EOF {
			t.Errorf("ReadAt(%d bytes at %d) = %q, %v; want %q, EOF %v", tc.n, tc.off, p[:n], err, tc.want, tc.wantEOF)
		}
	}
	if _, err := f.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("ReadAt at a negative offset succeeded")
	}
	if _, err := f.WriteAt([]byte("x"), -1); err == nil {
		t.Error("WriteAt at a negative offset succeeded")
	}
	if err := f.Truncate(-1); err == nil {
		t.Error("Truncate to a negative size succeeded")
	}
	if f.Name() != "f" {
		t.Errorf("Name() = %q", f.Name())
	}
}

func TestMemFSCrashFileWrites(t *testing.T) {
	tests := []struct {
		name string
		do   func(t *testing.T, f File) // on a file durably holding "old"
		opts CrashOptions
		want string
	}{
		{"nothing", func(*testing.T, File) {}, CrashOptions{}, "old"},
		{"unsynced write dropped", func(t *testing.T, f File) {
			writeStr(t, f, "NEW", 0)
		}, CrashOptions{}, "old"},
		{"unsynced extension dropped", func(t *testing.T, f File) {
			writeStr(t, f, "er", 3)
		}, CrashOptions{}, "old"},
		{"synced write survives", func(t *testing.T, f File) {
			writeStr(t, f, "NEW", 0)
			must(t, f.Sync())
		}, CrashOptions{}, "NEW"},
		{"write after sync dropped", func(t *testing.T, f File) {
			writeStr(t, f, "N", 0)
			must(t, f.Sync())
			writeStr(t, f, "EW", 1)
		}, CrashOptions{}, "Nld"},
		{"unsynced truncate dropped", func(t *testing.T, f File) {
			must(t, f.Truncate(1))
		}, CrashOptions{}, "old"},
		{"synced truncate survives", func(t *testing.T, f File) {
			must(t, f.Truncate(1))
			must(t, f.Sync())
		}, CrashOptions{}, "o"},
		{"sync applies in order", func(t *testing.T, f File) {
			writeStr(t, f, "abcdef", 0)
			must(t, f.Truncate(2))
			writeStr(t, f, "Z", 4)
			must(t, f.Sync())
			writeStr(t, f, "lost", 0)
		}, CrashOptions{}, "ab\x00\x00Z"},
		{"KeepUnsynced=1 keeps all", func(t *testing.T, f File) {
			writeStr(t, f, "abcdef", 0)
			must(t, f.Truncate(2))
			writeStr(t, f, "Z", 4)
		}, CrashOptions{KeepUnsynced: 1}, "ab\x00\x00Z"},
		{"small write never torn", func(t *testing.T, f File) {
			writeStr(t, f, strings.Repeat("x", sectorSize), 0)
		}, CrashOptions{TearProbability: 1}, "old"},
		{"truncate never torn", func(t *testing.T, f File) {
			must(t, f.Truncate(4096))
		}, CrashOptions{TearProbability: 1}, "old"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestFS(t)
			put(t, m, "f", []byte("old"))
			f := open(t, m, "f")
			tc.do(t, f)
			m.Crash(tc.opts)
			if got := get(t, m, "f"); string(got) != tc.want {
				t.Errorf("after crash: %q, want %q", got, tc.want)
			}
		})
	}
}

// torn splits got into a run of 'n' bytes and the rest, and returns the
// length of that run.
func tornPrefix(got []byte) int {
	k := 0
	for k < len(got) && got[k] == 'n' {
		k++
	}
	return k
}

func TestMemFSTornWrite(t *testing.T) {
	const size = 8 << 10
	newData := bytes.Repeat([]byte("n"), size)

	t.Run("over old contents", func(t *testing.T) {
		m := newTestFS(t)
		put(t, m, "f", bytes.Repeat([]byte("o"), size))
		f := open(t, m, "f")
		writeStr(t, f, string(newData), 0)
		ks := map[int]bool{}
		for seed := range int64(300) {
			c := m.Clone()
			c.Crash(CrashOptions{Seed: seed, TearProbability: 1})
			got := get(t, c, "f")
			k := tornPrefix(got)
			if len(got) != size || k%sectorSize != 0 || k < sectorSize || k >= size ||
				!bytes.Equal(got[k:], bytes.Repeat([]byte("o"), size-k)) {
				t.Fatalf("seed %d: got %d bytes, %d new then %q...; want 1..15 new sectors then old", seed, len(got), k, got[k:min(k+1, len(got))])
			}
			ks[k/sectorSize] = true
		}
		// Every k in [1, 15] turns up.
		if len(ks) != size/sectorSize-1 {
			t.Errorf("sectors kept over 300 seeds: %v, want all of 1..15", ks)
		}
	})

	t.Run("over a new extension", func(t *testing.T) {
		m := newTestFS(t)
		put(t, m, "f", bytes.Repeat([]byte("o"), 4096))
		f := open(t, m, "f")
		writeStr(t, f, string(newData), 4096)
		for seed := range int64(50) {
			c := m.Clone()
			c.Crash(CrashOptions{Seed: seed, TearProbability: 1})
			got := get(t, c, "f")
			if len(got) != 4096+size || !bytes.Equal(got[:4096], bytes.Repeat([]byte("o"), 4096)) {
				t.Fatalf("seed %d: got %d bytes, want %d starting with the old 4096", seed, len(got), 4096+size)
			}
			tail := got[4096:]
			k := tornPrefix(tail)
			if k%sectorSize != 0 || k < sectorSize || k >= size || !bytes.Equal(tail[k:], make([]byte, size-k)) {
				t.Fatalf("seed %d: extension holds %d new bytes then %q...; want new sectors then zeros", seed, k, tail[k:min(k+1, len(tail))])
			}
		}
	})

	t.Run("sub-sector tail", func(t *testing.T) {
		// A 513-byte write can tear after its first sector: ceil(513/512)-1 = 1.
		m := newTestFS(t)
		put(t, m, "f", nil)
		f := open(t, m, "f")
		writeStr(t, f, strings.Repeat("n", sectorSize+1), 0)
		m.Crash(CrashOptions{TearProbability: 1})
		want := strings.Repeat("n", sectorSize) + "\x00"
		if got := get(t, m, "f"); string(got) != want {
			t.Errorf("got %q, want 512 new bytes and a zero", got)
		}
	})

	t.Run("kept beats torn", func(t *testing.T) {
		m := newTestFS(t)
		put(t, m, "f", nil)
		f := open(t, m, "f")
		writeStr(t, f, string(newData), 0)
		m.Crash(CrashOptions{KeepUnsynced: 1, TearProbability: 1})
		if got := get(t, m, "f"); !bytes.Equal(got, newData) {
			t.Errorf("got %d new bytes of %d, want the whole write", tornPrefix(got), len(got))
		}
	})
}

// messyFS returns a MemFS with unsynced writes, truncates and namespace
// changes of every kind.
func messyFS(t *testing.T) *MemFS {
	m := newTestFS(t, "a", "b")
	for i := range 6 {
		put(t, m, fmt.Sprintf("a/f%d", i), bytes.Repeat([]byte{byte('A' + i)}, 4096))
	}
	for i := range 6 {
		f := open(t, m, fmt.Sprintf("a/f%d", i))
		writeStr(t, f, strings.Repeat(string(rune('a'+i)), 3000), int64(i*100))
		must(t, f.Truncate(int64(5000-i*300)))
		writeStr(t, f, "tail", 6000)
		must(t, f.Close())
	}
	must(t, m.Rename("a/f0", "a/g0"))
	must(t, m.Rename("a/f1", "b/f1"))
	must(t, m.Remove("a/f2"))
	f, err := m.Create("b/new")
	must(t, err)
	writeStr(t, f, strings.Repeat("z", 2000), 0)
	must(t, f.Sync())
	return m
}

func TestMemFSCrashDeterministic(t *testing.T) {
	m := messyFS(t)
	before := snapshot(t, m)
	results := map[string]bool{}
	for seed := range int64(20) {
		opts := CrashOptions{Seed: seed, KeepUnsynced: 0.5, TearProbability: 0.5, KeepUnsyncedDirOps: 0.5}
		c1, c2 := m.Clone(), m.Clone()
		c1.Crash(opts)
		c2.Crash(opts)
		s1, s2 := snapshot(t, c1), snapshot(t, c2)
		if s1 != s2 {
			t.Fatalf("seed %d: two crashes of the same history differ:\n%s\nvs\n%s", seed, s1, s2)
		}
		results[s1] = true
	}
	if len(results) < 10 {
		t.Errorf("20 seeds gave only %d different results", len(results))
	}
	if after := snapshot(t, m); after != before {
		t.Error("crashing clones changed the original")
	}
}

func TestMemFSCrashDirOps(t *testing.T) {
	tests := []struct {
		name    string
		do      func(t *testing.T, m *MemFS) // on d/old and e/x durably holding "old" and "x"
		opts    CrashOptions
		want    map[string]string // files and their contents after the crash
		missing []string          // names that must not exist
		dirs    []string          // directories that must exist
	}{
		{
			name: "create without SyncDir lost",
			do: func(t *testing.T, m *MemFS) {
				f, err := m.Create("d/new")
				must(t, err)
				writeStr(t, f, "new", 0)
				must(t, f.Sync())
			},
			missing: []string{"d/new"},
		},
		{
			name: "create with SyncDir kept",
			do: func(t *testing.T, m *MemFS) {
				f, err := m.Create("d/new")
				must(t, err)
				writeStr(t, f, "new", 0)
				must(t, f.Sync())
				must(t, m.SyncDir("d"))
			},
			want: map[string]string{"d/new": "new"},
		},
		{
			name: "create with SyncDir of another dir lost",
			do: func(t *testing.T, m *MemFS) {
				_, err := m.Create("d/new")
				must(t, err)
				must(t, m.SyncDir("e"))
				must(t, m.SyncDir("/"))
			},
			missing: []string{"d/new"},
		},
		{
			name: "create kept by KeepUnsyncedDirOps",
			do: func(t *testing.T, m *MemFS) {
				_, err := m.Create("d/new")
				must(t, err)
			},
			opts: CrashOptions{KeepUnsyncedDirOps: 1},
			want: map[string]string{"d/new": ""},
		},
		{
			name: "rename without SyncDir undone",
			do:   func(t *testing.T, m *MemFS) { must(t, m.Rename("d/old", "d/renamed")) },
			want: map[string]string{"d/old": "old"}, missing: []string{"d/renamed"},
		},
		{
			name: "rename with SyncDir kept",
			do: func(t *testing.T, m *MemFS) {
				must(t, m.Rename("d/old", "d/renamed"))
				must(t, m.SyncDir("d"))
			},
			want: map[string]string{"d/renamed": "old"}, missing: []string{"d/old"},
		},
		{
			name: "rename over a file without SyncDir undone",
			do:   func(t *testing.T, m *MemFS) { must(t, m.Rename("e/x", "e/y")); must(t, m.Rename("e/y", "d/old")) },
			want: map[string]string{"d/old": "old", "e/x": "x"}, missing: []string{"e/y"},
		},
		{
			name: "remove without SyncDir undone",
			do:   func(t *testing.T, m *MemFS) { must(t, m.Remove("d/old")) },
			want: map[string]string{"d/old": "old"},
		},
		{
			name:    "remove with SyncDir kept",
			do:      func(t *testing.T, m *MemFS) { must(t, m.Remove("d/old")); must(t, m.SyncDir("d")) },
			missing: []string{"d/old"},
		},
		{
			name: "cross-dir rename, both synced",
			do: func(t *testing.T, m *MemFS) {
				must(t, m.Rename("d/old", "e/moved"))
				must(t, m.SyncDir("d"))
				must(t, m.SyncDir("e"))
			},
			want: map[string]string{"e/moved": "old"}, missing: []string{"d/old"},
		},
		{
			name: "cross-dir rename, only new dir synced: both names",
			do: func(t *testing.T, m *MemFS) {
				must(t, m.Rename("d/old", "e/moved"))
				must(t, m.SyncDir("e"))
			},
			want: map[string]string{"d/old": "old", "e/moved": "old"},
		},
		{
			name: "cross-dir rename, only old dir synced: neither name",
			do: func(t *testing.T, m *MemFS) {
				must(t, m.Rename("d/old", "e/moved"))
				must(t, m.SyncDir("d"))
			},
			missing: []string{"d/old", "e/moved"},
		},
		{
			name: "cross-dir rename, kept unsynced: new name only",
			do:   func(t *testing.T, m *MemFS) { must(t, m.Rename("d/old", "e/moved")) },
			opts: CrashOptions{KeepUnsyncedDirOps: 1},
			want: map[string]string{"e/moved": "old"}, missing: []string{"d/old", "d/moved", "e/old"},
		},
		{
			name: "create over an existing file truncates, undone",
			do: func(t *testing.T, m *MemFS) {
				f, err := m.Create("d/old")
				must(t, err)
				if n, _ := f.Size(); n != 0 {
					t.Errorf("size after Create over a file: %d, want 0", n)
				}
				must(t, m.SyncDir("d")) // the name never changed: this syncs nothing of the file
			},
			want: map[string]string{"d/old": "old"},
		},
		{
			name: "create over an existing file truncates, synced",
			do: func(t *testing.T, m *MemFS) {
				f, err := m.Create("d/old")
				must(t, err)
				must(t, f.Sync())
			},
			want: map[string]string{"d/old": ""},
		},
		{
			name: "MkdirAll is durable at once",
			do: func(t *testing.T, m *MemFS) {
				must(t, m.Remove("d/old"))
				must(t, m.MkdirAll("d/old/sub")) // replaces a removed, unsynced name
				must(t, m.MkdirAll("f/g"))
			},
			opts: CrashOptions{KeepUnsyncedDirOps: 1},
			dirs: []string{"d/old/sub", "f/g"},
		},
		{
			name: "MkdirAll survives dropped dir ops",
			do: func(t *testing.T, m *MemFS) {
				must(t, m.Remove("d/old"))
				must(t, m.MkdirAll("d/old/sub"))
			},
			dirs: []string{"d/old/sub"},
		},
		{
			name: "removed directory comes back",
			do: func(t *testing.T, m *MemFS) {
				must(t, m.MkdirAll("d/sub"))
				must(t, m.Remove("d/sub"))
				must(t, m.MkdirAll("d/sub2"))
			},
			dirs: []string{"d/sub", "d/sub2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestFS(t, "d", "e")
			put(t, m, "d/old", []byte("old"))
			put(t, m, "e/x", []byte("x"))
			tc.do(t, m)
			m.Crash(tc.opts)
			for name, want := range tc.want {
				if !exists(m, name) {
					t.Errorf("%s missing after crash", name)
				} else if got := get(t, m, name); string(got) != want {
					t.Errorf("%s = %q after crash, want %q", name, got, want)
				}
			}
			for _, name := range tc.missing {
				if exists(m, name) {
					t.Errorf("%s exists after crash", name)
				}
			}
			for _, dir := range tc.dirs {
				if _, err := m.List(dir); err != nil {
					t.Errorf("directory %s after crash: %v", dir, err)
				}
			}
		})
	}

	// A directory made by MkdirAll survives whichever pending operations a
	// crash keeps.
	m := newTestFS(t, "d")
	put(t, m, "d/old", []byte("old"))
	must(t, m.Remove("d/old"))
	must(t, m.MkdirAll("d/old/sub"))
	must(t, m.MkdirAll("d/sub"))
	must(t, m.Remove("d/sub"))
	for seed := range int64(20) {
		c := m.Clone()
		c.Crash(CrashOptions{Seed: seed, KeepUnsyncedDirOps: 0.5})
		if got, err := c.List("d/old"); err != nil || !slices.Equal(got, []string{"sub"}) {
			t.Errorf("seed %d: List(d/old) = %q, %v; want [sub]", seed, got, err)
		}
	}
	m.Crash(CrashOptions{})
	if got, err := m.List("d/sub"); err != nil || len(got) != 0 {
		t.Errorf("unsynced remove of a directory: List(d/sub) = %q, %v; want it back, empty", got, err)
	}
}

func TestMemFSFsyncgate(t *testing.T) {
	m := newTestFS(t)
	put(t, m, "f", []byte("old"))
	f := open(t, m, "f")
	writeStr(t, f, "NEW", 0)
	m.InjectError(Injection{Op: OpSync, Path: "f", Nth: 1})
	err := f.Sync()
	if !errors.Is(err, ErrInjected) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync = %v, want an injected EIO", err)
	}
	if got := get(t, m, "f"); string(got) != "NEW" {
		t.Errorf("read after failed sync: %q, want NEW (the page cache still has it)", got)
	}
	must(t, f.Sync()) // the rule fired once; this one succeeds
	writeStr(t, f, "!", 3)
	must(t, f.Sync())
	// Even keeping every unsynced write, the write the failed Sync lost stays lost.
	m.Crash(CrashOptions{KeepUnsynced: 1})
	if got := get(t, m, "f"); string(got) != "old!" {
		t.Errorf("after crash: %q, want old!: the failed sync's write must not come back", got)
	}
}

func TestMemFSInjection(t *testing.T) {
	errCustom := errors.New("custom")
	// Every op function performs its operation for the i-th time on a MemFS
	// with directories d and e and durable files d/f and e/g (opened as f
	// and g).
	type env struct {
		t    *testing.T
		m    *MemFS
		f, g File
	}
	read := func(e env, i int) error { _, err := e.f.ReadAt(make([]byte, 1), 0); return err }
	write := func(e env, i int) error { _, err := e.f.WriteAt([]byte("x"), int64(i)); return err }
	writeG := func(e env, i int) error { _, err := e.g.WriteAt([]byte("x"), int64(i)); return err }
	tests := []struct {
		name string
		inj  Injection
		op   func(e env, i int) error
		want string // per call: . ok, x failed
	}{
		{"read 1st", Injection{Op: OpRead, Nth: 1}, read, "x..."},
		{"read 3rd", Injection{Op: OpRead, Nth: 3}, read, "..x."},
		{"read 0th acts as 1st", Injection{Op: OpRead}, read, "x..."},
		{"read 2nd persistent", Injection{Op: OpRead, Nth: 2, Persistent: true}, read, ".xxx"},
		{"write 2nd", Injection{Op: OpWrite, Nth: 2}, write, ".x.."},
		{"write persistent", Injection{Op: OpWrite, Nth: 1, Persistent: true}, write, "xxxx"},
		{"write to exact path", Injection{Op: OpWrite, Path: "/d/f", Nth: 1}, write, "x..."},
		{"write to cleaned path", Injection{Op: OpWrite, Path: "d/./f", Nth: 1}, write, "x..."},
		{"write to other path", Injection{Op: OpWrite, Path: "d/g", Nth: 1}, write, "...."},
		{"write below dir", Injection{Op: OpWrite, Path: "d/", Nth: 2}, write, ".x.."},
		{"write below other dir", Injection{Op: OpWrite, Path: "e/", Nth: 1}, write, "...."},
		{"write below root", Injection{Op: OpWrite, Path: "/", Nth: 1}, writeG, "x..."},
		{"a dir path is not a prefix", Injection{Op: OpWrite, Path: "d", Nth: 1}, write, "...."},
		{"read rule ignores writes", Injection{Op: OpRead, Nth: 1}, write, "...."},
		{"custom error", Injection{Op: OpWrite, Nth: 1, Err: errCustom}, write, "x..."},
		{"sync 2nd", Injection{Op: OpSync, Nth: 2}, func(e env, i int) error { return e.f.Sync() }, ".x.."},
		{"truncate", Injection{Op: OpTruncate, Nth: 1}, func(e env, i int) error { return e.f.Truncate(int64(i)) }, "x..."},
		{"syncdir", Injection{Op: OpSyncDir, Path: "d", Nth: 2, Persistent: true}, func(e env, i int) error { return e.m.SyncDir("d") }, ".xxx"},
		{"syncdir other", Injection{Op: OpSyncDir, Path: "e", Nth: 1}, func(e env, i int) error { return e.m.SyncDir("d") }, "...."},
		{"create", Injection{Op: OpCreate, Path: "d/", Nth: 2}, func(e env, i int) error {
			_, err := e.m.Create(fmt.Sprintf("d/c%d", i))
			return err
		}, ".x.."},
		{"remove", Injection{Op: OpRemove, Nth: 1}, func(e env, i int) error {
			_, err := e.m.Create(fmt.Sprintf("d/r%d", i))
			must(e.t, err)
			return e.m.Remove(fmt.Sprintf("d/r%d", i))
		}, "x..."},
		{"rename by new name", Injection{Op: OpRename, Path: "e/", Nth: 1}, func(e env, i int) error {
			_, err := e.m.Create(fmt.Sprintf("d/n%d", i))
			must(e.t, err)
			return e.m.Rename(fmt.Sprintf("d/n%d", i), fmt.Sprintf("e/n%d", i))
		}, "x..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestFS(t, "d", "e")
			put(t, m, "d/f", []byte("data"))
			put(t, m, "e/g", []byte("data"))
			e := env{t: t, m: m, f: open(t, m, "d/f"), g: open(t, m, "e/g")}
			// Operations before the rule is added do not count.
			for i := range 2 {
				if err := tc.op(e, 10+i); err != nil {
					t.Fatal(err)
				}
			}
			m.InjectError(tc.inj)
			var got strings.Builder
			for i := range len(tc.want) {
				err := tc.op(e, i)
				if err == nil {
					got.WriteByte('.')
					continue
				}
				got.WriteByte('x')
				wantErr := tc.inj.Err
				if wantErr == nil {
					wantErr = syscall.EIO
				}
				if !errors.Is(err, ErrInjected) || !errors.Is(err, wantErr) {
					t.Errorf("call %d: %v, want one matching ErrInjected and %v", i, err, wantErr)
				}
			}
			if got.String() != tc.want {
				t.Errorf("calls failed as %q, want %q", got.String(), tc.want)
			}
			m.ClearInjections()
			if err := tc.op(e, 99); err != nil {
				t.Errorf("after ClearInjections: %v", err)
			}
		})
	}
}

// With several rules, each counts every matching operation and the first
// rule added that fires gives the error.
func TestMemFSInjectionRules(t *testing.T) {
	m := newTestFS(t)
	f, err := m.Create("f")
	must(t, err)
	errA, errB := errors.New("a"), errors.New("b")
	m.InjectError(Injection{Op: OpWrite, Nth: 1, Err: errA})
	m.InjectError(Injection{Op: OpWrite, Nth: 1, Err: errB})
	m.InjectError(Injection{Op: OpWrite, Nth: 3, Err: errB})
	want := []error{errA, nil, errB, nil}
	for i, w := range want {
		_, err := f.WriteAt([]byte("x"), 0)
		if w == nil && err != nil || w != nil && !errors.Is(err, w) {
			t.Errorf("write %d: %v, want %v", i+1, err, w)
		}
	}
}

// TestMemFSInjectionChangesNothing checks that an operation failed by an
// injection leaves no trace, now or after a crash that keeps everything.
func TestMemFSInjectionChangesNothing(t *testing.T) {
	m := newTestFS(t, "d")
	put(t, m, "d/f", []byte("data"))
	put(t, m, "d/g", []byte("gggg"))
	f := open(t, m, "d/f")
	before := snapshot(t, m)
	stats := m.Stats()
	for _, op := range []Op{OpRead, OpWrite, OpTruncate, OpCreate, OpRename, OpRemove, OpSyncDir} {
		m.InjectError(Injection{Op: op, Persistent: true})
	}
	if _, err := f.ReadAt(make([]byte, 4), 0); err == nil {
		t.Error("read succeeded")
	}
	if _, err := f.WriteAt([]byte("XXXXXXXX"), 2); err == nil {
		t.Error("write succeeded")
	}
	if err := f.Truncate(1); err == nil {
		t.Error("truncate succeeded")
	}
	if _, err := m.Create("d/new"); err == nil {
		t.Error("create succeeded")
	}
	if _, err := m.Create("d/g"); err == nil {
		t.Error("create over a file succeeded")
	}
	if err := m.Rename("d/f", "d/g"); err == nil {
		t.Error("rename succeeded")
	}
	if err := m.Remove("d/f"); err == nil {
		t.Error("remove succeeded")
	}
	if err := m.SyncDir("d"); err == nil {
		t.Error("syncdir succeeded")
	}
	m.ClearInjections()
	if st := m.Stats(); st != stats {
		t.Errorf("failed operations changed the stats from %+v to %+v", stats, st)
	}
	if got := snapshot(t, m); got != before {
		t.Errorf("failed operations changed the files:\n%s\nwant\n%s", got, before)
	}
	m.Crash(CrashOptions{KeepUnsynced: 1, KeepUnsyncedDirOps: 1})
	if got := snapshot(t, m); got != before {
		t.Errorf("failed operations left pending changes:\n%s\nwant\n%s", got, before)
	}
}

// A failed SyncDir leaves the directory's changes pending.
func TestMemFSFailedSyncDir(t *testing.T) {
	m := newTestFS(t, "d")
	_, err := m.Create("d/new")
	must(t, err)
	m.InjectError(Injection{Op: OpSyncDir, Nth: 1})
	if err := m.SyncDir("d"); !errors.Is(err, ErrInjected) {
		t.Fatalf("SyncDir = %v, want injected", err)
	}
	m.Crash(CrashOptions{})
	if exists(m, "d/new") {
		t.Error("a create survived a failed SyncDir and a crash")
	}
}

func TestMemFSSpaceLimit(t *testing.T) {
	m := newTestFS(t, "d")
	a, err := m.Create("d/a")
	must(t, err)
	b, err := m.Create("d/b")
	must(t, err)
	m.SetSpaceLimit(100)
	enospc := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s: got %v, want ENOSPC", what, err)
		}
	}
	writeStr(t, a, strings.Repeat("a", 60), 0)
	_, err = b.WriteAt([]byte(strings.Repeat("b", 50)), 0)
	enospc("write past the limit", err)
	writeStr(t, b, strings.Repeat("b", 40), 0) // exactly at the limit
	writeStr(t, a, "AAAAAAAAAA", 0)            // overwrites need no space
	enospc("truncate past the limit", a.Truncate(61))
	_, err = a.WriteAt([]byte("x"), 60)
	enospc("append at the limit", err)
	if got := get(t, m, "d/a"); string(got) != "AAAAAAAAAA"+strings.Repeat("a", 50) {
		t.Errorf("d/a = %q after failed writes", got)
	}
	if n, _ := m.Stat("d/b"); n != 40 {
		t.Errorf("d/b size %d after a failed write, want 40", n)
	}
	must(t, a.Truncate(10))
	writeStr(t, b, strings.Repeat("b", 50), 40) // 10 + 90 = 100
	must(t, m.Remove("d/b"))                    // frees 90
	c, err := m.Create("d/c")
	must(t, err)
	writeStr(t, c, strings.Repeat("c", 90), 0)
	m.SetSpaceLimit(0)
	writeStr(t, c, strings.Repeat("c", 1000), 90)
	// The failed write left nothing pending.
	m.Crash(CrashOptions{KeepUnsynced: 1, KeepUnsyncedDirOps: 1})
	if got := get(t, m, "d/a"); string(got) != "AAAAAAAAAA" {
		t.Errorf("d/a after crash = %q", got)
	}
}

func TestMemFSLock(t *testing.T) {
	m := newTestFS(t, "d")
	l1, err := m.Lock("d/LOCK")
	must(t, err)
	if !exists(m, "d/LOCK") {
		t.Error("Lock did not create the file")
	}
	for _, name := range []string{"d/LOCK", "/d/./LOCK"} {
		if _, err := m.Lock(name); !errors.Is(err, ErrLocked) {
			t.Errorf("second Lock(%q): %v, want ErrLocked", name, err)
		}
	}
	l2, err := m.Lock("d/OTHER")
	must(t, err)
	must(t, l1.Close())
	if err := l1.Close(); err == nil {
		t.Error("second Close of a lock succeeded")
	}
	l3, err := m.Lock("d/LOCK")
	must(t, err)
	_ = l3

	m.Crash(CrashOptions{}) // the process died: its locks are gone
	l4, err := m.Lock("d/LOCK")
	must(t, err)
	must(t, l2.Close()) // a lock from before the crash releases nothing
	must(t, l3.Close())
	if _, err := m.Lock("d/LOCK"); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock after an old lock's Close: %v, want ErrLocked", err)
	}
	must(t, l4.Close())
	if _, err := m.Lock("d"); err == nil {
		t.Error("Lock of a directory succeeded")
	}
}

func TestMemFSHandlesAfterCrash(t *testing.T) {
	m := newTestFS(t)
	put(t, m, "f", []byte("data"))
	f := open(t, m, "f")
	closed := open(t, m, "f")
	must(t, closed.Close())
	m.Crash(CrashOptions{})
	calls := []struct {
		name string
		err  error
	}{
		{"ReadAt", func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err }()},
		{"WriteAt", func() error { _, err := f.WriteAt([]byte("x"), 0); return err }()},
		{"Sync", f.Sync()},
		{"Truncate", f.Truncate(0)},
		{"Size", func() error { _, err := f.Size(); return err }()},
		{"Close", f.Close()},
	}
	for _, c := range calls {
		if !errors.Is(c.err, ErrCrashed) || !errors.Is(c.err, fs.ErrClosed) ||
			!strings.Contains(c.err.Error(), "vfs: file handle invalidated by crash") {
			t.Errorf("%s after crash: %v, want ErrCrashed", c.name, c.err)
		}
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want fs.ErrClosed", err)
	}
	if _, err := closed.WriteAt([]byte("x"), 0); !errors.Is(err, fs.ErrClosed) || errors.Is(err, ErrCrashed) {
		t.Errorf("WriteAt on a handle closed before the crash: %v, want plain fs.ErrClosed", err)
	}
	if f.Name() != "f" {
		t.Errorf("Name() = %q", f.Name())
	}
	// The file system itself carries on.
	g := open(t, m, "f")
	writeStr(t, g, "D", 0)
	if got := get(t, m, "f"); string(got) != "Data" {
		t.Errorf("after reopening: %q", got)
	}
}

func TestMemFSHandlesSurviveRenameAndRemove(t *testing.T) {
	m := newTestFS(t, "d", "e")
	put(t, m, "d/f", []byte("data"))
	f := open(t, m, "d/f")
	must(t, m.Rename("d/f", "e/g"))
	writeStr(t, f, "D", 0)
	if got := get(t, m, "e/g"); string(got) != "Data" {
		t.Errorf("e/g = %q after writing through the old handle", got)
	}
	must(t, m.Remove("e/g"))
	writeStr(t, f, "A", 1)
	must(t, f.Sync())
	p := make([]byte, 4)
	if _, err := f.ReadAt(p, 0); err != nil || string(p) != "DAta" {
		t.Errorf("read of a removed file: %q, %v", p, err)
	}
	if f.Name() != "d/f" {
		t.Errorf("Name() = %q, want the name it was opened with", f.Name())
	}
	must(t, f.Close())
}

func TestMemFSClone(t *testing.T) {
	m := newTestFS(t, "d")
	put(t, m, "d/f", []byte("old"))
	f := open(t, m, "d/f")
	writeStr(t, f, "new", 0) // unsynced
	m.SetSpaceLimit(1000)
	m.InjectError(Injection{Op: OpRead, Persistent: true})
	c := m.Clone()

	// The copy sees the current contents and has no injections.
	if got := get(t, c, "d/f"); string(got) != "new" {
		t.Errorf("clone: d/f = %q, want new", got)
	}
	// Changes to one are not seen by the other.
	g := open(t, c, "d/f")
	writeStr(t, g, "N", 0)
	m.ClearInjections()
	if got := get(t, m, "d/f"); string(got) != "new" {
		t.Errorf("original: d/f = %q after writing the clone, want new", got)
	}
	writeStr(t, f, "!", 1)
	must(t, f.Sync()) // must not reach the clone's durable image
	if got := get(t, c, "d/f"); string(got) != "New" {
		t.Errorf("clone: d/f = %q after writing the original, want New", got)
	}
	must(t, c.Remove("d/f"))
	if !exists(m, "d/f") {
		t.Error("removing from the clone removed from the original")
	}
	// The copy has the space limit.
	h, err := c.Create("d/h")
	must(t, err)
	if _, err := h.WriteAt(make([]byte, 2000), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("clone ignores the space limit: %v", err)
	}
	// The copy keeps the durability bookkeeping: its crash drops the
	// unsynced write and its remove, and leaves the original alone.
	c.Crash(CrashOptions{})
	if got := get(t, c, "d/f"); string(got) != "old" {
		t.Errorf("crashed clone: d/f = %q, want old", got)
	}
	if exists(c, "d/h") {
		t.Error("crashed clone kept an unsynced create")
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); err != nil {
		t.Errorf("crashing the clone broke the original's handle: %v", err)
	}
	if st := c.Stats(); st.Writes != 1 {
		t.Errorf("clone stats %+v, want one write", st)
	}
}

// TestMemFSModes: MemFS keeps the permission bits the OS FS would leave
// (DirPerm, FilePerm), lets a test change them with Chmod, and keeps them
// through renames, crashes and clones.
func TestMemFSModes(t *testing.T) {
	m := newTestFS(t, "db/base")
	put(t, m, "db/f", []byte("x"))
	must(t, m.Chmod("db", 0o777))
	must(t, m.Chmod("db/f", 0o644|fs.ModeSetuid)) // only the permission bits count
	check := func(when string, want map[string]fs.FileMode) {
		t.Helper()
		for name, w := range want {
			if got, err := m.Perm(name); got != w || err != nil {
				t.Errorf("%s: Perm(%s) = %04o, %v; want %04o", when, name, got, err, w)
			}
		}
	}
	check("after Chmod", map[string]fs.FileMode{"/": DirPerm, "db": 0o777, "db/base": DirPerm, "db/f": 0o644})

	must(t, m.Rename("db/f", "db/g"))
	must(t, m.SyncDir("db"))
	m.Crash(CrashOptions{})
	check("after rename and crash", map[string]fs.FileMode{"db": 0o777, "db/g": 0o644})
	c := m.Clone()
	must(t, c.Chmod("db", 0o700))
	check("original after chmod of the clone", map[string]fs.FileMode{"db": 0o777})
	if got, _ := c.Perm("db/g"); got != 0o644 {
		t.Errorf("clone: Perm(db/g) = %04o, want 0644", got)
	}

	// Create makes the file private again, as the OS FS's fchmod does; a
	// Lock of an existing file leaves its mode.
	f, err := m.Create("db/g")
	must(t, err)
	must(t, f.Close())
	must(t, m.Chmod("db/g", 0o666))
	l, err := m.Lock("db/g")
	must(t, err)
	must(t, l.Close())
	check("after Lock", map[string]fs.FileMode{"db/g": 0o666})
	f, err = m.Create("db/g")
	must(t, err)
	must(t, f.Close())
	check("after Create", map[string]fs.FileMode{"db/g": FilePerm})

	for _, name := range []string{"missing", "db/missing", "db/g/x"} {
		if _, err := m.Perm(name); err == nil {
			t.Errorf("Perm(%s) succeeded", name)
		}
		if err := m.Chmod(name, 0o700); err == nil {
			t.Errorf("Chmod(%s) succeeded", name)
		}
	}
	if _, err := m.Perm("db/missing"); !IsNotExist(err) {
		t.Errorf("Perm of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestMemFSCorruptByte(t *testing.T) {
	m := newTestFS(t)
	put(t, m, "f", []byte("abc"))
	must(t, m.CorruptByte("f", 1, 0x20))
	if got := get(t, m, "f"); string(got) != "aBc" {
		t.Errorf("after CorruptByte: %q", got)
	}
	m.Crash(CrashOptions{})
	if got := get(t, m, "f"); string(got) != "aBc" {
		t.Errorf("corruption did not reach the disk: %q after crash", got)
	}
	for _, tc := range []struct {
		name string
		off  int64
	}{{"f", 3}, {"f", -1}, {"missing", 0}, {"/", 0}} {
		if err := m.CorruptByte(tc.name, tc.off, 1); err == nil {
			t.Errorf("CorruptByte(%q, %d) succeeded", tc.name, tc.off)
		}
	}
}

func TestMemFSStats(t *testing.T) {
	m := newTestFS(t)
	f, err := m.Create("f")
	must(t, err)
	writeStr(t, f, "hello", 0)
	writeStr(t, f, "!", 5)
	must(t, f.Sync())
	_, err = f.ReadAt(make([]byte, 6), 0)
	must(t, err)
	must(t, m.SyncDir("/"))
	want := MemFSStats{Reads: 1, Writes: 2, Syncs: 1, DirSyncs: 1, BytesWritten: 6}
	if got := m.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// stepFS passes every call to a MemFS and then calls snap, so that a test
// can look at every intermediate state.
type stepFS struct {
	*MemFS
	snap func()
}

type stepFile struct {
	File
	snap func()
}

func (s stepFS) Create(name string) (File, error) {
	f, err := s.MemFS.Create(name)
	s.snap()
	if err != nil {
		return nil, err
	}
	return stepFile{f, s.snap}, nil
}

func (s stepFS) Open(name string) (File, error) {
	f, err := s.MemFS.Open(name)
	if err != nil {
		return nil, err
	}
	return stepFile{f, s.snap}, nil
}

func (s stepFS) Rename(o, n string) error { defer s.snap(); return s.MemFS.Rename(o, n) }
func (s stepFS) Remove(name string) error { defer s.snap(); return s.MemFS.Remove(name) }
func (s stepFS) SyncDir(dir string) error { defer s.snap(); return s.MemFS.SyncDir(dir) }
func (f stepFile) Sync() error            { defer f.snap(); return f.File.Sync() }
func (f stepFile) Close() error           { defer f.snap(); return f.File.Close() }
func (f stepFile) Truncate(n int64) error { defer f.snap(); return f.File.Truncate(n) }
func (f stepFile) WriteAt(p []byte, off int64) (int, error) {
	defer f.snap()
	return f.File.WriteAt(p, off)
}

// crashStates runs update on a MemFS durably holding old in d/f, crashes
// copies of every intermediate state in many ways, and returns the contents
// of d/f each crash left (missing as "<missing>"), the last state's apart.
func crashStates(t *testing.T, old []byte, update func(FS) error) (during, after map[string]bool) {
	m := newTestFS(t, "d")
	put(t, m, "d/f", old)
	var snaps []*MemFS
	snap := func() { snaps = append(snaps, m.Clone()) }
	snap()
	must(t, update(stepFS{m, snap}))
	snap()
	var variants []CrashOptions
	for _, keep := range []float64{0, 0.5, 1} {
		for _, tear := range []float64{0, 1} {
			for _, dirOps := range []float64{0, 0.5, 1} {
				for seed := range int64(4) {
					variants = append(variants, CrashOptions{Seed: seed, KeepUnsynced: keep, TearProbability: tear, KeepUnsyncedDirOps: dirOps})
				}
			}
		}
	}
	during, after = map[string]bool{}, map[string]bool{}
	for i, s := range snaps {
		for _, opts := range variants {
			c := s.Clone()
			c.Crash(opts)
			got := "<missing>"
			if exists(c, "d/f") {
				got = string(get(t, c, "d/f"))
			}
			if i == len(snaps)-1 {
				after[got] = true
			} else {
				during[got] = true
			}
		}
	}
	return during, after
}

func TestMemFSWriteFileAtomic(t *testing.T) {
	old := bytes.Repeat([]byte("o"), 4096)
	newData := bytes.Repeat([]byte("n"), 8192)
	during, after := crashStates(t, old, func(fsys FS) error {
		return WriteFileAtomic(fsys, "d/f", newData)
	})
	for got := range during {
		if got != string(old) && got != string(newData) {
			t.Errorf("a crash during WriteFileAtomic left %d bytes starting %q", len(got), got[:min(len(got), 16)])
		}
	}
	if !during[string(old)] || !during[string(newData)] {
		t.Errorf("crashes during WriteFileAtomic never left old (%v) or never new (%v)", during[string(old)], during[string(newData)])
	}
	if len(after) != 1 || !after[string(newData)] {
		t.Errorf("a crash after WriteFileAtomic returned did not leave the new contents: %d outcomes", len(after))
	}

	// The same check catches an update in place.
	during, _ = crashStates(t, old, func(fsys FS) error {
		f, err := fsys.Open("d/f")
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(newData, 0); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	})
	mixed := 0
	for got := range during {
		if got != string(old) && got != string(newData) {
			mixed++
		}
	}
	if mixed == 0 {
		t.Error("crashes during an update in place never left a mix of old and new")
	}
}

func TestMemFSConcurrent(t *testing.T) {
	m := newTestFS(t, "d")
	const (
		workers = 8
		region  = 1024
		rounds  = 200
	)
	files := make([]File, 2)
	for i := range files {
		f, err := m.Create(fmt.Sprintf("d/f%d", i))
		must(t, err)
		files[i] = f
	}
	must(t, m.SyncDir("d"))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			f := files[w%2]
			off := int64(w/2) * region
			buf := make([]byte, region)
			for r := range rounds {
				want := bytes.Repeat([]byte{byte(w*rounds + r)}, region)
				if _, err := f.WriteAt(want, off); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
					t.Error(err)
					return
				}
				if !bytes.Equal(buf, want) {
					t.Errorf("worker %d round %d: read back something else", w, r)
					return
				}
				if r%10 == 9 || r == rounds-1 {
					if err := f.Sync(); err != nil {
						t.Error(err)
						return
					}
				}
				if _, err := f.Size(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range rounds {
			m.Stats()
			if _, err := m.List("d"); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	m.Crash(CrashOptions{})
	for w := range workers {
		f := open(t, m, fmt.Sprintf("d/f%d", w%2))
		buf := make([]byte, region)
		_, err := f.ReadAt(buf, int64(w/2)*region)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if want := bytes.Repeat([]byte{byte(w*rounds + rounds - 1)}, region); !bytes.Equal(buf, want) {
			t.Errorf("worker %d: its last synced write did not survive the crash", w)
		}
	}
}

// TestMemFSRandomAgainstModel runs random writes, truncates and syncs and
// compares crashes against a simple model: a crash keeping nothing leaves
// what each file held at its last Sync, one keeping everything leaves what
// it holds now.
func TestMemFSRandomAgainstModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	m := newTestFS(t, "d")
	const nfiles = 3
	var (
		files  [nfiles]File
		now    [nfiles][]byte
		synced [nfiles][]byte
	)
	for i := range nfiles {
		put(t, m, fmt.Sprintf("d/f%d", i), nil)
		files[i] = open(t, m, fmt.Sprintf("d/f%d", i))
	}
	check := func(step int) {
		for _, keep := range []float64{0, 1} {
			c := m.Clone()
			c.Crash(CrashOptions{Seed: rng.Int64(), KeepUnsynced: keep, TearProbability: 0})
			for i := range nfiles {
				want := synced[i]
				if keep == 1 {
					want = now[i]
				}
				if got := get(t, c, fmt.Sprintf("d/f%d", i)); !bytes.Equal(got, want) {
					t.Fatalf("step %d, KeepUnsynced %v: d/f%d holds %d bytes, model %d (or different bytes)", step, keep, i, len(got), len(want))
				}
			}
		}
	}
	for step := range 400 {
		i := rng.IntN(nfiles)
		f := files[i]
		switch r := rng.IntN(10); {
		case r < 6:
			p := make([]byte, 1+rng.IntN(2000))
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			off := rng.Int64N(int64(len(now[i])) + 100)
			writeStr(t, f, string(p), off)
			if end := off + int64(len(p)); end > int64(len(now[i])) {
				now[i] = append(now[i], make([]byte, end-int64(len(now[i])))...)
			}
			copy(now[i][off:], p)
		case r < 8:
			size := rng.Int64N(int64(len(now[i])) + 100)
			must(t, f.Truncate(size))
			if size <= int64(len(now[i])) {
				now[i] = now[i][:size]
			} else {
				now[i] = append(now[i], make([]byte, size-int64(len(now[i])))...)
			}
		default:
			must(t, f.Sync())
			synced[i] = slices.Clone(now[i])
		}
		if got := get(t, m, fmt.Sprintf("d/f%d", i)); !bytes.Equal(got, now[i]) {
			t.Fatalf("step %d: d/f%d reads %d bytes, model %d (or different bytes)", step, i, len(got), len(now[i]))
		}
		if step%20 == 0 {
			check(step)
		}
	}
	check(400)
}
