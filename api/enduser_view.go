package api

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/schemas"
)

// userView is what the end-user routes know about one user: their devices
// with the effect of every device command, and their sessions. It is read
// from ClickHouse and completed with the decisions the projector has not
// written yet (Pending), so it is never older than a command that was
// answered.
type userView struct {
	devices  []*viewDevice
	sessions map[string]*viewSession
}

// viewDevice is one device and its end-user status.
type viewDevice struct {
	row deviceRow
	// status is unverified, verified or hijacked; verifiedMs when it was
	// verified (approved, activated).
	status     string
	verifiedMs uint64
	forgotten  bool
}

// viewSession is one session's last known state.
type viewSession struct {
	uuid, id, device, status, reason string
	startedMs, lastMs, endedMs       uint64
}

// viewCommand is a device command as the timeline has it.
type viewCommand struct {
	id, kind, target string
	atMs             uint64
	trusted          bool
	risk             float64
}

// Device statuses of the end-user routes.
const (
	statusUnverified = "unverified"
	statusVerified   = "verified"
	statusHijacked   = "hijacked"
)

// commandKinds are the event kinds that change a device's end-user status.
var commandKinds = []schemas.Kind{
	schemas.KindDeviceApprove, schemas.KindDeviceReport, schemas.KindUserArchiveDevices,
	schemas.KindDeviceVerify, schemas.KindDeviceHijack, schemas.KindDeviceForget,
	schemas.KindTrustActivate, schemas.KindTrustRevoke,
}

func isCommandKind(k schemas.Kind) bool {
	for _, c := range commandKinds {
		if c == k {
			return true
		}
	}
	return false
}

// userKey is the event key of a user's events (schemas.Event.Key).
func userKey(appID, userID string) []byte {
	ev := schemas.Event{AppID: appID, User: schemas.User{ID: userID}}
	return ev.Key()
}

// loadView reads a user's view: ClickHouse, then the pending decisions.
func (h *EndUserHandler) loadView(ctx context.Context, appID, userID string) (*userView, error) {
	var snap Snapshot
	if h.cfg.Pending != nil {
		var err error
		// Before ClickHouse: see Pending.
		if snap, err = h.cfg.Pending.Snapshot(ctx, userKey(appID, userID)); err != nil {
			return nil, err
		}
	}
	s := h.cfg.Store
	rows, err := s.query(ctx, s.devicesQuery("app_id = ? AND user_id = ?", 1000), appID, userID)
	if err != nil {
		return nil, err
	}
	cmds, err := s.deviceCommands(ctx, appID, userID)
	if err != nil {
		return nil, err
	}
	sessions, err := s.sessions(ctx, appID, userID)
	if err != nil {
		return nil, err
	}
	var pending []schemas.Decision
	if h.cfg.Pending != nil {
		if pending, err = h.cfg.Pending.Read(ctx, snap); err != nil {
			return nil, err
		}
	}
	v := buildView(rows, cmds, sessions, pending)
	if e := h.cfg.Erasures; e != nil {
		if err := e.Sync(ctx); err != nil {
			return nil, fmt.Errorf("api: privacy registry: %w", err)
		}
		v.erase(func(ms uint64) bool { return e.Forgotten(appID, userID, "", time.UnixMilli(int64(ms))) })
	}
	return v, nil
}

// erase hides what the privacy API deleted: devices last seen, and
// sessions last active, at or before the user's deletion.
func (v *userView) erase(gone func(ms uint64) bool) {
	kept := v.devices[:0]
	for _, d := range v.devices {
		if !gone(d.row.LastSeenMs) {
			kept = append(kept, d)
		}
	}
	v.devices = kept
	for id, s := range v.sessions {
		if gone(max(s.lastMs, s.endedMs)) {
			delete(v.sessions, id)
		}
	}
}

// buildView folds ClickHouse's rows and the pending decisions.
func buildView(rows []deviceRow, cmds []viewCommand, sessions []viewSession, pending []schemas.Decision) *userView {
	v := &userView{sessions: map[string]*viewSession{}}
	byToken := map[string]*viewDevice{}
	for _, r := range rows {
		d := &viewDevice{row: r, status: statusUnverified}
		v.devices = append(v.devices, d)
		byToken[r.Token] = d
	}
	for i := range sessions {
		v.sessions[sessions[i].uuid] = &sessions[i]
	}
	seen := map[string]bool{}
	for _, c := range cmds {
		seen[c.id] = true
	}
	for i := range pending {
		d := &pending[i]
		ev := &d.Event
		at := uint64(ev.ReceivedAt.UnixMilli())
		switch {
		case isCommandKind(ev.Kind):
			if !seen[ev.ID] {
				seen[ev.ID] = true
				cmds = append(cmds, viewCommand{id: ev.ID, kind: string(ev.Kind), target: d.Device.Token, atMs: at, trusted: d.Trusted, risk: d.Risk})
			}
		case d.Device.Token != "" && !d.Impersonated && !ev.Kind.EndUser() && ev.Kind != schemas.KindDeviceApprove && ev.Kind != schemas.KindDeviceReport:
			dev, ok := byToken[d.Device.Token]
			if !ok {
				dev = &viewDevice{status: statusUnverified, row: deviceRow{UserID: ev.User.ID, Token: d.Device.Token, Fingerprint: d.Device.Fingerprint, FirstSeenMs: at}}
				byToken[d.Device.Token] = dev
				v.devices = append(v.devices, dev)
			}
			if at >= dev.row.LastSeenMs {
				dev.row.LastSeenMs, dev.row.LastIP, dev.row.UA = at, ev.Context.IP, d.Device.UserAgent
			}
			dev.row.FirstSeenMs = min(dev.row.FirstSeenMs, at)
		}
		for _, c := range d.Sessions {
			v.mergeSession(c)
		}
	}
	sort.SliceStable(cmds, func(i, j int) bool {
		if cmds[i].atMs != cmds[j].atMs {
			return cmds[i].atMs < cmds[j].atMs
		}
		return cmds[i].id < cmds[j].id
	})
	for _, c := range cmds {
		if schemas.Kind(c.kind) == schemas.KindUserArchiveDevices {
			// Archiving withdraws the approvals of the devices seen so far.
			for _, d := range v.devices {
				if d.status == statusVerified && d.row.FirstSeenMs <= c.atMs {
					d.status, d.verifiedMs = statusUnverified, 0
				}
			}
			continue
		}
		d, ok := byToken[c.target]
		if !ok {
			continue
		}
		d.apply(c)
	}
	sort.SliceStable(v.devices, func(i, j int) bool {
		a, b := v.devices[i].row, v.devices[j].row
		if a.LastSeenMs != b.LastSeenMs {
			return a.LastSeenMs > b.LastSeenMs
		}
		return a.Token < b.Token
	})
	kept := v.devices[:0]
	for _, d := range v.devices {
		if !d.forgotten {
			kept = append(kept, d)
		}
	}
	v.devices = kept
	return v
}

// apply folds one command into the device's status, as the scorer does:
// the newest approval or report wins; a revoke withdraws an approval; a
// forget removes the device. Commands the scorer refused (an activation
// with a wrong token) carry no trust and change nothing.
func (d *viewDevice) apply(c viewCommand) {
	switch schemas.Kind(c.kind) {
	case schemas.KindDeviceApprove, schemas.KindDeviceVerify, schemas.KindTrustActivate:
		if c.trusted {
			d.status, d.verifiedMs = statusVerified, c.atMs
		}
	case schemas.KindDeviceReport, schemas.KindDeviceHijack:
		if c.risk >= 1 {
			d.status, d.verifiedMs = statusHijacked, 0
		}
	case schemas.KindTrustRevoke:
		if d.status == statusVerified {
			d.status, d.verifiedMs = statusUnverified, 0
		}
	case schemas.KindDeviceForget:
		d.forgotten = true
	}
}

// mergeSession folds a session change into the view (the same folding as
// the sessions table's aggregates).
func (v *userView) mergeSession(c schemas.SessionChange) {
	s, ok := v.sessions[c.UUID]
	if !ok {
		s = &viewSession{uuid: c.UUID, id: c.ID, device: c.DeviceToken, status: schemas.SessionActive, startedMs: uint64(max(c.StartedAtMs, 0))}
		v.sessions[c.UUID] = s
	}
	s.startedMs = min(s.startedMs, uint64(max(c.StartedAtMs, 0)))
	s.lastMs = max(s.lastMs, uint64(max(c.LastActivityAtMs, 0)))
	if end := uint64(max(c.EndedAtMs, 0)); end > 0 && end >= s.endedMs {
		s.endedMs, s.status, s.reason = end, c.Status, c.Reason
	}
}

// device finds a (not forgotten) device by its uuid.
func (v *userView) device(appID, id string) *viewDevice {
	u, err := uuid.Parse(id)
	if err != nil || !strings.EqualFold(u.String(), id) {
		return nil
	}
	for _, d := range v.devices {
		if deviceUUID(appID, d.row.Token) == u.String() {
			return d
		}
	}
	return nil
}

// byToken finds a (not forgotten) device by its token.
func (v *userView) byToken(token string) *viewDevice {
	if token == "" {
		return nil
	}
	for _, d := range v.devices {
		if d.row.Token == token {
			return d
		}
	}
	return nil
}

// deviceSessions are a device's sessions, newest first.
func (v *userView) deviceSessions(token string) []*viewSession {
	var out []*viewSession
	for _, s := range v.sessions {
		if s.device == token {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].startedMs != out[j].startedMs {
			return out[i].startedMs > out[j].startedMs
		}
		return out[i].uuid < out[j].uuid
	})
	return out
}

// deviceNamespace derives the end-user routes' device uuids.
var deviceNamespace = uuid.MustParse("0b8f6a4e-3c55-5f0e-8a8e-6d1f1e2c9b7a")

// deviceUUID is the stable uuid of a device: a UUIDv5 of the app and the
// device token. The token is already unguessable and bound to one app and
// user; the uuid reveals neither it nor the fingerprint.
func deviceUUID(appID, token string) string {
	return uuid.NewSHA1(deviceNamespace, []byte(appID+"\x00"+token)).String()
}

// deviceCommands returns the user's device commands in the timeline.
func (s *Store) deviceCommands(ctx context.Context, appID, userID string) ([]viewCommand, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	kinds := make([]string, len(commandKinds))
	for i, k := range commandKinds {
		kinds[i] = "'" + string(k) + "'"
	}
	q := fmt.Sprintf(`SELECT toString(id), kind, target_device_token, received_at_ms, trusted, risk
		FROM %s.events WHERE app_id = ? AND user_id = ? AND kind IN (%s)
		ORDER BY received_at_ms, id LIMIT 1 BY id`, schemas.QuoteIdent(s.database), strings.Join(kinds, ", "))
	rows, err := s.conn.Query(ctx, q, appID, userID)
	if err != nil {
		return nil, fmt.Errorf("api: query device commands: %w", err)
	}
	defer rows.Close()
	var out []viewCommand
	for rows.Next() {
		var c viewCommand
		var trusted uint8
		if err := rows.Scan(&c.id, &c.kind, &c.target, &c.atMs, &trusted, &c.risk); err != nil {
			return nil, fmt.Errorf("api: scan device command: %w", err)
		}
		c.trusted = trusted == 1
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("api: read device commands: %w", err)
	}
	return out, nil
}

// sessions returns the user's sessions from the sessions table.
func (s *Store) sessions(ctx context.Context, appID, userID string) ([]viewSession, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := fmt.Sprintf(`SELECT session_uuid, anyMerge(session_id), anyMerge(device_token), minMerge(started_ms),
		maxMerge(last_activity_ms), maxMerge(ended_ms), argMaxMerge(end_status), argMaxMerge(end_reason)
		FROM %s.sessions WHERE app_id = ? AND user_id = ?
		GROUP BY session_uuid`, schemas.QuoteIdent(s.database))
	rows, err := s.conn.Query(ctx, q, appID, userID)
	if err != nil {
		return nil, fmt.Errorf("api: query sessions: %w", err)
	}
	defer rows.Close()
	var out []viewSession
	for rows.Next() {
		var x viewSession
		if err := rows.Scan(&x.uuid, &x.id, &x.device, &x.startedMs, &x.lastMs, &x.endedMs, &x.status, &x.reason); err != nil {
			return nil, fmt.Errorf("api: scan session: %w", err)
		}
		if x.endedMs == 0 {
			x.status, x.reason = schemas.SessionActive, ""
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("api: read sessions: %w", err)
	}
	return out, nil
}
