package rpc_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fossil-events/fossil/internal/testserver"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/proto/fossil/v1/fossilv1connect"
)

// TestSubscribeCodecs: Subscribe sends the same events as GetEvent with
// every protocol and codec (the binary codec takes the encoder's path, JSON
// builds the messages): data of each kind, time, dataschema, extensions of
// each JSON type, expect_ack.
func TestSubscribeCodecs(t *testing.T) {
	srv := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := fossilv1connect.NewEventStoreClient(http.DefaultClient, srv.URL)
	at := time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC)
	attrs := map[string]*pb.CloudEventAttributeValue{
		"time":            {Attr: &pb.CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.New(at)}},
		"dataschema":      {Attr: &pb.CloudEventAttributeValue_CeUri{CeUri: "https://example.com/order.json"}},
		"subject":         str("order \"7\" — ü"),
		"tenant":          str("acme"),
		"priority":        {Attr: &pb.CloudEventAttributeValue_CeInteger{CeInteger: -3}},
		"urgent":          {Attr: &pb.CloudEventAttributeValue_CeBoolean{CeBoolean: false}},
		"datacontenttype": str("application/json"),
	}
	events := []*pb.CloudEvent{
		{Id: "e-1", Source: "/shop", SpecVersion: "1.0", Type: "order.placed", Attributes: attrs,
			Data: &pb.CloudEvent_TextData{TextData: `{"total":12,"note":"a \"b\" \\ c","items":[1,2]}`}},
		{Id: "e-2", Source: "/shop", SpecVersion: "1.0", Type: "order.paid",
			Attributes: map[string]*pb.CloudEventAttributeValue{"datacontenttype": str("application/octet-stream")},
			Data:       &pb.CloudEvent_BinaryData{BinaryData: []byte{0, 1, 2, 255, 254}}},
		{Id: "e-3", Source: "/shop", SpecVersion: "1.0", Type: "order.noted",
			Attributes: map[string]*pb.CloudEventAttributeValue{"datacontenttype": str("text/plain")},
			Data:       &pb.CloudEvent_TextData{TextData: "line one\nline \"two\""}},
		{Id: "e-4", Source: "/shop", SpecVersion: "1.0", Type: "order.empty"},
		{Id: "e-5", Source: "/shop", SpecVersion: "1.0", Type: "order.plain",
			Attributes: map[string]*pb.CloudEventAttributeValue{"datacontenttype": str("text/plain")},
			Data:       &pb.CloudEvent_TextData{TextData: "plain"}},
	}
	for i, e := range events {
		stream := "orders/" + string(rune('a'+i))
		req := &fossilv1.CollectRequest{Stream: stream, Events: []*pb.CloudEvent{e}}
		if e.GetId() == "e-4" {
			req.WaitConsumers = []*fossilv1.WaitConsumer{{Name: "billing", TimeoutMs: u64(1)}}
		}
		if _, err := c.Collect(ctx, connect.NewRequest(req)); err != nil {
			t.Fatalf("collect %s: %v", e.GetId(), err)
		}
	}
	srv.MustPost(t, "orders/h", testserver.Event{ID: "h-1", Data: `{"via":"http"}`})
	const n = 6
	want := make([]*fossilv1.Event, n)
	for i := range want {
		res, err := c.GetEvent(ctx, connect.NewRequest(&fossilv1.GetEventRequest{EventNumber: uint64(i + 1)}))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = res.Msg.GetEvent()
	}
	if got := want[3].GetExpectAck(); len(got) != 1 || got[0] != "billing" {
		t.Fatalf("expect_ack of e-4: %v", got)
	}

	for _, tc := range []struct {
		name string
		hc   *http.Client
		opts []connect.ClientOption
	}{
		{"connect+proto", http.DefaultClient, nil},
		{"connect+json", http.DefaultClient, []connect.ClientOption{connect.WithProtoJSON()}},
		{"grpc", h2cClient(), []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web", http.DefaultClient, []connect.ClientOption{connect.WithGRPCWeb()}},
		{"grpc-web+json", http.DefaultClient, []connect.ClientOption{connect.WithGRPCWeb(), connect.WithProtoJSON()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			s, err := fossilv1connect.NewEventStoreClient(tc.hc, srv.URL, tc.opts...).
				Subscribe(sctx, connect.NewRequest(&fossilv1.SubscribeRequest{Templates: []string{"{+all}"}}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []*fossilv1.Event
			for len(got) < n && s.Receive() {
				got = append(got, s.Msg().GetEvents()...)
			}
			if len(got) != n {
				t.Fatalf("%d events (%v), want %d", len(got), s.Err(), n)
			}
			for i := range got {
				if !proto.Equal(got[i], want[i]) {
					t.Errorf("event %d:\nSubscribe %v\nGetEvent  %v", i+1, got[i], want[i])
				}
			}
		})
	}
}
