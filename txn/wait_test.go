package txn

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/xlog"
)

// TestTxWaitCases: Tx.Wait for every kind of holder, in a synctest bubble
// (WAL and all) so that "at once" and "after the lock timeout" are exact.
// No wait lasts for ever on an xid that holds no lock: one that has ended
// returns nil at once; one the CLOG still calls running although it holds
// no lock can never end, and is reported at once. Prepared transactions,
// restored at recovery too, hold their locks and are waited for.
func TestTxWaitCases(t *testing.T) {
	const lockTimeout = 2 * time.Second
	type setupFunc func(t *testing.T) (*xlog.Log, *Manager, base.XID)
	cfg := Config{LockTimeout: lockTimeout, DeadlockTimeout: time.Second}
	open := func(t *testing.T, fs vfs.FS) (*xlog.Log, *Manager) {
		return openManagerConfig(t, fs, walConfig(), cfg)
	}
	// crash closes l after copying fs, crashes the copy, and recovers it.
	crash := func(t *testing.T, fs *vfs.MemFS, l *xlog.Log) (*xlog.Log, *Manager) {
		c := fs.Clone()
		l.Close()
		c.Crash(vfs.CrashOptions{})
		return open(t, c)
	}
	writer := func(t *testing.T, m *Manager) (*Tx, base.XID) {
		tx := m.Begin()
		x, err := tx.WriteXID()
		if err != nil {
			t.Fatal(err)
		}
		return tx, x
	}
	running := func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
		l, m := open(t, vfs.NewMemFS())
		_, x := writer(t, m)
		return l, m, x
	}
	// prepared makes a prepared transaction with a subtransaction and
	// returns its top xid (sub false) or subxid; with restart, after a
	// crash and recovery.
	prepared := func(sub, restart bool) setupFunc {
		return func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
			fs := vfs.NewMemFS()
			l, m := open(t, fs)
			tx, x := writer(t, m)
			if _, err := tx.Savepoint(); err != nil {
				t.Fatal(err)
			}
			sx, err := tx.WriteXID()
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Prepare("g"); err != nil {
				t.Fatal(err)
			}
			if restart {
				l, m = crash(t, fs, l)
			}
			if sub {
				return l, m, sx
			}
			return l, m, x
		}
	}
	cases := []struct {
		name      string
		setup     setupFunc
		ctx       time.Duration                // context deadline; 0: none
		meanwhile func(m *Manager, x base.XID) // run in a goroutine during the wait
		want      error                        // nil, or what the error must match
		wantAfter time.Duration
	}{
		{name: "committed", setup: func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
			fs := vfs.NewMemFS()
			l, m := open(t, fs)
			tx, x := writer(t, m)
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			return l, m, x
		}},
		{name: "rolled back", setup: func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
			fs := vfs.NewMemFS()
			l, m := open(t, fs)
			tx, x := writer(t, m)
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			return l, m, x
		}},
		{name: "subtransaction rolled back to its savepoint", setup: func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
			fs := vfs.NewMemFS()
			l, m := open(t, fs)
			tx, _ := writer(t, m)
			d, _ := tx.Savepoint()
			sx, err := tx.WriteXID()
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.RollbackToSavepoint(d); err != nil {
				t.Fatal(err)
			}
			return l, m, sx
		}},
		{name: "running at a crash, aborted by recovery", setup: func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
			fs := vfs.NewMemFS()
			l, m := open(t, fs)
			_, x := writer(t, m)
			l, m = crash(t, fs, l)
			return l, m, x
		}},
		{name: "running, commits after 1s", setup: running,
			meanwhile: func(m *Manager, x base.XID) {
				// The holder's Tx is gone with setup; end it by hand as
				// Commit would, at the CLOG and the lock.
				time.Sleep(time.Second)
				m.clog.SetStatus([]base.XID{x}, Committed, 0)
				m.locks.Release(x)
			},
			wantAfter: time.Second},
		{name: "running: lock timeout", setup: running, want: ErrLockTimeout, wantAfter: lockTimeout},
		{name: "running: context deadline first", setup: running, ctx: 1500 * time.Millisecond,
			want: context.DeadlineExceeded, wantAfter: 1500 * time.Millisecond},
		{name: "running: halt", setup: running,
			meanwhile: func(m *Manager, x base.XID) {
				time.Sleep(500 * time.Millisecond)
				m.halt.Stop(errors.New("data file fsync failed"))
			},
			want: base.ErrStopped, wantAfter: 500 * time.Millisecond},
		{name: "halted before the wait", setup: func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
			l, m, x := running(t)
			m.halt.Stop(errors.New("WAL write failed"))
			return l, m, x
		}, want: base.ErrStopped},
		{name: "prepared", setup: prepared(false, false), want: ErrLockTimeout, wantAfter: lockTimeout},
		{name: "prepared subtransaction", setup: prepared(true, false), want: ErrLockTimeout, wantAfter: lockTimeout},
		{name: "prepared, restored by recovery", setup: prepared(false, true), want: ErrLockTimeout, wantAfter: lockTimeout},
		{name: "prepared subtransaction, restored by recovery", setup: prepared(true, true), want: ErrLockTimeout, wantAfter: lockTimeout},
		{name: "prepared, restored, committed after 1s", setup: prepared(false, true),
			meanwhile: func(m *Manager, _ base.XID) {
				time.Sleep(time.Second)
				if err := m.CommitPrepared("g"); err != nil {
					panic(err)
				}
			},
			wantAfter: time.Second},
		{name: "in progress in the CLOG, holding no lock", setup: func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
			l, m, x := running(t)
			m.locks.Release(x) // a lock lost: the transaction can never end
			return l, m, x
		}, want: base.ErrCorrupt},
		{name: "never handed out", setup: func(t *testing.T) (*xlog.Log, *Manager, base.XID) {
			fs := vfs.NewMemFS()
			l, m := open(t, fs)
			return l, m, base.XID(m.next.Load()) + 1000
		}, want: base.ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l, m, holder := tc.setup(t)
				defer l.Close()
				waiter := m.Begin()
				if _, err := waiter.WriteXID(); err != nil && m.Err() == nil {
					t.Fatal(err)
				}
				ctx := t.Context()
				if tc.ctx > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.ctx)
					defer cancel()
				}
				if tc.meanwhile != nil {
					go tc.meanwhile(m, holder)
				}
				start := time.Now()
				err := waiter.Wait(ctx, holder)
				if d := time.Since(start); d != tc.wantAfter {
					t.Errorf("Wait returned after %v, want %v", d, tc.wantAfter)
				}
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("Wait = %v, want %v", err, tc.want)
				}
				wantTimeouts := uint64(0)
				if tc.want == ErrLockTimeout {
					wantTimeouts = 1
				}
				if s := m.Stats().Locks; s.LockTimeouts != wantTimeouts || s.Waiting != 0 {
					t.Fatalf("lock stats %+v, want %d lock timeouts, nobody waiting", s, wantTimeouts)
				}
				synctest.Wait() // let meanwhile finish
				waiter.Rollback()
			})
		})
	}
}
