package membership

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
)

var (
	// ErrClosed is returned by Check after Close.
	ErrClosed = errors.New("membership: client closed")

	// ErrBypassed is matched by what Check returns while the cache cannot
	// be trusted and checks read the database instead; the error also
	// wraps the reason (a *SchemaError, listener.ErrNoProof, a connection
	// error, ...).
	ErrBypassed = errors.New("membership: cache bypassed")

	// ErrInvalidToken is returned by ParseToken and WithToken for a string
	// that is not a consistency token.
	ErrInvalidToken = errors.New("membership: invalid consistency token")
)

// Check reports whether the cache is in service: nil when the listener has
// proven that notifications arrive, the database side is verified, and the
// lease is fresh (if it has lapsed on an idle instance, Check fetches one
// proof, within ctx). Otherwise it returns an error matching ErrBypassed
// that says why (checks still answer, from the database). It is the
// readiness probe's question.
func (c *Client) Check(ctx context.Context) error {
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	c.guardMu.Lock()
	gerr := c.guardErr
	c.guardMu.Unlock()
	if gerr != nil {
		return fmt.Errorf("%w: %w", ErrBypassed, gerr)
	}
	if err := c.listener.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrBypassed, err)
	}
	if c.cache.Trusted() {
		return nil
	}
	if err := c.listener.Sync(ctx); err != nil {
		return fmt.Errorf("%w: no proof of delivery: %w", ErrBypassed, err)
	}
	if !c.cache.Trusted() {
		if err := c.listener.Err(); err != nil {
			return fmt.Errorf("%w: %w", ErrBypassed, err)
		}
		return fmt.Errorf("%w: %w", ErrBypassed, listener.ErrNoProof)
	}
	return nil
}

// Sync returns once every write committed anywhere before the call is
// applied to this instance's cache: one proof of delivery, shared with
// concurrent callers, or none if one sent after the call has come back
// already. Checks made after it read their own (and everyone's) writes. If
// the cache is bypassed it returns at once (checks read the database).
// While no proof can be sent through the pool it fails at once with an
// error matching listener.ErrProofNotSent (checks with a token then read
// the database).
func (c *Client) Sync(ctx context.Context) error { return c.listener.Sync(ctx) }

// A Token is a consistency token: it stands for every write committed
// before it was taken, and can travel to another instance (a header, a
// cookie) as a plain string. A check given a token ([WithToken]) answers at
// least as fresh as those writes, on any instance of the same database.
//
// A token is a position in the database's history (listener.Position):
// "o2.<timeline>.<WAL position>". Across a failover to a promoted standby,
// a token of the old timeline is passed as soon as the instance is synced
// on the new one (writes the standby never received are lost to every
// reader alike). Tokens of the first release, "o1.<WAL position>", are
// still accepted, their LSN compared alone; instances of that release
// reject "o2" tokens, so upgrade every instance before passing tokens
// between them.
type Token string

const (
	tokenPrefix   = "o2."
	tokenPrefixV1 = "o1."
)

// Token returns a token covering every write committed before the call
// (one query: the database's WAL insert position and timeline). Take it
// after your write commits; a token taken inside the writing transaction
// does not cover that transaction.
func (c *Client) Token(ctx context.Context) (Token, error) {
	pos, err := currentPosition(ctx, c.pool)
	if err != nil {
		return "", dbError("token", err)
	}
	return Token(fmt.Sprintf("%s%X.%s", tokenPrefix, pos.Timeline, listener.FormatLSN(pos.LSN))), nil
}

// currentPosition reads the primary's WAL insert position and the timeline
// it writes on, in one statement: what a token stands for, and the
// replica offload's safe point.
func currentPosition(ctx context.Context, pool *pgxpool.Pool) (listener.Position, error) {
	var lsn, walfile string
	if err := pool.QueryRow(ctx, `SELECT l::text, pg_catalog.pg_walfile_name(l)
		FROM pg_catalog.pg_current_wal_insert_lsn() l`).Scan(&lsn, &walfile); err != nil {
		return listener.Position{}, err
	}
	var pos listener.Position
	var err error
	if pos.LSN, err = listener.ParseLSN(lsn); err != nil {
		return listener.Position{}, err
	}
	if pos.Timeline, err = listener.ParseTimeline(walfile); err != nil {
		return listener.Position{}, err
	}
	return pos, nil
}

// ParseToken checks that s is a token (as sent by another instance).
func ParseToken(s string) (Token, error) {
	if _, err := Token(s).position(); err != nil {
		return "", err
	}
	return Token(s), nil
}

func (t Token) position() (listener.Position, error) {
	bad := func() (listener.Position, error) {
		return listener.Position{}, fmt.Errorf("%w: %q", ErrInvalidToken, truncate(string(t), 48))
	}
	if len(t) > 48 {
		return bad()
	}
	var pos listener.Position
	rest, ok := strings.CutPrefix(string(t), tokenPrefix)
	if ok {
		tli, lsn, ok := strings.Cut(rest, ".")
		n, err := strconv.ParseUint(tli, 16, 32)
		if !ok || err != nil || n == 0 || tli != strings.ToUpper(tli) {
			return bad()
		}
		pos.Timeline, rest = uint32(n), lsn
	} else if rest, ok = strings.CutPrefix(string(t), tokenPrefixV1); !ok {
		return bad()
	}
	lsn, err := listener.ParseLSN(rest)
	if err != nil || lsn == 0 {
		return bad()
	}
	pos.LSN = lsn
	return pos, nil
}

// WithToken returns a context whose checks answer at least as fresh as the
// writes tok covers: from the cache at no cost when this instance has
// already applied them, else after one proof of delivery shared with
// concurrent callers. The empty token is no token. A malformed one is
// ErrInvalidToken. Of several tokens, the context keeps the furthest
// (listener.Position.After).
func WithToken(ctx context.Context, tok Token) (context.Context, error) {
	if tok == "" {
		return ctx, nil
	}
	pos, err := tok.position()
	if err != nil {
		return ctx, err
	}
	o := optionsFrom(ctx)
	if o.token.LSN != 0 && !pos.After(o.token) {
		return ctx, nil
	}
	o.token = pos
	return context.WithValue(ctx, optionsKey{}, &o), nil
}

// awaitToken returns once this instance has applied every write before
// pos (or the promotion that started a later timeline lost it), or the
// cache is bypassed (checks then read the database, which is fresh).
func (c *Client) awaitToken(ctx context.Context, pos listener.Position) error {
	if c.listener.ReachedPosition(pos) {
		return nil
	}
	return c.listener.WaitPosition(ctx, pos)
}

// WriteTx runs fn in one transaction on the client's pool, with a Store
// bound to that transaction; once it commits, it evicts from this
// instance's cache what the Store's writes changed (read-your-writes here at
// no cost), and returns a token covering the transaction for other
// instances (one more query). Writes fn makes with raw SQL on tx are not
// evicted here at once: check with the token, or call Sync, to read them.
// If fn returns an error, the transaction rolls back and nothing is
// evicted.
func (c *Client) WriteTx(ctx context.Context, fn func(tx pgx.Tx, s *Store) error) (Token, error) {
	var invs []listener.Invalidation
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		s := &Store{db: tx, onWrite: func(inv listener.Invalidation) { invs = append(invs, inv) }}
		return fn(tx, s)
	})
	if err != nil {
		return "", err
	}
	for _, inv := range invs {
		c.apply(inv)
	}
	return c.Token(ctx)
}
