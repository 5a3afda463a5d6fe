package main

import (
	"math"
	"slices"
)

// resultSet holds the samples of one row (U1/50, C1, …): per subject, per
// metric, one value per repeat.
type resultSet struct {
	id     string
	values map[string]map[string][]float64
}

func newResultSet(id string) *resultSet {
	return &resultSet{id: id, values: make(map[string]map[string][]float64)}
}

func (s *resultSet) add(subject, metric string, v float64) {
	m := s.values[subject]
	if m == nil {
		m = make(map[string][]float64)
		s.values[subject] = m
	}
	m[metric] = append(m[metric], v)
}

// med is the median over repeats, NaN when there is none.
func (s *resultSet) med(subject, metric string) float64 {
	if s == nil {
		return math.NaN()
	}
	return median(s.values[subject][metric])
}

// spread is the smallest and largest sample.
func (s *resultSet) spread(subject, metric string) (lo, hi float64, n int) {
	xs := s.values[subject][metric]
	if len(xs) == 0 {
		return math.NaN(), math.NaN(), 0
	}
	return slices.Min(xs), slices.Max(xs), len(xs)
}
