// Package sortspill is heapkv's work_mem: external sort, top-N and spilling
// hash aggregation of byte records within a byte budget, and the temp files
// they spill to. It knows nothing of heap, B+tree or transactions; the scan
// plans above the table layer feed it records and read them back. It plays
// the part of PostgreSQL's tuplesort.c, logtape.c, nodeAgg.c's spilling and
// fd.c's temporary files.
//
// # Structure
//
// Sort. A Sorter copies each record into the current load, chunks of
// memory it reuses from load to load. While the load fits the budget,
// nothing touches disk: Finish sorts it in memory (slices.SortFunc, a
// pattern-defeating quicksort; EXPLAIN's "quicksort"). When the next record
// would pass the budget, the load is sorted and written as a run, a temp
// file of sorted records, and the chunks are reused for the next load. At
// Finish the runs are merged: while there are more runs than the merge
// order, the smallest runs are merged into one (smallest first rewrites the
// fewest bytes), and the last merge streams to the caller through Next
// ("external merge"). The merge order is what the budget holds of run
// readers, (budget - one writer) / streamCost, within [2, 500]: about 14 at
// 4 MB, as PostgreSQL's 15. A merge is a binary heap of run readers; the
// reader whose record was returned last is advanced on the next call, so
// the record stays valid until then and the advance is one sift.
//
// Top-N. With a Limit of k, the sort keeps every record until it has more
// than 2k, or until memory runs out with more than k; then it turns the load
// into a max-heap of the k best records and compares each further record
// once with the worst kept ("top-N heapsort"). A sort that spilled before
// that point stays external, but writes at most k records per run and per
// merge, since no later record of a run can be among the first k.
//
// Hash aggregation. A HashAgg folds values into per-group states with a
// caller's Step, in an open-addressing table of its own whose every byte is
// counted (a Go map's could not be). When a new group would pass the budget
// less the reserve for spilling, the table stops taking new groups: values
// of groups in it still update their states, and a pair of a new group is
// written to one of P partition files chosen by hash bits (P a power of two
// in [4, 256], as many as fit a quarter of the budget; hashSpillLayout). At
// the end of the input the table's groups are emitted, then each partition
// is read back as a batch with a fresh table and a hash seeded anew for its
// level, recursing depth first when it spills again; a batch keeps at least
// one group, so the recursion ends, and from level 16 a batch aggregates
// over budget instead. EXPLAIN's "Batches" is 1 + the partitions processed.
// A count or sum of 10^6 groups at 64 KiB runs in about 5,000 batches,
// six levels deep.
//
// Temp files. A TempSpace is DIR/tmp, shared by the engine; each operation
// draws files from an Op of its own, which counts what they hold against
// temp_file_limit and removes them all at Close. Files are written once,
// read back, never synced: a crash loses them, and Sweep at Open removes
// what is left. A sort or hash that fails, is cancelled by its context or
// whose comparator or step function panics removes its files before the
// error or panic reaches the caller.
//
// # Formats
//
// A run file (and a hash partition) is a sequence of blocks, written
// append-only:
//
//	block  := header payload
//	header := crc uint32 | payloadLen uint32 | rawLen uint32 | count uint32
//	payload: rawLen bytes as one s2 block
//	raw    := count x (uvarint(len) record)
//
// crc is CRC-32C over the header's last 12 bytes and the payload. A sort's
// block target is 1/32 of the budget within [4 KiB, 256 KiB]; a hash
// partition's is 1 to 4 KiB, so that many writers fit (hashSpillLayout). A
// block ends at the first record past the target, so one large record makes
// a large block. A hash partition's record is uvarint(len(group)) group
// value. The writer remembers each run's record count and length; the
// reader checks that the file ends at a block boundary with exactly that
// count. Any mismatch is an error matching base.ErrCorrupt. Temp files are
// named DIR/tmp/heapkv_tmp.<n>; Sweep removes only names with that prefix.
//
// # Rules
//
//  1. Within the budget nothing touches disk: a sort whose records and
//     index fit is sorted in memory and creates no file.
//  2. A Sorter's memory is its load (chunks, records too large for a chunk,
//     and 24 bytes of index per record) or its merge's streams, never both:
//     the load is freed before merging. A load is written as a run before
//     the next record would pass the budget less one writer's buffers.
//  3. Every record is at most MaxRecordSize bytes. A record larger than the
//     budget is still taken, alone; the budget is then passed by it.
//  4. An operation's temp files hold at most temp_file_limit bytes at once;
//     a write past it fails with ErrTempFileLimit and the operation's files
//     are removed before the error returns.
//  5. After Close, after any error, after ctx is cancelled, and after a
//     panic in a comparator or step function, the operation has no temp
//     file left. After a crash, Sweep at the next Open removes them.
//  6. Sorting is not stable: records that compare equal come out in any
//     order. Merges break ties by run, so a given input always gives the
//     same output.
//
// # Lock order
//
// None: a Sorter, a HashAgg and an Op belong to one goroutine. TempSpace's
// counters are atomics, and its directory is created once under a
// sync.Once; several operations may use one TempSpace at once.
//
// # Memory
//
// work_mem is each Sorter's and HashAgg's Budget. The Go heap a sort holds
// stays within the budget plus 2 MiB (heapSlack in heap_test.go, which
// measures a sort of 64 MiB in CI and 1 GiB on request with runtime/metrics
// and fails above it), or one record when a record is larger than the
// budget. A sort's load chunks and its streams' buffers are the same slabs,
// pooled per sort, so a merge reuses what the load or the last merge held
// rather than leave it to the collector. A HashAgg counts its table (slots,
// entries, key chunks, the capacity of every state) and its partition
// writers' and reader's buffers; its bound, Budget plus the amount by which
// a new group's first state exceeds the mean, is in HashAgg's comment.
// TestHashAggGoHeapWithinBudget measures it as the sort's test does: a
// million groups at 4 MiB count 2.4 MiB and grow the Go heap by 2.6 MiB. A bounded (top-N) sort may pass its budget if later records
// are wider than those it replaces, as PostgreSQL's may. temp_file_limit
// bounds disk; log_temp_files logs each file at removal.
//
// # Departures from PostgreSQL
//
//   - One temp file per run, not logical tapes sharing one file with block
//     reuse: an intermediate merge holds its inputs and its output at once,
//     so disk use peaks at up to twice the data where logtape.c needs about
//     once. Simpler, and each run's file is removed as soon as it is merged.
//   - Merges take the smallest runs first (a Huffman-like order) rather
//     than PostgreSQL's balanced merge; the final merge streams all the same.
//   - A binary heap, not a loser tree: about two comparisons per level
//     instead of one.
//   - Run blocks are s2-compressed and checksummed; PostgreSQL's tapes are
//     neither.
//   - A spill has at most 256 partitions, not 1024: each is a file of its
//     own, open until read.
//   - A hash batch's recursion uses a new seed per level rather than
//     further bits of one hash, so there is no limit of bits to run out of;
//     the seeds are random per process, so a rerun with the same input
//     gives the same groups but not the same partitioning.
//   - temp_file_limit applies per operation (one sort or hash), where
//     PostgreSQL's is per backend process; in an embedded engine an
//     operation is the closest thing to one.
package sortspill
