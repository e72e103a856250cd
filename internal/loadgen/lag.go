package loadgen

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/schemas"
)

// watermarkMargin is subtracted from the send time of the oldest event not
// yet seen to get the lowest received_at_ms a poll must still look at. The
// server stamps received_at_ms after the generator's send time on the same
// clock; the margin covers the jitter between workers (a later sequence
// number sent a little before an earlier one). Every row in the window is
// read again by each poll, so it is kept small.
const watermarkMargin = 500 * time.Millisecond

// queryTimeout bounds one poll or verification query.
const queryTimeout = 60 * time.Second

// lagPoller watches the events table for the run's rows and records when
// each sequence number first became visible.
type lagPoller struct {
	r     *run
	conn  driver.Conn
	table string

	// Owned by loop until it returns.
	seenMs   []int64 // unix ms of the poll that first returned the row; 0 = not seen
	recvMs   []int64 // received_at_ms of that row
	lo       int     // every seq below lo is seen or finished without 2xx
	polls    int
	failures int
	qTotal   time.Duration
	qMax     time.Duration

	allSeen chan struct{}
	err     error

	mu     sync.Mutex
	recent []time.Duration // lags found by the latest polls, for progress lines
}

func newLagPoller(ctx context.Context, r *run) (*lagPoller, error) {
	conn, err := chstore.Open(ctx, chstore.Options{Addr: r.cfg.ClickHouseAddr, Database: r.cfg.Database})
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	p := &lagPoller{
		r:       r,
		conn:    conn,
		table:   schemas.QuoteIdent(r.cfg.Database) + ".events",
		seenMs:  make([]int64, r.n),
		recvMs:  make([]int64, r.n),
		allSeen: make(chan struct{}),
	}
	// Fail early when the table is missing or the SQL does not work here.
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := conn.Query(qctx, "SELECT count() FROM "+p.table+
		" WHERE app_id = ? AND visitParamExtractString(properties, '"+PropRun+"') = ?", r.cfg.AppID, r.cfg.RunID)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("loadgen: probe %s: %w", p.table, err)
	}
	rows.Close()
	return p, nil
}

func (p *lagPoller) close() { p.conn.Close() }

// advance moves lo past the sequence numbers that need no more looking for:
// seen, finished without 2xx, or reads (GET) that store no event.
// It returns whether every request is finished and every accepted one seen.
func (p *lagPoller) advance() bool {
	r := p.r
	for p.lo < r.n {
		if p.seenMs[p.lo] != 0 {
			p.lo++
			continue
		}
		st := r.status[p.lo].Load()
		if st != 0 && !is2xx(st) || r.isRead(p.lo) { // GETs store no event
			p.lo++
			continue
		}
		break
	}
	if p.lo >= r.n {
		return true
	}
	// After sending stopped, a sequence number never sent (cancelled run)
	// ends the wait too.
	return r.sendDone.Load() && r.sentAt[p.lo].Load() == 0
}

// loop polls until ctx is done or every accepted event is seen.
func (p *lagPoller) loop(ctx context.Context) {
	t := time.NewTicker(p.r.cfg.PollInterval)
	defer t.Stop()
	failures := 0
	for {
		if p.advance() {
			close(p.allSeen)
			return
		}
		if p.lo < p.r.n && p.r.sentAt[p.lo].Load() != 0 {
			if err := p.poll(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				// Tolerate a few transient failures (the server is busy).
				if failures++; failures >= maxPollFailures {
					p.err = err
					return
				}
				p.failures++
			} else {
				failures = 0
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// maxPollFailures consecutive failed polls end the lag measurement.
const maxPollFailures = 10

// poll fetches the run's rows that may be new since the last poll: those
// received after the oldest unseen event was sent (less a margin), with a
// sequence number at or above it. Rows already seen are skipped here.
func (p *lagPoller) poll(ctx context.Context) error {
	r := p.r
	sentNs := r.sentAt[p.lo].Load()
	wm := time.Unix(0, sentNs).Add(-watermarkMargin).UnixMilli()
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	t0 := time.Now()
	rows, err := p.conn.Query(qctx,
		"SELECT visitParamExtractUInt(properties, '"+PropSeq+"') AS seq, received_at_ms FROM "+p.table+
			" PREWHERE received_at_ms >= ? AND app_id = ?"+
			" WHERE visitParamExtractString(properties, '"+PropRun+"') = ? AND seq >= ?",
		uint64(wm), r.cfg.AppID, r.cfg.RunID, uint64(p.lo))
	if err != nil {
		return fmt.Errorf("loadgen: poll ClickHouse: %w", err)
	}
	defer rows.Close()
	var fresh []time.Duration
	type hit struct{ seq, recv uint64 }
	var hits []hit
	for rows.Next() {
		var h hit
		if err := rows.Scan(&h.seq, &h.recv); err != nil {
			return fmt.Errorf("loadgen: poll ClickHouse: scan: %w", err)
		}
		hits = append(hits, h)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loadgen: poll ClickHouse: %w", err)
	}
	// The rows were visible by the time the answer came back.
	t1 := time.Now()
	q := t1.Sub(t0)
	p.polls++
	p.qTotal += q
	p.qMax = max(p.qMax, q)
	nowMs := t1.UnixMilli()
	for _, h := range hits {
		if h.seq >= uint64(r.n) || p.seenMs[h.seq] != 0 {
			continue
		}
		p.seenMs[h.seq] = nowMs
		p.recvMs[h.seq] = int64(h.recv)
		if s := r.sentAt[h.seq].Load(); s != 0 {
			fresh = append(fresh, time.Duration(nowMs-s/1e6)*time.Millisecond)
		}
		if is2xx(r.status[h.seq].Load()) && !r.isRead(int(h.seq)) {
			r.visible.Add(1)
		}
	}
	if len(fresh) > 0 {
		p.mu.Lock()
		p.recent = append(p.recent, fresh...)
		if n := len(p.recent); n > 200_000 {
			p.recent = append(p.recent[:0], p.recent[n-100_000:]...)
		}
		p.mu.Unlock()
	}
	return nil
}

// recentP99 returns the p99 lag of the events seen since the last call.
func (p *lagPoller) recentP99() string {
	p.mu.Lock()
	lags := p.recent
	p.recent = nil
	p.mu.Unlock()
	if len(lags) == 0 {
		return "-"
	}
	return fmtDur(Summarize(lags).P99)
}

// fillLag computes the lag percentiles of the accepted events seen. Call
// after loop returned.
func (p *lagPoller) fillLag(rep *Report) {
	r := p.r
	rep.LagMeasured = true
	rep.PollInterval = r.cfg.PollInterval
	rep.Polls = p.polls
	if p.polls > 0 {
		rep.PollQueryAvg = p.qTotal / time.Duration(p.polls)
	}
	rep.PollQueryMax = p.qMax
	var e2e, pipe []time.Duration
	for seq := 0; seq < r.n; seq++ {
		if p.seenMs[seq] == 0 || !is2xx(r.status[seq].Load()) {
			continue
		}
		sent := r.sentAt[seq].Load() / 1e6
		e2e = append(e2e, time.Duration(p.seenMs[seq]-sent)*time.Millisecond)
		pipe = append(pipe, time.Duration(p.seenMs[seq]-p.recvMs[seq])*time.Millisecond)
	}
	rep.Visible = int64(len(e2e))
	rep.Lag = Summarize(e2e)
	rep.PipelineLag = Summarize(pipe)
}

// verify counts the run's rows per sequence number in the deduplicated
// table (FINAL) and compares them with what was accepted.
func (p *lagPoller) verify(ctx context.Context, rep *Report) error {
	r := p.r
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	// The check the issue states, as is.
	var total uint64
	if err := p.conn.QueryRow(qctx, "SELECT count() FROM "+p.table+" FINAL WHERE app_id = ? AND visitParamExtractString(properties, '"+PropRun+"') = ?",
		r.cfg.AppID, r.cfg.RunID).Scan(&total); err != nil {
		return fmt.Errorf("loadgen: verify: count: %w", err)
	}
	rep.StoredRows = int64(total)
	rows, err := p.conn.Query(qctx,
		"SELECT visitParamExtractUInt(properties, '"+PropSeq+"') AS seq, count() AS c FROM "+p.table+
			" FINAL WHERE app_id = ? AND visitParamExtractString(properties, '"+PropRun+"') = ? GROUP BY seq",
		r.cfg.AppID, r.cfg.RunID)
	if err != nil {
		return fmt.Errorf("loadgen: verify: %w", err)
	}
	defer rows.Close()
	counts := make([]uint32, r.n)
	var foreign int64
	for rows.Next() {
		var seq, c uint64
		if err := rows.Scan(&seq, &c); err != nil {
			return fmt.Errorf("loadgen: verify: scan: %w", err)
		}
		if seq >= uint64(r.n) {
			foreign += int64(c)
			continue
		}
		counts[seq] = uint32(c)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loadgen: verify: %w", err)
	}
	rep.Verified = true
	rep.Unexpected = foreign
	for seq := 0; seq < r.n; seq++ {
		c := int64(counts[seq])
		if is2xx(r.status[seq].Load()) && !r.isRead(seq) {
			switch {
			case c == 0:
				rep.Lost++
				if len(rep.LostSample) < 10 {
					rep.LostSample = append(rep.LostSample, seq)
				}
			case c > 1:
				rep.Duplicated += c - 1
			}
		} else if c > 0 {
			// Not acknowledged (timeout, 503) yet stored: allowed, the
			// client could not know; reported for information.
			rep.Unexpected += c
		}
	}
	return nil
}
