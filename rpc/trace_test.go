package rpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
)

// Subscribe gives back the trace context an event was collected with, as
// its traceparent and tracestate attributes (the CloudEvents
// distributed-tracing extension), history and live alike.
func TestSubscribeCarriesTraceContext(t *testing.T) {
	const (
		traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		tracestate  = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
		live        = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"
	)
	for _, proto := range []string{"connect", "connect-grpc-h2c", "grpc-go"} {
		t.Run(proto, func(t *testing.T) {
			srv := testserver.Start(t)
			var c caller
			for _, x := range callers(t, srv.URL, "") {
				if x.name == proto {
					c = x
				}
			}
			srv.MustPost(t, "orders/1", testserver.Event{ID: "a"}, "traceparent", traceparent, "tracestate", tracestate)
			srv.MustPost(t, "orders/1", testserver.Event{ID: "b"})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			recv, err := c.subscribe(ctx, &fossilv1.SubscribeRequest{Templates: []string{"orders/{id}"}})
			if err != nil {
				t.Fatal(err)
			}
			got := receive(t, recv, 2)
			srv.MustPost(t, "orders/1", testserver.Event{ID: "c"}, "traceparent", live)
			got = append(got, receive(t, recv, 1)...)
			want := [][2]string{{traceparent, tracestate}, {"", ""}, {live, ""}}
			for i, e := range got {
				attrs := e.GetEvent().GetAttributes()
				if tp, ts := attrs["traceparent"].GetCeString(), attrs["tracestate"].GetCeString(); tp != want[i][0] || ts != want[i][1] {
					t.Errorf("event %d: traceparent %q tracestate %q, want %q", e.GetEventNumber(), tp, ts, want[i])
				}
			}
		})
	}
}
