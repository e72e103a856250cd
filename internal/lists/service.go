package lists

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Limits of the Lists API.
const (
	MaxListsPerApp     = 1000
	MaxItemsPerList    = 100_000
	MaxBatchItems      = 1000
	MaxNameLen         = 255
	MaxDescriptionLen  = 1000
	MaxCommentLen      = 1000
	MaxIdentifierLen   = 255
	MaxArchivationTime = 63113904 // seconds (two years), Castle's bound
)

// Colors are Castle's list colours; "green" is accepted for "$green".
var Colors = []string{"$red", "$orange", "$yellow", "$green", "$blue", "$purple", "$gray", "$black"}

// AuthorTypes are Castle's item author types.
var AuthorTypes = []string{"$analyst_email", "$castle_dashboard_user", "$castle_policy", "$user", "$user_email", "$other"}

// Item creation modes: what to do when an active item with the same
// primary and secondary value is already on the list.
const (
	// ModeError (the default) refuses the new item.
	ModeError = "$error"
	// ModeReplace archives the existing item and creates the new one.
	ModeReplace = "$replace"
	// ModeUpdate updates the existing item in place (comment, author,
	// auto_archives_at); without one it creates the item.
	ModeUpdate = "$update"
	// ModeUpdateOrReplace updates an item with the same values in place;
	// else it replaces an active item with the same primary value and
	// another secondary value; else it creates the item.
	ModeUpdateOrReplace = "$update_or_replace"
)

// Service runs the Lists API's commands and reads against a Follower's
// index, appending every change to the log through a Writer. Commands of
// one Service run one at a time, each against the index caught up with
// the whole topic; a command answers once Kafka committed its records and
// the index holds them, so a read right after it shows it. Two instances
// changing the same item at once: the last committed record wins.
type Service struct {
	f       *Follower
	w       *Writer
	log     *slog.Logger
	timeout time.Duration
	// now is the clock (tests move it).
	now func() time.Time

	mu sync.Mutex
}

// NewService returns a Service; timeout bounds catching up with the log
// before a read or command and reading a write back.
func NewService(f *Follower, w *Writer, timeout time.Duration, log *slog.Logger) *Service {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Service{f: f, w: w, log: log.With("component", "lists"), timeout: timeout,
		now: func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }}
}

func (s *Service) sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.f.Sync(ctx); err != nil {
		return unavailable("catch up with the lists topic", err)
	}
	return nil
}

// command runs plan against an index caught up with the log, writes the
// records it returns in one transaction and waits until the index holds
// them.
func (s *Service) command(ctx context.Context, plan func(now time.Time) ([]*kgo.Record, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sync(ctx); err != nil {
		return err
	}
	recs, err := plan(s.now())
	if err != nil || len(recs) == 0 {
		return err
	}
	offsets, err := s.w.Write(ctx, recs)
	if err != nil {
		return unavailable("write to the lists topic", err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.f.WaitFor(wctx, offsets); err != nil {
		// Committed, so the change happened: answer, but a read on this
		// instance may not show it yet.
		s.log.Warn("committed list change not read back in time", "err", err)
	}
	return nil
}

// --- reads

// Lists returns the app's lists, oldest first.
func (s *Service) Lists(ctx context.Context, appID string) ([]ListObject, error) {
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	ls := s.f.idx.Lists(appID)
	out := make([]ListObject, len(ls))
	for i, l := range ls {
		out[i] = NewListObject(l)
	}
	return out, nil
}

// QueryLists returns the app's lists that match q, paged.
func (s *Service) QueryLists(ctx context.Context, appID string, q Query) ([]ListObject, error) {
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	var match []schemas.List
	for _, l := range s.f.idx.Lists(appID) {
		get := func(field string) (string, bool) {
			var v string
			switch field {
			case "primary_field":
				v = l.PrimaryField
			case "secondary_field":
				v = l.SecondaryField
			case "name":
				v = l.Name
			case "color":
				v = l.Color
			case "archived":
				return fmt.Sprint(l.ArchivedAt != nil), true
			}
			return v, v != ""
		}
		if all(q.Filters, get) {
			match = append(match, l)
		}
	}
	if !q.Asc {
		for i, j := 0, len(match)-1; i < j; i, j = i+1, j-1 {
			match[i], match[j] = match[j], match[i]
		}
	}
	from, to := q.page(len(match))
	out := make([]ListObject, 0, to-from)
	for _, l := range match[from:to] {
		o := NewListObject(l)
		if q.IncludeSizeLabel {
			_, n, _ := s.f.idx.List(appID, l.ID)
			o.SizeLabel = sizeLabel(n)
		}
		out = append(out, o)
	}
	return out, nil
}

func all(fs []Filter, get func(string) (string, bool)) bool {
	for i := range fs {
		if !fs[i].holds(get) {
			return false
		}
	}
	return true
}

// List returns one of the app's lists.
func (s *Service) List(ctx context.Context, appID, listID string) (ListObject, error) {
	if err := s.sync(ctx); err != nil {
		return ListObject{}, err
	}
	l, _, ok := s.f.idx.List(appID, listID)
	if !ok {
		return ListObject{}, ErrListNotFound
	}
	return NewListObject(l), nil
}

// Item returns one item of one of the app's lists.
func (s *Service) Item(ctx context.Context, appID, listID, itemID string) (ItemObject, error) {
	if err := s.sync(ctx); err != nil {
		return ItemObject{}, err
	}
	it, err := s.item(appID, listID, itemID)
	if err != nil {
		return ItemObject{}, err
	}
	return NewItemObject(it, s.now()), nil
}

func (s *Service) item(appID, listID, itemID string) (schemas.ListItem, error) {
	if _, _, ok := s.f.idx.List(appID, listID); !ok {
		return schemas.ListItem{}, ErrListNotFound
	}
	it, ok := s.f.idx.Item(appID, listID, itemID)
	if !ok {
		return schemas.ListItem{}, ErrItemNotFound
	}
	return it, nil
}

// matchingItems returns the list's items that match q's filters, sorted
// as q asks, and the list.
func (s *Service) matchingItems(ctx context.Context, appID, listID string, q Query) ([]schemas.ListItem, error) {
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	l, _, ok := s.f.idx.List(appID, listID)
	if !ok {
		return nil, ErrListNotFound
	}
	q.normalize(l)
	items, _ := s.f.idx.Items(appID, listID)
	now := s.now()
	out := items[:0]
	for i := range items {
		it := &items[i]
		get := func(field string) (string, bool) {
			var v string
			switch field {
			case "primary_value":
				v = it.PrimaryValue
			case "secondary_value":
				v = it.SecondaryValue
			case "comment":
				v = it.Comment
			case "author.type":
				v = it.Author.Type
			case "author.identifier":
				v = it.Author.Identifier
			case "archived":
				return fmt.Sprint(it.Archived(now)), true
			}
			return v, v != ""
		}
		if all(q.Filters, get) {
			out = append(out, *it)
		}
	}
	if !q.Asc {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, nil
}

// normalize puts the values of equality filters on item values in the
// list's canonical form, so "2001:DB8::1" finds "2001:db8::1".
func (q *Query) normalize(l schemas.List) {
	var walk func(fs []Filter)
	walk = func(fs []Filter) {
		for i := range fs {
			f := &fs[i]
			walk(f.Or)
			field := ""
			switch f.Field {
			case "primary_value":
				field = l.PrimaryField
			case "secondary_value":
				field = l.SecondaryField
			}
			switch f.Op {
			case "$eq", "$neq", "$in", "$nin":
			default:
				continue
			}
			if field == "" {
				continue
			}
			for j, v := range f.Values {
				if n, err := Normalize(field, v); err == nil {
					f.Values[j] = n
				}
			}
		}
	}
	walk(q.Filters)
}

// QueryItems returns the list's items that match q, sorted and paged.
func (s *Service) QueryItems(ctx context.Context, appID, listID string, q Query) ([]ItemObject, error) {
	items, err := s.matchingItems(ctx, appID, listID, q)
	if err != nil {
		return nil, err
	}
	from, to := q.page(len(items))
	now := s.now()
	out := make([]ItemObject, 0, to-from)
	for _, it := range items[from:to] {
		out = append(out, NewItemObject(it, now))
	}
	return out, nil
}

// CountItems counts the list's items that match q's filters.
func (s *Service) CountItems(ctx context.Context, appID, listID string, q Query) (int, error) {
	items, err := s.matchingItems(ctx, appID, listID, q)
	return len(items), err
}

// --- lists

// ListInput is the body of POST /v1/lists.
type ListInput struct {
	Name, Color, PrimaryField, SecondaryField, Description string
	// DefaultItemArchivationTime in seconds (0: items never archive
	// themselves by default).
	DefaultItemArchivationTime int
}

func validColor(c string) (string, error) {
	if c == "" {
		return "", invalid("color", "is required")
	}
	if !strings.HasPrefix(c, "$") {
		c = "$" + c
	}
	for _, k := range Colors {
		if k == c {
			return c, nil
		}
	}
	return "", invalid("color", "must be one of %s", strings.Join(Colors, ", "))
}

func validName(n string) error {
	switch {
	case strings.TrimSpace(n) == "":
		return invalid("name", "is required")
	case len(n) > MaxNameLen:
		return invalid("name", "is longer than %d bytes", MaxNameLen)
	}
	return nil
}

func validArchivation(n int) error {
	if n < 1 || n > MaxArchivationTime {
		return invalid("default_item_archivation_time", "must be within 1..%d seconds", MaxArchivationTime)
	}
	return nil
}

// CreateList creates a list.
func (s *Service) CreateList(ctx context.Context, appID string, in ListInput) (ListObject, error) {
	if err := validName(in.Name); err != nil {
		return ListObject{}, err
	}
	color, err := validColor(in.Color)
	if err != nil {
		return ListObject{}, err
	}
	switch {
	case in.PrimaryField == "":
		return ListObject{}, invalid("primary_field", "is required")
	case !schemas.KnownListField(in.PrimaryField):
		return ListObject{}, invalid("primary_field", "must be one of %s", strings.Join(schemas.ListFields(), ", "))
	case in.SecondaryField != "" && !schemas.KnownListField(in.SecondaryField):
		return ListObject{}, invalid("secondary_field", "must be one of %s", strings.Join(schemas.ListFields(), ", "))
	case in.SecondaryField != "" && in.SecondaryField == in.PrimaryField:
		return ListObject{}, invalid("secondary_field", "must differ from primary_field")
	case len(in.Description) > MaxDescriptionLen:
		return ListObject{}, invalid("description", "is longer than %d bytes", MaxDescriptionLen)
	}
	if in.DefaultItemArchivationTime != 0 {
		if err := validArchivation(in.DefaultItemArchivationTime); err != nil {
			return ListObject{}, err
		}
	}
	var l schemas.List
	err = s.command(ctx, func(now time.Time) ([]*kgo.Record, error) {
		if len(s.f.idx.Lists(appID)) >= MaxListsPerApp {
			return nil, invalid("name", "cannot be added: an app has at most %d lists", MaxListsPerApp)
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("lists: list id: %w", err)
		}
		l = schemas.List{ID: id.String(), Name: in.Name, Description: in.Description, Color: color,
			DefaultItemArchivationTime: in.DefaultItemArchivationTime, PrimaryField: in.PrimaryField,
			SecondaryField: in.SecondaryField, CreatedAt: now, UpdatedAt: now}
		return listRecords(appID, l)
	})
	if err != nil {
		return ListObject{}, err
	}
	return NewListObject(l), nil
}

// ListPatch is the body of PUT /v1/lists/{id}: nil leaves a field as it
// is. Primary and secondary fields cannot change (given, they must be
// the current ones).
type ListPatch struct {
	Name, Color, Description     *string
	PrimaryField, SecondaryField *string
	DefaultItemArchivationTime   *int
	// ClearArchivationTime: default_item_archivation_time was null.
	ClearArchivationTime bool
}

// UpdateList changes a list's name, colour, description or default
// archivation time.
func (s *Service) UpdateList(ctx context.Context, appID, listID string, p ListPatch) (ListObject, error) {
	var l schemas.List
	err := s.command(ctx, func(now time.Time) ([]*kgo.Record, error) {
		var ok bool
		if l, _, ok = s.f.idx.List(appID, listID); !ok {
			return nil, ErrListNotFound
		}
		if p.Name != nil {
			if err := validName(*p.Name); err != nil {
				return nil, err
			}
			l.Name = *p.Name
		}
		if p.Color != nil {
			c, err := validColor(*p.Color)
			if err != nil {
				return nil, err
			}
			l.Color = c
		}
		if p.Description != nil {
			if len(*p.Description) > MaxDescriptionLen {
				return nil, invalid("description", "is longer than %d bytes", MaxDescriptionLen)
			}
			l.Description = *p.Description
		}
		if p.PrimaryField != nil && *p.PrimaryField != l.PrimaryField {
			return nil, invalid("primary_field", "cannot be changed")
		}
		if p.SecondaryField != nil && *p.SecondaryField != l.SecondaryField {
			return nil, invalid("secondary_field", "cannot be changed")
		}
		switch {
		case p.ClearArchivationTime:
			l.DefaultItemArchivationTime = 0
		case p.DefaultItemArchivationTime != nil:
			if err := validArchivation(*p.DefaultItemArchivationTime); err != nil {
				return nil, err
			}
			l.DefaultItemArchivationTime = *p.DefaultItemArchivationTime
		}
		l.UpdatedAt = now
		return listRecords(appID, l)
	})
	if err != nil {
		return ListObject{}, err
	}
	return NewListObject(l), nil
}

// DeleteList deletes a list and its items (tombstones for every item and
// the list, in one transaction; no notifications).
func (s *Service) DeleteList(ctx context.Context, appID, listID string) error {
	return s.command(ctx, func(time.Time) ([]*kgo.Record, error) {
		items, ok := s.f.idx.Items(appID, listID)
		if !ok {
			return nil, ErrListNotFound
		}
		recs := make([]*kgo.Record, 0, len(items)+1)
		for _, it := range items {
			recs = append(recs, tombstone(schemas.ListItemKey(appID, listID, it.ID)))
		}
		return append(recs, tombstone(schemas.ListKey(appID, listID))), nil
	})
}

// --- items

// ItemInput is one item of POST /v1/lists/{id}/items or of a batch.
type ItemInput struct {
	PrimaryValue, SecondaryValue, Comment string
	Author                                schemas.ListAuthor
	AutoArchivesAt                        *time.Time
	Mode                                  string
	// Invalid is set when the item could not even be decoded (a batch
	// counts it as errored).
	Invalid error
}

// BatchResult is the answer of POST /v1/lists/{id}/items/batch.
type BatchResult struct {
	TotalReceived  int `json:"total_received"`
	TotalProcessed int `json:"total_processed"`
	Created        int `json:"created"`
	Updated        int `json:"updated"`
	Replaced       int `json:"replaced"`
	Errored        int `json:"errored"`
}

// CreateItem adds an item to a list (see the Mode constants for an item
// that is already there). It raises $list_item.created (and
// $list_item.archived for a replaced item).
func (s *Service) CreateItem(ctx context.Context, appID, listID string, in ItemInput) (ItemObject, error) {
	var it schemas.ListItem
	var now time.Time
	err := s.command(ctx, func(t time.Time) ([]*kgo.Record, error) {
		now = t
		l, _, ok := s.f.idx.List(appID, listID)
		if !ok {
			return nil, ErrListNotFound
		}
		ov := newOverlay(s.f.idx, appID, l)
		var recs []*kgo.Record
		var err error
		if _, recs, it, err = ov.add(in, now); err != nil {
			return nil, err
		}
		return recs, nil
	})
	if err != nil {
		return ItemObject{}, err
	}
	return NewItemObject(it, now), nil
}

// CreateItems adds up to MaxBatchItems items in one transaction; items
// that are invalid (or refused by their mode) are counted as errored and
// the others are applied.
func (s *Service) CreateItems(ctx context.Context, appID, listID string, ins []ItemInput) (BatchResult, error) {
	res := BatchResult{TotalReceived: len(ins)}
	if len(ins) == 0 {
		return res, invalid("items", "must be a non-empty array")
	}
	if len(ins) > MaxBatchItems {
		return res, invalid("items", "has more than %d items", MaxBatchItems)
	}
	err := s.command(ctx, func(now time.Time) ([]*kgo.Record, error) {
		res = BatchResult{TotalReceived: len(ins)}
		l, _, ok := s.f.idx.List(appID, listID)
		if !ok {
			return nil, ErrListNotFound
		}
		ov := newOverlay(s.f.idx, appID, l)
		var all []*kgo.Record
		for i, in := range ins {
			kind, recs, _, err := ov.add(in, now)
			if err != nil {
				s.log.Debug("batch item refused", "app_id", appID, "list_id", listID, "err", prefixed(fmt.Sprintf("items[%d]", i), err))
				res.Errored++
				continue
			}
			res.TotalProcessed++
			switch kind {
			case "created":
				res.Created++
			case "updated":
				res.Updated++
			case "replaced":
				res.Replaced++
			}
			all = append(all, recs...)
		}
		return all, nil
	})
	return res, err
}

// UpdateItem changes an item's comment.
func (s *Service) UpdateItem(ctx context.Context, appID, listID, itemID, comment string) (ItemObject, error) {
	if len(comment) > MaxCommentLen {
		return ItemObject{}, invalid("comment", "is longer than %d bytes", MaxCommentLen)
	}
	var it schemas.ListItem
	var now time.Time
	err := s.command(ctx, func(t time.Time) ([]*kgo.Record, error) {
		now = t
		var err error
		if it, err = s.item(appID, listID, itemID); err != nil {
			return nil, err
		}
		it.Comment, it.UpdatedAt = comment, now
		rec, err := itemRecord(appID, it)
		return []*kgo.Record{rec}, err
	})
	if err != nil {
		return ItemObject{}, err
	}
	return NewItemObject(it, now), nil
}

// ArchiveItem archives an item (raising $list_item.archived); an archived
// item is answered as it is.
func (s *Service) ArchiveItem(ctx context.Context, appID, listID, itemID string) (ItemObject, error) {
	var it schemas.ListItem
	var now time.Time
	err := s.command(ctx, func(t time.Time) ([]*kgo.Record, error) {
		now = t
		var err error
		if it, err = s.item(appID, listID, itemID); err != nil || it.Archived(now) {
			return nil, err
		}
		at := now
		it.ArchivedAt, it.UpdatedAt = &at, now
		return changeRecords(appID, it, schemas.NotifyListItemArchived, now)
	})
	if err != nil {
		return ItemObject{}, err
	}
	return NewItemObject(it, now), nil
}

// UnarchiveItem makes an archived item active again (raising
// $list_item.unarchived), clearing an auto_archives_at that has passed.
// It is refused while another active item holds the same values.
func (s *Service) UnarchiveItem(ctx context.Context, appID, listID, itemID string) (ItemObject, error) {
	var it schemas.ListItem
	var now time.Time
	err := s.command(ctx, func(t time.Time) ([]*kgo.Record, error) {
		now = t
		var err error
		if it, err = s.item(appID, listID, itemID); err != nil || !it.Archived(now) {
			return nil, err
		}
		for _, o := range s.f.idx.ItemsWithPrimary(appID, listID, it.PrimaryValue) {
			if o.ID != it.ID && o.SecondaryValue == it.SecondaryValue && !o.Archived(now) {
				return nil, invalid("primary_value", "is on the list in another active item (%s)", o.ID)
			}
		}
		it.ArchivedAt, it.UpdatedAt = nil, now
		if it.AutoArchivesAt != nil && !now.Before(*it.AutoArchivesAt) {
			it.AutoArchivesAt = nil
		}
		return changeRecords(appID, it, schemas.NotifyListItemUnarchived, now)
	})
	if err != nil {
		return ItemObject{}, err
	}
	return NewItemObject(it, now), nil
}

// overlay is a list's items as the index holds them plus the changes a
// command has planned so far (so a batch sees its own earlier items).
type overlay struct {
	idx   *Index
	appID string
	list  schemas.List
	items map[string]schemas.ListItem
	added int
}

func newOverlay(idx *Index, appID string, l schemas.List) *overlay {
	return &overlay{idx: idx, appID: appID, list: l, items: map[string]schemas.ListItem{}}
}

// withPrimary returns the items with primary value v, oldest first.
func (o *overlay) withPrimary(v string) []schemas.ListItem {
	base := o.idx.ItemsWithPrimary(o.appID, o.list.ID, v)
	seen := map[string]bool{}
	for i := range base {
		if it, ok := o.items[base[i].ID]; ok {
			base[i] = it
		}
		seen[base[i].ID] = true
	}
	for id, it := range o.items {
		if !seen[id] && it.PrimaryValue == v {
			base = append(base, it)
		}
	}
	sort.Slice(base, func(i, j int) bool { return earlier(&base[i], &base[j]) })
	return base
}

func validAuthor(a schemas.ListAuthor) error {
	if a.Type == "" && a.Identifier == "" {
		return invalid("author", "is required")
	}
	ok := false
	for _, t := range AuthorTypes {
		ok = ok || t == a.Type
	}
	switch {
	case !ok:
		return invalid("author.type", "must be one of %s", strings.Join(AuthorTypes, ", "))
	case strings.TrimSpace(a.Identifier) == "":
		return invalid("author.identifier", "is required")
	case len(a.Identifier) > MaxIdentifierLen:
		return invalid("author.identifier", "is longer than %d bytes", MaxIdentifierLen)
	}
	return nil
}

// add validates one item and plans its records: kind is created, updated
// or replaced, item the item as it will be.
func (o *overlay) add(in ItemInput, now time.Time) (kind string, recs []*kgo.Record, item schemas.ListItem, err error) {
	if in.Invalid != nil {
		return "", nil, item, in.Invalid
	}
	l := o.list
	primary, err := Normalize(l.PrimaryField, in.PrimaryValue)
	if err != nil {
		return "", nil, item, invalid("primary_value", "%s", err)
	}
	secondary := ""
	if in.SecondaryValue != "" {
		if l.SecondaryField == "" {
			return "", nil, item, invalid("secondary_value", "is not allowed: the list has no secondary_field")
		}
		if secondary, err = Normalize(l.SecondaryField, in.SecondaryValue); err != nil {
			return "", nil, item, invalid("secondary_value", "%s", err)
		}
	}
	if err := validAuthor(in.Author); err != nil {
		return "", nil, item, err
	}
	if len(in.Comment) > MaxCommentLen {
		return "", nil, item, invalid("comment", "is longer than %d bytes", MaxCommentLen)
	}
	auto := in.AutoArchivesAt
	if auto != nil {
		t := auto.UTC().Truncate(time.Millisecond)
		if !t.After(now) {
			return "", nil, item, invalid("auto_archives_at", "must be in the future")
		}
		auto = &t
	}
	mode := in.Mode
	switch mode {
	case "":
		mode = ModeError
	case ModeError, ModeReplace, ModeUpdate, ModeUpdateOrReplace:
	default:
		return "", nil, item, invalid("mode", "must be one of %s, %s, %s, %s", ModeError, ModeReplace, ModeUpdate, ModeUpdateOrReplace)
	}
	var same, samePrimary *schemas.ListItem
	for _, c := range o.withPrimary(primary) {
		if c.Archived(now) {
			continue
		}
		c := c
		if c.SecondaryValue == secondary && same == nil {
			same = &c
		} else if c.SecondaryValue != secondary && samePrimary == nil {
			samePrimary = &c
		}
	}
	var old *schemas.ListItem // the item a replace archives
	switch {
	case same != nil && mode == ModeError:
		return "", nil, item, invalid("primary_value", "is already on the list (item %s); use mode $replace or $update", same.ID)
	case same != nil && (mode == ModeUpdate || mode == ModeUpdateOrReplace):
		item = *same
		if in.Comment != "" {
			item.Comment = in.Comment
		}
		item.Author = in.Author
		if auto != nil {
			item.AutoArchivesAt = auto
		}
		item.UpdatedAt = now
		rec, err := itemRecord(o.appID, item)
		if err != nil {
			return "", nil, item, err
		}
		o.items[item.ID] = item
		return "updated", []*kgo.Record{rec}, item, nil
	case same != nil && mode == ModeReplace:
		old = same
	case same == nil && samePrimary != nil && mode == ModeUpdateOrReplace:
		old = samePrimary
	}
	if o.idx.count(o.appID, l.ID)+o.added >= MaxItemsPerList {
		return "", nil, item, invalid("primary_value", "cannot be added: a list holds at most %d items", MaxItemsPerList)
	}
	kind = "created"
	if old != nil {
		kind = "replaced"
		at := now
		archived := *old
		archived.ArchivedAt, archived.UpdatedAt = &at, now
		rs, err := changeRecords(o.appID, archived, schemas.NotifyListItemArchived, now)
		if err != nil {
			return "", nil, item, err
		}
		recs = append(recs, rs...)
		o.items[archived.ID] = archived
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", nil, item, fmt.Errorf("lists: item id: %w", err)
	}
	if auto == nil && l.DefaultItemArchivationTime > 0 {
		t := now.Add(time.Duration(l.DefaultItemArchivationTime) * time.Second)
		auto = &t
	}
	item = schemas.ListItem{ID: id.String(), ListID: l.ID, PrimaryValue: primary, SecondaryValue: secondary,
		Comment: in.Comment, Author: in.Author, AutoArchivesAt: auto, CreatedAt: now, UpdatedAt: now}
	rs, err := changeRecords(o.appID, item, schemas.NotifyListItemCreated, now)
	if err != nil {
		return "", nil, item, err
	}
	o.items[item.ID] = item
	o.added++
	return kind, append(recs, rs...), item, nil
}

// count is how many items a list holds.
func (x *Index) count(appID, listID string) int {
	_, n, _ := x.List(appID, listID)
	return n
}

// --- records

var (
	listHeader         = []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("list.v1")}}
	notificationHeader = []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("notification.v1")}}
)

func listRecords(appID string, l schemas.List) ([]*kgo.Record, error) {
	b, err := json.Marshal(schemas.ListRecord{V: schemas.ListRecordVersion, AppID: appID, List: &l})
	if err != nil {
		return nil, fmt.Errorf("lists: encode list: %w", err)
	}
	return []*kgo.Record{{Topic: schemas.TopicLists, Key: schemas.ListKey(appID, l.ID), Value: b, Headers: listHeader}}, nil
}

func itemRecord(appID string, it schemas.ListItem) (*kgo.Record, error) {
	b, err := json.Marshal(schemas.ListRecord{V: schemas.ListRecordVersion, AppID: appID, Item: &it})
	if err != nil {
		return nil, fmt.Errorf("lists: encode item: %w", err)
	}
	return &kgo.Record{Topic: schemas.TopicLists, Key: schemas.ListItemKey(appID, it.ListID, it.ID), Value: b, Headers: listHeader}, nil
}

func tombstone(key []byte) *kgo.Record {
	return &kgo.Record{Topic: schemas.TopicLists, Key: key, Headers: listHeader}
}

// changeRecords are an item's new state and the notification of the
// change (typ), with the item object as of now as its data.
func changeRecords(appID string, it schemas.ListItem, typ string, now time.Time) ([]*kgo.Record, error) {
	rec, err := itemRecord(appID, it)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(NewItemObject(it, now))
	if err != nil {
		return nil, fmt.Errorf("lists: encode notification data: %w", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("lists: notification id: %w", err)
	}
	n := schemas.Notification{V: schemas.NotificationVersion, ID: id.String(), AppID: appID, Type: typ, CreatedAt: now, Data: data}
	nb, err := json.Marshal(&n)
	if err != nil {
		return nil, fmt.Errorf("lists: encode notification: %w", err)
	}
	return []*kgo.Record{rec, {Topic: schemas.TopicIncidents, Key: n.Key(), Value: nb, Headers: notificationHeader}}, nil
}
