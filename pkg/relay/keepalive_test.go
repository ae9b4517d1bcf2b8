package relay_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/pkg/relay"
)

// sqlTracer records the statements a connection ran without error.
type sqlTracer struct {
	mu  sync.Mutex
	sql []string
}

type traceKey struct{}

func (tr *sqlTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, traceKey{}, d.SQL)
}

func (tr *sqlTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if d.Err != nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.sql = append(tr.sql, ctx.Value(traceKey{}).(string))
}

func (tr *sqlTracer) ran(sql string) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, s := range tr.sql {
		if s == sql {
			return true
		}
	}
	return false
}

// TestRelaySessionKeepalives: the relay's session asks the server to give
// it up about 11 s after its client's host goes away (the session holds
// the lock no other relay can take meanwhile), before it takes the lock;
// and the statement sets what it says on a TCP session.
func TestRelaySessionKeepalives(t *testing.T) {
	t.Parallel()
	url, _ := setup(t)
	ctx := context.Background()
	cfg := tcpConfig(t, url)
	tr := &sqlTracer{}
	cfg.Tracer = tr
	_, ch := startRelay(t, func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg) })
	wait(t, ch, true)
	if !tr.ran(relay.KeepaliveSQL) {
		t.Fatalf("the leading relay's session never set its keepalives; it ran %q", tr.sql)
	}

	conn := connect(t, url)
	if _, err := conn.Exec(ctx, relay.KeepaliveSQL); err != nil {
		t.Fatal(err)
	}
	for setting, want := range map[string]string{
		"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3", "tcp_user_timeout": "15000",
	} {
		var got string // in the setting's base unit: s, s, -, ms
		if err := conn.QueryRow(ctx, "SELECT setting FROM pg_catalog.pg_settings WHERE name = $1", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %s after the relay's statement, want %s", setting, got, want)
		}
	}
}

// tcpConfig parses url, and skips the test when it names a Unix-domain
// socket: the test is about TCP (keepalives, dropped packets).
func tcpConfig(t *testing.T, url string) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Skip("a Unix-domain socket: this test is about TCP")
	}
	return cfg
}
