// Package bench compares heapkv with other embeddable stores and with
// PostgreSQL under the YCSB core workloads. It holds no code; its parts:
//
//   - bench/ycsb: the workload generator and runner, written from upstream
//     YCSB's CoreWorkload description: workloads A-F with upstream
//     proportions, the scrambled zipfian request distribution (a zipfian of
//     constant 0.99 over 10^10 items, zeta precomputed, FNV-64 hashed mod
//     the item count, re-drawn beyond the last acknowledged insert), the
//     "latest" distribution (zipfian counted back from the newest
//     acknowledged insert), uniform scan lengths, and upstream's key names
//     ("user" + decimal of FNV-1a-64 of the record number, bytes taken
//     least-significant first as Java does, so the key set and its order
//     match upstream's and not go-ycsb's). A record is one value of
//     fieldcount x fieldlength bytes (10 x 100 = 1000 by default); UPDATE
//     rewrites one field, so every engine does read-merge-write in one
//     transaction, which is also what READ_MODIFY_WRITE does. Latencies go
//     into per-thread log-linear histograms (32 sub-buckets per power of
//     two, under 3% error), merged at the end; results print as go-ycsb's
//     "READ - Takes(s): ..." lines.
//   - bench/drivers: one ycsb.DB per engine: heapkv (kv), pebble v2,
//     bbolt, badger v4, and PostgreSQL (a private server started with
//     initdb/pg_ctl, over a Unix socket, via pgx; skipped when absent).
//     Every scan copies each value out to the client, as upstream's scan
//     fills its result vector. heapkv's driver also reports what the
//     engine did in each run (buffer hit ratio, writes by backends,
//     bgwriter and checkpoints, WAL volume and full-page images), printed
//     under its result lines: the material for explaining a gap.
//   - bench/workloads: upstream's six workload files, embedded.
//   - bench/cmd/ycsb: the runner (ycsb mode and groupcommit mode), which
//     writes a comparison table, CSV, JSON and SVG charts to --out.
//
// # Module
//
// bench is a module of its own, github.com/heapkv/heapkv/bench, so that
// the engine's go.mod requires none of the stores compared here (pebble
// stays there only for kv's tests). Its go.mod replaces the engine with
// the tree it sits in (../), so it always measures this checkout, and the
// repository's go.work joins both modules so that `go run ./bench/cmd/ycsb`
// works from the root. The drivers use only kv's public API, as an
// embedder would. `go test ./...` at the root stops at bench/; the root's
// `go test ./... ./bench/...`, or `go test ./...` inside bench/, runs its
// tests.
//
// # What is measured
//
// For each workload and engine: a load of recordcount records with
// threadcount threads (always with relaxed durability, and not part of the
// comparison), then operationcount operations (or --duration), reported
// as throughput and TOTAL p50/p99 latency, and as a ratio to heapkv. Each
// engine and workload starts on fresh directories: by default (--load-once)
// each engine loads once per record set into a template that is closed and
// then copied afresh for every workload and durability mode, which at a
// million records saves most of the run's time and gives every run the same
// starting store; --load-once=false loads each run itself. Group-commit mode
// measures durable single-key commits per second with 1, 4, 16 and 64
// committing goroutines next to the disk's raw fsync rate (8 KiB overwrite
// + fsync, one thread), which bounds an engine that flushes once per
// commit; only group commit can go past it.
//
// # Equal durability
//
// durable means a commit is on stable storage before it returns: heapkv
// synchronous_commit=on, pebble.Sync, bbolt's default (two fsyncs per
// commit), badger SyncWrites=true, PostgreSQL synchronous_commit=on.
// relaxed means commits return before the fsync, a crash may lose the
// latest but never corrupts: heapkv synchronous_commit=off (WAL writer
// flushes within wal_writer_delay), pebble.NoSync, bbolt NoSync, badger's
// default, PostgreSQL synchronous_commit=off. PostgreSQL keeps fsync=on in
// both, like heapkv.
//
// # Equal memory
//
// --cache gives each engine the same budget where it has a knob: heapkv and
// PostgreSQL shared_buffers, pebble's and badger's block cache. It is not
// the whole footprint: pebble's memtables (2 x 4 MiB default) and badger's
// (5 x 64 MiB, plus mmapped tables and value log) come on top, PostgreSQL
// backends have their own memory, and bbolt has no cache at all: it reads
// through mmap, so its cache is whatever the OS page cache gives it, as
// every engine also gets the page cache for reads that miss its own
// cache. --mem-limit makes the total equal: on Linux with a writable
// memory cgroup (v2 memory.max, or the v1 controller's
// memory.limit_in_bytes) the runner re-executes itself for each
// measurement as a child that starts inside a fresh cgroup with that limit
// and no swap (after dropping the OS caches where permitted), so page
// cache, heaps and off-heap caches all count; v2 places the child at clone
// time, v1 through a shell that joins the cgroup and then execs the child.
// Where neither is possible it says so and runs uncapped; every result row
// names the memory mode it was measured in, and capped rows the cgroup's
// peak usage. The PostgreSQL server is started by the child, so its
// processes are born in the same cgroup and count against the same limit.
//
// # Caveats
//
//   - Client and engines share the machine; with few cores the client's
//     own CPU (value generation, histograms) is part of every figure.
//   - pebble has no transactions: its driver makes read-merge-write atomic
//     with a striped per-key mutex, cheaper than a real transaction.
//   - PostgreSQL pays a socket round trip and SQL per operation, so it is
//     a reference for "the architecture heapkv follows, as a server", not
//     an embedded peer.
//   - Runs are short by default; LSM engines defer compaction debt past the
//     end of a run, B-trees and heaps pay as they go (heapkv also defers
//     vacuum and checkpoints). Compare long runs before drawing conclusions
//     about write-heavy workloads.
//   - The zipfian generator is Gray et al.'s, as upstream's: ranks 3-6 are
//     drawn up to ~17% more often than the exact distribution.
package bench
