package kv

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/sortspill"
)

// A killed process leaves a sort's runs in DIR/tmp; the next Open removes them and
// nothing else, and a sort over the engine's temp space is counted in
// Stats and capped by temp_file_limit.
func TestOpenSweepsTempFiles(t *testing.T) {
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	if err := spill(t, db.temp); err != nil {
		t.Fatal(err)
	}
	st, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Database.TempFiles == 0 || st.Database.TempBytes == 0 {
		t.Errorf("a spilled sort is not counted: %+v", st.Database)
	}
	left, _ := fs.List("/db/tmp")
	if len(left) == 0 {
		t.Fatal("the unclosed sort left no temp file to sweep")
	}
	f, err := fs.Create("/db/tmp/operator-notes")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// A killed process: the files stay, the sort is never closed.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openMem(t, fs, smallOpts())
	defer db.Close()
	if names, _ := fs.List("/db/tmp"); !slices.Equal(names, []string{"operator-notes"}) {
		t.Fatalf("after Open DIR/tmp holds %v, want only the file the engine did not write", names)
	}
}

func TestTempFileLimitSetting(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := smallOpts()
	if err := opts.Set("temp_file_limit", "64kB"); err != nil {
		t.Fatal(err)
	}
	db := openMem(t, fs, opts)
	defer db.Close()
	if err := spill(t, db.temp); !errors.Is(err, ErrTempFileLimit) {
		t.Fatalf("got %v, want ErrTempFileLimit", err)
	}
	if names, _ := fs.List("/db/tmp"); len(names) != 0 {
		t.Fatalf("temp files left after the limit: %v", names)
	}
	for _, bad := range []string{"-2", "1x"} {
		if err := new(Options).Set("temp_file_limit", bad); !errors.Is(err, ErrBadSetting) {
			t.Errorf("temp_file_limit = %s: got %v, want ErrBadSetting", bad, err)
		}
	}
}

// spill sorts enough records at the smallest budget to write runs, and
// leaves the sort open (a crash) unless it fails.
func spill(t *testing.T, ts *sortspill.TempSpace) error {
	t.Helper()
	s, err := sortspill.NewSorter(context.Background(), bytes.Compare, sortspill.SortOptions{Budget: sortspill.MinBudget, Temp: ts})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rec := make([]byte, 100) // random, so compression cannot shrink the runs below the limit
	for range 5000 {
		for i := range rec {
			rec[i] = byte(rng.Uint32())
		}
		if err := s.Add(rec); err != nil {
			return err
		}
	}
	return nil
}
