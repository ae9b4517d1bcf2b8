package soak

import (
	"fmt"
	"strings"
	"time"
)

// Report is the outcome of a soak, or its running totals in a Progress
// call.
type Report struct {
	// Elapsed is the time since the load started.
	Elapsed time.Duration

	// Checks is the number of reads checked: PermissionChecks plus
	// UserWideChecks, failed-closed reads included.
	Checks           uint64
	PermissionChecks uint64 // Client.Permissions
	UserWideChecks   uint64 // Client.UserHasActiveMembership

	// Stale is the number of reads that showed a version older than one
	// whose commit had returned before the read began, by the writers'
	// commit timeline (see the package documentation): they may be stale
	// by up to the notification delay. StalenessP50, StalenessP99 and
	// StalenessMax describe how stale they were (a lower bound each).
	Stale                                    uint64
	StalenessP50, StalenessP99, StalenessMax time.Duration
	// BeyondBound is the number of stale reads stale by more than Bound.
	// It must be 0.
	BeyondBound uint64
	Bound       time.Duration
	// WronglyAllowed and WronglyDenied count the stale reads that granted
	// something the data no longer granted when the read began (a
	// permission, a data grant, an active membership), and those that
	// lacked something it granted. A read can be both.
	WronglyAllowed, WronglyDenied uint64

	// BelowWatermark is the number of reads that missed a write whose
	// notification the reading instance had already applied before the
	// read began (the sentinel watermark). It must be 0.
	BelowWatermark uint64
	// Inconsistent is the number of reads that showed no state the writers
	// ever committed (torn, or a version never written), and of failed
	// reads that returned an answer with their error. It must be 0.
	Inconsistent uint64
	// FailedClosed is the number of reads that returned an error (while the
	// server was down or out of reach): never counted as stale.
	FailedClosed uint64

	// Writes and WriteErrors count the writers' transactions.
	Writes, WriteErrors uint64
	// Sentinels is the number of sentinel notifications committed.
	Sentinels uint64

	// Faults is the fault list cycled through (nil: faults off).
	Faults []Fault
	// Terminations is the number of listener backends terminated,
	// Restarts the number of server restarts, Blackholes the number of
	// black holes held, Storms the number of NOTIFY storms and
	// StormPayloads the spoofed payloads they sent.
	Terminations, Restarts, Blackholes, Storms, StormPayloads uint64
	// ThroughPooler is set when the instances connected through
	// Config.PoolerURL.
	ThroughPooler bool

	// Phases breaks the reads down by the fault last injected when they
	// began, in the order the phases first occurred.
	Phases []PhaseReport

	// Reconnects, Bypassed, Hits and Misses are summed over the instances'
	// Stats: listener reconnects, reads that bypassed the cache while
	// unsynced, cache hits and misses.
	Reconnects, Bypassed, Hits, Misses uint64

	// Relays is the number of instances running the relay (Config.Queue,
	// Config.WAL), RelaysLeading how many of them led at the end (one
	// while a relay is in service), and RelayRounds and RelayErrors their
	// rounds and their lost connections and failed rounds, summed.
	Relays, RelaysLeading    int
	RelayRounds, RelayErrors uint64

	// Verifications is the number of quiesced rounds (after each fault, and
	// at the end) in which every key was read on every instance and
	// compared with a FullyConsistent read; VerifiedByBound the number of
	// them in which the instances did not apply a sentinel within the
	// bound, so that the comparison was made once the bound had passed;
	// VerifiedReads the number of reads compared; Mismatches the number
	// that differed. Mismatches must be 0.
	Verifications, VerifiedByBound, VerifiedReads, Mismatches uint64

	// Health is each instance's health check (Client.Check) at the end of
	// the soak: nil if its cache is in service, or why it is bypassed.
	// Empty in a Progress call.
	Health []error

	// Samples describes the first few reads (up to 4 of each kind) stale
	// beyond the bound, below the watermark, inconsistent or mismatched.
	Samples []string
}

// PhaseReport is the reads of one phase of a soak: the stretch after a
// fault of one kind was injected (for a lasting fault, while it was held,
// and after), until the next fault.
type PhaseReport struct {
	Name                      string
	Reads, Stale, BeyondBound uint64
	MaxStaleness              time.Duration
}

// OK reports whether the soak found nothing wrong: no read stale beyond
// the bound, below the watermark, inconsistent or mismatched.
func (r Report) OK() bool {
	return r.BeyondBound == 0 && r.BelowWatermark == 0 && r.Inconsistent == 0 && r.Mismatches == 0
}

// String formats the report for a terminal, one figure per line.
func (r Report) String() string {
	var b strings.Builder
	ratio := func(n, d uint64) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(d))
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	fmt.Fprintf(&b, "elapsed            %v\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "checks             %d (%d permission sets, %d user-wide; %.0f/s)\n",
		r.Checks, r.PermissionChecks, r.UserWideChecks, float64(r.Checks)/max(r.Elapsed.Seconds(), 1e-9))
	fmt.Fprintf(&b, "stale reads        %d (%s of checks; by the writers' commit timeline: p50 %s, p99 %s, max %s)\n",
		r.Stale, ratio(r.Stale, r.Checks), ms(r.StalenessP50), ms(r.StalenessP99), ms(r.StalenessMax))
	fmt.Fprintf(&b, "  beyond the bound %d (stale by more than %v; must be 0)\n", r.BeyondBound, r.Bound)
	fmt.Fprintf(&b, "  wrongly allowed  %d, wrongly denied %d\n", r.WronglyAllowed, r.WronglyDenied)
	fmt.Fprintf(&b, "below watermark    %d (missed a write already notified to the instance; must be 0)\n", r.BelowWatermark)
	fmt.Fprintf(&b, "inconsistent reads %d (must be 0)\n", r.Inconsistent)
	fmt.Fprintf(&b, "failed closed      %d (errors while the server was unreachable)\n", r.FailedClosed)
	fmt.Fprintf(&b, "writes             %d (%d failed)\n", r.Writes, r.WriteErrors)
	fmt.Fprintf(&b, "sentinels          %d\n", r.Sentinels)
	faults := "none"
	if len(r.Faults) > 0 {
		names := make([]string, len(r.Faults))
		for i, f := range r.Faults {
			names[i] = string(f)
		}
		faults = strings.Join(names, ", ")
	}
	fmt.Fprintf(&b, "faults             %s\n", faults)
	fmt.Fprintf(&b, "  injected         %d listener backends terminated, %d server restarts, %d black holes, %d storms (%d spoofed payloads)\n",
		r.Terminations, r.Restarts, r.Blackholes, r.Storms, r.StormPayloads)
	if r.ThroughPooler {
		fmt.Fprintf(&b, "  instances        through a transaction pooler (pool and listener)\n")
	}
	for _, p := range r.Phases {
		if p.Reads == 0 {
			continue // a phase cut short by the next fault or the end of the load
		}
		fmt.Fprintf(&b, "  %-30s %d reads, %d stale (max %s), %d beyond the bound\n", p.Name+":", p.Reads, p.Stale, ms(p.MaxStaleness), p.BeyondBound)
	}
	fmt.Fprintf(&b, "reconnects         %d\n", r.Reconnects)
	fmt.Fprintf(&b, "bypassed reads     %d\n", r.Bypassed)
	if r.Relays > 0 {
		fmt.Fprintf(&b, "relays             %d, %d leading at the end; %d rounds, %d errors\n", r.Relays, r.RelaysLeading, r.RelayRounds, r.RelayErrors)
	}
	fmt.Fprintf(&b, "cache              %d hits, %d misses (hit rate %s)\n", r.Hits, r.Misses, ratio(r.Hits, r.Hits+r.Misses))
	fmt.Fprintf(&b, "verifications      %d rounds (%d compared once the bound had passed, no sentinel applied), %d reads compared, %d mismatches (must be 0)\n",
		r.Verifications, r.VerifiedByBound, r.VerifiedReads, r.Mismatches)
	for i, err := range r.Health {
		label, h := "", "cache in service"
		if i == 0 {
			label = "health"
		}
		if err != nil {
			h = err.Error()
		}
		fmt.Fprintf(&b, "%-18s instance %d: %s\n", label, i, h)
	}
	for _, s := range r.Samples {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	verdict := "OK"
	if !r.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "result             %s", verdict)
	return b.String()
}
