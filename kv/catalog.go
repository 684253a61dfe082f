package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/txn"
)

// The catalog is a keyspace of its own (relations 1 and 2) mapping each
// named keyspace to its relations:
//
//	key:   the keyspace name
//	value: heap relfilenode u32 | index relfilenode u32   (little-endian)
//
// Reading and changing it goes through transactions like any keyspace, so
// creating or dropping a keyspace commits or rolls back with the rest of
// the transaction. A dropped keyspace's files are removed after its
// transaction commits; relation files that no committed catalog entry names
// (left by a crash between commit and removal, or by an aborted create) are
// removed at the next Open.

func encodeCatalogEntry(heapRel, indexRel base.RelFileNode) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(heapRel))
	binary.LittleEndian.PutUint32(b[4:], uint32(indexRel))
	return b[:]
}

func decodeCatalogEntry(b []byte) (heapRel, indexRel base.RelFileNode, err error) {
	if len(b) != 8 {
		return 0, 0, base.CorruptionErrorf("kv: catalog entry of %d bytes", len(b))
	}
	return base.RelFileNode(binary.LittleEndian.Uint32(b)), base.RelFileNode(binary.LittleEndian.Uint32(b[4:])), nil
}

func checkKeyspaceName(name string) error {
	if name == "" || name == "default" {
		return fmt.Errorf("%w: keyspace name %q is reserved", ErrBadSetting, name)
	}
	if len(name) > MaxKeySize {
		return fmt.Errorf("%w: keyspace name of %d bytes", ErrKeyTooLarge, len(name))
	}
	return nil
}

// lookupKeyspace finds name in the catalog as tx sees it.
func (tx *Tx) lookupKeyspace(name string) (*keyspace, error) {
	if name == "" || name == "default" {
		return tx.db.def, nil
	}
	v, err := tx.get(tx.db.catalog, []byte(name))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNoKeyspace, name)
	}
	if err != nil {
		return nil, err
	}
	h, i, err := decodeCatalogEntry(v)
	if err != nil {
		return nil, err
	}
	return tx.db.openKeyspace(name, h, i)
}

// CreateKeyspace creates keyspace name as part of tx: others see it once tx
// commits.
func (tx *Tx) CreateKeyspace(name string) error {
	if err := tx.begin(true); err != nil {
		return err
	}
	defer tx.end()
	if err := checkKeyspaceName(name); err != nil {
		return err
	}
	if _, err := tx.get(tx.db.catalog, []byte(name)); err == nil {
		return fmt.Errorf("%w: %q", ErrKeyspaceExists, name)
	} else if !errors.Is(err, ErrNotFound) {
		return tx.fail(err)
	}
	heapRel := base.RelFileNode(tx.db.nextRel.Add(2) - 2)
	indexRel := heapRel + 1
	if _, err := tx.db.openKeyspace(name, heapRel, indexRel); err != nil {
		return tx.fail(err)
	}
	return tx.fail(tx.put(tx.db.catalog, []byte(name), encodeCatalogEntry(heapRel, indexRel)))
}

// DropKeyspace drops keyspace name as part of tx. Its files go when tx
// commits.
func (tx *Tx) DropKeyspace(name string) error {
	if err := tx.begin(true); err != nil {
		return err
	}
	defer tx.end()
	ks, err := tx.lookupKeyspace(name)
	if err != nil {
		return tx.fail(err)
	}
	if ks == tx.db.def {
		return fmt.Errorf("%w: the default keyspace cannot be dropped", ErrBadSetting)
	}
	found, err := tx.del(tx.db.catalog, []byte(name))
	if err != nil {
		return tx.fail(err)
	}
	if found {
		tx.dropped = append(tx.dropped, ks)
	}
	return nil
}

// Keyspaces lists the named keyspaces tx sees (not the default one).
func (tx *Tx) Keyspaces() ([]string, error) {
	it := tx.scan(tx.db.catalog, nil, nil, nil)
	defer it.Close()
	var names []string
	for it.Next() {
		names = append(names, string(it.Key()))
	}
	return names, it.Err()
}

// dropFiles removes a dropped keyspace's relations, after its transaction
// committed.
func (db *DB) dropFiles(ks *keyspace) {
	db.ksMu.Lock()
	delete(db.keyspaces, ks.t.HeapRel())
	db.ksMu.Unlock()
	ks.t.Close()
	for _, rel := range []base.RelFileNode{ks.t.HeapRel(), ks.t.IndexRel()} {
		if err := db.pool.DropRelation(rel); err != nil {
			db.cfg.Logger.Warn("kv: keep relation of dropped keyspace until next open", "rel", rel, "err", err)
			continue
		}
		db.pool.Storage().Drop(rel)
		db.fs.Remove(path.Join(db.dir, "base", fmt.Sprintf("%d_fsm", rel)))
	}
}

// removeOrphans deletes relation files that no catalog entry names, where
// an entry counts if it is committed and not deleted by a committed
// transaction, or if a prepared transaction inserted it: that transaction
// may still commit, and its keyspace's rows are in those files. (A
// prepared drop leaves the committed entry undeleted until it commits, so
// its files stay too.) It runs at Open, after recovery and before any
// other transaction, so the only transactions in progress are prepared
// ones.
func (db *DB) removeOrphans() error {
	keep := map[base.RelFileNode]bool{catalogHeapRel: true, catalogIndexRel: true, defaultHeapRel: true, defaultIndexRel: true}
	t := db.txm.Begin()
	defer t.Rollback()
	var snap txn.Snapshot
	if err := t.Snapshot(&snap); err != nil {
		return err
	}
	err := db.catalog.t.ForEachNewest(func(key []byte, v txn.Version, tid base.TID) error {
		j, err := txn.Judge(v, &snap, db.txm)
		if err != nil {
			return err
		}
		if !j.Visible() {
			st, err := db.txm.Status(v.XMin)
			if err != nil {
				return err
			}
			if st != txn.InProgress {
				return nil
			}
		}
		value, err := db.catalog.t.Value(tid)
		if err != nil {
			return err
		}
		h, i, err := decodeCatalogEntry(value)
		if err != nil {
			return fmt.Errorf("kv: catalog entry %q: %w", key, err)
		}
		keep[h], keep[i] = true, true
		return nil
	})
	if err != nil {
		return err
	}
	dir := path.Join(db.dir, "base")
	names, err := db.fs.List(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		rel, ok := relOfFile(n)
		if !ok || keep[rel] {
			continue
		}
		if err := db.pool.DropRelation(rel); err != nil {
			return err
		}
		if strings.HasSuffix(n, "_fsm") {
			err = db.fs.Remove(path.Join(dir, n))
		} else {
			err = db.pool.Storage().Drop(rel)
		}
		if err != nil {
			return fmt.Errorf("kv: remove orphan relation file %s: %w", n, err)
		}
	}
	return db.fs.SyncDir(dir)
}
