// Package exec runs the scans that need more than the index's order: a
// range in another order (by value or a caller's function, with Limit and
// Offset), and aggregates over a range (count, count distinct, min, max,
// sum, per group of a key prefix, a key length, the value or a caller's
// function). It plans them from PostgreSQL's executor nodes and prints
// them as EXPLAIN and EXPLAIN ANALYZE do.
//
// # Structure
//
// kv plans a Query or an Aggregate with PlanQuery or PlanAggregate, opens
// a Source (its own key-ordered scan of the range, which keeps the
// snapshot and the transaction's checks) in the direction the plan asks,
// and runs the plan over it. A plan is a chain of nodes:
//
//	Limit -> Sort -> Index Scan                (Query by value or function)
//	Limit -> Index Scan [Backward]             (Query by key)
//	Limit -> Sort -> Bitmap Heap Scan -> Bitmap Index Scan
//	                                           (Query, when the planner or Scan says)
//	HashAggregate -> Index Scan                (Aggregate)
//	GroupAggregate -> Sort -> Index Scan       (count distinct, or Ordered)
//
// Sort is a sortspill.Sorter under work_mem, bounded to Offset+Limit when
// there is a Limit (top-N). Its records are uvarint(len(key)) key
// uvarint(len(sortKey)) sortKey value; ties go by key, so a query's order
// is total. HashAggregate is a sortspill.HashAgg whose state is count,
// sum, and min and max when asked for. GroupAggregate reads the sorted
// (group, value) records once: min is a group's first value, max its last,
// and each change of value is one more distinct value.
//
// Bitmap heap scan. The Bitmap Index Scan reads the range's entries (key
// and TID, no heap page) into a sort by (block, offset) under work_mem; the
// Bitmap Heap Scan fetches each chain in that order through a bulk-read
// ring (kv's Fetcher), so each heap page is read once and in physical
// order, and the Sort above puts the rows in the order asked for, key order
// included.
//
// Planner. With the keyspace's statistics (table.Statistics, from kv's
// Analyze), a Query's range gets a row estimate (its share of the sampled
// keys) and both plans a cost, after PostgreSQL's cost_index (page reads
// by Mackert and Lohman's formula for an uncorrelated heap, interpolated
// toward the range's share of the pages by correlation squared) and
// cost_bitmap_heap_scan (each page once, at a cost per page between random
// and sequential by the share of the heap read, plus the sorts); the
// cheaper wins. Without statistics it takes the index scan. Query.Scan
// forces either. EXPLAIN's "Planning:" line gives both costs and why.
//
// EXPLAIN shows each node with its estimated rows (from the statistics,
// or unknown without them). After a run the plan
// also shows each node's actual rows and times, the sort's method and
// memory or disk, the hash's batches, temp blocks read and written, and
// the buffer pool's hits and reads during the run.
//
// # Rules
//
//  1. A query returns exactly the rows of the range its Source sees, in
//     the order asked for with ties by ascending key, skipping Offset and
//     stopping after Limit.
//  2. An aggregate returns each group of the range once; with Ordered, by
//     ascending group.
//  3. Every sort or hash runs within Env.WorkMem and spills to Env.Temp;
//     Close removes its temp files, also after an error.
//
// # Lock order
//
// None of its own: a plan's run belongs to one goroutine, and the Source
// takes what kv's scans take.
//
// # Memory
//
// work_mem per sort or hash (sortspill says what that bounds). A query by
// key holds one row at a time.
//
// # Departures from PostgreSQL
//
//   - Only the scan of a Query is chosen by cost; the rest comes from the
//     shape of the request: an aggregate is hashed unless it needs distinct
//     values or group order, and reads its range by index.
//   - The bitmap is a sort of exact TIDs that spills beyond work_mem, not
//     PostgreSQL's tidbitmap that turns lossy (page-level, rechecked) when
//     it outgrows work_mem: exactness needs no recheck of keys, at the cost
//     of temp I/O for very large ranges.
//   - No prefetch of the pages ahead (effective_io_concurrency): the heap
//     is read in block order and the kernel's read-ahead does the rest.
//   - Buffers counts the whole engine's buffer hits and reads during the
//     run, not the plan's alone: the pool keeps no per-operation counters.
package exec
