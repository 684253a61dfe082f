package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/heapkv/heapkv/kv"
)

// The commands that read and write keys: get, put, del, scan, keyspace.

func keyspaceFlag(fs *flag.FlagSet) *string {
	return fs.String("keyspace", "", "the keyspace `NAME` (default: the default keyspace)")
}

func formatFlag(fs *flag.FlagSet) *string {
	return fs.String("format", "text", "output `format`: text or json")
}

func checkFormat(f string) error {
	if f != "text" && f != "json" {
		return usageErrorf("--format takes text or json, got %q", f)
	}
	return nil
}

func runGet(e *env, args []string) error {
	fs := e.flags("get")
	ks := keyspaceFlag(fs)
	raw := fs.Bool("raw", false, "print the value's bytes alone, without a newline")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	key := []byte(pos[0])
	var v []byte
	err = e.withDB(true, func(db *kv.DB) error {
		return db.View(context.Background(), func(tx *kv.Tx) (err error) {
			v, err = tx.Keyspace(*ks).Get(key)
			return err
		})
	})
	if errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("key %s not found", strconv.Quote(pos[0]))
	}
	if err != nil {
		return err
	}
	if !*raw {
		v = append(v, '\n')
	}
	_, err = e.stdout.Write(v)
	return err
}

func runPut(e *env, args []string) error {
	fs := e.flags("put")
	ks := keyspaceFlag(fs)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	key, value := []byte(pos[0]), []byte(pos[1])
	if pos[1] == "-" {
		// One byte past the limit is enough for kv to refuse it.
		value, err = io.ReadAll(io.LimitReader(e.stdin, kv.MaxValueSize+1))
		if err != nil {
			return fmt.Errorf("read value from stdin: %w", err)
		}
	}
	return e.withDB(false, func(db *kv.DB) error {
		return db.Update(context.Background(), func(tx *kv.Tx) error {
			return tx.Keyspace(*ks).Put(key, value)
		})
	})
}

func runDel(e *env, args []string) error {
	fs := e.flags("del")
	ks := keyspaceFlag(fs)
	pos, err := parse(fs, args, 1, -1)
	if err != nil {
		return err
	}
	return e.withDB(false, func(db *kv.DB) error {
		return db.Update(context.Background(), func(tx *kv.Tx) error {
			k := tx.Keyspace(*ks)
			for _, key := range pos {
				if err := k.Delete([]byte(key)); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

func runScan(e *env, args []string) error {
	fs := e.flags("scan")
	ks := keyspaceFlag(fs)
	format := formatFlag(fs)
	rf := addRangeFlags(fs)
	limit := fs.Int("limit", 0, "stop after `N` pairs (0: no limit)")
	reverse := fs.Bool("reverse", false, "from the last key down")
	qf := addQueryFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	if *limit < 0 {
		return usageErrorf("--limit must not be negative")
	}
	lo, hi, err := rf.bounds()
	if err != nil {
		return err
	}
	q, sorted, err := qf.query(lo, hi, *reverse, *limit)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(e.stdout, 64<<10)
	err = e.withDB(true, func(db *kv.DB) error {
		return db.View(context.Background(), func(tx *kv.Tx) error {
			k := tx.Keyspace(*ks)
			if sorted {
				r := k.Query(q)
				err := printRows(w, *format, r)
				if cerr := r.Close(); err == nil {
					err = cerr
				}
				return err
			}
			it := k.Scan(lo, hi, &kv.ScanOptions{Reverse: *reverse, Limit: *limit})
			defer it.Close()
			return printIterator(w, *format, it)
		})
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// printIterator writes a scan's pairs: KEY<TAB>VALUE lines, or JSON lines.
func printIterator(w io.Writer, format string, it *kv.Iterator) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for it.Next() {
		var err error
		if format == "json" {
			err = enc.Encode(newJSONRecord(it.Key(), it.Value()))
		} else {
			_, err = fmt.Fprintf(w, "%s\t%s\n", textField(it.Key()), textField(it.Value()))
		}
		if err != nil {
			return err
		}
	}
	return it.Err()
}

// prefixEnd returns the least key above every key beginning with p, or nil
// if there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func runKeyspace(e *env, args []string) error {
	fs := e.flags("keyspace")
	pos, err := parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	switch {
	case pos[0] == "list" && len(pos) == 1:
		var names []string
		err := e.withDB(true, func(db *kv.DB) error {
			return db.View(context.Background(), func(tx *kv.Tx) (err error) {
				names, err = tx.Keyspaces()
				return err
			})
		})
		if err != nil {
			return err
		}
		w := bufio.NewWriter(e.stdout)
		for _, n := range names {
			fmt.Fprintln(w, n)
		}
		return w.Flush()
	case pos[0] == "create" && len(pos) == 2:
		return e.withDB(false, func(db *kv.DB) error { return db.CreateKeyspace(pos[1]) })
	case pos[0] == "drop" && len(pos) == 2:
		return e.withDB(false, func(db *kv.DB) error { return db.DropKeyspace(pos[1]) })
	}
	fs.Usage()
	return errUsageShown
}
