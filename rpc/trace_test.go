package rpc_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"

	"github.com/fossil-events/fossil/internal/testserver"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/proto/fossil/v1/fossilv1connect"
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

// Collect and CollectStream keep the trace context of the call (its
// traceparent and tracestate metadata) on each event that has no
// traceparent attribute of its own, as POST /collect keeps its request's;
// a malformed traceparent is ignored. The stored events are read back over
// HTTP.
func TestCollectKeepsCallTraceContext(t *testing.T) {
	const (
		caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		state  = "rojo=00f067aa0ba902b7"
		own    = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"
	)
	srv := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	withOwn := jsonEvent("b", `{"n":2}`)
	withOwn.Attributes["traceparent"] = str(own)

	c := fossilv1connect.NewEventStoreClient(http.DefaultClient, srv.URL)
	r := connect.NewRequest(&fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("a", `{"n":1}`), withOwn}})
	r.Header().Set("traceparent", caller)
	r.Header().Set("tracestate", state)
	if _, err := c.Collect(ctx, r); err != nil {
		t.Fatal(err)
	}
	r = connect.NewRequest(&fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("c", `{"n":3}`)}})
	r.Header().Set("traceparent", "00-zz-bad")
	if _, err := c.Collect(ctx, r); err != nil {
		t.Fatal(err)
	}

	s := fossilv1connect.NewEventStoreClient(h2cClient(), srv.URL).CollectStream(ctx)
	s.RequestHeader().Set("traceparent", caller)
	for _, id := range []string{"d", "e"} {
		if err := s.Send(&fossilv1.CollectRequest{Stream: "orders/2", Events: []*pb.CloudEvent{jsonEvent(id, `{}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Receive(); err != nil {
			t.Fatal(err)
		}
	}

	docs := storedDocs(t, srv.URL, 10)
	want := map[string][2]string{"a": {caller, state}, "b": {own, ""}, "c": {"", ""}, "d": {caller, ""}, "e": {caller, ""}}
	if len(docs) != len(want) {
		t.Fatalf("%d events stored, want %d", len(docs), len(want))
	}
	for _, d := range docs {
		id, _ := d["id"].(string)
		tp, _ := d["traceparent"].(string)
		ts, _ := d["tracestate"].(string)
		if w := want[id]; tp != w[0] || ts != w[1] {
			t.Errorf("event %s: traceparent %q tracestate %q, want %q", id, tp, ts, w)
		}
	}
}
