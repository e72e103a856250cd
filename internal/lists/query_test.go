package lists

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
)

func body(t *testing.T, s string) QueryBody {
	t.Helper()
	var b QueryBody
	if err := json.Unmarshal([]byte(s), &b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestItemQueryValidation(t *testing.T) {
	for _, tt := range []struct{ body, field string }{
		{`{"filters":[{"field":"primary_value","value":"x"}]}`, "filters[0].op"},
		{`{"filters":[{"op":"$eq","value":"x"}]}`, "filters[0].field"},
		{`{"filters":[{"field":"name","op":"$eq","value":"x"}]}`, "filters[0].field"},
		{`{"filters":[{"field":"primary_value","op":"$geo","value":"x"}]}`, "filters[0].op"},
		{`{"filters":[{"field":"primary_value","op":"$eq","value":5}]}`, "filters[0].value"},
		{`{"filters":[{"field":"archived","op":"$eq","value":"no"}]}`, "filters[0].value"},
		{`{"filters":[{"field":"archived","op":"$contains","value":"t"}]}`, "filters[0].op"},
		{`{"filters":[{"field":"primary_value","op":"$in","value":[]}]}`, "filters[0].value"},
		{`{"filters":[{"field":"primary_value","op":"$matches","value":"("}]}`, "filters[0].value"},
		{`{"filters":[{"field":"primary_value","op":"$ip_range","value":"nope"}]}`, "filters[0].value"},
		{`{"filters":[{"op":"$or","value":[{"field":"x","op":"$eq","value":"1"}]}]}`, "filters[0].value[0].field"},
		{`{"filters":[{"op":"$or","value":[]}]}`, "filters[0].value"},
		{`{"filters":["x"]}`, "filters[0]"},
		{`{"sort":{"field":"primary_value","order":"asc"}}`, "sort.field"},
		{`{"sort":{"field":"created_at","order":"up"}}`, "sort.order"},
		{`{"page":0}`, "page"},
		{`{"results_size":1001}`, "results_size"},
	} {
		_, err := ItemQuery(body(t, tt.body))
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Field != tt.field {
			t.Errorf("%s: %v, want an invalid %s", tt.body, err, tt.field)
		}
	}
	q, err := ItemQuery(body(t, `{}`))
	if err != nil || q.Page != 1 || q.Size != DefaultResultsSize || q.Asc {
		t.Errorf("defaults: %+v %v", q, err)
	}
}

func TestFilterSemantics(t *testing.T) {
	rec := map[string]string{"primary_value": "203.0.113.7", "comment": "Fraud ring", "archived": "false"}
	get := func(f string) (string, bool) { v := rec[f]; return v, v != "" }
	for _, tt := range []struct {
		filter string
		want   bool
	}{
		{`{"field":"primary_value","op":"$eq","value":"203.0.113.7"}`, true},
		{`{"field":"primary_value","op":"$neq","value":"203.0.113.7"}`, false},
		{`{"field":"primary_value","op":"$in","value":["1.1.1.1","203.0.113.7"]}`, true},
		{`{"field":"primary_value","op":"$nin","value":["203.0.113.7"]}`, false},
		{`{"field":"secondary_value","op":"$exists"}`, false},
		{`{"field":"secondary_value","op":"$nexists"}`, true},
		{`{"field":"comment","op":"$like","value":"fraud%"}`, true},
		{`{"field":"comment","op":"$nlike","value":"%ring"}`, false},
		{`{"field":"comment","op":"$contains","value":"ring"}`, true},
		{`{"field":"comment","op":"$ncontains","value":"ring"}`, false},
		{`{"field":"comment","op":"$starts_with","value":"Fraud"}`, true},
		{`{"field":"comment","op":"$nstarts_with","value":"Fraud"}`, false},
		{`{"field":"comment","op":"$ends_with","value":"ring"}`, true},
		{`{"field":"comment","op":"$nends_with","value":"x"}`, true},
		{`{"field":"comment","op":"$matches","value":"^F.*g$"}`, true},
		{`{"field":"comment","op":"$nmatches","value":"^F"}`, false},
		{`{"field":"primary_value","op":"$ip_range","value":"203.0.113.0/24"}`, true},
		{`{"field":"primary_value","op":"$nip_range","value":"203.0.113.0/24"}`, false},
		{`{"field":"archived","op":"$eq","value":false}`, true},
		{`{"field":"archived","op":"$neq","value":false}`, false},
		{`{"op":"$or","value":[{"field":"archived","op":"$eq","value":true},{"field":"comment","op":"$contains","value":"ring"}]}`, true},
		{`{"op":"$or","value":[{"field":"archived","op":"$eq","value":true},{"field":"comment","op":"$contains","value":"x"}]}`, false},
	} {
		q, err := ItemQuery(body(t, `{"filters":[`+tt.filter+`]}`))
		if err != nil {
			t.Errorf("%s: %v", tt.filter, err)
			continue
		}
		if got := q.Filters[0].holds(get); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.filter, got, tt.want)
		}
	}
	// A CIDR item is in a range that contains it.
	if !inRange(mustRange(t, "10.0.0.0/8"), "10.1.0.0/16") || inRange(mustRange(t, "10.1.0.0/16"), "10.0.0.0/8") {
		t.Error("range containment")
	}
}

func mustRange(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := parseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPage(t *testing.T) {
	q := Query{Page: 2, Size: 3}
	if from, to := q.page(7); from != 3 || to != 6 {
		t.Errorf("page 2: %d..%d", from, to)
	}
	q.Page = 3
	if from, to := q.page(7); from != 6 || to != 7 {
		t.Errorf("page 3: %d..%d", from, to)
	}
	q.Page = 9
	if from, to := q.page(7); from != 7 || to != 7 {
		t.Errorf("page 9: %d..%d", from, to)
	}
}
