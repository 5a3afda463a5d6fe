package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// dataFile holds the raw samples of the last full run, so that the report
// can be rendered again (-render) without measuring again.
const dataFile = "results.json"

// savedRun is everything the report is made from.
type savedRun struct {
	Started  time.Time
	Took     time.Duration
	Quick    bool
	Reps     int
	Window   time.Duration
	C1Window time.Duration
	S1Locks  int
	S1TTL    time.Duration
	S1Hold   time.Duration
	Env      environment
	Samples  map[string]map[string]map[string][]float64 // row → library → metric → one value per repeat
	Failures []string
}

func (b *bench) save(path string) error {
	r := savedRun{
		Started: b.started, Took: b.took, Quick: b.quick, Reps: b.reps, Window: b.window, C1Window: b.c1Window,
		S1Locks: b.s1Locks, S1TTL: b.s1TTL, S1Hold: b.s1Hold, Env: b.env,
		Samples: make(map[string]map[string]map[string][]float64), Failures: b.failures,
	}
	for id, s := range b.sets {
		r.Samples[id] = s.values
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func (b *bench) load(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r savedRun
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	b.started, b.took, b.quick, b.reps, b.window, b.c1Window = r.Started, r.Took, r.Quick, r.Reps, r.Window, r.C1Window
	b.s1Locks, b.s1TTL, b.s1Hold, b.env, b.failures = r.S1Locks, r.S1TTL, r.S1Hold, r.Env, r.Failures
	b.sets = make(map[string]*resultSet)
	for id, v := range r.Samples {
		b.sets[id] = &resultSet{id: id, values: v}
	}
	return nil
}
