package heap

import (
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/xlog"
)

// dumpWAL logs the control file and every record that touches block blk,
// to explain a failed recovery.
func dumpWAL(t *testing.T, fs vfs.FS, segSize int64, blk base.BlockNum) {
	t.Helper()
	data, err := vfs.ReadFile(fs, testDir+"/control")
	if err != nil {
		t.Logf("control file: %v", err)
		return
	}
	ctl, err := xlog.DecodeControl(data)
	t.Logf("control file: %+v (err %v)", ctl, err)
	r := xlog.NewReader(fs, testDir, segSize, base.LSN(segSize), 0)
	for r.Next() {
		rec := r.Record()
		if rec.Rmgr == xlog.RmgrXLOG {
			t.Logf("%v..%v xlog info %#x", rec.LSN, rec.End, rec.Info)
		}
		for _, b := range rec.Blocks {
			if b.Block == blk {
				t.Logf("%v..%v rmgr %d info %#x xid %d block %d: %v of %d bytes", rec.LSN, rec.End, rec.Rmgr, rec.Info, rec.XID, b.Block, b.Kind, len(b.Data))
			}
		}
	}
	t.Logf("WAL ends: %v (err %v)", r.End(), r.Err())
}
