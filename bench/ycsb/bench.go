package ycsb

import (
	"context"
	"fmt"
)

// DurabilitySetter is implemented by drivers that can change durability
// without a reopen (PostgreSQL: synchronous_commit per session).
type DurabilitySetter interface {
	SetDurability(Durability) error
}

// LoadAndRun opens the driver on cfg.Dir (which must be empty), loads the
// workload's records with relaxed durability (the load is not what is
// measured, and a durable one-record-per-commit load of bbolt would take
// hours), switches to cfg.Durability (reopening the engine unless it is a
// DurabilitySetter), runs the operations and closes the engine.
func LoadAndRun(ctx context.Context, d Driver, cfg Config, w *Workload, o RunOptions) (load, run *Result, err error) {
	lcfg := cfg
	lcfg.Durability = Relaxed
	db, err := d.Open(lcfg)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if db != nil {
			if cerr := db.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("%s: close: %w", d.Name, cerr)
			}
		}
	}()
	lo := o
	lo.Label = o.Label + " load"
	lo.MaxDuration = 0
	if load, err = Load(ctx, db, w, lo); err != nil {
		return load, nil, err
	}
	if cfg.Durability != Relaxed {
		if s, ok := db.(DurabilitySetter); ok {
			err = s.SetDurability(cfg.Durability)
		} else {
			err = db.Close()
			db = nil
			if err == nil {
				db, err = d.Open(cfg)
			}
		}
		if err != nil {
			return load, nil, fmt.Errorf("%s: reopen %s: %w", d.Name, cfg.Durability, err)
		}
	}
	ro := o
	ro.Label = o.Label + " run"
	run, err = Run(ctx, db, w, ro)
	return load, run, err
}
