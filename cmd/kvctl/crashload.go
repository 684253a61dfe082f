package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/heapkv/heapkv/kv"
)

// crashload is the write load of the SIGKILL test; doc.go describes the
// keys it writes and what a checker may conclude after a crash.

// crashTxID names worker w's n-th transaction of run seed.
func crashTxID(seed int64, w, n int) string {
	return fmt.Sprintf("%d-%d-%d", seed, w, n)
}

func runCrashload(e *env, args []string) error {
	fs := e.flags("crashload")
	seed := fs.Int64("seed", time.Now().UnixNano()%1_000_000_000, "run `N`, the first part of every transaction id (>= 0; unique per run)")
	keys := fs.Int("keys", 4, "fresh keys each transaction writes")
	hot := fs.Int("hot", 0, "keys of its worker each transaction overwrites")
	lag := fs.Int("delete-lag", 0, "delete the fresh keys of the transaction `N` before (0: none)")
	workers := fs.Int("workers", 1, "concurrent writers")
	ckpt := fs.Int("checkpoint-every", 0, "force a checkpoint after every `N` commits of a worker (0: never)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *seed < 0 || *keys < 0 || *hot < 0 || *lag < 0 || *workers < 1 || *ckpt < 0 {
		return usageErrorf("crashload: --seed, --keys, --hot, --delete-lag and --checkpoint-every must not be negative, --workers at least 1")
	}
	db, err := e.open(false)
	if err != nil {
		return err
	}
	// No Close: the load ends when the process is killed (or fails).
	for _, s := range db.Settings() {
		if s.Name == "synchronous_commit" && s.Value != "on" {
			return fmt.Errorf("crashload: synchronous_commit is %s; acks would not mean durable", s.Value)
		}
	}
	// e.stdout is unbuffered (os.Stdout): each ack is one write, out
	// before the worker starts its next transaction.
	out := e.stdout
	var outMu sync.Mutex
	errc := make(chan error, *workers)
	for w := range *workers {
		go func() {
			errc <- crashWorker(db, *seed, w, *keys, *hot, *lag, *ckpt, func(id string) error {
				outMu.Lock()
				defer outMu.Unlock()
				_, err := fmt.Fprintf(out, "ack %s\n", id)
				return err
			})
		}()
	}
	return <-errc
}

func crashWorker(db *kv.DB, seed int64, w, keys, hot, lag, ckpt int, ack func(string) error) error {
	ctx := context.Background()
	nkeys := []byte(strconv.Itoa(keys))
	for n := 0; ; n++ {
		id := crashTxID(seed, w, n)
		err := db.Update(ctx, func(tx *kv.Tx) error {
			for i := range keys {
				if err := tx.Put(fmt.Appendf(nil, "t%s/%d", id, i), fmt.Appendf(nil, "%s:%d", id, i)); err != nil {
					return err
				}
			}
			for j := range hot {
				if err := tx.Put(fmt.Appendf(nil, "h%d-%d/%d", seed, w, j), []byte(id)); err != nil {
					return err
				}
			}
			if lag > 0 && n >= lag {
				old := crashTxID(seed, w, n-lag)
				for i := range keys {
					if err := tx.Delete(fmt.Appendf(nil, "t%s/%d", old, i)); err != nil {
						return err
					}
				}
			}
			return tx.Put([]byte("tx/"+id), nkeys)
		})
		if err != nil {
			return fmt.Errorf("crashload: transaction %s: %w", id, err)
		}
		if err := ack(id); err != nil {
			return err
		}
		if ckpt > 0 && n%ckpt == ckpt-1 {
			if err := db.Checkpoint(); err != nil {
				return fmt.Errorf("crashload: checkpoint after %s: %w", id, err)
			}
		}
	}
}
