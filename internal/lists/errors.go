package lists

import (
	"errors"
	"fmt"
)

// InvalidError is a request the service refuses; Field names the
// offending parameter (a JSON path such as "items[3].primary_value").
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string { return e.Field + " " + e.Message }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// prefixed returns err with its field under prefix (for batch items).
func prefixed(prefix string, err error) error {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return &InvalidError{Field: prefix + "." + ie.Field, Message: ie.Message}
	}
	return err
}

var (
	// ErrListNotFound: the app has no such list.
	ErrListNotFound = errors.New("List not found")
	// ErrItemNotFound: the list has no such item.
	ErrItemNotFound = errors.New("List item not found")
	// ErrUnavailable wraps failures to write to or catch up with the lists
	// topic in time: the caller may retry.
	ErrUnavailable = errors.New("lists: log unavailable")
)

func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}
