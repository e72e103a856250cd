package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/lists"
	"github.com/moat-dev/moat/schemas"
)

// ListsHandler serves Castle's Lists API: lists and list items, kept as
// the compacted lists topic (internal/lists) rather than in ClickHouse.
// Every command is a Kafka transaction that answers once committed (503
// when the broker does not acknowledge in time); reads are served from
// the instance's in-memory copy of the topic, caught up first.
type ListsHandler struct {
	svc *lists.Service
	log *slog.Logger
}

// NewListsHandler returns the Lists API's handler.
func NewListsHandler(svc *lists.Service, log *slog.Logger) *ListsHandler {
	return &ListsHandler{svc: svc, log: log.With("role", "api")}
}

// Routes registers the Lists API routes on g, which must authenticate
// apps. Item updates accept PUT (rb, node, py) and POST (java); item counts
// accept POST with filters (the SDKs) and GET.
func (h *ListsHandler) Routes(g *echo.Group) {
	g.POST("/v1/lists", h.createList)
	g.GET("/v1/lists", h.allLists)
	g.POST("/v1/lists/query", h.queryLists)
	g.GET("/v1/lists/:list_id", h.getList)
	g.PUT("/v1/lists/:list_id", h.updateList)
	g.DELETE("/v1/lists/:list_id", h.deleteList)
	g.POST("/v1/lists/:list_id/items", h.createItem)
	g.POST("/v1/lists/:list_id/items/batch", h.createItems)
	g.POST("/v1/lists/:list_id/items/query", h.queryItems)
	g.POST("/v1/lists/:list_id/items/count", h.countItems)
	g.GET("/v1/lists/:list_id/items/count", h.countItems)
	g.GET("/v1/lists/:list_id/items/:item_id", h.getItem)
	g.PUT("/v1/lists/:list_id/items/:item_id", h.updateItem)
	g.POST("/v1/lists/:list_id/items/:item_id", h.updateItem)
	g.DELETE("/v1/lists/:list_id/items/:item_id/archive", h.archiveItem)
	g.PUT("/v1/lists/:list_id/items/:item_id/unarchive", h.unarchiveItem)
}

func listsBadRequest(msg string) error {
	return &httpapi.Error{Status: http.StatusBadRequest, Type: "bad_request", Message: msg}
}

func listsInvalid(msg string) error {
	return &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: msg}
}

// listsDecodeBody reads the JSON body into v: 400 for a body that is not JSON,
// 422 naming the field for a value of the wrong type. An empty body is
// accepted when optional (SDKs send none, or {}, on some routes).
func listsDecodeBody(c echo.Context, v any, optional bool) error {
	raw, err := io.ReadAll(c.Request().Body)
	if err != nil {
		if httpapi.IsTooLarge(err) {
			return httpapi.TooLarge(0)
		}
		return listsBadRequest("Could not read the request body")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if optional {
			return nil
		}
		return listsBadRequest("Request body is empty: send a JSON object")
	}
	return listsDecodeJSON(raw, v, "")
}

func listsDecodeJSON(raw []byte, v any, prefix string) error {
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if prefix != "" && field != "" {
				field = prefix + "." + field
			} else if field == "" {
				field = prefix
			}
			if field == "" {
				return listsInvalid("The body must be a JSON object")
			}
			return listsInvalid(fmt.Sprintf("%s must be %s, not a JSON %s", field, listsKindName(te.Type), te.Value))
		}
		return listsBadRequest("Malformed JSON body")
	}
	return nil
}

func listsKindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// listsError renders the service's errors as Castle's.
func (h *ListsHandler) listsError(c echo.Context, err error) error {
	var ie *lists.InvalidError
	switch {
	case errors.Is(err, lists.ErrListNotFound), errors.Is(err, lists.ErrItemNotFound):
		return &httpapi.Error{Status: http.StatusNotFound, Type: "not_found", Message: err.Error()}
	case errors.As(err, &ie):
		return listsInvalid(ie.Error())
	case errors.Is(err, lists.ErrUnavailable):
		h.log.Warn("lists command or read not served: log unavailable", "app_id", httpapi.App(c).ID, "err", err)
		return errLogUnavailable
	}
	return err
}

// listsFlexString is a JSON string, or a number taken as its text (user ids
// and ASNs are often sent as numbers).
type listsFlexString string

func (f *listsFlexString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = listsFlexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*f = listsFlexString(n.String())
		return nil
	}
	return &json.UnmarshalTypeError{Value: string(listsJSONKind(b)), Type: reflect.TypeOf("")}
}

// listsJSONKind names the JSON type of a value.
func listsJSONKind(b []byte) string {
	switch b = bytes.TrimSpace(b); {
	case len(b) == 0:
		return "value"
	case b[0] == '{':
		return "object"
	case b[0] == '[':
		return "array"
	case b[0] == 't' || b[0] == 'f':
		return "bool"
	case b[0] == 'n':
		return "null"
	}
	return "value"
}

type listsListBody struct {
	Name                       *string         `json:"name"`
	Color                      *string         `json:"color"`
	Description                *string         `json:"description"`
	PrimaryField               *string         `json:"primary_field"`
	SecondaryField             *string         `json:"secondary_field"`
	DefaultItemArchivationTime json.RawMessage `json:"default_item_archivation_time"`
}

func listsStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// listsArchivationTime reads default_item_archivation_time: nil when absent,
// clear when null.
func listsArchivationTime(raw json.RawMessage) (n *int, clear bool, err error) {
	if len(raw) == 0 {
		return nil, false, nil
	}
	if string(raw) == "null" {
		return nil, true, nil
	}
	var v int
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, false, listsInvalid("default_item_archivation_time must be a whole number of seconds")
	}
	return &v, false, nil
}

func (h *ListsHandler) createList(c echo.Context) error {
	var b listsListBody
	if err := listsDecodeBody(c, &b, false); err != nil {
		return err
	}
	n, _, err := listsArchivationTime(b.DefaultItemArchivationTime)
	if err != nil {
		return err
	}
	in := lists.ListInput{Name: listsStr(b.Name), Color: listsStr(b.Color), PrimaryField: listsStr(b.PrimaryField),
		SecondaryField: listsStr(b.SecondaryField), Description: listsStr(b.Description)}
	if n != nil {
		if *n == 0 {
			return listsInvalid(fmt.Sprintf("default_item_archivation_time must be within 1..%d seconds", lists.MaxArchivationTime))
		}
		in.DefaultItemArchivationTime = *n
	}
	l, err := h.svc.CreateList(c.Request().Context(), httpapi.App(c).ID, in)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusCreated, l)
}

func (h *ListsHandler) allLists(c echo.Context) error {
	ls, err := h.svc.Lists(c.Request().Context(), httpapi.App(c).ID)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, ls)
}

func (h *ListsHandler) queryLists(c echo.Context) error {
	var b lists.QueryBody
	if err := listsDecodeBody(c, &b, true); err != nil {
		return err
	}
	q, err := lists.ListQuery(b)
	if err != nil {
		return h.listsError(c, err)
	}
	ls, err := h.svc.QueryLists(c.Request().Context(), httpapi.App(c).ID, q)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, ls)
}

func (h *ListsHandler) getList(c echo.Context) error {
	l, err := h.svc.List(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"))
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, l)
}

func (h *ListsHandler) updateList(c echo.Context) error {
	var b listsListBody
	if err := listsDecodeBody(c, &b, true); err != nil {
		return err
	}
	n, clear, err := listsArchivationTime(b.DefaultItemArchivationTime)
	if err != nil {
		return err
	}
	p := lists.ListPatch{Name: b.Name, Color: b.Color, Description: b.Description, PrimaryField: b.PrimaryField,
		SecondaryField: b.SecondaryField, DefaultItemArchivationTime: n, ClearArchivationTime: clear}
	l, err := h.svc.UpdateList(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), p)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, l)
}

func (h *ListsHandler) deleteList(c echo.Context) error {
	if err := h.svc.DeleteList(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id")); err != nil {
		return h.listsError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

type listsItemBody struct {
	PrimaryValue   *listsFlexString    `json:"primary_value"`
	SecondaryValue *listsFlexString    `json:"secondary_value"`
	Comment        *string             `json:"comment"`
	Author         *schemas.ListAuthor `json:"author"`
	AutoArchivesAt *string             `json:"auto_archives_at"`
	Mode           *string             `json:"mode"`
}

// listsParseTime accepts RFC 3339 times (Z or an offset) and the naive ISO
// 8601 times Python SDKs send (taken as UTC).
func listsParseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse("2006-01-02T15:04:05.999999999", s); err == nil {
		return t.UTC(), true
	}
	return time.Time{}, false
}

func (b *listsItemBody) input() (lists.ItemInput, error) {
	var in lists.ItemInput
	if b.PrimaryValue != nil {
		in.PrimaryValue = string(*b.PrimaryValue)
	}
	if b.SecondaryValue != nil {
		in.SecondaryValue = string(*b.SecondaryValue)
	}
	in.Comment, in.Mode = listsStr(b.Comment), listsStr(b.Mode)
	if b.Author != nil {
		in.Author = *b.Author
	}
	if b.AutoArchivesAt != nil && *b.AutoArchivesAt != "" {
		t, ok := listsParseTime(*b.AutoArchivesAt)
		if !ok {
			return in, &lists.InvalidError{Field: "auto_archives_at", Message: "must be an ISO 8601 time"}
		}
		in.AutoArchivesAt = &t
	}
	return in, nil
}

func (h *ListsHandler) createItem(c echo.Context) error {
	var b listsItemBody
	if err := listsDecodeBody(c, &b, false); err != nil {
		return err
	}
	in, err := b.input()
	if err != nil {
		return h.listsError(c, err)
	}
	it, err := h.svc.CreateItem(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), in)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusCreated, it)
}

func (h *ListsHandler) createItems(c echo.Context) error {
	var b struct {
		Items *[]json.RawMessage `json:"items"`
	}
	if err := listsDecodeBody(c, &b, false); err != nil {
		return err
	}
	if b.Items == nil {
		return listsInvalid("items is required")
	}
	if len(*b.Items) > lists.MaxBatchItems {
		return listsInvalid("items has more than " + strconv.Itoa(lists.MaxBatchItems) + " items")
	}
	ins := make([]lists.ItemInput, len(*b.Items))
	for i, raw := range *b.Items {
		var ib listsItemBody
		if err := listsDecodeJSON(raw, &ib, fmt.Sprintf("items[%d]", i)); err != nil {
			ins[i].Invalid = err
			continue
		}
		in, err := ib.input()
		if err != nil {
			in.Invalid = err
		}
		ins[i] = in
	}
	res, err := h.svc.CreateItems(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), ins)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusCreated, res)
}

func (h *ListsHandler) itemQuery(c echo.Context) (lists.Query, error) {
	var b lists.QueryBody
	if err := listsDecodeBody(c, &b, true); err != nil {
		return lists.Query{}, err
	}
	q, err := lists.ItemQuery(b)
	if err != nil {
		return q, h.listsError(c, err)
	}
	return q, nil
}

func (h *ListsHandler) queryItems(c echo.Context) error {
	q, err := h.itemQuery(c)
	if err != nil {
		return err
	}
	items, err := h.svc.QueryItems(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), q)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, items)
}

func (h *ListsHandler) countItems(c echo.Context) error {
	q, err := h.itemQuery(c)
	if err != nil {
		return err
	}
	n, err := h.svc.CountItems(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), q)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, map[string]int{"total_count": n})
}

func (h *ListsHandler) getItem(c echo.Context) error {
	it, err := h.svc.Item(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), c.Param("item_id"))
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, it)
}

func (h *ListsHandler) updateItem(c echo.Context) error {
	var b struct {
		Comment *string `json:"comment"`
	}
	if err := listsDecodeBody(c, &b, false); err != nil {
		return err
	}
	if b.Comment == nil {
		return listsInvalid("comment is required")
	}
	it, err := h.svc.UpdateItem(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), c.Param("item_id"), *b.Comment)
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, it)
}

func (h *ListsHandler) archiveItem(c echo.Context) error {
	it, err := h.svc.ArchiveItem(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), c.Param("item_id"))
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, it)
}

func (h *ListsHandler) unarchiveItem(c echo.Context) error {
	it, err := h.svc.UnarchiveItem(c.Request().Context(), httpapi.App(c).ID, c.Param("list_id"), c.Param("item_id"))
	if err != nil {
		return h.listsError(c, err)
	}
	return c.JSON(http.StatusOK, it)
}
