package projector

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/cenkalti/backoff/v4"
	"github.com/moat-dev/moat/schemas"
)

// Erasures says which users were deleted through the privacy API
// (internal/privacy.Registry).
type Erasures interface {
	// Forgotten reports whether data of the app about userID or email
	// (either may be empty) dated at is erased: the identifier was
	// deleted at or after at.
	Forgotten(appID, userID, email string, at time.Time) bool
	// Note applies a deletion read from a user.delete command, whose
	// registry record committed with it.
	Note(appID, userID, email string, at time.Time)
}

// defaultMutationWait bounds how long an erasure waits for ClickHouse to
// finish its mutations.
const defaultMutationWait = 2 * time.Minute

// erasedTables are the tables an erasure mutates: events and the
// aggregates the materialized views fold from it.
var erasedTables = []string{"events", "devices", "device_users", "device_states", "sessions"}

// erasure is a user.delete command to carry out in ClickHouse: every row
// of the app about the user id or the email received at or before atMs.
type erasure struct {
	app, user, email string
	atMs             uint64
}

// addErasure takes a user.delete decision: the command itself is never
// stored (it would store the very user id it erases); its rows are erased
// by the next flush, and from now on no row about the user dated at or
// before the deletion is inserted.
func (w *Worker) addErasure(d *schemas.Decision) {
	ev := &d.Event
	if w.cfg.Erasures != nil {
		w.cfg.Erasures.Note(ev.AppID, ev.User.ID, ev.User.Email, ev.ReceivedAt)
	}
	if ev.AppID == "" || (ev.User.ID == "" && ev.User.Email == "") {
		return
	}
	w.erasures = append(w.erasures, erasure{app: ev.AppID, user: ev.User.ID, email: strings.ToLower(strings.TrimSpace(ev.User.Email)), atMs: uint64(ev.ReceivedAt.UnixMilli())})
}

// dropForgotten leaves out of the batch the rows of forgotten users, so
// neither redelivery nor a replay of the decisions from the start
// re-inserts them.
func (w *Worker) dropForgotten() {
	e := w.cfg.Erasures
	if e == nil {
		return
	}
	n := 0
	for i := range w.rows {
		ev := &w.rows[i].d.Event
		if e.Forgotten(ev.AppID, ev.User.ID, ev.Email(), ev.ReceivedAt) {
			continue
		}
		if n != i {
			w.rows[n] = w.rows[i]
		}
		n++
	}
	clear(w.rows[n:])
	w.rows = w.rows[:n]
}

// erase carries out the buffered erasures, retrying each until ClickHouse
// accepts it or ctx ends. The caller commits offsets only after it.
func (w *Worker) erase(ctx context.Context) error {
	for len(w.erasures) > 0 {
		e := w.erasures[0]
		b := backoff.WithContext(&backoff.ExponentialBackOff{
			InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2,
			MaxInterval: 5 * time.Second, MaxElapsedTime: 0, Stop: backoff.Stop, Clock: backoff.SystemClock,
		}, ctx)
		b.Reset()
		err := backoff.Retry(func() error {
			err := w.eraseOne(ctx, e)
			if err != nil && ctx.Err() == nil {
				w.log.Warn("clickhouse erasure failed; retrying", "app_id", e.app, "err", err)
			}
			return err
		}, b)
		if err != nil {
			return fmt.Errorf("projector: erase a user's rows: %w", err)
		}
		w.erasures = w.erasures[1:]
	}
	w.erasures = nil
	return nil
}

// eraseOne erases one user's rows (idempotent: a redelivered or replayed
// command does it again harmlessly). The aggregate views fed from events
// by materialized views (devices and, with migration 0006, sessions) are
// not reached by a mutation of events, so:
//
//  1. it lists the aggregates the erased rows fed, and every aggregate of
//     the erased user id (its rows may already be gone when a command is
//     carried out again);
//  2. deletes those aggregates, then inserts the rows that feed them and
//     stay (rows after the deletion: a new life of the identifier) into
//     events again: the materialized views rebuild the aggregates from
//     them, and events folds the copies (same sorting key and version).
//     Parts inserted after a mutation was created are not touched by it;
//  3. deletes the rows from events;
//  4. waits (bounded) until ClickHouse finished the mutations.
//
// In a cluster (Config.Cluster) the reads and the rebuilding insert go
// through the Distributed tables, and each mutation names the local table
// ON CLUSTER (schemas.MutationTarget): a Distributed table refuses
// mutations, and each shard mutates its own rows and aggregates (a user's
// rows and aggregates live on one shard, but the rows of an erased email
// may be other users' and on any shard).
func (w *Worker) eraseOne(ctx context.Context, e erasure) error {
	db := schemas.QuoteIdent(w.cfg.Database)
	var or []string
	var orArgs []any
	if e.user != "" {
		or, orArgs = append(or, "user_id = ?"), append(orArgs, e.user)
	}
	if e.email != "" {
		or, orArgs = append(or, "lowerUTF8(user_email) = ?"), append(orArgs, e.email)
	}
	cond := "app_id = ? AND received_at_ms <= ? AND (" + strings.Join(or, " OR ") + ")"
	condArgs := append([]any{e.app, e.atMs}, orArgs...)

	sessions, err := w.hasSessions(ctx)
	if err != nil {
		return err
	}
	fed, err := w.erasedAggregates(ctx, db, e, cond, condArgs, sessions)
	if err != nil {
		return err
	}
	for _, user := range slices.Sorted(maps.Keys(fed)) {
		k := fed[user]
		var feeds []string
		var feedArgs []any
		if len(k.devices) > 0 {
			// Every view keyed by device (0001 devices, 0008 device_users,
			// 0009 device_states).
			for _, table := range []string{"devices", "device_users", "device_states"} {
				if err := w.exec(ctx, fmt.Sprintf("ALTER TABLE %s DELETE WHERE app_id = ? AND user_id = ? AND has(?, device_token)", w.mutationTarget(table)), e.app, user, k.devices); err != nil {
					return fmt.Errorf("delete %s: %w", table, err)
				}
			}
			feeds, feedArgs = append(feeds, "has(?, device_token)"), append(feedArgs, k.devices)
		}
		if len(k.sessions) > 0 {
			if err := w.exec(ctx, fmt.Sprintf("ALTER TABLE %s DELETE WHERE app_id = ? AND user_id = ? AND has(?, session_uuid)", w.mutationTarget("sessions")), e.app, user, k.sessions); err != nil {
				return fmt.Errorf("delete sessions: %w", err)
			}
			feeds, feedArgs = append(feeds, "hasAny(session_uuids, ?)"), append(feedArgs, k.sessions)
		}
		if len(feeds) == 0 {
			continue
		}
		q := fmt.Sprintf("INSERT INTO %[1]s.events SELECT * FROM %[1]s.events WHERE app_id = ? AND user_id = ? AND (%[2]s) AND NOT (%[3]s)",
			db, strings.Join(feeds, " OR "), cond)
		args := append(append([]any{e.app, user}, feedArgs...), condArgs...)
		if err := w.exec(w.rebuildInsert(ctx), q, args...); err != nil {
			return fmt.Errorf("rebuild the aggregates: %w", err)
		}
	}
	if err := w.exec(ctx, fmt.Sprintf("ALTER TABLE %s DELETE WHERE %s", w.mutationTarget("events"), cond), condArgs...); err != nil {
		return fmt.Errorf("delete events: %w", err)
	}
	w.awaitMutations(ctx)
	w.log.Info("user's rows erased", "app_id", e.app, "users", len(fed))
	return nil
}

// hasSessions reports whether the database has the sessions view
// (migration 0006).
func (w *Worker) hasSessions(ctx context.Context) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancel()
	var n uint64
	if err := w.conn.QueryRow(qctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'sessions'", w.cfg.Database).Scan(&n); err != nil {
		return false, fmt.Errorf("look up the sessions table: %w", err)
	}
	return n > 0, nil
}

// aggregates are one user's keys in the aggregate views.
type aggregates struct {
	devices, sessions []string
}

// erasedAggregates returns, per user id, the devices and sessions whose
// aggregates hold erased rows.
func (w *Worker) erasedAggregates(ctx context.Context, db string, e erasure, cond string, condArgs []any, sessions bool) (map[string]*aggregates, error) {
	qctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancel()
	out := map[string]*aggregates{}
	read := func(pick func(*aggregates) *[]string, q string, args ...any) error {
		rows, err := w.conn.Query(qctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var user string
			var keys []string
			if err := rows.Scan(&user, &keys); err != nil {
				return err
			}
			a := out[user]
			if a == nil {
				a = &aggregates{}
				out[user] = a
			}
			l := pick(a)
			for _, k := range keys {
				if k != "" && !slices.Contains(*l, k) {
					*l = append(*l, k)
				}
			}
		}
		return rows.Err()
	}
	devs := func(a *aggregates) *[]string { return &a.devices }
	sess := func(a *aggregates) *[]string { return &a.sessions }
	if err := read(devs, fmt.Sprintf("SELECT user_id, groupUniqArray(device_token) FROM %s.events WHERE %s AND device_token != '' GROUP BY user_id", db, cond), condArgs...); err != nil {
		return nil, fmt.Errorf("list the erased rows' devices: %w", err)
	}
	if e.user != "" {
		if err := read(devs, fmt.Sprintf("SELECT user_id, groupUniqArray(device_token) FROM %s.devices WHERE app_id = ? AND user_id = ? GROUP BY user_id", db), e.app, e.user); err != nil {
			return nil, fmt.Errorf("list the user's devices: %w", err)
		}
	}
	if sessions {
		if err := read(sess, fmt.Sprintf("SELECT user_id, groupUniqArrayArray(session_uuids) FROM %s.events WHERE %s GROUP BY user_id", db, cond), condArgs...); err != nil {
			return nil, fmt.Errorf("list the erased rows' sessions: %w", err)
		}
		if e.user != "" {
			if err := read(sess, fmt.Sprintf("SELECT user_id, groupUniqArray(session_uuid) FROM %s.sessions WHERE app_id = ? AND user_id = ? GROUP BY user_id", db), e.app, e.user); err != nil {
				return nil, fmt.Errorf("list the user's sessions: %w", err)
			}
		}
	}
	for u, a := range out {
		if len(a.devices) == 0 && len(a.sessions) == 0 {
			delete(out, u)
		}
	}
	return out, nil
}

func (w *Worker) exec(ctx context.Context, q string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancel()
	return w.conn.Exec(ctx, q, args...)
}

// mutationTarget names table in an ALTER TABLE ... DELETE: `db`.table, or
// in a cluster `db`.table_local ON CLUSTER `cluster`.
func (w *Worker) mutationTarget(table string) string {
	return schemas.MutationTarget(w.cfg.Database, w.cfg.Cluster, table)
}

// clusterInsert returns ctx for an insert into a Distributed table: in a
// cluster, synchronous (insert_distributed_sync = 1), so the insert
// returns only once every shard stored its rows. Then the offsets are
// committed after the rows are on their shards, and an erasure's
// mutations, created after the insert returned, reach the rows: an
// asynchronous insert still queued on the server would land on its shard
// after the mutation was created, which does not touch parts inserted
// after it. On a single server ctx is returned as is.
func (w *Worker) clusterInsert(ctx context.Context) context.Context {
	if w.cfg.Cluster == "" {
		return ctx
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
}

// rebuildInsert returns ctx for the erasure's INSERT ... SELECT that feeds
// the aggregates again: in a cluster synchronous, as clusterInsert, and
// with insert_deduplicate = 0. A replicated table drops an inserted block
// identical to one of its last inserted ones (replicated_deduplication_window,
// 100 by default), taking it for a retried insert, and then feeds none of
// its materialized views (18.16; current releases unless
// deduplicate_blocks_in_dependent_materialized_views); each replicated
// aggregate table does the same with the blocks the views write. The
// rebuild copies rows the projector inserted before, often as the very
// block it first inserted them in (a batch of only these rows), and the
// aggregate blocks folded from them are those just deleted: deduplicated,
// the user's remaining devices and sessions would get no aggregates back.
// events folds the copies (same sorting key and version), as on a single
// server, whose tables are not replicated and deduplicate nothing.
func (w *Worker) rebuildInsert(ctx context.Context) context.Context {
	if w.cfg.Cluster == "" {
		return ctx
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1, "insert_deduplicate": 0}))
}

// pendingMutations counts the database's unfinished mutations of
// erasedTables: in system.mutations of the server, or in a cluster of
// every shard (cluster('<cluster>', system.mutations), the local tables),
// as one replica of each shard reports them.
func (w *Worker) pendingMutations(ctx context.Context) (uint64, error) {
	from, tables := "system.mutations", erasedTables
	if w.cfg.Cluster != "" {
		from = "cluster(" + schemas.QuoteString(w.cfg.Cluster) + ", system.mutations)"
		tables = make([]string, len(erasedTables))
		for i, t := range erasedTables {
			tables[i] = schemas.LocalTable(t)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancel()
	var n uint64
	err := w.conn.QueryRow(ctx, "SELECT count() FROM "+from+" WHERE database = ? AND has(?, table) AND is_done = 0", w.cfg.Database, tables).Scan(&n)
	return n, err
}

// awaitMutations waits until the database's mutations of events and
// the aggregate views are done (pendingMutations), at most MutationWait.
// A mutation still running then finishes in the background (ClickHouse
// keeps it across restarts), and the api already hides the erased user:
// it is only logged.
func (w *Worker) awaitMutations(ctx context.Context) {
	wait := w.cfg.MutationWait
	if wait <= 0 {
		wait = defaultMutationWait
	}
	deadline := time.Now().Add(wait)
	for pause := 20 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		n, err := w.pendingMutations(ctx)
		if err == nil && n == 0 {
			return
		}
		if time.Now().Add(pause).After(deadline) || ctx.Err() != nil {
			w.log.Warn("erasure mutations still running in ClickHouse; they finish in the background", "pending", n, "err", err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}
