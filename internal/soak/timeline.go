package soak

import (
	"slices"
	"sync"
	"time"
)

// timeline is the writers' commit timeline: per component, for each
// version, the instants on the local monotonic clock just before its write
// was sent and just after its commit returned (or failed). It is the
// staleness detector that trusts nothing but the writers: a read is judged
// against what had surely committed before it began.
type timeline struct {
	base  time.Time // the zero of every instant, read with its monotonic clock
	comps []compTimeline
}

// compTimeline is one component's versions 1..n (recs[v-1]); version 0 is
// the seed, committed before the soak began. Only the component's writer
// appends; readers look up.
type compTimeline struct {
	mu   sync.Mutex
	recs []commitRec
}

// commitRec is one version's write.
type commitRec struct {
	sent, ret int64 // instants (ns since base); ret is 0 while in flight
	state     commitState
}

type commitState uint8

const (
	inFlight  commitState = iota
	committed             // the commit returned without error
	failed                // it returned an error: it may or may not have committed
)

func newTimeline(components int) *timeline {
	return &timeline{base: time.Now(), comps: make([]compTimeline, components)}
}

// now is the current instant.
func (tl *timeline) now() int64 { return int64(time.Since(tl.base)) }

// begin records that version v of component c is about to be sent. The
// component's writer calls it for v = 1, 2, ... in order.
func (tl *timeline) begin(c int, v int64, at int64) {
	ct := &tl.comps[c]
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if int64(len(ct.recs)) != v-1 {
		panic("soak: timeline versions out of order") // a bug in the writer, not a finding
	}
	ct.recs = append(ct.recs, commitRec{sent: at})
}

// end records that the write of version v of component c returned at at,
// with or without an error.
func (tl *timeline) end(c int, v int64, at int64, ok bool) {
	ct := &tl.comps[c]
	ct.mu.Lock()
	defer ct.mu.Unlock()
	r := &ct.recs[v-1]
	r.ret, r.state = at, failed
	if ok {
		r.state = committed
	}
}

// staleness returns how stale a read of component c that began at rs and
// showed version v is at least: rs minus the instant the commit of the
// first later version returned, or 0 if fresh: no later version is
// known to have committed before the read began, so v was the newest
// committed one, or its successor's commit was still in flight when the
// read began. A version whose write failed is skipped (it may never have
// committed); the next one that committed bounds the staleness. It is a
// lower bound of the true staleness, never a false alarm: the later write
// was visible to every transaction that began after its commit returned.
//
// (The rule "fresh if v is the newest version committed before the read
// returned, or any version whose commit was in flight during the read" is
// the same: a write that began after v's commit returned cannot have
// returned before rs if v's commit was still in flight at rs.)
func (tl *timeline) staleness(c int, v int64, rs int64) time.Duration {
	ct := &tl.comps[c]
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for i := v; i < int64(len(ct.recs)); i++ { // recs[i] is version i+1
		switch r := ct.recs[i]; r.state {
		case inFlight:
			return 0 // and so is every later one: nothing newer had surely committed
		case committed:
			return max(0, time.Duration(rs-r.ret))
		}
	}
	return 0
}

// current returns the newest version of component c whose commit returned
// before at (0, the seed, if none).
func (tl *timeline) current(c int, at int64) int64 {
	ct := &tl.comps[c]
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for i := len(ct.recs) - 1; i >= 0; i-- {
		if r := ct.recs[i]; r.state == committed && r.ret < at {
			return int64(i) + 1
		}
	}
	return 0
}

// maxStaleSamples bounds the staleness values kept for the distribution;
// stale reads beyond it are still counted.
const maxStaleSamples = 1 << 20

// staleStats accumulates the staleness of stale reads.
type staleStats struct {
	mu     sync.Mutex
	values []time.Duration
	max    time.Duration
}

func (s *staleStats) add(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = max(s.max, d)
	if len(s.values) < maxStaleSamples {
		s.values = append(s.values, d)
	}
}

// quantiles returns the 50th and 99th percentiles and the maximum.
func (s *staleStats) quantiles() (p50, p99, maxv time.Duration) {
	s.mu.Lock()
	v := slices.Clone(s.values)
	maxv = s.max
	s.mu.Unlock()
	if len(v) == 0 {
		return 0, 0, maxv
	}
	slices.Sort(v)
	q := func(p float64) time.Duration { return v[min(len(v)-1, int(p*float64(len(v))))] }
	return q(0.50), q(0.99), maxv
}
