package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
	"github.com/orgperm/orgperm/pkg/relay"
)

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// The end-to-end test builds the binary and runs it against a throwaway
// cluster, checking outputs and exit codes.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "orgperm-cli-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "orgperm")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

type result struct {
	out, err string
	code     int
}

// orgperm runs the binary with DATABASE_URL=url (none when url is "").
func orgperm(t *testing.T, url string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if url != "" {
		cmd.Env = append(cmd.Env, "DATABASE_URL="+url)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("orgperm %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{stdout.String(), stderr.String(), code}
}

// want runs the binary and checks its exit code and that stdout holds
// every one of contains.
func want(t *testing.T, url string, code int, args []string, contains ...string) result {
	t.Helper()
	return check(t, orgperm(t, url, args...), code, args, contains...)
}

// wantSoon is want for a state that comes and goes (a walsender between
// two sessions): it runs the command again, for up to a minute, until
// its output holds every one of contains, and then checks the last run
// as want does.
func wantSoon(t *testing.T, url string, code int, args []string, contains ...string) result {
	t.Helper()
	r := orgperm(t, url, args...)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); r = orgperm(t, url, args...) {
		holds := true
		for _, c := range contains {
			holds = holds && strings.Contains(fold(r.out), fold(c))
		}
		if holds {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling for the walsender's next session
	}
	return check(t, r, code, args, contains...)
}

// check reports r's exit code other than code, and each of contains its
// stdout lacks.
func check(t *testing.T, r result, code int, args []string, contains ...string) result {
	t.Helper()
	if r.code != code {
		t.Errorf("orgperm %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.out, r.err)
	}
	for _, c := range contains {
		// Columns are aligned with spaces: compare with runs of blanks
		// folded into one space.
		if !strings.Contains(fold(r.out), fold(c)) {
			t.Errorf("orgperm %s: stdout lacks %q:\n%s", strings.Join(args, " "), c, r.out)
		}
	}
	return r
}

func fold(s string) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.Join(strings.Fields(line), " "))
	}
	return b.String()
}

// wantJSON runs the binary with --json and decodes stdout into v.
func wantJSON(t *testing.T, url string, code int, v any, args ...string) {
	t.Helper()
	r := want(t, url, code, append(args, "--json"))
	if err := json.Unmarshal([]byte(r.out), v); err != nil {
		t.Errorf("orgperm %s --json: %v\n%s", strings.Join(args, " "), err, r.out)
	}
}

func TestBinaryDoesNotLinkTesting(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "testing" || strings.HasSuffix(dep, "/pgtest") {
			t.Errorf("cmd/orgperm links %s", dep)
		}
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"check", "acme", "alice"},
		{"check", "acme", "alice", "app.edit", "--at", "yesterday"},
		{"migrate", "sideways"},
		{"evict", "planet", "x"},
		{"members", "acme", "--nope"},
		{"audit", "galaxy", "x"},
	} {
		r := want(t, url, exitUsage, args)
		if !strings.Contains(r.err, "usage: orgperm") {
			t.Errorf("orgperm %v: no usage on stderr:\n%s", args, r.err)
		}
	}
	want(t, "", exitUsage, []string{"doctor"})
	want(t, url, exitOK, []string{"--help"})
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	url := pgtest.Shared(t).NewEmptyDatabase(t)
	var st struct {
		Migrations []struct {
			Version int64 `json:"version"`
			Applied bool  `json:"applied"`
		} `json:"migrations"`
	}
	wantJSON(t, url, exitOK, &st, "migrate", "status")
	if len(st.Migrations) < 3 || st.Migrations[0].Applied {
		t.Fatalf("status on an empty database: %+v", st)
	}
	latest := st.Migrations[len(st.Migrations)-1].Version

	var doc struct {
		OK       bool `json:"ok"`
		Findings []struct{ Severity, Problem string }
	}
	wantJSON(t, url, exitDeny, &doc, "doctor")
	if doc.OK || len(doc.Findings) == 0 || !strings.Contains(doc.Findings[0].Problem, "not installed") {
		t.Errorf("doctor on an empty database: %+v", doc)
	}

	want(t, url, exitOK, []string{"migrate", "up"}, "up\t")
	want(t, url, exitOK, []string{"migrate", "up"}, "nothing to migrate up")
	wantJSON(t, url, exitOK, &st, "migrate", "status")
	for _, m := range st.Migrations {
		if !m.Applied {
			t.Errorf("after up: %+v", st)
		}
	}
	want(t, url, exitOK, []string{"migrate", "down"}, "down")
	wantJSON(t, url, exitOK, &st, "migrate", "status")
	if m := st.Migrations[len(st.Migrations)-1]; m.Version != latest || m.Applied {
		t.Errorf("after down: %+v", st)
	}
	want(t, url, exitOK, []string{"migrate", "up"}, "up")
}

// seed writes a small model through the library: acme with alice (active,
// editor), bob (invited), carol (active, no role), dave (active until
// 2031); the role editor grants app.edit.
func seed(t *testing.T, url string) *membership.Store {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := membership.NewStore(pool)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = st.EnsurePermissions(ctx, membership.Permission{Codename: "app.edit"}, membership.Permission{Codename: "app.view"})
	must(err)
	editor, _, err := st.EnsureRole(ctx, "acme", "editor", []string{"app.edit", "app.view"})
	must(err)
	_, _, err = st.EnsureRole(ctx, "", "viewer", []string{"app.view"})
	must(err)
	until := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	must(st.AddMember(ctx, "acme", "alice", membership.MemberOptions{}))
	must(st.AddMember(ctx, "acme", "bob", membership.MemberOptions{Status: membership.StatusInvited}))
	must(st.AddMember(ctx, "acme", "carol", membership.MemberOptions{}))
	must(st.AddMember(ctx, "acme", "dave", membership.MemberOptions{ValidUntil: &until}))
	must(st.AddMember(ctx, "globex", "alice", membership.MemberOptions{Status: membership.StatusSuspended}))
	must(st.AssignRole(ctx, "acme", "alice", editor, nil))
	must(st.AssignRole(ctx, "acme", "dave", editor, nil))
	return st
}

func TestCommands(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	seed(t, url)

	// check and explain: the Go API's answer and reason; exit 0 or 1.
	want(t, url, exitOK, []string{"check", "acme", "alice", "app.edit"}, "allow\tgranted")
	want(t, url, exitDeny, []string{"check", "acme", "bob", "app.edit"}, "deny\tinvited")
	want(t, url, exitDeny, []string{"check", "acme", "carol", "app.edit"}, "deny\tno_role")
	want(t, url, exitDeny, []string{"check", "nowhere", "alice", "app.edit"}, "deny\tnot_member")
	want(t, url, exitDeny, []string{"check", "acme", "dave", "app.edit", "--at", "2031-06-01T00:00:00Z"}, "deny\texpired")
	want(t, url, exitOK, []string{"check", "--at", "2030-06-01T00:00:00Z", "acme", "dave", "app.edit"}, "allow")
	want(t, url, exitError, []string{"check", "acme", "alice", "NotACodename"})
	want(t, url, exitOK, []string{"explain", "acme", "alice", "app.edit"}, "answer:", "granted", "role:", "editor")
	var dec struct {
		Allowed  bool   `json:"allowed"`
		Reason   string `json:"reason"`
		RoleName string `json:"role_name"`
		At       string `json:"at"`
	}
	wantJSON(t, url, exitOK, &dec, "explain", "acme", "alice", "app.edit")
	if !dec.Allowed || dec.Reason != "granted" || dec.RoleName != "editor" || dec.At == "" {
		t.Errorf("explain --json: %+v", dec)
	}
	wantJSON(t, url, exitDeny, &dec, "check", "acme", "bob", "app.edit")
	if dec.Allowed || dec.Reason != "invited" {
		t.Errorf("check --json: %+v", dec)
	}

	// members, with filters and pages.
	want(t, url, exitOK, []string{"members", "acme"}, "USER", "alice", "active", "editor", "bob", "invited", "2031-01-01T00:00:00Z")
	var mem struct {
		Members []struct {
			User   string `json:"user"`
			Active bool   `json:"active"`
			Roles  []struct {
				Name string `json:"name"`
			} `json:"roles"`
		} `json:"members"`
		Next string `json:"next"`
	}
	wantJSON(t, url, exitOK, &mem, "members", "acme", "--role", "editor")
	if len(mem.Members) != 2 || mem.Members[0].User != "alice" || mem.Members[1].User != "dave" || mem.Members[0].Roles[0].Name != "editor" {
		t.Errorf("members --role editor: %+v", mem)
	}
	wantJSON(t, url, exitOK, &mem, "members", "acme", "--status", "invited")
	if len(mem.Members) != 1 || mem.Members[0].User != "bob" || mem.Members[0].Active {
		t.Errorf("members --status invited: %+v", mem)
	}
	var seen []string
	cursor := ""
	for range 10 {
		args := []string{"members", "acme", "--limit", "3"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		wantJSON(t, url, exitOK, &mem, args...)
		for _, m := range mem.Members {
			seen = append(seen, m.User)
		}
		if cursor = mem.Next; cursor == "" {
			break
		}
	}
	if strings.Join(seen, ",") != "alice,bob,carol,dave" {
		t.Errorf("members by pages of 3: %v", seen)
	}
	r := want(t, url, exitOK, []string{"members", "acme", "--limit", "2"}, "more: --cursor ")
	if strings.Contains(r.out, "carol") {
		t.Errorf("page of 2 shows carol:\n%s", r.out)
	}
	want(t, url, exitError, []string{"members", "acme", "--cursor", "bogus"})
	want(t, url, exitError, []string{"members", "acme", "--status", "gone"})

	// orgs: the org switcher and the user-wide answer.
	want(t, url, exitOK, []string{"orgs", "alice"}, "acme", "globex", "suspended", "active in some organization: yes")
	var orgs struct {
		Orgs []struct {
			Org    string `json:"org"`
			Active bool   `json:"active"`
		} `json:"orgs"`
		ActiveAnywhere bool `json:"active_anywhere"`
	}
	wantJSON(t, url, exitOK, &orgs, "orgs", "alice")
	if len(orgs.Orgs) != 2 || !orgs.Orgs[0].Active || orgs.Orgs[1].Active || !orgs.ActiveAnywhere {
		t.Errorf("orgs --json: %+v", orgs)
	}
	wantJSON(t, url, exitOK, &orgs, "orgs", "bob")
	if orgs.ActiveAnywhere {
		t.Errorf("bob is only invited: %+v", orgs)
	}

	// roles and who.
	want(t, url, exitOK, []string{"roles", "acme"}, "editor", "acme", "app.edit, app.view", "viewer", "system")
	want(t, url, exitOK, []string{"who", "acme", "app.edit"}, "alice\teditor", "dave")
	var who struct {
		Holders []struct {
			User     string `json:"user"`
			RoleName string `json:"role_name"`
		} `json:"holders"`
	}
	wantJSON(t, url, exitOK, &who, "who", "acme", "app.edit", "--at", "2031-06-01T00:00:00Z")
	if len(who.Holders) != 1 || who.Holders[0].User != "alice" {
		t.Errorf("who at 2031-06: %+v (dave's membership has ended)", who)
	}

	// grant and revoke a role by name; the check follows.
	want(t, url, exitOK, []string{"grant", "acme", "carol", "editor", "--actor", "ops:1"}, "granted role editor")
	want(t, url, exitOK, []string{"check", "acme", "carol", "app.edit"}, "allow")
	want(t, url, exitOK, []string{"grant", "acme", "carol", "viewer", "--until", "2030-01-01T00:00:00Z"}, "until 2030-01-01T00:00:00Z")
	want(t, url, exitOK, []string{"revoke", "acme", "carol", "editor"}, "revoked role editor")
	want(t, url, exitDeny, []string{"check", "acme", "carol", "app.edit"}, "deny")
	want(t, url, exitError, []string{"grant", "acme", "carol", "no-such-role"})
	want(t, url, exitError, []string{"grant", "acme", "nobody", "editor"})

	// audit: the history views, newest first.
	want(t, url, exitOK, []string{"audit", "member", "acme", "carol"},
		"DELETE membership_roles", "ops:1", "INSERT membership_roles", "INSERT memberships")
	var hist struct {
		Entries []struct {
			Table     string          `json:"table"`
			Operation string          `json:"operation"`
			User      string          `json:"user"`
			Actor     string          `json:"actor"`
			Key       json.RawMessage `json:"key"`
			Old       json.RawMessage `json:"old"`
			New       json.RawMessage `json:"new"`
		} `json:"entries"`
		Next string `json:"next"`
	}
	wantJSON(t, url, exitOK, &hist, "audit", "actor", "ops:1")
	if len(hist.Entries) != 1 || hist.Entries[0].Operation != "INSERT" || hist.Entries[0].Table != "membership_roles" ||
		hist.Entries[0].User != "carol" || string(hist.Entries[0].Old) != "null" {
		t.Errorf("audit actor ops:1: %+v", hist)
	}
	wantJSON(t, url, exitOK, &hist, "audit", "org", "acme", "--limit", "2")
	if len(hist.Entries) != 2 || hist.Next == "" || hist.Entries[0].Operation != "DELETE" {
		t.Errorf("audit org acme --limit 2: %+v", hist)
	}
	wantJSON(t, url, exitOK, &hist, "audit", "actor", "ops:1", "--org", "globex")
	if len(hist.Entries) != 0 {
		t.Errorf("audit actor ops:1 --org globex: %+v", hist)
	}
	want(t, url, exitError, []string{"audit", "org", "acme", "--cursor", "nope"})
}

func TestEvict(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN orgperm_invalidate"); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatal(err)
		}
		return n.Payload
	}
	for _, c := range []struct {
		args    []string
		payload string
	}{
		{[]string{"evict", "member", "acme", "alice"}, `{"v":1,"t":"evict","members":[["acme","alice"]]}`},
		{[]string{"evict", "org", "acme"}, `{"v":1,"t":"evict","orgs":["acme"]}`},
		{[]string{"evict", "user", "alice"}, `{"v":1,"t":"evict","users":["alice"]}`},
		{[]string{"evict", "all"}, `{"v":1,"t":"evict","all":true}`},
	} {
		want(t, url, exitOK, c.args, "evicted")
		if got := next(); got != c.payload {
			t.Errorf("orgperm %v: payload %s, want %s", c.args, got, c.payload)
		}
	}
	var out struct {
		Evicted string `json:"evicted"`
	}
	wantJSON(t, url, exitOK, &out, "evict", "org", "globex")
	if out.Evicted != "org globex" {
		t.Errorf("evict --json: %+v", out)
	}
	want(t, url, exitUsage, []string{"evict", "org"})
	want(t, url, exitError, []string{"evict", "org", "bad\x01id"})
}

// doctorDoc is the part of doctor's JSON the tests read.
type doctorDoc struct {
	OK            bool  `json:"ok"`
	SchemaVersion int64 `json:"schema_version"`
	Triggers      []struct {
		Name    string `json:"name"`
		Enabled string `json:"enabled"`
	} `json:"triggers"`
	Transport *struct {
		Mode        string   `json:"mode"`
		QueueRows   *int64   `json:"queue_rows"`
		OldestAge   *float64 `json:"oldest_row_age_seconds"`
		RelayLeader *struct {
			PID         int32  `json:"pid"`
			Application string `json:"application_name"`
		} `json:"relay_leader"`
		Slot *struct {
			Name      string `json:"name"`
			Active    bool   `json:"active"`
			WALStatus string `json:"wal_status"`
		} `json:"wal_slot"`
	} `json:"transport"`
	Findings []struct {
		Severity string `json:"severity"`
		Object   string `json:"object"`
		Problem  string `json:"problem"`
	} `json:"findings"`
}

// finding reports whether doc holds a finding of severity sev whose object
// and problem contain every one of words.
func (doc *doctorDoc) finding(sev string, words ...string) bool {
	for _, f := range doc.Findings {
		text := f.Object + " " + f.Problem
		if f.Severity != sev {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(text, w)
		}
		if all {
			return true
		}
	}
	return false
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	t.Run("queue", testDoctorQueue)
	t.Run("wal", testDoctorWAL)
	url := pgtest.NewDatabase(t)
	want(t, url, exitOK, []string{"doctor"}, "schema version:", "listeners:\t0", "warning",
		"transport:\tnotify", "orgperm.queue:\t0 rows waiting", "relay:\tnone")
	var doc doctorDoc
	wantJSON(t, url, exitOK, &doc, "doctor")
	if !doc.OK || doc.SchemaVersion < 2 || len(doc.Triggers) < 23 {
		t.Errorf("doctor --json: %+v", doc)
	}
	// Notify mode, nothing queued, no relay: no finding about them.
	if tr := doc.Transport; tr == nil || tr.Mode != "notify" || tr.QueueRows == nil || *tr.QueueRows != 0 || tr.RelayLeader != nil {
		t.Errorf("doctor --json: transport %+v, want notify, 0 rows waiting, no leader", tr)
	}
	if doc.finding("warning", "relay") || doc.finding("error", "orgperm.queue") {
		t.Errorf("doctor --json in notify mode: %+v", doc.Findings)
	}

	// A listener connected under its application_name is counted.
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "orgperm_listener"
	lconn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lconn.Close(ctx)
	want(t, url, exitOK, []string{"doctor"}, "listeners:\t1 connected")

	// A disabled invalidation trigger is an error: exit 1.
	if _, err := lconn.Exec(ctx, `ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`); err != nil {
		t.Fatal(err)
	}
	wantJSON(t, url, exitDeny, &doc, "doctor")
	if doc.OK || !doc.finding("error", "memberships_notify_update") {
		t.Errorf("doctor with a disabled trigger: %+v", doc)
	}
	want(t, url, exitDeny, []string{"doctor"}, "memberships_notify_update")
	if _, err := lconn.Exec(ctx, `DROP TRIGGER memberships_notify_delete ON orgperm.memberships`); err != nil {
		t.Fatal(err)
	}
	want(t, url, exitDeny, []string{"doctor"}, "memberships_notify_delete", "missing")

	// So is a disabled audit trigger, on a database that is otherwise fine.
	url2 := pgtest.NewDatabase(t)
	if r := want(t, url2, exitOK, []string{"doctor"}, "schema version"); strings.Contains(r.out, "error") {
		t.Errorf("doctor on a fresh database reports an error:\n%s", r.out)
	}
	conn2, err := pgx.Connect(ctx, url2)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	if _, err := conn2.Exec(ctx, `ALTER TABLE orgperm.data_access DISABLE TRIGGER data_access_audit_truncate`); err != nil {
		t.Fatal(err)
	}
	want(t, url2, exitDeny, []string{"doctor"}, "data_access_audit_truncate", "audit trail")
}

// testDoctorQueue: in queue mode doctor reports the transport, the rows
// waiting and the relay holding the lock; rows waiting with no relay
// leading is an error (exit 1), in queue mode and after a switch back to
// notify, and queue mode with an empty queue and no relay a warning.
func testDoctorQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var doc doctorDoc
	// check runs doctor, with and without --json, while nothing relays or
	// while the queue is empty: the rows it reports are those the queue
	// holds (the switches' payloads included, one per switch and one from
	// the DDL event trigger when the cluster has it).
	check := func(step string, code int, mode string, leader bool, text ...string) (rows string) {
		t.Helper()
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM orgperm.queue`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows = fmt.Sprintf("%d rows waiting", n)
		if n == 1 {
			rows = "1 row waiting"
		}
		wantJSON(t, url, code, &doc, "doctor")
		switch tr := doc.Transport; {
		case tr == nil:
			t.Fatalf("%s: no transport in %+v", step, doc)
		case tr.QueueRows == nil:
			t.Errorf("%s: transport %+v without queue_rows", step, tr)
		case tr.Mode != mode || *tr.QueueRows != n || (tr.RelayLeader != nil) != leader:
			t.Errorf("%s: transport %+v, %d rows; want mode %s, %d rows, leader %t", step, tr, *tr.QueueRows, mode, n, leader)
		}
		want(t, url, code, []string{"doctor"}, append(text, "transport:\t"+mode, "orgperm.queue:\t"+rows)...)
		return rows
	}
	const noRelay = "no relay holds the relay lock"

	// The switch queues its own "ddl" payload: one row waits, no relay.
	exec(`SELECT orgperm.set_transport('queue')`)
	rows := check("queue mode, no relay", exitDeny, "queue", false, "relay:\tnone", noRelay)
	if doc.OK || !doc.finding("error", "orgperm.queue", rows, noRelay) {
		t.Errorf("queue mode, rows waiting, no relay: ok %t, findings %+v; want an error on orgperm.queue", doc.OK, doc.Findings)
	}

	// A relay leads and empties the queue.
	leading := make(chan bool, 4)
	r, err := relay.New(relay.Config{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			cfg, err := pgx.ParseConfig(url)
			if err != nil {
				return nil, err
			}
			cfg.RuntimeParams["application_name"] = relay.ApplicationName
			return pgx.ConnectConfig(ctx, cfg)
		},
		OnLead: func(l bool) { leading <- l },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(ctx)
	select {
	case <-leading:
	case <-time.After(2 * time.Minute):
		t.Fatal("the relay does not lead")
	}
	waitFor(t, conn, "the queue emptied", `SELECT NOT EXISTS (SELECT FROM orgperm.queue)`)
	var pid int32
	if err := conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
		relay.ApplicationName).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if rows := check("queue mode, a relay leads", exitOK, "queue", true, fmt.Sprintf("relay:\tpid %d (orgperm_relay)", pid)); rows != "0 rows waiting" {
		t.Errorf("queue mode, a relay leads: %s, want 0", rows)
	}
	if l := doc.Transport.RelayLeader; l == nil || l.PID != pid || l.Application != relay.ApplicationName {
		t.Errorf("relay_leader %+v, want pid %d, %s", l, pid, relay.ApplicationName)
	}
	if doc.finding("error", "orgperm.queue") || doc.finding("warning", "relay") {
		t.Errorf("queue mode, a relay leads: findings %+v", doc.Findings)
	}

	// The relay stops: nothing waits yet, a warning; a write waits, an error.
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, conn, "the relay lock released", `SELECT NOT EXISTS (SELECT FROM pg_locks
		WHERE locktype = 'advisory' AND pid = `+fmt.Sprint(pid)+`)`)

	// A session holds the relay lock but relays nothing (a stuck relay):
	// a row that has waited a minute is an error, a fresh one is not.
	stuck, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close(ctx)
	if _, err := stuck.Exec(ctx, `SELECT pg_advisory_lock($1)`, relay.LockID); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO orgperm.queue (channel, payload, queued_at)
		VALUES ('orgperm_invalidate', '{"v":1,"t":"evict","all":true}', clock_timestamp() - interval '1 minute')`)
	check("queue mode, a row a minute old, a relay leads", exitDeny, "queue", true, "the oldest for 6")
	if age := doc.Transport.OldestAge; age == nil || *age < 60 || *age > 600 {
		t.Errorf("queue mode, a row a minute old: oldest_row_age_seconds %v", age)
	}
	if !doc.finding("error", "orgperm.queue", "1 row has waited 6", "relay is stuck") {
		t.Errorf("queue mode, a row a minute old, a relay leads: findings %+v, want an error", doc.Findings)
	}
	exec(`DELETE FROM orgperm.queue`)
	exec(`INSERT INTO orgperm.queue (channel, payload) VALUES ('orgperm_invalidate', '{"v":1,"t":"evict","all":true}')`)
	check("queue mode, a fresh row, a relay leads", exitOK, "queue", true)
	if doc.finding("error", "orgperm.queue") {
		t.Errorf("queue mode, a fresh row, a relay leads: findings %+v", doc.Findings)
	}
	exec(`DELETE FROM orgperm.queue`)
	if _, err := stuck.Exec(ctx, `SELECT pg_advisory_unlock($1)`, relay.LockID); err != nil {
		t.Fatal(err)
	}
	check("queue mode, no relay, empty queue", exitOK, "queue", false, "relay:\tnone", noRelay)
	if !doc.finding("warning", "relay", noRelay) {
		t.Errorf("queue mode, no relay, empty queue: findings %+v, want a warning", doc.Findings)
	}
	exec(`SELECT orgperm.evict_user('u1')`)
	rows = check("queue mode, a write waits, no relay", exitDeny, "queue", false, noRelay)
	if rows != "1 row waiting" || !doc.finding("error", "orgperm.queue", rows, noRelay) {
		t.Errorf("queue mode, a write waits, no relay: findings %+v, want an error", doc.Findings)
	}

	// Back to notify mode: the rows left still wait for a relay (the switch
	// queues its payload too), and proofs go through the queue meanwhile.
	exec(`SELECT orgperm.set_transport('notify')`)
	rows = check("notify mode, rows left, no relay", exitDeny, "notify", false, noRelay)
	if !doc.finding("error", "orgperm.queue", rows, noRelay) {
		t.Errorf("notify mode, rows left, no relay: findings %+v, want an error", doc.Findings)
	}
}

// waitFor polls query, which returns one boolean, on conn until it is
// true, and fails the test when it is not within two minutes.
func waitFor(t *testing.T, conn *pgx.Conn, what, query string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var ok bool
		if err := conn.QueryRow(context.Background(), query).Scan(&ok); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s: not within two minutes", what)
		case <-tick.C:
		}
	}
}

// testDoctorWAL: in wal mode doctor reports the slot; no relay leading is
// a warning, and so is a slot left behind after a switch away from wal
// with no relay to drop it.
func testDoctorWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if ok, why, err := sidecheck.WAL(ctx, conn); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Skip(why)
	}
	// The switch queues its "ddl" payload too (for a queue relay): relay it
	// here, as a relay would.
	if _, err := conn.Exec(ctx, `SELECT orgperm.set_transport('wal'), orgperm.relay()`); err != nil {
		t.Fatal(err)
	}
	var doc doctorDoc
	wantJSON(t, url, exitOK, &doc, "doctor")
	if tr := doc.Transport; tr == nil || tr.Mode != "wal" || tr.Slot != nil || !doc.finding("warning", "relay", "wal mode and no relay") {
		t.Errorf("wal mode, no relay: transport %+v, findings %+v", tr, doc.Findings)
	}

	// A session holds the relay's lock and makes no slot, as a relay
	// whose role lacks REPLICATION does between its retries.
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, relay.LockID); err != nil {
		t.Fatal(err)
	}
	wantJSON(t, url, exitOK, &doc, "doctor")
	if tr := doc.Transport; tr == nil || tr.Slot != nil || tr.RelayLeader == nil || !doc.finding("warning", "relay", "no replication slot", "REPLICATION") {
		t.Errorf("wal mode, a leader without a slot: transport %+v, findings %+v", tr, doc.Findings)
	}
	holder.Close(ctx)

	r, err := relay.New(relay.Config{Connect: func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, url) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(ctx)
	waitFor(t, conn, "the relay streaming", `SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = orgperm.wal_slot() AND active)`)
	wantSoon(t, url, exitOK, []string{"doctor"}, "transport:\twal", "wal slot:\torgperm_wal_", "streamed")
	wantJSON(t, url, exitOK, &doc, "doctor")
	if tr := doc.Transport; tr == nil || tr.Slot == nil || !tr.Slot.Active || tr.RelayLeader == nil || doc.finding("warning", "no relay") {
		t.Errorf("wal mode, a relay streams: transport %+v, findings %+v", tr, doc.Findings)
	}
	// A slot keeps WAL without bound unless max_slot_wal_keep_size says
	// otherwise: doctor warns exactly when it is -1 (the default).
	var keep string
	if err := conn.QueryRow(ctx, `SELECT current_setting('max_slot_wal_keep_size')`).Scan(&keep); err != nil {
		t.Fatal(err)
	}
	if got := doc.finding("warning", "max_slot_wal_keep_size", "without bound"); got != (keep == "-1") {
		t.Errorf("max_slot_wal_keep_size = %s: warned %v, findings %+v", keep, got, doc.Findings)
	}

	// The relay stops, the transport goes back to notify: the slot stays,
	// keeping WAL, with no relay to drop it.
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, conn, "the slot released", `SELECT NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = orgperm.wal_slot() AND active)`)
	waitFor(t, conn, "the relay lock released", `SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'orgperm_relay' AND datname = current_database())`)
	if _, err := conn.Exec(ctx, `SELECT orgperm.set_transport('notify')`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT orgperm.relay()`); err != nil {
		t.Fatal(err)
	}
	wantJSON(t, url, exitOK, &doc, "doctor")
	if tr := doc.Transport; tr == nil || tr.Slot == nil || tr.Slot.Active || !doc.finding("warning", "replication slot", "keeps", "pg_drop_replication_slot") {
		t.Errorf("notify mode, a slot left: transport %+v, findings %+v", tr, doc.Findings)
	}
}
