package lists

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Paging defaults and bounds of the query routes.
const (
	DefaultResultsSize = 50
	MaxResultsSize     = 1000
	maxFilters         = 50
	maxFilterDepth     = 3
	maxPatternLen      = 256
)

// QueryBody is the JSON body of the query routes (Castle's
// {filters, sort, page, results_size, include_size_label}).
type QueryBody struct {
	Filters          []json.RawMessage `json:"filters"`
	Sort             *SortBody         `json:"sort"`
	Page             *int              `json:"page"`
	ResultsSize      *int              `json:"results_size"`
	IncludeSizeLabel bool              `json:"include_size_label"`
}

// SortBody is Castle's {field, order}.
type SortBody struct {
	Field string `json:"field"`
	Order string `json:"order"`
}

// Query is a parsed query: every filter must hold; results are sorted by
// creation time (newest first unless Asc), then id, and paged.
type Query struct {
	Filters          []Filter
	Asc              bool
	Page, Size       int
	IncludeSizeLabel bool
}

// Filter is one condition {field, op, value}, or {op: "$or", value:
// [filters]} (Or set: any of them holds).
type Filter struct {
	Field string
	Op    string
	// Values holds the value (one element), or the elements of an $in or
	// $nin array; booleans are "true" or "false".
	Values []string
	Or     []Filter

	re     *regexp.Regexp
	prefix netip.Prefix
}

// Fields that can be filtered on, with whether they are booleans.
var (
	itemFilterFields = map[string]bool{"primary_value": false, "secondary_value": false, "archived": true,
		"comment": false, "author.type": false, "author.identifier": false}
	listFilterFields = map[string]bool{"primary_field": false, "secondary_field": false, "archived": true,
		"name": false, "color": false}
)

// ItemQuery validates the body of POST /v1/lists/{id}/items/query and
// .../items/count.
func ItemQuery(b QueryBody) (Query, error) { return parseQuery(b, itemFilterFields) }

// ListQuery validates the body of POST /v1/lists/query.
func ListQuery(b QueryBody) (Query, error) { return parseQuery(b, listFilterFields) }

func parseQuery(b QueryBody, fields map[string]bool) (Query, error) {
	q := Query{Page: 1, Size: DefaultResultsSize, IncludeSizeLabel: b.IncludeSizeLabel}
	if len(b.Filters) > maxFilters {
		return q, invalid("filters", "has more than %d filters", maxFilters)
	}
	for i, raw := range b.Filters {
		f, err := parseFilter(raw, fields, fmt.Sprintf("filters[%d]", i), 0)
		if err != nil {
			return q, err
		}
		q.Filters = append(q.Filters, f)
	}
	if s := b.Sort; s != nil {
		if s.Field != "" && s.Field != "created_at" {
			return q, invalid("sort.field", "must be created_at")
		}
		switch s.Order {
		case "", "desc":
		case "asc":
			q.Asc = true
		default:
			return q, invalid("sort.order", "must be asc or desc")
		}
	}
	if b.Page != nil {
		if *b.Page < 1 {
			return q, invalid("page", "must be at least 1")
		}
		q.Page = *b.Page
	}
	if b.ResultsSize != nil {
		if *b.ResultsSize < 1 || *b.ResultsSize > MaxResultsSize {
			return q, invalid("results_size", "must be within 1..%d", MaxResultsSize)
		}
		q.Size = *b.ResultsSize
	}
	return q, nil
}

func parseFilter(raw json.RawMessage, fields map[string]bool, path string, depth int) (Filter, error) {
	var fb struct {
		Field *string         `json:"field"`
		Op    *string         `json:"op"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &fb); err != nil {
		return Filter{}, invalid(path, "must be an object {field, op, value}")
	}
	if fb.Op == nil {
		return Filter{}, invalid(path+".op", "is required")
	}
	f := Filter{Op: *fb.Op}
	if f.Op == "$or" {
		if depth >= maxFilterDepth {
			return f, invalid(path, "nests $or more than %d deep", maxFilterDepth)
		}
		var subs []json.RawMessage
		if err := json.Unmarshal(fb.Value, &subs); err != nil || len(subs) == 0 {
			return f, invalid(path+".value", "must be a non-empty array of filters")
		}
		if len(subs) > maxFilters {
			return f, invalid(path+".value", "has more than %d filters", maxFilters)
		}
		for i, s := range subs {
			sf, err := parseFilter(s, fields, fmt.Sprintf("%s.value[%d]", path, i), depth+1)
			if err != nil {
				return f, err
			}
			f.Or = append(f.Or, sf)
		}
		return f, nil
	}
	if fb.Field == nil || *fb.Field == "" {
		return f, invalid(path+".field", "is required")
	}
	f.Field = *fb.Field
	isBool, ok := fields[f.Field]
	if !ok {
		return f, invalid(path+".field", "cannot be filtered on: %q", f.Field)
	}
	switch f.Op {
	case "$exists", "$nexists":
		return f, nil
	case "$eq", "$neq":
		v, err := scalar(fb.Value, isBool)
		if err != nil {
			return f, invalid(path+".value", "%s", err)
		}
		f.Values = []string{v}
		return f, nil
	}
	if isBool {
		return f, invalid(path+".op", "%s is not supported on %s (use $eq or $neq)", f.Op, f.Field)
	}
	switch f.Op {
	case "$in", "$nin":
		if err := json.Unmarshal(fb.Value, &f.Values); err != nil || len(f.Values) == 0 {
			return f, invalid(path+".value", "must be a non-empty array of strings")
		}
	case "$like", "$nlike", "$contains", "$ncontains", "$starts_with", "$nstarts_with", "$ends_with", "$nends_with", "$matches", "$nmatches", "$ip_range", "$nip_range":
		v, err := scalar(fb.Value, false)
		if err != nil {
			return f, invalid(path+".value", "%s", err)
		}
		f.Values = []string{v}
		switch f.Op {
		case "$like", "$nlike":
			f.re, err = regexp.Compile(likePattern(v))
		case "$matches", "$nmatches":
			if len(v) > maxPatternLen {
				return f, invalid(path+".value", "is longer than %d bytes", maxPatternLen)
			}
			f.re, err = regexp.Compile(v)
		case "$ip_range", "$nip_range":
			f.prefix, err = parseRange(v)
		}
		if err != nil {
			return f, invalid(path+".value", "%s", err)
		}
	default:
		return f, invalid(path+".op", "%q is not supported", f.Op)
	}
	return f, nil
}

// scalar reads a filter value: a string, or for boolean fields a boolean.
func scalar(raw json.RawMessage, isBool bool) (string, error) {
	if isBool {
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", fmt.Errorf("must be true or false")
		}
		if b {
			return "true", nil
		}
		return "false", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("must be a string")
	}
	return s, nil
}

// likePattern turns a SQL LIKE pattern (% any run, _ one character) into
// a case-insensitive anchored regular expression.
func likePattern(p string) string {
	var b strings.Builder
	b.WriteString("(?is)^")
	for _, r := range p {
		switch r {
		case '%':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return b.String()
}

func parseRange(v string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(v); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("is not a CIDR range")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// holds reports whether the filter holds for a record whose fields get
// returns (present is false for an empty or missing value).
func (f *Filter) holds(get func(field string) (v string, present bool)) bool {
	if f.Op == "$or" {
		for i := range f.Or {
			if f.Or[i].holds(get) {
				return true
			}
		}
		return false
	}
	v, present := get(f.Field)
	neg := strings.HasPrefix(f.Op, "$n") && f.Op != "$nexists"
	op := f.Op
	if neg {
		op = "$" + strings.TrimPrefix(f.Op, "$n") // $neq is $eq negated, ...
	}
	var ok bool
	switch op {
	case "$exists":
		ok = present
	case "$nexists":
		ok = !present
	case "$eq":
		ok = present && v == f.Values[0] || !present && f.Values[0] == ""
	case "$in":
		for _, x := range f.Values {
			if present && v == x {
				ok = true
				break
			}
		}
	case "$like", "$matches":
		ok = present && f.re.MatchString(v)
	case "$contains":
		ok = present && strings.Contains(v, f.Values[0])
	case "$starts_with":
		ok = present && strings.HasPrefix(v, f.Values[0])
	case "$ends_with":
		ok = present && strings.HasSuffix(v, f.Values[0])
	case "$ip_range":
		ok = present && inRange(f.prefix, v)
	}
	return ok != neg
}

// inRange reports whether v (an address or a CIDR range) lies in r.
func inRange(r netip.Prefix, v string) bool {
	if a, err := netip.ParseAddr(v); err == nil {
		return r.Contains(a)
	}
	p, err := netip.ParsePrefix(v)
	return err == nil && p.Bits() >= r.Bits() && r.Contains(p.Addr())
}

// page returns the page of n sorted results q asks for, as a range.
func (q *Query) page(n int) (from, to int) {
	from = (q.Page - 1) * q.Size
	if from > n || from < 0 {
		return n, n
	}
	to = from + q.Size
	if to > n {
		to = n
	}
	return from, to
}
