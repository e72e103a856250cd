package projector

import "github.com/moat-dev/moat/schemas"

// sessionColumn is one of the parallel arrays of the session changes of
// an events row (migration 0006); sessions_mv folds them into sessions.
func sessionColumn[T any](name string, value func(s *schemas.SessionChange) T) eventColumn {
	return array(name, func(r *eventRow, dst []T) []T {
		for i := range r.d.Sessions {
			dst = append(dst, value(&r.d.Sessions[i]))
		}
		return dst
	})
}

// listColumn is one of the parallel arrays of the list matches of an
// events row (migration 0010).
func listColumn(name string, value func(m *schemas.ListMatch) string) eventColumn {
	return array(name, func(r *eventRow, dst []string) []string {
		for i := range r.d.Lists {
			dst = append(dst, value(&r.d.Lists[i]))
		}
		return dst
	})
}
