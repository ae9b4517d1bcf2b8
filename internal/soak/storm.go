package soak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
)

// stormPayloadBytes is the size each spoofed payload stays under:
// PostgreSQL's limit is 8000 bytes.
const stormPayloadBytes = 7900

// stormPayloads is the number of distinct payloads the storm cycles
// through; together they name stormPayloads times about a thousand
// organizations.
const stormPayloads = 16

// stormer is the NOTIFY storm's sender: a database role created for the
// soak, with LOGIN and nothing else (no orgperm privilege), which anyone
// can be, since NOTIFY needs none.
type stormer struct {
	role     string
	cfg      *pgx.ConnConfig // DatabaseURL as the role
	payloads []string
}

// newStormer creates the storm's role through raw (which must be allowed
// to CREATE ROLE) and builds its payloads.
func newStormer(ctx context.Context, raw *pgxpool.Pool, databaseURL string) (*stormer, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	st := &stormer{role: "soak_storm_" + hex.EncodeToString(b), cfg: cfg}
	_, _ = rand.Read(b)
	password := hex.EncodeToString(b)
	// Both are hex made here: nothing to quote.
	if _, err := raw.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", st.role, password)); err != nil {
		return nil, fmt.Errorf("storm: create role: %w", err)
	}
	// The point of the storm is that anyone can send it: check the role
	// can touch nothing of orgperm's (PUBLIC might have been granted some).
	var privileged bool
	if err := raw.QueryRow(ctx, `SELECT has_schema_privilege($1, 'orgperm', 'USAGE')
		OR EXISTS (SELECT FROM pg_tables WHERE schemaname = 'orgperm'
			AND has_table_privilege($1, format('%I.%I', schemaname, tablename), 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'))`,
		st.role).Scan(&privileged); err != nil {
		return nil, fmt.Errorf("storm: check the role's privileges: %w", err)
	}
	if privileged {
		_ = st.close(ctx, raw)
		return nil, fmt.Errorf("storm: role %s has privileges on schema orgperm (granted to PUBLIC?): not an unprivileged sender", st.role)
	}
	cfg.User, cfg.Password = st.role, password
	n := 0
	for range stormPayloads {
		var p strings.Builder
		p.WriteString(`{"v":1,"t":"storm","orgs":[`)
		for first := true; ; first = false {
			id := `"x` + strconv.FormatInt(int64(n), 36) + `"`
			if p.Len()+len(id)+3 > stormPayloadBytes {
				break
			}
			if !first {
				p.WriteByte(',')
			}
			p.WriteString(id)
			n++
		}
		p.WriteString("]}")
		st.payloads = append(st.payloads, p.String())
	}
	return st, nil
}

// run sends rate payloads a second on the invalidation channel for hold,
// or until ctx is done, and returns the number sent. An error is one that
// stopped the storm before its time (the server restarting, say).
func (st *stormer) run(ctx context.Context, hold time.Duration, rate int) (sent uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, st.cfg.Copy())
	if err != nil {
		return 0, fmt.Errorf("storm: connect as %s: %w", st.role, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return sent, nil
		case <-t.C:
		}
		if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", listener.DefaultChannel, st.payloads[i%len(st.payloads)]); err != nil {
			if ctx.Err() != nil {
				return sent, nil
			}
			return sent, fmt.Errorf("storm: notify: %w", err)
		}
		sent++
	}
}

// close drops the storm's role (its connections are closed by then).
func (st *stormer) close(ctx context.Context, raw *pgxpool.Pool) error {
	if _, err := raw.Exec(ctx, "DROP ROLE IF EXISTS "+st.role); err != nil {
		return fmt.Errorf("storm: drop role: %w", err)
	}
	return nil
}
