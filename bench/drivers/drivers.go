// Package drivers adapts each engine under test to ycsb.DB.
//
// Every driver gives Update and ReadModifyWrite the same shape, a
// read-merge-write in one transaction, because all engines store a record
// as one value: heapkv (GetForUpdate + Put at Read Committed), bbolt
// (Update), badger (Update, retried on ErrConflict) and PostgreSQL
// (SELECT ... FOR UPDATE + UPDATE) use their transactions; pebble has none,
// so its driver serialises writers of one key with a striped mutex and
// writes one batch. Reads return a copy; scans read values.
package drivers

import (
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/heapkv/heapkv/bench/ycsb"
)

// All returns the drivers by name, in report order.
func All() []ycsb.Driver {
	return []ycsb.Driver{Heapkv(), Pebble(), Bbolt(), Badger(), Postgres()}
}

// Get returns the driver called name.
func Get(name string) (ycsb.Driver, error) {
	for _, d := range All() {
		if d.Name == name {
			return d, nil
		}
	}
	return ycsb.Driver{}, fmt.Errorf("drivers: unknown engine %q (heapkv, pebble, bbolt, badger, postgres)", name)
}

// keyLocks serialise read-merge-write per key for engines without
// transactions.
type keyLocks struct {
	seed  maphash.Seed
	locks [1024]sync.Mutex
}

func newKeyLocks() *keyLocks { return &keyLocks{seed: maphash.MakeSeed()} }

func (l *keyLocks) of(key []byte) *sync.Mutex {
	return &l.locks[maphash.Bytes(l.seed, key)%uint64(len(l.locks))]
}
