package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/api"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/lists"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	secretA = "lists-secret-a-0123456789abcdef"
	secretB = "lists-secret-b-0123456789abcdef"
)

type listsServer struct {
	t       *testing.T
	url     string
	cluster *kfake.Cluster
}

// newListsServer serves the Lists API over HTTP on a kfake broker (TCP),
// for two apps.
func newListsServer(t *testing.T, timeout time.Duration) *listsServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := kafka.DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Partitions = 3
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = kafka.EnsureTopics(ctx, cl, cfg, schemas.AllTopics()...)
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := lists.NewFollower(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(fctx) }()
	t.Cleanup(func() { fcancel(); <-done })
	w, err := lists.NewWriter(cfg, timeout, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	reg, err := apps.New([]apps.App{{ID: "app-a", Name: "A", Secret: secretA}, {ID: "app-b", Name: "B", Secret: secretB}})
	if err != nil {
		t.Fatal(err)
	}
	e := httpapi.New(httpapi.Config{BodyLimit: 1 << 20}, log)
	e.Use(httpapi.Authenticate(reg))
	api.NewListsHandler(lists.NewService(f, w, timeout, log), log).Routes(e.Group(""))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &listsServer{t: t, url: srv.URL, cluster: c}
}

func (s *listsServer) do(method, path, secret, body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.SetBasicAuth("", secret)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// want calls a route and checks its status, returning the decoded body.
func (s *listsServer) want(status int, method, path, secret, body string) map[string]any {
	s.t.Helper()
	code, resp := s.do(method, path, secret, body)
	if code != status {
		s.t.Fatalf("%s %s: %d %s, want %d", method, path, code, resp, status)
	}
	var m map[string]any
	if strings.HasPrefix(resp, "{") {
		if err := json.Unmarshal([]byte(resp), &m); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, resp)
		}
	}
	return m
}

func (s *listsServer) wantArray(method, path, secret, body string) []map[string]any {
	s.t.Helper()
	code, resp := s.do(method, path, secret, body)
	var out []map[string]any
	if err := json.Unmarshal([]byte(resp), &out); code != 200 || err != nil {
		s.t.Fatalf("%s %s: %d %s (%v)", method, path, code, resp, err)
	}
	return out
}

func keysOf(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

const (
	listKeys = "archived_at,color,created_at,default_item_archivation_time,description,id,name,primary_field,secondary_field"
	itemKeys = "archived,archived_at,author,auto_archives_at,comment,created_at,id,list_id,primary_value,secondary_value"
)

// TestListsAPIRoutes walks every route's success path and checks Castle's
// status codes and object shapes.
func TestListsAPIRoutes(t *testing.T) {
	s := newListsServer(t, 5*time.Second)
	l := s.want(201, "POST", "/v1/lists", secretA, `{"name":"Malicious IPs","description":"We block these IPs","color":"$red",
		"primary_field":"ip.value","default_item_archivation_time":2592000}`)
	if keysOf(l) != listKeys || l["color"] != "$red" || l["primary_field"] != "ip.value" || l["secondary_field"] != nil ||
		l["default_item_archivation_time"] != 2592000.0 || l["archived_at"] != nil || !strings.HasSuffix(l["created_at"].(string), "Z") {
		t.Errorf("created list %v", l)
	}
	id := l["id"].(string)
	base := "/v1/lists/" + id
	if all := s.wantArray("GET", "/v1/lists", secretA, ""); len(all) != 1 || all[0]["id"] != id {
		t.Errorf("all lists %v", all)
	}
	if got := s.want(200, "GET", base, secretA, "{}"); got["name"] != "Malicious IPs" {
		t.Errorf("get list %v", got)
	}
	up := s.want(200, "PUT", base, secretA, `{"name":"Bad IPs","color":"green","default_item_archivation_time":null,"primary_field":"ip.value"}`)
	if up["name"] != "Bad IPs" || up["color"] != "$green" || up["default_item_archivation_time"] != nil || up["description"] != "We block these IPs" {
		t.Errorf("updated list %v", up)
	}

	it := s.want(201, "POST", base+"/items", secretA, `{"primary_value":"203.0.113.7","author":{"type":"$analyst_email","identifier":"ana@example.com"},
		"comment":"Fraud ring","auto_archives_at":"2099-01-01T00:00:00Z"}`)
	if keysOf(it) != itemKeys || it["list_id"] != id || it["archived"] != false || it["archived_at"] != nil || it["secondary_value"] != nil ||
		it["auto_archives_at"] != "2099-01-01T00:00:00.000Z" || it["comment"] != "Fraud ring" {
		t.Errorf("created item %v", it)
	}
	author, _ := it["author"].(map[string]any)
	if author["type"] != "$analyst_email" || author["identifier"] != "ana@example.com" {
		t.Errorf("author %v", it["author"])
	}
	itemPath := base + "/items/" + it["id"].(string)
	batch := s.want(201, "POST", base+"/items/batch", secretA, `{"items":[
		{"primary_value":"198.51.100.0/24","author":{"type":"$other","identifier":"import"}},
		{"primary_value":"203.0.113.7","author":{"type":"$other","identifier":"import"}},
		{"primary_value":"not-an-ip","author":{"type":"$other","identifier":"import"}},
		{"primary_value":["x"],"author":{"type":"$other","identifier":"import"}}]}`)
	if keysOf(batch) != "created,errored,replaced,total_processed,total_received,updated" || batch["total_received"] != 4.0 ||
		batch["total_processed"] != 1.0 || batch["created"] != 1.0 || batch["errored"] != 3.0 {
		t.Errorf("batch %v", batch)
	}
	if got := s.want(200, "GET", itemPath, secretA, ""); got["primary_value"] != "203.0.113.7" {
		t.Errorf("get item %v", got)
	}
	for _, verb := range []string{"PUT", "POST"} {
		c := "Reviewed via " + verb
		if got := s.want(200, verb, itemPath, secretA, `{"comment":"`+c+`"}`); got["comment"] != c || keysOf(got) != itemKeys {
			t.Errorf("%s item: %v", verb, got)
		}
	}
	if got := s.want(200, "DELETE", itemPath+"/archive", secretA, ""); got["archived"] != true || got["archived_at"] == nil {
		t.Errorf("archive %v", got)
	}
	if got := s.want(200, "PUT", itemPath+"/unarchive", secretA, "{}"); got["archived"] != false || got["archived_at"] != nil {
		t.Errorf("unarchive %v", got)
	}
	items := s.wantArray("POST", base+"/items/query", secretA, `{"filters":[{"field":"primary_value","op":"$ip_range","value":"198.51.0.0/16"}]}`)
	if len(items) != 1 || items[0]["primary_value"] != "198.51.100.0/24" {
		t.Errorf("query %v", items)
	}
	for _, verb := range []string{"POST", "GET"} {
		if got := s.want(200, verb, base+"/items/count", secretA, `{"filters":[{"field":"archived","op":"$eq","value":false}]}`); keysOf(got) != "total_count" || got["total_count"] != 2.0 {
			t.Errorf("%s count %v", verb, got)
		}
	}
	if got := s.want(200, "GET", base+"/items/count", secretA, ""); got["total_count"] != 2.0 {
		t.Errorf("count without body %v", got)
	}
	ql := s.wantArray("POST", "/v1/lists/query", secretA, `{"filters":[{"field":"primary_field","op":"$eq","value":"ip.value"},
		{"field":"archived","op":"$eq","value":false}],"sort":{"field":"created_at","order":"asc"},"page":1,"results_size":10,"include_size_label":true}`)
	if len(ql) != 1 || ql[0]["id"] != id || ql[0]["size_label"] != "2" {
		t.Errorf("list query %v", ql)
	}
	if ql := s.wantArray("POST", "/v1/lists/query", secretA, `{"filters":[{"field":"primary_field","op":"$eq","value":"user.id"}]}`); len(ql) != 0 {
		t.Errorf("list query matched %v", ql)
	}

	code, body := s.do("DELETE", base, secretA, "")
	if code != 204 || body != "" {
		t.Errorf("delete list: %d %q", code, body)
	}
	if got := s.want(404, "GET", base, secretA, ""); got["type"] != "not_found" || got["message"] != "List not found" {
		t.Errorf("deleted list %v", got)
	}
	if got := s.want(404, "GET", itemPath, secretA, ""); got["type"] != "not_found" {
		t.Errorf("deleted list's item %v", got)
	}
}

// TestListsAPIErrors checks the error statuses: 400 for bodies that are
// not JSON, 422 naming the field, 404 for unknown (or another app's) lists
// and items, 401 without a secret.
func TestListsAPIErrors(t *testing.T) {
	s := newListsServer(t, 5*time.Second)
	l := s.want(201, "POST", "/v1/lists", secretA, `{"name":"Users","color":"$blue","primary_field":"user.id","secondary_field":"device.fingerprint"}`)
	base := "/v1/lists/" + l["id"].(string)
	it := s.want(201, "POST", base+"/items", secretA, `{"primary_value":12345,"author":{"type":"$user","identifier":"u9"}}`)
	if it["primary_value"] != "12345" {
		t.Errorf("numeric primary value: %v", it)
	}
	itemPath := base + "/items/" + it["id"].(string)
	author := `"author":{"type":"$user","identifier":"u9"}`
	long := strings.Repeat("x", 600)
	batch := make([]string, lists.MaxBatchItems+1)
	for i := range batch {
		batch[i] = fmt.Sprintf(`{"primary_value":"u%d",%s}`, i, author)
	}
	for _, tt := range []struct {
		name, method, path, secret, body string
		status                           int
		typ, msg                         string
	}{
		{"no secret", "GET", "/v1/lists", "", "", 401, "unauthorized", ""},
		{"bad json", "POST", "/v1/lists", secretA, `{"name":`, 400, "bad_request", "Malformed JSON"},
		{"empty body", "POST", "/v1/lists", secretA, ``, 400, "bad_request", ""},
		{"not an object", "POST", "/v1/lists", secretA, `[1]`, 422, "invalid_parameters", "JSON object"},
		{"no name", "POST", "/v1/lists", secretA, `{"color":"$red","primary_field":"ip.value"}`, 422, "invalid_parameters", "name is required"},
		{"name type", "POST", "/v1/lists", secretA, `{"name":5,"color":"$red","primary_field":"ip.value"}`, 422, "invalid_parameters", "name must be a string"},
		{"long name", "POST", "/v1/lists", secretA, `{"name":"` + long + `","color":"$red","primary_field":"ip.value"}`, 422, "invalid_parameters", "name is longer"},
		{"no color", "POST", "/v1/lists", secretA, `{"name":"x","primary_field":"ip.value"}`, 422, "invalid_parameters", "color is required"},
		{"bad color", "POST", "/v1/lists", secretA, `{"name":"x","color":"$pink","primary_field":"ip.value"}`, 422, "invalid_parameters", "color must be one of"},
		{"no primary field", "POST", "/v1/lists", secretA, `{"name":"x","color":"$red"}`, 422, "invalid_parameters", "primary_field is required"},
		{"bad primary field", "POST", "/v1/lists", secretA, `{"name":"x","color":"$red","primary_field":"ip.city"}`, 422, "invalid_parameters", "primary_field must be one of"},
		{"same fields", "POST", "/v1/lists", secretA, `{"name":"x","color":"$red","primary_field":"user.id","secondary_field":"user.id"}`, 422, "invalid_parameters", "secondary_field"},
		{"archivation 0", "POST", "/v1/lists", secretA, `{"name":"x","color":"$red","primary_field":"user.id","default_item_archivation_time":0}`, 422, "invalid_parameters", "default_item_archivation_time"},
		{"archivation type", "POST", "/v1/lists", secretA, `{"name":"x","color":"$red","primary_field":"user.id","default_item_archivation_time":"1d"}`, 422, "invalid_parameters", "default_item_archivation_time"},
		{"change primary field", "PUT", base, secretA, `{"primary_field":"ip.value"}`, 422, "invalid_parameters", "primary_field cannot be changed"},
		{"unknown list", "GET", "/v1/lists/nope", secretA, "", 404, "not_found", "List not found"},
		{"other app's list", "GET", base, secretB, "", 404, "not_found", "List not found"},
		{"other app updates", "PUT", base, secretB, `{"name":"mine"}`, 404, "not_found", "List not found"},
		{"other app deletes", "DELETE", base, secretB, "", 404, "not_found", "List not found"},
		{"other app adds", "POST", base + "/items", secretB, `{"primary_value":"u1",` + author + `}`, 404, "not_found", "List not found"},
		{"other app queries", "POST", base + "/items/query", secretB, `{}`, 404, "not_found", "List not found"},
		{"other app counts", "GET", base + "/items/count", secretB, ``, 404, "not_found", "List not found"},
		{"other app's item", "GET", itemPath, secretB, "", 404, "not_found", "List not found"},
		{"other app archives", "DELETE", itemPath + "/archive", secretB, "", 404, "not_found", "List not found"},
		{"other app unarchives", "PUT", itemPath + "/unarchive", secretB, "", 404, "not_found", "List not found"},
		{"unknown item", "GET", base + "/items/nope", secretA, "", 404, "not_found", "List item not found"},
		{"unknown item archive", "DELETE", base + "/items/nope/archive", secretA, "", 404, "not_found", "List item not found"},
		{"no primary value", "POST", base + "/items", secretA, `{` + author + `}`, 422, "invalid_parameters", "primary_value is required"},
		{"long primary value", "POST", base + "/items", secretA, `{"primary_value":"` + long + `",` + author + `}`, 422, "invalid_parameters", "primary_value is longer than 512"},
		{"primary value type", "POST", base + "/items", secretA, `{"primary_value":{"a":1},` + author + `}`, 422, "invalid_parameters", "primary_value must be a string"},
		{"no author", "POST", base + "/items", secretA, `{"primary_value":"u2"}`, 422, "invalid_parameters", "author is required"},
		{"bad author type", "POST", base + "/items", secretA, `{"primary_value":"u2","author":{"type":"$robot","identifier":"x"}}`, 422, "invalid_parameters", "author.type must be one of"},
		{"author type type", "POST", base + "/items", secretA, `{"primary_value":"u2","author":{"type":1,"identifier":"x"}}`, 422, "invalid_parameters", "author.type must be a string"},
		{"no identifier", "POST", base + "/items", secretA, `{"primary_value":"u2","author":{"type":"$user"}}`, 422, "invalid_parameters", "author.identifier is required"},
		{"bad time", "POST", base + "/items", secretA, `{"primary_value":"u2","auto_archives_at":"tomorrow",` + author + `}`, 422, "invalid_parameters", "auto_archives_at"},
		{"bad mode", "POST", base + "/items", secretA, `{"primary_value":"u2","mode":"$merge",` + author + `}`, 422, "invalid_parameters", "mode must be one of"},
		{"duplicate", "POST", base + "/items", secretA, `{"primary_value":"12345",` + author + `}`, 422, "invalid_parameters", "primary_value is already on the list"},
		{"long comment", "POST", base + "/items", secretA, `{"primary_value":"u3","comment":"` + strings.Repeat("c", 1001) + `",` + author + `}`, 422, "invalid_parameters", "comment is longer"},
		{"batch without items", "POST", base + "/items/batch", secretA, `{}`, 422, "invalid_parameters", "items is required"},
		{"batch empty", "POST", base + "/items/batch", secretA, `{"items":[]}`, 422, "invalid_parameters", "items must be a non-empty array"},
		{"batch too big", "POST", base + "/items/batch", secretA, `{"items":[` + strings.Join(batch, ",") + `]}`, 422, "invalid_parameters", "items has more than 1000"},
		{"update without comment", "PUT", itemPath, secretA, `{}`, 422, "invalid_parameters", "comment is required"},
		{"query bad op", "POST", base + "/items/query", secretA, `{"filters":[{"field":"primary_value","op":"$geo","value":"x"}]}`, 422, "invalid_parameters", "filters[0].op"},
		{"query bad json", "POST", base + "/items/query", secretA, `{"filters":`, 400, "bad_request", ""},
		{"query page type", "POST", base + "/items/query", secretA, `{"page":"2"}`, 422, "invalid_parameters", "page must be a whole number"},
		{"list query bad field", "POST", "/v1/lists/query", secretA, `{"filters":[{"field":"primary_value","op":"$eq","value":"x"}]}`, 422, "invalid_parameters", "filters[0].field"},
	} {
		code, body := s.do(tt.method, tt.path, tt.secret, tt.body)
		var e struct{ Type, Message string }
		_ = json.Unmarshal([]byte(body), &e)
		if code != tt.status || e.Type != tt.typ || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("%s: %d %s, want %d %s %q", tt.name, code, body, tt.status, tt.typ, tt.msg)
		}
	}
	// Nothing refused changed anything.
	if got := s.want(200, "GET", base+"/items/count", secretA, ""); got["total_count"] != 1.0 {
		t.Errorf("count after refusals %v", got)
	}
	if all := s.wantArray("GET", "/v1/lists", secretB, ""); len(all) != 0 {
		t.Errorf("app b sees %v", all)
	}
}

// TestListsAPIQueryPaging checks filters, sort and paging of item queries.
func TestListsAPIQueryPaging(t *testing.T) {
	s := newListsServer(t, 5*time.Second)
	l := s.want(201, "POST", "/v1/lists", secretA, `{"name":"Emails","color":"$yellow","primary_field":"user.email"}`)
	base := "/v1/lists/" + l["id"].(string)
	var ids []string
	for i := 0; i < 7; i++ {
		it := s.want(201, "POST", base+"/items", secretA, fmt.Sprintf(`{"primary_value":"User%d@Example.com","comment":"c%d","author":{"type":"$other","identifier":"t"}}`, i, i%2))
		ids = append(ids, it["id"].(string))
	}
	s.want(200, "DELETE", base+"/items/"+ids[3]+"/archive", secretA, "")
	page := func(body string) []string {
		var out []string
		for _, it := range s.wantArray("POST", base+"/items/query", secretA, body) {
			out = append(out, it["id"].(string))
		}
		return out
	}
	eq := func(name string, got, want []string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	var newest []string
	for i := len(ids) - 1; i >= 0; i-- {
		newest = append(newest, ids[i])
	}
	eq("default order (newest first)", page(`{}`), newest)
	eq("asc page 1", page(`{"sort":{"field":"created_at","order":"asc"},"results_size":3}`), ids[:3])
	eq("asc page 3", page(`{"sort":{"field":"created_at","order":"asc"},"results_size":3,"page":3}`), ids[6:])
	eq("past the end", page(`{"results_size":3,"page":4}`), nil)
	eq("desc page 2", page(`{"sort":{"field":"created_at","order":"desc"},"results_size":3,"page":2}`), newest[3:6])
	eq("archived", page(`{"filters":[{"field":"archived","op":"$eq","value":true}]}`), []string{ids[3]})
	eq("normalized $eq", page(`{"filters":[{"field":"primary_value","op":"$eq","value":"USER2@example.com"}]}`), []string{ids[2]})
	eq("$in", page(`{"sort":{"order":"asc"},"filters":[{"field":"primary_value","op":"$in","value":["user1@example.com","user5@example.com"]}]}`), []string{ids[1], ids[5]})
	eq("and + $or", page(`{"sort":{"order":"asc"},"filters":[{"field":"comment","op":"$eq","value":"c1"},
		{"op":"$or","value":[{"field":"primary_value","op":"$starts_with","value":"user1"},{"field":"archived","op":"$eq","value":true}]}]}`), []string{ids[1], ids[3]})
	eq("$like", page(`{"sort":{"order":"asc"},"filters":[{"field":"primary_value","op":"$like","value":"USER6%"}]}`), []string{ids[6]})
	if got := s.want(200, "POST", base+"/items/count", secretA, `{"filters":[{"field":"comment","op":"$eq","value":"c0"}]}`); got["total_count"] != 4.0 {
		t.Errorf("count %v", got)
	}
}

// TestListsAPIUnavailable: a command the broker cannot take answers 503.
func TestListsAPIUnavailable(t *testing.T) {
	s := newListsServer(t, time.Second)
	s.want(201, "POST", "/v1/lists", secretA, `{"name":"x","color":"$red","primary_field":"user.id"}`)
	s.cluster.Close()
	got := s.want(503, "POST", "/v1/lists", secretA, `{"name":"y","color":"$red","primary_field":"user.id"}`)
	if got["type"] != "service_unavailable" {
		t.Errorf("%v", got)
	}
}
