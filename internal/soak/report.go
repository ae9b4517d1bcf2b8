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

	// Stale is the number of reads that missed a write whose notification
	// the reading instance had already applied before the read began. It
	// must be 0.
	Stale uint64
	// Inconsistent is the number of reads that showed no state the writers
	// ever committed (torn, or a version never written), and of failed
	// reads that returned an answer with their error. It must be 0.
	Inconsistent uint64
	// FailedClosed is the number of reads that returned an error (while the
	// server was down or restarting): never counted as stale.
	FailedClosed uint64

	// Writes and WriteErrors count the writers' transactions.
	Writes, WriteErrors uint64
	// Sentinels is the number of sentinel notifications committed.
	Sentinels uint64

	// Terminations is the number of listener backends terminated;
	// Restarts the number of server restarts.
	Terminations, Restarts uint64
	// RestartsSkipped says why there were no restarts, if there were none
	// by configuration.
	RestartsSkipped string

	// Reconnects, Bypassed, Hits and Misses are summed over the instances'
	// Stats: listener reconnects, reads that bypassed the cache while
	// unsynced, cache hits and misses.
	Reconnects, Bypassed, Hits, Misses uint64

	// Verifications is the number of quiesced rounds (after each fault, and
	// at the end) in which every key was read on every instance and
	// compared with a FullyConsistent read; VerifiedReads the number of
	// reads compared; Mismatches the number that differed. Mismatches must
	// be 0.
	Verifications, VerifiedReads, Mismatches uint64

	// Samples describes the first few stale, inconsistent or mismatched
	// reads.
	Samples []string
}

// OK reports whether the soak found nothing wrong: no stale,
// inconsistent or mismatched read.
func (r Report) OK() bool { return r.Stale == 0 && r.Inconsistent == 0 && r.Mismatches == 0 }

// String formats the report for a terminal, one figure per line.
func (r Report) String() string {
	var b strings.Builder
	ratio := func(n, d uint64) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(d))
	}
	fmt.Fprintf(&b, "elapsed            %v\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "checks             %d (%d permission sets, %d user-wide; %.0f/s)\n",
		r.Checks, r.PermissionChecks, r.UserWideChecks, float64(r.Checks)/max(r.Elapsed.Seconds(), 1e-9))
	fmt.Fprintf(&b, "stale reads        %d (must be 0)\n", r.Stale)
	fmt.Fprintf(&b, "inconsistent reads %d (must be 0)\n", r.Inconsistent)
	fmt.Fprintf(&b, "failed closed      %d (errors while the server was unreachable)\n", r.FailedClosed)
	fmt.Fprintf(&b, "writes             %d (%d failed)\n", r.Writes, r.WriteErrors)
	fmt.Fprintf(&b, "sentinels          %d\n", r.Sentinels)
	restarts := fmt.Sprint(r.Restarts)
	if r.RestartsSkipped != "" {
		restarts += " (skipped: " + r.RestartsSkipped + ")"
	}
	fmt.Fprintf(&b, "faults             %d listener backends terminated, %s server restarts\n", r.Terminations, restarts)
	fmt.Fprintf(&b, "reconnects         %d\n", r.Reconnects)
	fmt.Fprintf(&b, "bypassed reads     %d\n", r.Bypassed)
	fmt.Fprintf(&b, "cache              %d hits, %d misses (hit rate %s)\n", r.Hits, r.Misses, ratio(r.Hits, r.Hits+r.Misses))
	fmt.Fprintf(&b, "verifications      %d rounds, %d reads compared, %d mismatches (must be 0)\n", r.Verifications, r.VerifiedReads, r.Mismatches)
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
