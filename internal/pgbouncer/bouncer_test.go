package pgbouncer

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find() })))
}

// setup starts a bouncer with pool mode mode and a single server
// connection in front of a fresh database, closed when the test ends.
func setup(t *testing.T, mode string) (b *Bouncer, dbname string) {
	t.Helper()
	if _, err := Find(); err != nil {
		t.Skip(err)
	}
	server := pgtest.Shared(t)
	cfg, err := pgx.ParseConfig(server.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err = Start(context.Background(), Config{
		ServerHost: cfg.Host, ServerPort: int(cfg.Port), Users: []string{cfg.User},
		PoolMode: mode, PoolSize: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b, cfg.Database
}

func backendPID(ctx context.Context, t *testing.T, url string) (*pgx.Conn, uint32) {
	t.Helper()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	var pid uint32
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("through the bouncer: %v", err)
	}
	return c, pid
}

// TestTransactionMode shows the pooling the soak relies on: with one
// server connection, two client connections that are both open take turns
// on it, one transaction at a time. In session mode the second would wait
// for the first to disconnect, and the test fails when its context ends.
func TestTransactionMode(t *testing.T) {
	t.Parallel()
	b, db := setup(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := b.ConnString("postgres", db)
	_, a := backendPID(ctx, t, url)
	_, c := backendPID(ctx, t, url) // a is still connected
	if a != c {
		t.Errorf("two client connections got server backends %d and %d, want one shared backend", a, c)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no host":        {ServerPort: 5432},
		"no port":        {ServerHost: "127.0.0.1"},
		"bad port":       {ServerHost: "127.0.0.1", ServerPort: 70000},
		"bad pool mode":  {ServerHost: "127.0.0.1", ServerPort: 5432, PoolMode: "sometimes"},
		"negative pool":  {ServerHost: "127.0.0.1", ServerPort: 5432, PoolSize: -1},
		"quoted user":    {ServerHost: "127.0.0.1", ServerPort: 5432, Users: []string{`a"b`}},
		"host injection": {ServerHost: "127.0.0.1 port=1", ServerPort: 5432},
	} {
		if _, err := Start(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestBadBinary: a binary that is not PgBouncer fails Start with an error,
// and leaves no process behind (goleak and the temp dir are checked by
// Close having run).
func TestBadBinary(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), Config{ServerHost: "127.0.0.1", ServerPort: 5432, Binary: "/bin/false",
		StartTimeout: 5 * time.Second})
	if err == nil {
		t.Fatal("Start with /bin/false as pgbouncer succeeded")
	}
	t.Log(err)
}
