package kv

import (
	"context"
	"fmt"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/xlog"
)

// An Open that fails after WAL replay must not write a checkpoint: the
// transaction manager had not finished recovering, so the checkpoint would
// record a next xid it never set, and the next Open would hand out xids
// again (issue 11, defect 4). The control file must be untouched.
func TestFailedOpenDoesNotCheckpoint(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	var last base.XID
	for i := range 20 {
		tx, _ := db.Begin(ctx, TxOptions{})
		if err := tx.Put(fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
		last = tx.t.XID()
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			db.Checkpoint() // the CLOG page goes to disk, recovery must read it
		}
	}
	running, _ := db.Begin(ctx, TxOptions{}) // running at the crash
	running.Put([]byte("running"), []byte("x"))
	crashed := fs.Clone()
	db.Close()
	control, err := vfs.ReadFile(crashed, "/db/control")
	if err != nil {
		t.Fatal(err)
	}

	// Recovery reads the CLOG after the replay; make those reads fail.
	crashed.InjectError(vfs.Injection{Op: vfs.OpRead, Path: "/db/clog/", Persistent: true})
	if db, err := open(crashed, "/db", smallOpts()); err == nil {
		db.Close()
		t.Fatal("Open succeeded although every CLOG read fails")
	}
	crashed.ClearInjections()
	// Recovery may raise the control file's MustReach; it must not record
	// a checkpoint.
	before, err := xlog.DecodeControl(control)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := vfs.ReadFile(crashed, "/db/control")
	after, err := xlog.DecodeControl(b)
	if err != nil {
		t.Fatal(err)
	}
	if after.CheckPoint != before.CheckPoint || after.NextXID != before.NextXID {
		t.Fatalf("a failed Open wrote a checkpoint: control file's checkpoint %v, next xid %d; was %v, %d",
			after.CheckPoint, after.NextXID, before.CheckPoint, before.NextXID)
	}
	db = openMem(t, crashed, smallOpts())
	defer db.Close()
	tx, _ := db.Begin(ctx, TxOptions{})
	defer tx.Rollback()
	if err := tx.Put([]byte("after"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if x := tx.t.XID(); x <= last {
		t.Fatalf("xid %d handed out again (the last committed one before the crash was %d)", x, last)
	}
	if v, err := db.Get([]byte("k19")); err != nil || string(v) != "v" {
		t.Fatalf("k19 after recovery: %q, %v", v, err)
	}
}
