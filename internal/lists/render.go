package lists

import (
	"strconv"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// castleTime is Castle's timestamp format (UTC, milliseconds).
const castleTime = "2006-01-02T15:04:05.000Z07:00"

func timeStr(t time.Time) string { return t.UTC().Format(castleTime) }

func timePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := timeStr(*t)
	return &s
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ListObject is Castle's list object (null for unset optional fields).
type ListObject struct {
	ID                         string  `json:"id"`
	Name                       string  `json:"name"`
	Description                *string `json:"description"`
	Color                      string  `json:"color"`
	DefaultItemArchivationTime *int    `json:"default_item_archivation_time"`
	PrimaryField               string  `json:"primary_field"`
	SecondaryField             *string `json:"secondary_field"`
	ArchivedAt                 *string `json:"archived_at"`
	CreatedAt                  string  `json:"created_at"`
	// SizeLabel is the number of items, when a list query asks for it
	// (include_size_label).
	SizeLabel *string `json:"size_label,omitempty"`
}

// NewListObject renders a list.
func NewListObject(l schemas.List) ListObject {
	o := ListObject{ID: l.ID, Name: l.Name, Description: strPtr(l.Description), Color: l.Color,
		PrimaryField: l.PrimaryField, SecondaryField: strPtr(l.SecondaryField),
		ArchivedAt: timePtr(l.ArchivedAt), CreatedAt: timeStr(l.CreatedAt)}
	if l.DefaultItemArchivationTime > 0 {
		n := l.DefaultItemArchivationTime
		o.DefaultItemArchivationTime = &n
	}
	return o
}

func sizeLabel(n int) *string {
	s := strconv.Itoa(n)
	return &s
}

// ItemObject is Castle's list item object. Archived is evaluated at render
// time: an item whose auto_archives_at passed is archived, with that time
// as archived_at.
type ItemObject struct {
	ID             string             `json:"id"`
	ListID         string             `json:"list_id"`
	PrimaryValue   string             `json:"primary_value"`
	SecondaryValue *string            `json:"secondary_value"`
	Comment        *string            `json:"comment"`
	Author         schemas.ListAuthor `json:"author"`
	AutoArchivesAt *string            `json:"auto_archives_at"`
	Archived       bool               `json:"archived"`
	ArchivedAt     *string            `json:"archived_at"`
	CreatedAt      string             `json:"created_at"`
}

// NewItemObject renders an item as of now.
func NewItemObject(it schemas.ListItem, now time.Time) ItemObject {
	o := ItemObject{ID: it.ID, ListID: it.ListID, PrimaryValue: it.PrimaryValue, SecondaryValue: strPtr(it.SecondaryValue),
		Comment: strPtr(it.Comment), Author: it.Author, AutoArchivesAt: timePtr(it.AutoArchivesAt),
		Archived: it.Archived(now), ArchivedAt: timePtr(it.ArchivedAt), CreatedAt: timeStr(it.CreatedAt)}
	if o.Archived && o.ArchivedAt == nil {
		o.ArchivedAt = timePtr(it.AutoArchivesAt)
	}
	return o
}
