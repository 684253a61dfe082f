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
// EXPLAIN shows each node with its estimated rows (the keyspace's live-row
// estimate for a scan: an upper bound for a range). After a run the plan
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
//   - Plans come from the shape of the request, not from costs: a query by
//     key is always an index scan, an aggregate is hashed unless it needs
//     distinct values or group order. The bitmap heap scan and the choice
//     between it and the index scan by statistics are not built yet.
//   - Buffers counts the whole engine's buffer hits and reads during the
//     run, not the plan's alone: the pool keeps no per-operation counters.
package exec
