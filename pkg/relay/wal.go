package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The wal transport (orgperm.set_transport('wal'), docs/DECISIONS.md 64):
// no invalidation trigger fires, and the leading relay decodes the WAL
// through a logical replication slot instead (walSession). It streams the
// slot's changes (pgoutput, publication orgperm_wal, with logical
// messages) on a replication connection, so the server decodes each WAL
// record once, and
//
//  1. maps every changed row of orgperm's six tables to the scopes the
//     triggers would send (walScopes), and keeps the messages that
//     orgperm.send wrote (proofs, orgperm.evict_*) in commit order;
//  2. once a batch of whole transactions is an Interval old (or the stream
//     pauses), waits until none of them is still running in a new
//     snapshot: a commit record reaches the WAL, and can be decoded, a
//     moment before the transaction becomes visible, and an eviction sent
//     in that moment would let a fill read the old rows again;
//  3. in one transaction on the relay's connection sends the scopes
//     (orgperm.relay_emit, collapsed and split as the triggers' are), then
//     the invalidation messages, then the other messages (proofs) in their
//     order, so a proof comes back after everything committed before it;
//  4. tells the server it has sent them (the slot's confirmed position). A
//     relay that dies between 3 and 4 sends the same changes again: an
//     eviction twice, never one lost.
//
// A missing slot is created, and then everything is evicted: changes
// committed before the slot existed will never be decoded (a first start,
// a promoted standby, which has no slot before PostgreSQL 17, a slot an
// operator dropped). A slot PostgreSQL invalidated (its WAL removed past
// max_slot_wal_keep_size while no relay read it, or idle too long) can
// never stream again, and the writes in the WAL it lost were never
// decoded: the relay drops it and makes it anew, which evicts everything
// the same way. Until then no proof comes back and every cache bypasses
// itself.

// walChannel is the channel of invalidation payloads; a logical message
// with this prefix is one (orgperm.send in wal mode).
const walChannel = "orgperm_invalidate"

// walPublication is the publication set_transport('wal') creates.
const walPublication = "orgperm_wal"

// walGap is how long a read waits, once a batch is due, before the relay
// takes the stream to have paused and sends the batch: long enough to read
// on through what is already in the socket, short next to the gaps
// between one writer's commits.
const walGap = 100 * time.Microsecond

// walBatch bounds the rows one peek returns (PostgreSQL stops after the
// transaction in which it reaches the bound, so one big transaction still
// comes whole).
const walBatch = 20000

// scopeSet is what one source table's changes evict.
type scopeSet struct {
	everything bool
	orgs       map[string]struct{}
	members    map[[2]string]struct{}
	roles      map[int64]struct{}
}

// walMaxScopes bounds what one source holds in memory for a batch: past
// it, members collapse to their orgs and orgs to everything, as
// orgperm.emit would collapse them anyway (it keeps at most
// notify_max_users users of an org, 1,000,000 at the most, and
// notify_max_orgs orgs), so a transaction of millions of rows costs the
// relay a bounded map.
const walMaxScopes = 100000

func (s *scopeSet) org(o string) {
	if s.everything {
		return
	}
	if s.orgs == nil {
		s.orgs = make(map[string]struct{})
	}
	s.orgs[o] = struct{}{}
	if len(s.orgs) > walMaxScopes {
		s.everything, s.orgs, s.members, s.roles = true, nil, nil, nil
	}
}

func (s *scopeSet) member(o, u string) {
	if s.everything {
		return
	}
	if _, ok := s.orgs[o]; ok {
		return // the org's scope covers the member
	}
	if s.members == nil {
		s.members = make(map[[2]string]struct{})
	}
	s.members[[2]string{o, u}] = struct{}{}
	if len(s.members) > walMaxScopes {
		members := s.members
		s.members = nil
		for k := range members {
			s.org(k[0])
		}
	}
}

func (s *scopeSet) role(id int64) {
	if s.everything {
		return
	}
	if s.roles == nil {
		s.roles = make(map[int64]struct{})
	}
	s.roles[id] = struct{}{}
}

func (s *scopeSet) empty() bool {
	return !s.everything && len(s.orgs) == 0 && len(s.members) == 0 && len(s.roles) == 0
}

// walMessage is a logical message to send as a NOTIFY.
type walMessage struct{ channel, payload string }

// walScopes maps decoded pgoutput messages to what they evict. Feed it the
// messages of one peek in order (Relation messages come before the rows
// that use them); it keeps no state between peeks but the relations.
type walScopes struct {
	rels    map[uint32]*pglogrepl.RelationMessage
	sources map[string]*scopeSet
	order   []string // sources in the order first seen
	inval   []string // invalidation messages, in order, deduplicated
	others  []walMessage
	xids    []uint32
	// lastEnd is the end of the last commit decoded.
	lastEnd pglogrepl.LSN
}

// newWALScopes returns an empty batch that knows the relations in rels
// (the stream sends a relation's description once per session).
func newWALScopes(rels map[uint32]*pglogrepl.RelationMessage) *walScopes {
	return &walScopes{rels: rels, sources: make(map[string]*scopeSet)}
}

func (w *walScopes) source(name string) *scopeSet {
	s := w.sources[name]
	if s == nil {
		s = &scopeSet{}
		w.sources[name] = s
		w.order = append(w.order, name)
	}
	return s
}

// add takes one pgoutput message. A message it cannot map makes it evict
// everything for that source (never less than the triggers would).
func (w *walScopes) add(m pglogrepl.Message) {
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		w.rels[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		w.xids = append(w.xids, m.Xid)
	case *pglogrepl.CommitMessage:
		w.lastEnd = m.TransactionEndLSN
	case *pglogrepl.InsertMessage:
		w.row(m.RelationID, 'I', false, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		w.row(m.RelationID, 'U', m.OldTupleType == pglogrepl.UpdateMessageTupleTypeOld, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		w.row(m.RelationID, 'D', m.OldTupleType == pglogrepl.DeleteMessageTupleTypeOld, m.OldTuple, nil)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if rel := w.rels[id]; rel != nil && rel.Namespace == "orgperm" {
				w.source(rel.RelationName).everything = true
			} else {
				w.source("wal").everything = true
			}
		}
	case *pglogrepl.LogicalDecodingMessage:
		if !m.Transactional {
			return // orgperm.send writes only transactional ones
		}
		if m.Prefix == walChannel {
			if p := string(m.Content); !slices.Contains(w.inval, p) {
				w.inval = append(w.inval, p)
			}
		} else {
			w.others = append(w.others, walMessage{m.Prefix, string(m.Content)})
		}
	}
}

// tupleCols returns the tuple's columns by name: text values, nil for
// NULL. An unchanged-TOAST column is left out (text treats it as unknown),
// and so is one past the relation's columns.
func tupleCols(rel *pglogrepl.RelationMessage, t *pglogrepl.TupleData) map[string]*string {
	if t == nil {
		return nil
	}
	cols := make(map[string]*string, len(t.Columns))
	for i, c := range t.Columns {
		if i >= len(rel.Columns) {
			break
		}
		switch c.DataType {
		case 't':
			v := string(c.Data)
			cols[rel.Columns[i].Name] = &v
		case 'n':
			cols[rel.Columns[i].Name] = nil
		}
	}
	return cols
}

// text returns column name of cols: its value and whether it is known
// (present and not NULL).
func text(cols map[string]*string, name string) (string, bool) {
	v, ok := cols[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// isNull reports whether cols holds column name as NULL.
func isNull(cols map[string]*string, name string) bool {
	v, ok := cols[name]
	return ok && v == nil
}

// row maps one changed row of rel to scopes, as the triggers of
// sql/triggers.sql do for the same change. kind is I, U or D; old is the
// key ('K') or the whole old row ('O', REPLICA IDENTITY FULL: full), or
// nil.
func (w *walScopes) row(relID uint32, kind byte, full bool, old, new *pglogrepl.TupleData) {
	rel := w.rels[relID]
	if rel == nil {
		w.source("wal").everything = true
		return
	}
	if rel.Namespace != "orgperm" {
		return
	}
	s := w.source(rel.RelationName)
	o, n := tupleCols(rel, old), tupleCols(rel, new)
	// member adds the (org_id, user_id) key of each tuple given; a tuple
	// without them evicts everything.
	member := func(ts ...map[string]*string) {
		for _, t := range ts {
			if t == nil {
				continue
			}
			org, ok1 := text(t, "org_id")
			user, ok2 := text(t, "user_id")
			if !ok1 || !ok2 {
				s.everything = true
				return
			}
			s.member(org, user)
		}
	}
	switch rel.RelationName {
	case "memberships", "membership_roles":
		// Every change of the row's key (old key, when it changed, and new
		// key). With the whole old row (REPLICA IDENTITY FULL, which
		// set_transport('wal') sets), an UPDATE that changed nothing but
		// the row's timestamps evicts nothing, as with the triggers;
		// without it, every UPDATE evicts its keys.
		if kind == 'U' && full && sameBut(o, n, "created_at", "updated_at") {
			return
		}
		member(o, n)
	case "data_access":
		// A grant to a user is that member's; a grant to a role is its
		// org's. REPLICA IDENTITY FULL gives the whole old row, and an
		// UPDATE of nothing but its timestamp evicts nothing.
		if kind == 'U' && full && sameBut(o, n, "created_at", "updated_at") {
			return
		}
		for _, t := range []map[string]*string{o, n} {
			if t == nil {
				continue
			}
			if isNull(t, "user_id") {
				org, ok := text(t, "org_id")
				if !ok {
					s.everything = true
					return
				}
				s.org(org)
			} else {
				member(t)
			}
		}
		if kind != 'I' && o == nil {
			s.everything = true // no old row: REPLICA IDENTITY is not FULL
		}
	case "roles":
		// A new role is nobody's yet. A renamed, moved or deleted one is
		// its org's, everything's for a system role (org_id NULL).
		if kind == 'I' {
			return
		}
		if o == nil {
			s.everything = true // no old row: REPLICA IDENTITY is not FULL
			return
		}
		if kind == 'U' && eq(o, n, "name") && eq(o, n, "org_id") {
			return
		}
		for _, t := range []map[string]*string{o, n} {
			if t == nil {
				continue
			}
			if org, ok := text(t, "org_id"); ok {
				s.org(org)
			} else {
				s.everything = true
			}
		}
	case "role_permissions":
		// The key is the whole meaningful row: an UPDATE without an old
		// key changed only created_at.
		if kind == 'U' && o == nil {
			return
		}
		for _, t := range []map[string]*string{o, n} {
			if t == nil {
				continue
			}
			v, ok := text(t, "role_id")
			id, err := strconv.ParseInt(v, 10, 64)
			if !ok || err != nil {
				s.everything = true
				return
			}
			s.role(id)
		}
	case "permissions":
		// A new codename is in no role; a renamed (its key changed) or
		// deleted one changes every set holding it.
		if kind == 'D' || kind == 'U' && o != nil {
			s.everything = true
		}
	}
}

// sameBut reports whether a and b hold the same columns with the same
// values, the columns named in but left out. A column missing from either
// (an unchanged TOAST value) counts as changed.
func sameBut(a, b map[string]*string, but ...string) bool {
	if len(a) != len(b) {
		return false
	}
	for name := range a {
		if !slices.Contains(but, name) && !eq(a, b, name) {
			return false
		}
	}
	return true
}

// eq reports whether column name is the same in a and b.
func eq(a, b map[string]*string, name string) bool {
	x, okA := a[name]
	y, okB := b[name]
	if !okA || !okB {
		return false
	}
	if x == nil || y == nil {
		return x == nil && y == nil
	}
	return *x == *y
}

// walStatusEvery is how often the relay tells the server how far it has
// sent, at the least (the server asks too, and each sent batch tells it).
const walStatusEvery = 10 * time.Second

// walModeEvery is how often the wal session checks that the transport is
// still 'wal' and relays what orgperm.queue may still hold.
const walModeEvery = time.Second

// walSession relays the WAL (see the top of this file) from slot, made
// first unless it exists, until the transport is no longer 'wal' (nil) or
// an error. conn is the relay's connection, which holds the lock; the
// changes stream on a second, replication connection made from conn's
// configuration.
func (r *Relay) walSession(ctx context.Context, conn *pgx.Conn, st walSlotState) error {
	slot, exists := st.slot, st.exists
	if exists && st.lost {
		// It can never stream again, and what was committed since its
		// last confirmed position is gone from the WAL: make it anew,
		// which evicts everything (createSlot).
		dropped, err := r.dropSlot(ctx, conn, slot)
		if err != nil {
			return err
		}
		if !dropped {
			return fmt.Errorf("relay: wal: the replication slot %s was invalidated and is still in use", slot)
		}
		r.cfg.Logger.Warn("relay: wal: PostgreSQL invalidated the replication slot (past max_slot_wal_keep_size, or idle too long); dropped it, making it anew", "slot", slot)
		exists = false
	}
	if !exists {
		if err := r.createSlot(ctx, conn, slot); err != nil {
			return err
		}
	}
	defer r.walRetained.Store(0)
	cfg := conn.Config().Config.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = ApplicationName
	// The keepalives of keepaliveSQL, as start-up settings: a walsender
	// whose relay's host vanished holds the slot, and no other relay can
	// stream it, until the server gives up on it (without these, after
	// wal_sender_timeout, a minute by default).
	for _, kv := range keepalives {
		cfg.RuntimeParams[kv[0]] = kv[1]
	}
	qctx, end := r.deadline(ctx, false)
	rc, err := pgconn.ConnectConfig(qctx, cfg)
	end()
	if err != nil {
		return fmt.Errorf("relay: wal: open the replication connection: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = rc.Close(cctx)
		_ = rc.Conn().Close() // after a cancelled receive, Close may leave the socket to the background
	}()
	qctx, end = r.deadline(ctx, false)
	err = pglogrepl.StartReplication(qctx, rc, slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: []string{
		"proto_version '1'", "publication_names '" + walPublication + "'", "messages 'true'"}})
	end()
	if err != nil {
		return fmt.Errorf("relay: wal: start streaming from %s: %w", slot, err)
	}
	r.cfg.Logger.Info("relay: wal: streaming", "slot", slot)

	var (
		w          = newWALScopes(make(map[uint32]*pglogrepl.RelationMessage))
		inTxn      bool
		batchStart time.Time // when the batch's first change arrived
		changes    int
		acked      pglogrepl.LSN // the position the server was last told
		serverEnd  pglogrepl.LSN // the server's WAL end, from keepalives
		nextStatus = time.Now().Add(walStatusEvery)
		nextMode   = time.Now().Add(walModeEvery)
		// caughtUp: the last batch was sent at a pause in the stream, not
		// cut at its latest time (see the loop).
		caughtUp = true
	)
	status := func(pos pglogrepl.LSN) error {
		if pos < acked {
			pos = acked
		}
		qctx, end := r.deadline(ctx, false)
		err := pglogrepl.SendStandbyStatusUpdate(qctx, rc, pglogrepl.StandbyStatusUpdate{WALWritePosition: pos})
		end()
		if err != nil {
			return fmt.Errorf("relay: wal: report the position: %w", err)
		}
		acked = pos
		nextStatus = time.Now().Add(walStatusEvery)
		return nil
	}
	// flush sends the batch (complete transactions only) and tells the
	// server it may forget them.
	flush := func() error {
		qctx, end := r.deadline(ctx, true)
		err := waitVisible(qctx, conn, w.xids)
		if err == nil {
			err = w.send(qctx, conn)
		}
		if end() {
			r.cfg.Logger.Warn("relay: wal: a batch was cut by its deadline; the next one may take longer", "next deadline", r.timeout)
		}
		if err != nil {
			return fmt.Errorf("relay: wal: send: %w", err)
		}
		r.timeout = 0
		r.relayed.Add(uint64(changes))
		pos := w.lastEnd
		w = newWALScopes(w.rels)
		changes = 0
		return status(pos)
	}
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := time.Now()
		due := batchStart.Add(r.cfg.Interval) // of the open batch, if any
		// A batch of whole transactions is due an Interval after its first
		// change arrived. It is sent at the first pause in the stream
		// after that (a read that waits walGap for nothing), or at the
		// latest an Interval later. While the relay keeps up, it does not
		// read a batch as it comes: it leaves the stream to gather in the
		// socket until the batch is due and then reads it in one go,
		// rather than wake for every message (three per transaction; the
		// walsender sends them as each commit is flushed).
		if !inTxn && changes > 0 {
			if now.Before(due) && caughtUp {
				if !wait(ctx, due.Sub(now)) {
					return ctx.Err()
				}
				continue
			}
			if !now.Before(due.Add(r.cfg.Interval)) {
				caughtUp = false // no pause for an Interval: read on at once
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if !inTxn && changes == 0 {
			r.lastRound.Store(now.UnixNano())
			r.rounds.Add(1)
			if serverEnd > acked || now.After(nextStatus) {
				// Nothing of ours is pending: what the server has sent
				// so far needs nothing more from this slot.
				if err := status(serverEnd); err != nil {
					return err
				}
			}
			if now.After(nextMode) {
				nextMode = now.Add(walModeEvery)
				wal, err := r.walQueue(ctx, conn, slot)
				if err != nil {
					return err
				}
				if !wal {
					r.cfg.Logger.Info("relay: wal: the transport is no longer wal")
					return nil
				}
			}
		}
		timeout := r.cfg.Interval
		if !inTxn && changes > 0 {
			timeout = walGap
			if now.Before(due) {
				timeout = due.Sub(now)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		msg, err := rc.ReceiveMessage(rctx)
		expired := rctx.Err() != nil
		cancel()
		if err != nil {
			// The read's own deadline: nothing came in time (pgconn
			// leaves the connection usable), or, for a deadline already
			// past when the read began, nothing was read at all (an error
			// pgconn does not call a timeout).
			if expired && ctx.Err() == nil {
				if !inTxn && changes > 0 && !time.Now().Before(due) {
					caughtUp = true // a pause: send the batch
					if err := flush(); err != nil {
						return err
					}
				}
				continue
			}
			return fmt.Errorf("relay: wal: receive: %w", err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			if e, isErr := msg.(*pgproto3.ErrorResponse); isErr {
				return fmt.Errorf("relay: wal: %w", pgconn.ErrorResponseToPgError(e))
			}
			continue
		}
		if len(cd.Data) == 0 {
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if err != nil {
				return fmt.Errorf("relay: wal: keepalive: %w", err)
			}
			if !inTxn && changes == 0 {
				serverEnd = max(serverEnd, ka.ServerWALEnd)
			}
			if ka.ReplyRequested {
				if err := status(acked); err != nil {
					return err
				}
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				return fmt.Errorf("relay: wal: %w", err)
			}
			m, err := pglogrepl.Parse(xld.WALData)
			if err != nil {
				// Unknown to this parser: evict everything rather than
				// guess.
				w.source("wal").everything = true
				r.cfg.Logger.Warn("relay: wal: a change could not be decoded; evicting everything", "err", err)
			} else {
				w.add(m)
			}
			switch m.(type) {
			case *pglogrepl.BeginMessage:
				inTxn = true
			case *pglogrepl.CommitMessage:
				inTxn = false
			}
			if changes == 0 {
				batchStart = time.Now()
			}
			changes++
			if !inTxn && changes >= walBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
}

// walQueue reports whether the transport is still 'wal', relays what
// orgperm.queue holds (rows written before the switch to 'wal'), and
// records the WAL the server keeps for slot (Stats.WALRetainedBytes).
func (r *Relay) walQueue(ctx context.Context, conn *pgx.Conn, slot string) (wal bool, err error) {
	qctx, end := r.deadline(ctx, true)
	defer end()
	var n, kept int64
	err = conn.QueryRow(qctx, `SELECT orgperm.transport() IS NOT DISTINCT FROM 'wal', orgperm.relay(),
		coalesce((SELECT `+walKeptSQL+` FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1), 0)`, slot).Scan(&wal, &n, &kept)
	if err != nil {
		return false, fmt.Errorf("relay: wal: read the transport: %w", err)
	}
	r.relayed.Add(uint64(n))
	r.walRetained.Store(kept)
	return wal, nil
}

// walSlotSQL is this database's wal slot name (orgperm.wal_slot(), written
// out so that a database of an earlier schema version answers too).
const walSlotSQL = `'orgperm_wal_' || (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())::text`

// walSlotState is what walState reads: whether the transport is 'wal',
// the name of this database's wal slot, whether the slot exists, and
// whether PostgreSQL has invalidated it (it can never stream again).
type walSlotState struct {
	wal          bool
	slot         string
	exists, lost bool
}

// walKeptSQL is the WAL the server keeps for a slot s of
// pg_replication_slots, in bytes.
const walKeptSQL = `pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::bigint`

// walSlotLostSQL is true for a slot s of pg_replication_slots that
// PostgreSQL has invalidated: its WAL removed (wal_status 'lost', past
// max_slot_wal_keep_size), or, on PostgreSQL 16 and later, marked
// conflicting or given an invalidation_reason (PostgreSQL 18's
// idle_replication_slot_timeout, for one). The later columns are read
// through to_jsonb so that the query runs on every version.
const walSlotLostSQL = `(s.wal_status IS NOT DISTINCT FROM 'lost'
	OR (pg_catalog.to_jsonb(s) ->> 'invalidation_reason') IS NOT NULL
	OR (pg_catalog.to_jsonb(s) ->> 'conflicting') IS NOT DISTINCT FROM 'true')`

// walState reads the transport and this database's wal slot.
func (r *Relay) walState(ctx context.Context, conn *pgx.Conn) (walSlotState, error) {
	qctx, end := r.deadline(ctx, false)
	defer end()
	var st walSlotState
	err := conn.QueryRow(qctx, `SELECT orgperm.transport() IS NOT DISTINCT FROM 'wal', x.name,
		s.slot_name IS NOT NULL, s.slot_name IS NOT NULL AND `+walSlotLostSQL+`
		FROM (SELECT `+walSlotSQL+` AS name) x LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = x.name`).
		Scan(&st.wal, &st.slot, &st.exists, &st.lost)
	if err != nil {
		return walSlotState{}, fmt.Errorf("relay: read the transport: %w", err)
	}
	return st, nil
}

// dropSlot drops this database's wal slot, slot, unless something streams
// from it, and reports whether it did. It needs REPLICATION.
func (r *Relay) dropSlot(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	qctx, end := r.deadline(ctx, false)
	defer end()
	var dropped int
	err := conn.QueryRow(qctx, `SELECT count(pg_catalog.pg_drop_replication_slot(s.slot_name))::int
		FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1 AND NOT s.active`, slot).Scan(&dropped)
	if err != nil {
		return false, fmt.Errorf("relay: drop the wal slot: %w", err)
	}
	return dropped > 0, nil
}

// createSlot creates the slot and then evicts everything: changes
// committed before the slot existed will never be decoded.
func (r *Relay) createSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	qctx, end := r.deadline(ctx, false)
	defer end()
	if _, err := conn.Exec(qctx, `SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		return fmt.Errorf("relay: wal: create the replication slot %s (the relay's role needs REPLICATION): %w", slot, err)
	}
	r.cfg.Logger.Info("relay: wal: created the replication slot; evicting everything", "slot", slot)
	if _, err := conn.Exec(qctx, `SELECT orgperm.relay_emit('wal', true, NULL, NULL, NULL, NULL)`); err != nil {
		return fmt.Errorf("relay: wal: evict everything after creating the slot: %w", err)
	}
	r.slotsCreated.Add(1)
	return nil
}

// waitVisibleSQL reports whether any of the 32-bit transaction IDs in $1
// is not yet visible to a new snapshot: in its running list, or at or past
// its xmax (a snapshot lists only running IDs below xmax, the newest
// completed one plus one, and counts every later one as running). Each ID
// is widened to 64 bits in the epoch that puts it nearest the snapshot's
// xmax (decoded transactions are recent).
const waitVisibleSQL = `WITH s AS MATERIALIZED (SELECT pg_catalog.pg_current_snapshot() AS snap),
	m AS (SELECT s.snap, pg_catalog.pg_snapshot_xmax(s.snap)::text::bigint AS xmax FROM s)
	SELECT EXISTS (
		SELECT FROM m, pg_catalog.unnest($1::bigint[]) AS x(id),
			LATERAL (SELECT ((m.xmax >> 32) << 32) | x.id AS f) a
		WHERE NOT pg_catalog.pg_visible_in_snapshot(
			(CASE WHEN a.f > m.xmax + 2147483648 THEN a.f - 4294967296
			      WHEN a.f < m.xmax - 2147483648 THEN a.f + 4294967296
			      ELSE a.f END)::text::pg_catalog.xid8, m.snap))`

// waitVisible returns once none of xids is running in a new snapshot.
func waitVisible(ctx context.Context, conn *pgx.Conn, xids []uint32) error {
	if len(xids) == 0 {
		return nil
	}
	ids := make([]int64, len(xids))
	for i, x := range xids {
		ids[i] = int64(x)
	}
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		var running bool
		err := conn.QueryRow(ctx, waitVisibleSQL, ids).Scan(&running)
		if err != nil {
			return fmt.Errorf("check that the decoded transactions are visible: %w", err)
		}
		if !running {
			return nil
		}
		if !wait(ctx, delay) {
			return ctx.Err()
		}
	}
}

// send NOTIFYs what w holds in one transaction: the decoded scopes, the
// invalidation messages, then the other messages in order.
func (w *walScopes) send(ctx context.Context, conn *pgx.Conn) error {
	if len(w.order) == 0 && len(w.inval) == 0 && len(w.others) == 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, src := range w.order {
			s := w.sources[src]
			if s.empty() {
				continue
			}
			var orgs, mo, mu []string
			var roles []int64
			if !s.everything {
				for o := range s.orgs {
					orgs = append(orgs, o)
				}
				slices.Sort(orgs)
				keys := make([][2]string, 0, len(s.members))
				for k := range s.members {
					keys = append(keys, k)
				}
				slices.SortFunc(keys, func(a, b [2]string) int {
					return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
				})
				for _, k := range keys {
					mo, mu = append(mo, k[0]), append(mu, k[1])
				}
				for id := range s.roles {
					roles = append(roles, id)
				}
				slices.Sort(roles)
			}
			if _, err := tx.Exec(ctx, `SELECT orgperm.relay_emit($1, $2, $3, $4, $5, $6)`,
				src, s.everything, orgs, mo, mu, roles); err != nil {
				return fmt.Errorf("send the scopes of %s: %w", src, err)
			}
		}
		for _, p := range w.inval {
			if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_notify($1, $2)`, walChannel, p); err != nil {
				return err
			}
		}
		for _, m := range w.others {
			if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_notify($1, $2)`, m.channel, m.payload); err != nil {
				return err
			}
		}
		return nil
	})
}

// WALSlot is this database's wal slot, as pg_replication_slots shows it.
type WALSlot struct {
	Name string
	// Active: a walsender streams it now.
	Active bool
	// WALStatus is reserved, extended, unreserved or lost (the WAL it
	// needs is gone).
	WALStatus string
	// RetainedBytes is the WAL the server keeps for it.
	RetainedBytes int64
	// Lost: PostgreSQL invalidated it (wal_status lost, or an
	// invalidation reason where the server names one); it can never
	// stream again, and the relay makes it anew.
	Lost bool
}

// FindWALSlot returns q's database's wal slot, and false when it has none.
// It works on databases of every schema version.
func FindWALSlot(ctx context.Context, q Querier) (WALSlot, bool, error) {
	var sl WALSlot
	err := q.QueryRow(ctx, `SELECT s.slot_name, s.active, coalesce(s.wal_status, ''),
		coalesce(`+walKeptSQL+`, 0), `+walSlotLostSQL+`
		FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = `+walSlotSQL).
		Scan(&sl.Name, &sl.Active, &sl.WALStatus, &sl.RetainedBytes, &sl.Lost)
	if errors.Is(err, pgx.ErrNoRows) {
		return WALSlot{}, false, nil
	}
	if err != nil {
		return WALSlot{}, false, fmt.Errorf("relay: find the wal slot: %w", err)
	}
	return sl, true, nil
}
