package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/table"
	"github.com/heapkv/heapkv/txn"
)

// Isolation is a transaction isolation level.
type Isolation int8

const (
	// RepeatableRead (the zero value) is snapshot isolation: one snapshot
	// for the whole transaction; a write to a row another transaction
	// changed and committed after the snapshot fails with ErrSerialization
	// (first updater wins).
	RepeatableRead Isolation = iota
	// ReadCommitted takes a new snapshot for every operation; a write to
	// a row changed by a transaction that committed meanwhile goes ahead on
	// the newest version.
	ReadCommitted
	// Serializable adds SSI to RepeatableRead. Not built yet:
	// Begin returns ErrNotSupported.
	Serializable
)

func (i Isolation) String() string {
	return [...]string{"repeatable read", "read committed", "serializable"}[i]
}

// TxOptions configures a transaction.
type TxOptions struct {
	Isolation Isolation
	// ReadOnly transactions fail writes with ErrReadOnly.
	ReadOnly bool
}

// Tx is a transaction. It is not safe for concurrent use. Slices returned
// by Get are the caller's. After Commit or Rollback every call returns
// ErrTxDone. A transaction that gets ErrSerialization or ErrDeadlock from
// any call has been rolled back: retry it from the start (Update does).
type Tx struct {
	db       *DB
	ctx      context.Context
	t        *txn.Tx
	opts     TxOptions
	snap     txn.Snapshot
	haveSnap bool
	done     bool
	// aborted is the error that ended the transaction block mid-way (a
	// failed statement): tx has been rolled back, every call but Rollback
	// fails with ErrTxAborted, and Commit rolls back.
	aborted error
	dropped []*keyspace // keyspaces dropped by this transaction
	counts  map[*keyspace]*txCounts
}

// txCounts are a transaction's changes to one keyspace, applied to its
// estimated live and dead version counts when the transaction ends.
type txCounts struct {
	inserted, updated, deleted, versions int64
}

func (tx *Tx) countsFor(ks *keyspace) *txCounts {
	if tx.counts == nil {
		tx.counts = make(map[*keyspace]*txCounts, 1)
	}
	c := tx.counts[ks]
	if c == nil {
		c = &txCounts{}
		tx.counts[ks] = c
	}
	return c
}

// settleCounts applies tx's counts as committed or rolled back.
func (tx *Tx) settleCounts(committed bool) {
	for ks, c := range tx.counts {
		if committed {
			ks.counts.live.Add(c.inserted - c.deleted)
			ks.counts.dead.Add(c.updated + c.deleted)
			ks.counts.changed.Add(c.inserted + c.updated + c.deleted)
		} else {
			ks.counts.dead.Add(c.versions)
		}
	}
	tx.counts = nil
}

// Begin starts a transaction. ctx bounds its lock waits.
func (db *DB) Begin(ctx context.Context, opts TxOptions) (*Tx, error) {
	if opts.Isolation == Serializable {
		return nil, fmt.Errorf("%w: serializable isolation", ErrNotSupported)
	}
	if opts.Isolation < RepeatableRead || opts.Isolation > Serializable {
		return nil, fmt.Errorf("%w: isolation level %d", ErrBadSetting, opts.Isolation)
	}
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.leave()
	if ctx == nil {
		ctx = context.Background()
	}
	return &Tx{db: db, ctx: ctx, t: db.txm.Begin(), opts: opts}, nil
}

// begin starts a call on tx: it checks tx and the database are usable and
// holds off Close until end.
func (tx *Tx) begin(write bool) error {
	if tx.done {
		return ErrTxDone
	}
	if tx.aborted != nil {
		return tx.abortedErr()
	}
	if write && tx.opts.ReadOnly {
		return ErrReadOnly
	}
	return tx.db.enter()
}

func (tx *Tx) end() { tx.db.leave() }

// beginLast starts a call that ends tx (Commit, Prepare), as begin(false)
// does, except that a transaction whose statement failed ends here, with
// ErrTxAborted. After a nil error the caller must defer tx.end.
func (tx *Tx) beginLast() error {
	if tx.done {
		return ErrTxDone
	}
	if tx.aborted != nil {
		tx.done = true
		return tx.abortedErr()
	}
	return tx.db.enter()
}

// snapshot returns the snapshot for the next operation: the transaction's
// own under Repeatable Read, a fresh one under Read Committed.
func (tx *Tx) snapshot() (*txn.Snapshot, error) {
	if !tx.haveSnap || tx.opts.Isolation == ReadCommitted {
		if err := tx.t.Snapshot(&tx.snap); err != nil {
			return nil, err
		}
		tx.haveSnap = true
	} else {
		tx.t.SetOwn(&tx.snap)
	}
	return &tx.snap, nil
}

// fail translates err to kv's sentinels and decides what it means for tx.
// ErrNotFound and the keyspace errors are answers, not failures: tx goes
// on. A serialization failure or deadlock rolls tx back and ends it (retry
// from the start). Any other error came from a statement that may have
// changed rows part-way (a Put that set the old version's xmax and then
// failed to insert the new one), so, as in PostgreSQL's "current
// transaction is aborted", tx is rolled back at once and every later call
// but Rollback fails with ErrTxAborted; Commit rolls back too. Validation
// errors (empty or oversized key or value) are returned before any change
// and never reach fail.
func (tx *Tx) fail(err error) error {
	if err == nil {
		return nil
	}
	err = tx.db.stopped(err)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNoKeyspace), errors.Is(err, ErrKeyspaceExists):
		return err
	case errors.Is(err, txn.ErrDeadlock):
		tx.db.stats.deadlocks.Add(1)
		tx.abort()
		return fmt.Errorf("%w: %v", ErrDeadlock, err)
	case errors.Is(err, table.ErrSerialization):
		tx.db.stats.conflicts.Add(1)
		tx.abort()
		return fmt.Errorf("%w: %w", ErrSerialization, err)
	case errors.Is(err, table.ErrValueTooLarge):
		err = fmt.Errorf("%w: %v", ErrValueTooLarge, err)
	case errors.Is(err, pagecache.ErrNoUnpinnedBuffers):
		err = fmt.Errorf("%w: %w", ErrBusy, err)
	case errors.Is(err, txn.ErrLockTimeout):
		tx.db.stats.lockTimeouts.Add(1)
		err = fmt.Errorf("%w: %v", ErrLockTimeout, err)
	}
	tx.abortBlock(err)
	return err
}

// abortBlock rolls tx back after a failed statement and keeps the cause
// for the calls that follow (see fail).
func (tx *Tx) abortBlock(cause error) {
	if tx.done || tx.aborted != nil {
		return
	}
	tx.aborted = cause
	tx.t.Rollback() // an error here (the engine stopped) leaves the xid to recovery
	tx.settleCounts(false)
}

func (tx *Tx) abortedErr() error {
	return fmt.Errorf("%w (it failed with: %w)", ErrTxAborted, tx.aborted)
}

func (tx *Tx) abort() {
	if !tx.done {
		tx.done = true
		if tx.aborted == nil {
			tx.t.Rollback()
			tx.settleCounts(false)
		}
	}
}

// keyAccess is what a call on one key does with it. A ReadOnly transaction
// may only read; locking the row (GetForUpdate) counts as a write.
type keyAccess int8

const (
	readKey  keyAccess = iota // Get
	writeKey                  // Put, Delete
	lockKey                   // GetForUpdate
)

// beginKey starts a call on one key: it checks key, then value (nil for a
// call that writes none), before any change and in that order, and then
// begins the call for a. After a nil error the caller must defer tx.end.
func (tx *Tx) beginKey(a keyAccess, key, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrValueTooLarge, len(value), MaxValueSize)
	}
	return tx.begin(a != readKey)
}

// Get returns the value of key, or ErrNotFound.
func (tx *Tx) Get(key []byte) ([]byte, error) { return tx.getIn(tx.db.def, key) }

func (tx *Tx) getIn(ks *keyspace, key []byte) ([]byte, error) { return tx.read(ks, key, readKey) }

// read is Get (readKey) and GetForUpdate (lockKey).
func (tx *Tx) read(ks *keyspace, key []byte, a keyAccess) ([]byte, error) {
	if err := tx.beginKey(a, key, nil); err != nil {
		return nil, err
	}
	defer tx.end()
	var v []byte
	var err error
	if a == lockKey {
		v, err = tx.lockRow(ks, key)
	} else {
		v, err = tx.get(ks, key)
	}
	return v, tx.fail(err)
}

func (tx *Tx) get(ks *keyspace, key []byte) ([]byte, error) {
	// The snapshot first: an index entry read after it is at least as new
	// as the snapshot, so the walk from it reaches the version the snapshot
	// sees. Taken after the lookup, a snapshot could see an update commit
	// whose new version the looked-up entry predates: the old version then
	// reads as deleted and an existing row as not found.
	snap, err := tx.snapshot()
	if err != nil {
		return nil, err
	}
	v, ok, err := ks.t.Get(key, snap, nil)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

// Put sets key to value. A nil value and an empty one are the same.
func (tx *Tx) Put(key, value []byte) error { return tx.putIn(tx.db.def, key, value) }

func (tx *Tx) putIn(ks *keyspace, key, value []byte) error {
	if err := tx.beginKey(writeKey, key, value); err != nil {
		return err
	}
	defer tx.end()
	return tx.fail(tx.put(ks, key, value))
}

// Delete removes key. Deleting an absent key is not an error.
func (tx *Tx) Delete(key []byte) error { return tx.deleteIn(tx.db.def, key) }

func (tx *Tx) deleteIn(ks *keyspace, key []byte) error {
	if err := tx.beginKey(writeKey, key, nil); err != nil {
		return err
	}
	defer tx.end()
	_, err := tx.del(ks, key)
	return tx.fail(err)
}

// GetForUpdate returns the value of key and locks the row until tx ends,
// like SELECT ... FOR UPDATE: another writer of the key waits for tx.
func (tx *Tx) GetForUpdate(key []byte) ([]byte, error) { return tx.getForUpdateIn(tx.db.def, key) }

func (tx *Tx) getForUpdateIn(ks *keyspace, key []byte) ([]byte, error) {
	return tx.read(ks, key, lockKey)
}

// writer is tx as the table layer needs it for a write: its snapshot
// rule and its lock waits.
func (tx *Tx) writer() *table.Writer {
	return &table.Writer{Ctx: tx.ctx, Tx: tx.t, Snapshot: tx.snapshot, ReadCommitted: tx.opts.Isolation == ReadCommitted}
}

// put writes a new version of key.
func (tx *Tx) put(ks *keyspace, key, value []byte) error {
	ch, err := ks.t.Put(tx.writer(), key, value)
	if ch.Versions > 0 {
		c := tx.countsFor(ks)
		c.versions += ch.Versions
		if ch.Inserted {
			c.inserted++
		}
		if ch.Updated {
			c.updated++
		}
	}
	return err
}

// del marks key's current version deleted, reporting whether there was
// one.
func (tx *Tx) del(ks *keyspace, key []byte) (bool, error) {
	found, err := ks.t.Delete(tx.writer(), key)
	if found {
		tx.countsFor(ks).deleted++
	}
	return found, err
}

// lockRow locks key's current version and returns its value.
func (tx *Tx) lockRow(ks *keyspace, key []byte) ([]byte, error) {
	v, found, err := ks.t.LockRow(tx.writer(), key)
	if err == nil && !found {
		err = ErrNotFound
	}
	return v, err
}

func truncKey(k []byte) []byte {
	if len(k) > 64 {
		return k[:64]
	}
	return k
}

// Commit makes tx's writes durable (with SynchronousCommit on) and visible.
// After it returns, with or without error, tx is over; a failed Commit has
// rolled back, except after an error matching ErrEngineStopped: the engine
// stopped while the commit record was being made durable, so whether it
// reached the disk is unknown until the next Open, whose recovery commits
// the transaction whole if it did and aborts it whole if not.
func (tx *Tx) Commit() error {
	if err := tx.beginLast(); err != nil {
		return err
	}
	defer tx.end()
	tx.done = true
	if err := tx.t.Commit(); err != nil {
		tx.settleCounts(false)
		return tx.db.stopped(err)
	}
	tx.settleCounts(true)
	for _, ks := range tx.dropped {
		tx.db.dropFiles(ks)
	}
	return nil
}

// Rollback discards tx's writes. Rollback of an ended transaction returns
// ErrTxDone.
func (tx *Tx) Rollback() error {
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	if tx.aborted != nil {
		return nil // rolled back when its statement failed
	}
	tx.settleCounts(false)
	return tx.t.Rollback()
}

// Update runs fn in a new transaction at the default isolation and commits
// it. If fn returns an error the transaction is rolled back and the error
// returned unchanged. Serialization failures and deadlocks are retried,
// with backoff, up to 10 attempts.
func (db *DB) Update(ctx context.Context, fn func(tx *Tx) error) error {
	return db.retry(ctx, TxOptions{}, fn)
}

// View runs fn in a read-only transaction.
func (db *DB) View(ctx context.Context, fn func(tx *Tx) error) error {
	return db.retry(ctx, TxOptions{ReadOnly: true}, fn)
}

const maxAttempts = 10

func (db *DB) retry(ctx context.Context, opts TxOptions, fn func(tx *Tx) error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		tx, err := db.Begin(ctx, opts)
		if err != nil {
			return err
		}
		err = runFn(tx, fn)
		if err == nil {
			err = tx.Commit()
		} else if !tx.done {
			tx.Rollback()
		}
		retryable := errors.Is(err, ErrSerialization) || errors.Is(err, ErrDeadlock)
		if !retryable || attempt == maxAttempts {
			return err
		}
		d := backoff/2 + rand.N(backoff)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

// runFn calls fn, rolling back and re-panicking if it panics.
func runFn(tx *Tx, fn func(*Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if !tx.done {
				tx.Rollback()
			}
			panic(p)
		}
	}()
	return fn(tx)
}

// Get reads key in its own transaction.
func (db *DB) Get(key []byte) (v []byte, err error) {
	err = db.View(context.Background(), func(tx *Tx) error {
		v, err = tx.Get(key)
		return err
	})
	return v, err
}

// Put writes key in its own transaction.
func (db *DB) Put(key, value []byte) error {
	return db.Update(context.Background(), func(tx *Tx) error { return tx.Put(key, value) })
}

// Delete deletes key in its own transaction.
func (db *DB) Delete(key []byte) error {
	return db.Update(context.Background(), func(tx *Tx) error { return tx.Delete(key) })
}

// CreateKeyspace creates a keyspace in its own transaction.
func (db *DB) CreateKeyspace(name string) error {
	return db.Update(context.Background(), func(tx *Tx) error { return tx.CreateKeyspace(name) })
}

// DropKeyspace drops a keyspace in its own transaction.
func (db *DB) DropKeyspace(name string) error {
	return db.Update(context.Background(), func(tx *Tx) error { return tx.DropKeyspace(name) })
}

// Prepare ends tx's first phase of two-phase commit under the name gid: its
// writes stay invisible and its rows stay locked, across restarts, until
// CommitPrepared or RollbackPrepared decides it (from any transaction or
// process). tx is over when Prepare returns.
func (tx *Tx) Prepare(gid string) error {
	if err := tx.beginLast(); err != nil {
		return err
	}
	defer tx.end()
	if len(gid) == 0 || len(gid) > MaxGIDSize {
		return fmt.Errorf("%w: gid must be 1 to %d bytes, got %d", ErrBadSetting, MaxGIDSize, len(gid))
	}
	if err := tx.t.Prepare(gid); err != nil {
		if errors.Is(err, txn.ErrDuplicateGID) {
			return fmt.Errorf("%w: prepared transaction %q exists", ErrBadSetting, gid)
		}
		// Anything else (the engine stopped) ends the transaction; if
		// the prepare record reached the disk, recovery restores it.
		tx.abortBlock(err)
		tx.done = true
		return tx.db.stopped(err)
	}
	tx.done = true
	tx.settleCounts(false) // decided later; count its versions when it is
	return nil
}

// CommitPrepared commits the prepared transaction gid.
func (db *DB) CommitPrepared(gid string) error { return db.finishPrepared(gid, true) }

// RollbackPrepared rolls back the prepared transaction gid.
func (db *DB) RollbackPrepared(gid string) error { return db.finishPrepared(gid, false) }

func (db *DB) finishPrepared(gid string, commit bool) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	var err error
	if commit {
		err = db.txm.CommitPrepared(gid)
	} else {
		err = db.txm.RollbackPrepared(gid)
	}
	if errors.Is(err, txn.ErrUnknownGID) {
		return fmt.Errorf("%w: no prepared transaction %q", ErrNotFound, gid)
	}
	return db.stopped(err)
}

// Prepared lists the gids of the prepared transactions awaiting a decision.
func (db *DB) Prepared() ([]string, error) {
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.leave()
	return db.txm.Prepared(), nil
}
