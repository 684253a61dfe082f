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

// LoadOnly opens the driver on cfg.Dir (which must be empty), loads the
// workload's records with relaxed durability and closes the engine. The
// directory is then a loaded store for RunOn, or a template to copy: one
// load can serve every workload with the same LoadKey, each run on its
// own fresh copy.
func LoadOnly(ctx context.Context, d Driver, cfg Config, w *Workload, o RunOptions) (load *Result, err error) {
	cfg.Durability = Relaxed
	db, err := d.Open(cfg)
	if err != nil {
		return nil, err
	}
	o.Label += " load"
	o.MaxDuration = 0
	load, err = Load(ctx, db, w, o)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: close after load: %w", d.Name, cerr)
	}
	return load, err
}

// RunOn opens the driver on cfg.Dir, which holds a store LoadOnly loaded
// with the same LoadKey (or a copy of one), runs the operations with
// cfg.Durability and closes the engine.
func RunOn(ctx context.Context, d Driver, cfg Config, w *Workload, o RunOptions) (run *Result, err error) {
	db, err := d.Open(cfg)
	if err != nil {
		return nil, err
	}
	o.Label += " run"
	run, err = Run(ctx, db, w, o)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: close after run: %w", d.Name, cerr)
	}
	return run, err
}

// LoadKey names what the loaded store depends on (record count, record
// shape, key order and format); workloads with equal keys can share a
// load.
func (w *Workload) LoadKey() string {
	return fmt.Sprintf("records=%d fields=%dx%d hashed=%v zeropadding=%d",
		w.RecordCount, w.FieldCount, w.FieldLength, w.Hashed, w.ZeroPadding)
}
