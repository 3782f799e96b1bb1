package subscription_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/subscription"
)

func TestFilters(t *testing.T) {
	t.Parallel()
	ev := &fossil.Event{
		Number: 42, Stream: "orders/7", Sequence: 3, ID: "e-1", Source: "/shop/eu", Type: "order.placed",
		Doc: []byte(`{"specversion":"1.0","id":"e-1","source":"/shop/eu","type":"order.placed","subject":"o-7","datacontenttype":"application/json","region":"eu","data":{"total":12}}`),
	}
	c, err := subscription.NewCandidate(ev)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		filters string
		extra   string
		want    bool
	}{
		{`[]`, ``, true},
		{`[{"exact":{"type":"order.placed"}}]`, ``, true},
		{`[{"exact":{"type":"order"}}]`, ``, false},
		{`[{"exact":{"fossileventnumber":"42","fossilstream":"orders/7"}}]`, ``, true},
		{`[{"exact":{"fossilsequenceinstream":"3"}}]`, ``, true},
		{`[{"exact":{"missing":"x"}}]`, ``, false},
		{`[{"prefix":{"source":"/shop/"}}]`, ``, true},
		{`[{"prefix":{"fossileventnumber":"4"}}]`, ``, true},
		{`[{"suffix":{"source":"/eu"}}]`, ``, true},
		{`[{"suffix":{"region":"u"}}]`, ``, true},
		{`[{"suffix":{"subject":"8"}}]`, ``, false},
		{`[{"all":[{"prefix":{"type":"order."}},{"exact":{"region":"eu"}}]}]`, ``, true},
		{`[{"all":[{"prefix":{"type":"order."}},{"exact":{"region":"us"}}]}]`, ``, false},
		{`[{"any":[{"exact":{"region":"us"}},{"exact":{"region":"eu"}}]}]`, ``, true},
		{`[{"any":[{"exact":{"region":"us"}},{"exact":{"region":"ap"}}]}]`, ``, false},
		{`[{"not":{"exact":{"region":"us"}}}]`, ``, true},
		{`[{"not":{"exact":{"region":"eu"}}}]`, ``, false},
		{`[{"exact":{"type":"order.placed"}},{"exact":{"region":"us"}}]`, ``, false}, // ANDed
		{`[{"sql":"type = 'order.placed' AND region = 'eu'"}]`, ``, true},
		{`[{"cesql":"fossileventnumber > 41 AND fossilsequenceinstream = 3"}]`, ``, true},
		{`[{"sql":"fossilstream LIKE 'orders/%'"}]`, ``, true},
		{`[{"sql":"missing = 'x'"}]`, ``, false},       // a missing attribute: no match
		{`[{"sql":"INT(subject) > 1"}]`, ``, false},    // a failed cast: no match
		{`[{"sql":"NOT (missing = 'x')"}]`, ``, false}, // the error propagates
		{`[]`, `"source":"/shop/eu"`, true},
		{`[]`, `"source":"/shop"`, false},
		{`[]`, `"types":["a","order.placed"]`, true},
		{`[]`, `"types":["a"]`, false},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			body := `{"protocol":"SSE","filters":` + tc.filters
			if tc.extra != "" {
				body += "," + tc.extra
			}
			body += "}"
			comp, err := subscription.ParseDefinition([]byte(body))
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if got := comp.Filter.Match(c); got != tc.want {
				t.Fatalf("%s: match = %v, want %v", body, got, tc.want)
			}
		})
	}
}

// FuzzCESQL checks that no expression makes parsing panic or answer
// anything but a parsed expression or an invalid-input error.
func FuzzCESQL(f *testing.F) {
	for _, s := range []string{"source = '/orders' OR", "a = 1", ")))(", "EXISTS x", "'", "a LIKE 'b%' AND NOT c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		body, _ := json.Marshal(map[string]any{"protocol": "SSE", "filters": []any{map[string]any{"sql": src}}})
		_, _ = subscription.ParseDefinition(body)
	})
}
