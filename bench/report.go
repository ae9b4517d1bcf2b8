package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// report is the run's Markdown: the tables alone (for stdout) and the whole
// document (for -out).
type report struct {
	tables   string
	document string
}

// table writes a Markdown table.
func table(b *strings.Builder, header []string, rows [][]string) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n")
}

func yesNo(ok bool) string {
	if ok {
		return "**yes**"
	}
	return "**no**"
}

// markdown renders res.
func markdown(res results, o options) report {
	var t strings.Builder
	hit := func(name string) float64 { return res.Hit[name].NsPerOp }
	orgHit := hit(nameOrgperm)
	inval8 := res.Inval[len(res.Inval)-1]
	ri := res.RedisInval
	out := res.Outside

	t.WriteString("## The seed's comparison, measured\n\n")
	t.WriteString("`HasPermission(org, user, \"billing.view_invoice\")`, one goroutine, all four strategies against the same database in the same run. " +
		"First call = a miss (mean); subsequent calls = a hit (testing.Benchmark). " +
		fmt.Sprintf("Freshness figures are p50 / p99 to %d instances.\n\n", inval8.K))
	table(&t, []string{"Strategy", "First call", "Subsequent calls", "Data freshness after a write", "Memory per entry", "Runs on"}, [][]string{
		{nameNoCache, fmtDur(res.Miss[nameNoCache].mean()) + " (query)", fmtNs(hit(nameNoCache)) + " (query)",
			"always fresh: the next check queries", "none", "PostgreSQL"},
		{nameRedis, fmtDur(res.Miss[nameRedis].mean()) + " (GET miss, load, SET EX)", fmtNs(hit(nameRedis)) + " (GET, JSON decode)",
			fmt.Sprintf("app's own writes: stale until the DEL lands, %s / %s after commit; "+
				"**writes outside the app (raw SQL, bulk UPDATE, psql): stale up to 300 s** (measured: still %v %s after the write, TTL %s left)",
				fmtDur(ri.Del.pct(50)), fmtDur(ri.Del.pct(99)), out.Redis, fmtDur(out.After), fmtDur(out.RedisTTL)),
			fmt.Sprintf("%.0f B (Redis)", res.Mem.RedisBytes), "PostgreSQL + Redis + a DEL in every write path"},
		{nameRequest, fmtDur(res.Miss[nameRequest].mean()) + " (load)", fmtNs(hit(nameRequest)) + " (memo, 2nd+ check of a request)",
			"fresh at the next request; stale until the end of the current one", "per request only", "PostgreSQL"},
		{nameOrgperm, fmtDur(res.Miss[nameOrgperm].mean()) + " (load, fill)", fmtNs(orgHit) + " (local cache)",
			fmt.Sprintf("every write, raw SQL included: evicted %s / %s after the write's Exec began",
				fmtDur(inval8.Delivery.pct(50)), fmtDur(inval8.Delivery.pct(99))),
			fmt.Sprintf("%.0f B (Go heap, per instance)", res.Mem.OrgpermBytes), "PostgreSQL (triggers + one LISTEN connection per instance)"},
	})

	t.WriteString("## Acceptance targets\n\n")
	rNo, rRedis, rBool := hit(nameNoCache)/orgHit, hit(nameRedis)/orgHit, hit(nameRedisBool)/orgHit
	p99 := inval8.Delivery.pct(99)
	table(&t, []string{"Target", "Measured", "Met"}, [][]string{
		{"orgperm hit ≥ 1000× faster than a query per check", fmt.Sprintf("%s (%s vs %s)", fmtRatio(rNo), fmtNs(hit(nameNoCache)), fmtNs(orgHit)), yesNo(rNo >= 1000)},
		{"orgperm hit ≥ 100× faster than the Redis cache", fmt.Sprintf("%s (%s vs %s); %s against the boolean variant", fmtRatio(rRedis), fmtNs(hit(nameRedis)), fmtNs(orgHit), fmtRatio(rBool)), yesNo(rRedis >= 100 && rBool >= 100)},
		{fmt.Sprintf("invalidation p99 to %d instances ≤ 1 ms", inval8.K), fmt.Sprintf("%s per instance; %s until the last of the %d (the write's own round trip, triggers and commit: p99 %s)", fmtDur(p99), fmtDur(inval8.AllK.pct(99)), inval8.K, fmtDur(inval8.Write.pct(99))), yesNo(p99 <= time.Millisecond)},
	})
	t.WriteString(fmt.Sprintf("An orgperm hit reads the monotonic clock once (for expiry): one `time.Since` takes %s of its %s on this machine (see Hit latency). "+
		"The request memo, which reads no clock, answers %s faster than the query.\n\n",
		fmtNs(res.Clock.NsPerOp), fmtNs(orgHit), fmtRatio(hit(nameNoCache)/hit(nameRequest))))

	t.WriteString(fmt.Sprintf("## Hit latency\n\nThe same key checked again and again (`testing.Benchmark`, one goroutine), "+
		"in %d rounds interleaved across the strategies; the median round is shown, with the range of all rounds.\n\n", o.Rounds))
	var rows [][]string
	for _, n := range []string{nameNoCache, nameRedis, nameRedisBool, nameRequest, nameOrgperm} {
		h := res.Hit[n]
		rows = append(rows, []string{n, fmt.Sprintf("%.1f", h.NsPerOp), fmtNs(h.Min) + " – " + fmtNs(h.Max),
			fmt.Sprint(h.AllocsPerOp), fmt.Sprint(h.BytesPerOp), commas(int64(h.N)), fmtRatio(h.NsPerOp / orgHit)})
	}
	table(&t, []string{"Strategy", "ns/op (median)", "range over rounds", "allocs/op", "B/op", "iterations", "× orgperm"}, rows)
	t.WriteString(fmt.Sprintf("Where an orgperm hit's %s go: its local cache reads the monotonic clock once per lookup, for expiry, and one `time.Since` costs **%s** on this machine; "+
		"`PermissionSet.Has` on a set in hand costs %s; the rest (%s) goes to the request options' context lookup, the key's two string hashes, "+
		"the shard's lock-free lookup and key comparison, the striped hit counter and the codename's bit test, which the client makes on the cache entry "+
		"rather than through `PermissionSet.Has` (not timed apart; docs/DECISIONS.md 38, 43). "+
		"The request memo's hit reads no clock.\n\n",
		fmtNs(orgHit), fmtNs(res.Clock.NsPerOp), fmtNs(res.Has.NsPerOp), fmtNs(orgHit-res.Clock.NsPerOp-res.Has.NsPerOp)))

	t.WriteString(fmt.Sprintf("## Miss latency\n\nEach sample makes the key a miss first (not timed); %d samples per strategy in %d rounds interleaved across the strategies, "+
		"each round after a tenth as many of warm-up.\n\n", len(res.Miss[nameOrgperm]), o.Rounds))
	rows = nil
	for _, n := range []struct{ name, what string }{
		{nameNoCache, "the EXISTS query (every check is one)"},
		{nameRedis, "DEL, then GET (nil), Store.Load, JSON encode, SET EX 300"},
		{nameRequest, "new request context, then Store.Load through a client whose shared cache is off"},
		{nameOrgperm, "EvictMember, then local miss, single flight, Store.Load, fill"},
	} {
		m := res.Miss[n.name]
		rows = append(rows, []string{n.name, n.what, fmtDur(m.mean()), fmtDur(m.pct(50)), fmtDur(m.pct(99))})
	}
	table(&t, []string{"Strategy", "a miss is", "mean", "p50", "p99"}, rows)

	t.WriteString(fmt.Sprintf("## Invalidation delay to other instances\n\n"+
		"orgperm: k instances (each a Client with its own pool and listener) in this process; a raw SQL `UPDATE` of one membership's status on a connection of its own; "+
		"the delay runs from just before the write's `Exec` to each instance's `Config.OnInvalidate` for that key, so it includes the write's own round trip (its triggers, the audit trail's included, and its commit; column \"write\"), which the notification cannot beat: it leaves at commit. "+
		"%d writes per row in %d rounds interleaved across the instance counts (fresh instances each round, a tenth as many writes of warm-up); \"per instance\" has one sample per (write, instance), \"all k\" one per write, until the last instance. "+
		"After each write every instance is asked again and must give the database's new answer (\"wrong answers\").\n\n"+
		"Redis: one shared server, so the instance count does not matter; another instance sees the change once the writer's DEL, sent after commit, has landed: "+
		"its round trip (DEL), or the span orgperm's delay is measured over (write + DEL, from just before the write's `Exec`). Measured once, %d writes.\n\n",
		len(res.Inval[0].AllK), o.Rounds, len(res.RedisInval.Del)))
	rows = nil
	for _, r := range res.Inval {
		rows = append(rows, []string{fmt.Sprint(r.K),
			fmtDur(r.Write.pct(50)) + " / " + fmtDur(r.Write.pct(99)),
			fmtDur(r.Delivery.pct(50)), fmtDur(r.Delivery.pct(99)),
			fmtDur(r.AllK.pct(50)), fmtDur(r.AllK.pct(99)), fmt.Sprint(r.Wrong),
			fmtDur(ri.Del.pct(50)) + " / " + fmtDur(ri.Del.pct(99)),
			fmtDur(ri.WriteDel.pct(50)) + " / " + fmtDur(ri.WriteDel.pct(99)),
			"0 (next query)", "0 across requests"})
	}
	table(&t, []string{"Instances", "write p50 / p99", "orgperm p50", "orgperm p99", "orgperm all k p50", "all k p99", "wrong answers",
		"Redis DEL p50 / p99", "Redis write + DEL p50 / p99", "No cache", "Request cache"}, rows)

	t.WriteString(fmt.Sprintf("## Staleness window after a write\n\n"+
		"How long a check may still return the old answer once a write has been made. "+
		"The outside write: a raw SQL `UPDATE` suspended a membership, no DEL was sent (no app code ran), and every strategy was asked again %s later.\n\n", fmtDur(out.After)))
	table(&t, []string{"Strategy", "write through the app", "write outside the app (raw SQL, bulk UPDATE, psql, another service)", "outside write: answer after " + fmtDur(out.After) + " (database: " + fmt.Sprint(out.Truth) + ")"}, [][]string{
		{nameNoCache, "0", "0", fmt.Sprint(out.Truth)},
		{nameRedis, fmt.Sprintf("commit to DEL landed: %s / %s (p50 / p99)", fmtDur(ri.Del.pct(50)), fmtDur(ri.Del.pct(99))),
			"**up to the TTL, 300 s**: nothing DELs the key", fmt.Sprintf("%v (stale; key TTL %s left)", out.Redis, fmtDur(out.RedisTTL))},
		{nameRequest, "0 across requests; until the request ends within it", "same", fmt.Sprintf("%v in the request open across the write (stale), %v in a new request", out.RequestSame, out.RequestNext)},
		{nameOrgperm, fmt.Sprintf("the invalidation delay: %s / %s to %d instances", fmtDur(inval8.Delivery.pct(50)), fmtDur(inval8.Delivery.pct(99)), inval8.K),
			"same: the trigger fires whoever writes", fmt.Sprintf("%v (evicted %s after the write began, its own round trip %s: one sample, on a freshly started instance)", out.Orgperm, fmtDur(out.OrgpermEvicted), fmtDur(out.Write))},
	})

	t.WriteString(fmt.Sprintf("## Write throughput cost of the triggers\n\n"+
		"`UPDATE orgperm.memberships SET status = <toggled>` on one connection, with `memberships_notify_update` enabled and disabled "+
		"(`ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`), alternating, %d rounds of %s each, "+
		"while an instance's listener receives and applies the notifications. Autocommit: one transaction per statement. "+
		"The audit trail's trigger (`%s`) is disabled on both sides, so \"without\" runs no trigger; "+
		"before each round one such UPDATE shows the side is what it is named for: no audit row, and invalidations of the org with the trigger on, none with it off.\n\n",
		o.WriteRounds, o.WriteTime, auditUpdateTrigger))
	rows = nil
	for _, w := range res.Writes {
		what := "single row"
		if w.Rows != 1 {
			what = fmt.Sprintf("%s rows (one org)", commas(int64(w.Rows)))
		}
		rows = append(rows, []string{what,
			fmt.Sprintf("%s stmt/s (%s rows/s)", commas(int64(w.On)), commas(int64(w.On*float64(w.Rows)))),
			fmt.Sprintf("%s stmt/s (%s rows/s)", commas(int64(w.Off)), commas(int64(w.Off*float64(w.Rows)))),
			fmt.Sprintf("%.2f (%.0f%% %s)", w.Ratio(), 100*abs(1-w.Ratio()), map[bool]string{true: "slower", false: "faster"}[w.Ratio() < 1]),
			fmt.Sprintf("%s / %s", commas(int64(w.Statements[0])), commas(int64(w.Statements[1])))})
	}
	table(&t, []string{"UPDATE", "with triggers", "without", "with / without", "statements (with / without)"}, rows)

	t.WriteString(fmt.Sprintf("## Memory per cached entry\n\n"+
		"%s distinct (org, user) permission sets, each %d roles and %d codenames, cached by a fresh orgperm instance and, as JSON with `EX 300`, in Redis.\n\n",
		commas(int64(res.Mem.Entries)), res.Mem.Role, res.Mem.Codenames))
	table(&t, []string{"Strategy", "bytes per entry", "measured as"}, [][]string{
		{nameOrgperm, fmt.Sprintf("%.0f", res.Mem.OrgpermBytes), "`runtime.MemStats.HeapAlloc` delta (after GC) / entries, in each instance"},
		{nameRedis, fmt.Sprintf("%.0f", res.Mem.RedisBytes), fmt.Sprintf("`INFO memory` used_memory delta / entries, once for all instances (value: %.0f B of JSON)", res.Mem.JSONBytes)},
		{nameRequest, "—", "lives for one request"},
		{nameNoCache, "0", "nothing cached"},
	})

	var d strings.Builder
	d.WriteString("# Benchmarks\n\n")
	d.WriteString("The first seed's performance comparison, with measured numbers: four ways to answer " +
		"`HasPermission(org, user, \"billing.view_invoice\")`, measured in one run against one seeded database. " +
		"Generated by `make bench`; do not edit by hand. The sections after the comment that closes the generated part (the soak, read-your-writes, scaling, the hit against otter, RLS, the read API) come from other benchmarks, each with its own command; `make bench` keeps them.\n\n")
	d.WriteString("## Machine\n\n")
	m := res.Machine
	cpu := fmt.Sprint(m.CPUs, " logical CPUs")
	if m.CPUModel != "" {
		cpu += ", " + m.CPUModel
	}
	pg := m.Postgres + " (a throwaway cluster: fsync off, synchronous_commit off)"
	if res.ExternalPG {
		pg = m.Postgres + " (DATABASE_URL)"
	}
	rd := m.Redis + " on " + res.RedisAddr + " (loopback TCP)"
	if res.RedisStarted {
		rd += ", started by the run"
	}
	table(&d, []string{"", ""}, [][]string{
		{"CPU", cpu},
		{"OS / arch", m.GOOS + " / " + m.GOARCH},
		{"Go", m.Go},
		{"PostgreSQL", pg},
		{"Redis", rd},
		{"Date", m.Date.Format("2006-01-02 15:04 MST")},
		{"Load average (1 min)", res.LoadBefore + " at the start, " + res.LoadAfter + " at the end (other work shares this machine)"},
		{"Run time", res.Elapsed.String()},
	})
	d.WriteString("Everything runs on the one machine: PostgreSQL, Redis and the program share its CPUs.\n\n")
	d.WriteString("## Reproduce\n\n```sh\nmake bench   # runs: " + res.Command + "\n```\n\n" +
		"It needs Go, the PostgreSQL binaries (`initdb`, `postgres`: on PATH or under `/usr/lib/postgresql/*/bin`) and `redis-server` " +
		"(`apt-get install -y redis-server`). It uses the Redis at `-redis` (default `$REDIS_ADDR`, else 127.0.0.1:6379) and starts one on a free port when nothing answers there; " +
		"with `DATABASE_URL` set it uses that server instead of a throwaway one (its user needs CREATEDB). " +
		"It creates a database of its own and drops it, and deletes its Redis keys. `go run . -h` lists the flags.\n\n")
	d.WriteString(t.String())
	d.WriteString("## Chart\n\n![Hit latency by strategy on a log scale; invalidation delay p50 and p99 by instance count](" + filepath.Base(o.Chart) + ")\n\n")
	d.WriteString(methodNotes)
	return report{tables: t.String(), document: d.String()}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// methodNotes says how each row was measured and what to keep in mind.
const methodNotes = `## How it is measured

- **Data.** 100 orgs × 100 users, every member active and a typical member of issue #12: one role of each of three pools (9 roles per org, 3 per member, 50 codenames of a catalog of 151), 10 record grants through those roles and 10 to the member alone over 5 resource types; one org of 1,000 members for the bulk writes, one of 200 for the invalidation writes; written with set-based SQL, then ANALYZE.
- **No cache.** One ` + "`SELECT EXISTS (...)`" + ` over memberships, membership_roles, roles and role_permissions with the same rules as ` + "`Store.Load`" + ` (active status, the membership window, the role assignment's end, a role of the org or a system role), prepared once per connection by pgx. It returns one boolean rather than the whole set, so it is the cheapest query a check can make, and the ratios against it are the conservative ones. ` + "`Store.Load`" + ` (the whole set in one statement) is what the three caches run on a miss.
- **Redis.** go-redis v9, one client, loopback TCP. The value is the permission set's JSON (` + "`PermissionSet.MarshalJSON`" + `) under (org, user), so one entry answers every codename, as orgperm's does; a hit is GET and ` + "`json.Unmarshal`" + ` (which validates the set). The boolean variant caches the answer of one (org, user, codename), the seed's exact shape, and is timed for hits only. The app DELs after each write it makes; the invalidation rows time that DEL.
- **Request cache.** ` + "`membership.WithRequestCache`" + ` in front of a Client whose shared cache is made useless by a 1 ns TTL, so the first check of a request goes to the database, as the seed's does: a hit is the 2nd+ check in one request, a miss the first.
- **orgperm.** ` + "`membership.Client.HasPermission`" + `, default Config.
- **Ratios** are taken from the hit rows of this same run.
- **Percentiles** are nearest-rank over the samples listed with each table.
- **What the numbers are not.** Single goroutine, warm caches, one machine, Redis and PostgreSQL on loopback: a network between app and Redis or database adds its round trip to every Redis hit and every query, and nothing to an orgperm hit. The invalidation delay includes the write's own commit; with all instances, PostgreSQL and the writer sharing few CPUs, it grows with the instance count because the listeners queue for the CPUs.
`
