package sink

import (
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

func TestTraceContext(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name           string
		ext            map[string]any
		wantTP, wantTS string
	}{
		{"none", nil, "", ""},
		{"traceparent", map[string]any{"traceparent": tp}, tp, ""},
		{"both", map[string]any{"traceparent": tp, "tracestate": "rojo=1,congo=2"}, tp, "rojo=1,congo=2"},
		{"invalid traceparent", map[string]any{"traceparent": "00-zz-bad", "tracestate": "rojo=1"}, "", ""},
		{"all-zero trace id", map[string]any{"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, "", ""},
		{"invalid tracestate is dropped", map[string]any{"traceparent": tp, "tracestate": "not a list member"}, tp, ""},
		{"tracestate alone", map[string]any{"tracestate": "rojo=1"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := event.New()
			ev.SetID("1")
			ev.SetSource("/t")
			ev.SetType("t")
			for k, v := range tc.ext {
				ev.SetExtension(k, v)
			}
			tpGot, tsGot := TraceContext(&ev)
			if tpGot != tc.wantTP || tsGot != tc.wantTS {
				t.Fatalf("TraceContext = %q, %q; want %q, %q", tpGot, tsGot, tc.wantTP, tc.wantTS)
			}
			// The binary-mode headers: the attributes as they are, the W3C
			// headers only when valid.
			hs, _ := BinaryHeaders(&Message{Event: &ev, Source: "/t"}, "ce_")
			got := map[string]string{}
			for _, h := range hs {
				if _, dup := got[h.Name]; dup {
					t.Fatalf("header %s twice", h.Name)
				}
				got[h.Name] = h.Value
			}
			want := map[string]string{"traceparent": tc.wantTP, "tracestate": tc.wantTS}
			for k, v := range tc.ext {
				want["ce_"+k] = v.(string)
			}
			for _, name := range []string{"traceparent", "tracestate", "ce_traceparent", "ce_tracestate"} {
				if got[name] != want[name] {
					t.Errorf("header %s = %q, want %q", name, got[name], want[name])
				}
			}
		})
	}
}
