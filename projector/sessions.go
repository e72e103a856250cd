package projector

import "github.com/moat-dev/moat/schemas"

// sessionCols are a decision's session changes as the parallel arrays of
// the events row (migration 0006); sessions_mv folds them into sessions.
type sessionCols struct {
	uuids, ids, devices, statuses, reasons []string
	started, last, ended                   []uint64
}

func sessionColumns(changes []schemas.SessionChange) sessionCols {
	n := len(changes)
	c := sessionCols{
		uuids: make([]string, n), ids: make([]string, n), devices: make([]string, n),
		statuses: make([]string, n), reasons: make([]string, n),
		started: make([]uint64, n), last: make([]uint64, n), ended: make([]uint64, n),
	}
	for i, s := range changes {
		c.uuids[i], c.ids[i], c.devices[i], c.statuses[i], c.reasons[i] = s.UUID, s.ID, s.DeviceToken, s.Status, s.Reason
		c.started[i], c.last[i], c.ended[i] = uint64(max(s.StartedAtMs, 0)), uint64(max(s.LastActivityAtMs, 0)), uint64(max(s.EndedAtMs, 0))
	}
	return c
}
