package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/proto/fossil/v1/fossilv1connect"
)

// caller is one client protocol: Connect, Connect's gRPC option over h2c,
// or grpc-go. Errors come back as a code and the problem detail.
type caller struct {
	name      string
	collect   func(context.Context, *fossilv1.CollectRequest) (*fossilv1.CollectResponse, error)
	getEvent  func(context.Context, *fossilv1.GetEventRequest) (*fossilv1.GetEventResponse, error)
	readLog   func(context.Context, *fossilv1.ReadLogRequest) (*fossilv1.ReadResponse, error)
	readStr   func(context.Context, *fossilv1.ReadStreamRequest) (*fossilv1.ReadResponse, error)
	subscribe func(context.Context, *fossilv1.SubscribeRequest) (func() (*fossilv1.SubscribeResponse, error), error)
	stream    func(context.Context) (*bidi, error)
	commit    func(context.Context, *fossilv1.CommitRequest) (*fossilv1.CommitResponse, error)
	ack       func(context.Context, *fossilv1.AckRequest) (*fossilv1.AckResponse, error)
	consumer  func(context.Context, *fossilv1.GetConsumerRequest) (*fossilv1.Consumer, error)
	code      func(error) connect.Code
	problem   func(error) map[string]any
}

func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// bidi is a CollectStream call.
type bidi struct {
	send      func(*fossilv1.CollectRequest) error
	closeSend func() error
	recv      func() (*fossilv1.CollectStreamResponse, error)
}

// unaryCall calls one unary method of a Connect client with the token.
func unaryCall[Req, Res any](token string, call func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error)) func(context.Context, *Req) (*Res, error) {
	return func(ctx context.Context, m *Req) (*Res, error) {
		r := connect.NewRequest(m)
		if token != "" {
			r.Header().Set("Authorization", "Bearer "+token)
		}
		res, err := call(ctx, r)
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	}
}

// connectCaller speaks the Connect protocol (HTTP/1.1), or gRPC over h2c
// when opts ask for it.
func connectCaller(t *testing.T, name, url, token string, hc *http.Client, opts ...connect.ClientOption) caller {
	t.Helper()
	c := fossilv1connect.NewEventStoreClient(hc, url, opts...)
	// Bidirectional streams need HTTP/2, whatever the unary calls use.
	c2 := fossilv1connect.NewEventStoreClient(h2cClient(), url, opts...)
	auth := func(h http.Header) {
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
	}
	return caller{
		name: name,
		collect: func(ctx context.Context, m *fossilv1.CollectRequest) (*fossilv1.CollectResponse, error) {
			r := connect.NewRequest(m)
			auth(r.Header())
			res, err := c.Collect(ctx, r)
			if err != nil {
				return nil, err
			}
			return res.Msg, nil
		},
		getEvent: func(ctx context.Context, m *fossilv1.GetEventRequest) (*fossilv1.GetEventResponse, error) {
			r := connect.NewRequest(m)
			auth(r.Header())
			res, err := c.GetEvent(ctx, r)
			if err != nil {
				return nil, err
			}
			return res.Msg, nil
		},
		readLog: func(ctx context.Context, m *fossilv1.ReadLogRequest) (*fossilv1.ReadResponse, error) {
			r := connect.NewRequest(m)
			auth(r.Header())
			res, err := c.ReadLog(ctx, r)
			if err != nil {
				return nil, err
			}
			return res.Msg, nil
		},
		readStr: func(ctx context.Context, m *fossilv1.ReadStreamRequest) (*fossilv1.ReadResponse, error) {
			r := connect.NewRequest(m)
			auth(r.Header())
			res, err := c.ReadStream(ctx, r)
			if err != nil {
				return nil, err
			}
			return res.Msg, nil
		},
		subscribe: func(ctx context.Context, m *fossilv1.SubscribeRequest) (func() (*fossilv1.SubscribeResponse, error), error) {
			r := connect.NewRequest(m)
			auth(r.Header())
			s, err := c.Subscribe(ctx, r)
			if err != nil {
				return nil, err
			}
			return func() (*fossilv1.SubscribeResponse, error) {
				if s.Receive() {
					return s.Msg(), nil
				}
				if err := s.Err(); err != nil {
					return nil, err
				}
				return nil, io.EOF
			}, nil
		},
		stream: func(ctx context.Context) (*bidi, error) {
			s := c2.CollectStream(ctx)
			auth(s.RequestHeader())
			return &bidi{send: s.Send, closeSend: s.CloseRequest, recv: s.Receive}, nil
		},
		commit:   unaryCall(token, c.Commit),
		ack:      unaryCall(token, c.Ack),
		consumer: unaryCall(token, c.GetConsumer),
		code:     connect.CodeOf,
		problem: func(err error) map[string]any {
			var ce *connect.Error
			if !errors.As(err, &ce) {
				return nil
			}
			for _, d := range ce.Details() {
				v, err := d.Value()
				if st, ok := v.(*structpb.Struct); ok && err == nil {
					return st.AsMap()
				}
			}
			return nil
		},
	}
}

// grpcCaller speaks gRPC with grpc-go, invoking the methods by name.
func grpcCaller(t *testing.T, url, token string) caller {
	t.Helper()
	conn, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	withAuth := func(ctx context.Context) context.Context {
		if token == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	unary := func(ctx context.Context, method string, in, out proto.Message) error {
		return conn.Invoke(withAuth(ctx), "/fossil.v1.EventStore/"+method, in, out)
	}
	return caller{
		name: "grpc-go",
		collect: func(ctx context.Context, m *fossilv1.CollectRequest) (*fossilv1.CollectResponse, error) {
			out := new(fossilv1.CollectResponse)
			return out, unary(ctx, "Collect", m, out)
		},
		getEvent: func(ctx context.Context, m *fossilv1.GetEventRequest) (*fossilv1.GetEventResponse, error) {
			out := new(fossilv1.GetEventResponse)
			return out, unary(ctx, "GetEvent", m, out)
		},
		readLog: func(ctx context.Context, m *fossilv1.ReadLogRequest) (*fossilv1.ReadResponse, error) {
			out := new(fossilv1.ReadResponse)
			return out, unary(ctx, "ReadLog", m, out)
		},
		readStr: func(ctx context.Context, m *fossilv1.ReadStreamRequest) (*fossilv1.ReadResponse, error) {
			out := new(fossilv1.ReadResponse)
			return out, unary(ctx, "ReadStream", m, out)
		},
		subscribe: func(ctx context.Context, m *fossilv1.SubscribeRequest) (func() (*fossilv1.SubscribeResponse, error), error) {
			s, err := conn.NewStream(withAuth(ctx), &grpc.StreamDesc{ServerStreams: true}, "/fossil.v1.EventStore/Subscribe")
			if err != nil {
				return nil, err
			}
			if err := s.SendMsg(m); err != nil {
				return nil, err
			}
			if err := s.CloseSend(); err != nil {
				return nil, err
			}
			return func() (*fossilv1.SubscribeResponse, error) {
				out := new(fossilv1.SubscribeResponse)
				if err := s.RecvMsg(out); err != nil {
					return nil, err
				}
				return out, nil
			}, nil
		},
		stream: func(ctx context.Context) (*bidi, error) {
			s, err := conn.NewStream(withAuth(ctx), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/fossil.v1.EventStore/CollectStream")
			if err != nil {
				return nil, err
			}
			return &bidi{
				send:      func(m *fossilv1.CollectRequest) error { return s.SendMsg(m) },
				closeSend: s.CloseSend,
				recv: func() (*fossilv1.CollectStreamResponse, error) {
					out := new(fossilv1.CollectStreamResponse)
					return out, s.RecvMsg(out)
				},
			}, nil
		},
		commit: func(ctx context.Context, m *fossilv1.CommitRequest) (*fossilv1.CommitResponse, error) {
			out := new(fossilv1.CommitResponse)
			return out, unary(ctx, "Commit", m, out)
		},
		ack: func(ctx context.Context, m *fossilv1.AckRequest) (*fossilv1.AckResponse, error) {
			out := new(fossilv1.AckResponse)
			return out, unary(ctx, "Ack", m, out)
		},
		consumer: func(ctx context.Context, m *fossilv1.GetConsumerRequest) (*fossilv1.Consumer, error) {
			out := new(fossilv1.Consumer)
			return out, unary(ctx, "GetConsumer", m, out)
		},
		code: func(err error) connect.Code {
			return connect.Code(status.Code(err))
		},
		problem: func(err error) map[string]any {
			st, _ := status.FromError(err)
			for _, d := range st.Details() {
				if s, ok := d.(*structpb.Struct); ok {
					return s.AsMap()
				}
			}
			return nil
		},
	}
}

func callers(t *testing.T, url, token string) []caller {
	return []caller{
		connectCaller(t, "connect", url, token, http.DefaultClient),
		connectCaller(t, "connect-grpc-h2c", url, token, h2cClient(), connect.WithGRPC()),
		grpcCaller(t, url, token),
	}
}

func str(s string) *pb.CloudEventAttributeValue {
	return &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeString{CeString: s}}
}

func jsonEvent(id, data string) *pb.CloudEvent {
	return &pb.CloudEvent{
		Id: id, Source: "/shop", SpecVersion: "1.0", Type: "order.placed",
		Attributes: map[string]*pb.CloudEventAttributeValue{"datacontenttype": str("application/json")},
		Data:       &pb.CloudEvent_TextData{TextData: data},
	}
}

func u64(n uint64) *uint64 { return &n }

// TestCollectReadSubscribe runs the same scenario through each protocol
// against a real server, and checks that events collected over HTTP and
// over RPC read back alike.
func TestCollectReadSubscribe(t *testing.T) {
	for _, proto := range []string{"connect", "connect-grpc-h2c", "grpc-go"} {
		t.Run(proto, func(t *testing.T) {
			srv := testserver.Start(t)
			var c caller
			for _, x := range callers(t, srv.URL, "") {
				if x.name == proto {
					c = x
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			// A batch with time, an extension and JSON data.
			at := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
			first := jsonEvent("o-1", `{"total": 12}`)
			first.Attributes["time"] = &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.New(at)}}
			first.Attributes["tenant"] = str("acme")
			first.Attributes["priority"] = &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeInteger{CeInteger: 7}}
			second := &pb.CloudEvent{Id: "o-2", Source: "/shop", SpecVersion: "1.0", Type: "order.paid",
				Attributes: map[string]*pb.CloudEventAttributeValue{"datacontenttype": str("application/octet-stream")},
				Data:       &pb.CloudEvent_BinaryData{BinaryData: []byte{0, 1, 2, 255}}}
			req := &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{first, second}, ExpectedSequence: u64(1)}
			res, err := c.collect(ctx, req)
			if err != nil {
				t.Fatalf("collect: %v", err)
			}
			wantPos := []*fossilv1.Position{
				{Id: "o-1", Source: "/shop", EventNumber: 1, Sequence: 1},
				{Id: "o-2", Source: "/shop", EventNumber: 2, Sequence: 2},
			}
			assertPositions(t, res, wantPos, false)

			// An identical retry answers the same numbers, as a duplicate.
			res, err = c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{first, second}})
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			assertPositions(t, res, wantPos, true)

			// Over HTTP, the RPC-collected event reads as if it had been posted.
			resp, err := http.Get(srv.URL + "/events/1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			const wantDoc = `{"specversion":"1.0","id":"o-1","source":"/shop","type":"order.placed","time":"2026-01-02T03:04:05.6Z","datacontenttype":"application/json","priority":7,"tenant":"acme","data":{"total":12},"fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"orders/1"}`
			if got := strings.TrimSpace(string(body)); got != wantDoc {
				t.Fatalf("GET /events/1:\n got %s\nwant %s", got, wantDoc)
			}

			// An event posted over HTTP is read over RPC.
			srv.MustPost(t, "orders/2", testserver.Event{ID: "h-1", Source: "/http", Type: "order.placed", Data: `{"total":3}`})

			// A sequence conflict: ABORTED with the sequences, nothing written.
			_, err = c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("o-3", `{}`)}, ExpectedSequence: u64(1)})
			if got := c.code(err); got != connect.CodeAborted {
				t.Fatalf("conflict: code %v (%v), want aborted", got, err)
			}
			p := c.problem(err)
			if p["status"] != float64(409) || p["type"] != "urn:fossil:problem:sequence-conflict" || p["expected_sequence"] != float64(1) || p["current_sequence"] != float64(2) || p["stream"] != "orders/1" {
				t.Fatalf("conflict problem: %v", p)
			}

			// An invalid event: INVALID_ARGUMENT naming the attribute.
			bad := jsonEvent("", `{}`)
			_, err = c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("o-4", `{}`), bad}})
			if got := c.code(err); got != connect.CodeInvalidArgument {
				t.Fatalf("invalid: code %v (%v)", got, err)
			}
			p = c.problem(err)
			errs, _ := p["errors"].([]any)
			if p["status"] != float64(400) || len(errs) != 1 || errs[0].(map[string]any)["location"] != "events[1].id" {
				t.Fatalf("invalid problem: %v", p)
			}
			// JSON data that is not JSON.
			_, err = c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("o-5", `{nope`)}})
			if got := c.code(err); got != connect.CodeInvalidArgument {
				t.Fatalf("bad JSON: code %v (%v)", got, err)
			}

			// GetEvent, ReadStream, ReadLog.
			ge, err := c.getEvent(ctx, &fossilv1.GetEventRequest{EventNumber: 2})
			if err != nil {
				t.Fatal(err)
			}
			if e := ge.GetEvent(); e.GetStream() != "orders/1" || e.GetEventNumber() != 2 || e.GetSequence() != 2 || e.GetEvent().GetId() != "o-2" ||
				string(e.GetEvent().GetBinaryData()) != "\x00\x01\x02\xff" || e.GetEvent().GetType() != "order.paid" {
				t.Fatalf("GetEvent(2) = %v", e)
			}
			if _, err := c.getEvent(ctx, &fossilv1.GetEventRequest{EventNumber: 99}); c.code(err) != connect.CodeNotFound {
				t.Fatalf("GetEvent(99): %v", err)
			}
			rs, err := c.readStr(ctx, &fossilv1.ReadStreamRequest{Stream: "orders/1"})
			if err != nil {
				t.Fatal(err)
			}
			if got := numbers(rs.GetEvents()); got != "1/orders/1/o-1 2/orders/1/o-2" || rs.GetMore() {
				t.Fatalf("ReadStream: %s more=%v", got, rs.GetMore())
			}
			e0 := rs.GetEvents()[0].GetEvent()
			if e0.GetTextData() != `{"total":12}` || e0.GetAttributes()["tenant"].GetCeString() != "acme" ||
				e0.GetAttributes()["priority"].GetCeInteger() != 7 || !e0.GetAttributes()["time"].GetCeTimestamp().AsTime().Equal(at) {
				t.Fatalf("ReadStream event 1: %v", e0)
			}
			rl, err := c.readLog(ctx, &fossilv1.ReadLogRequest{After: 1, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			if got := numbers(rl.GetEvents()); got != "2/orders/1/o-2 3/orders/2/h-1" || !rl.GetMore() {
				t.Fatalf("ReadLog: %s more=%v", got, rl.GetMore())
			}
			if d := rl.GetEvents()[1].GetEvent(); d.GetTextData() != `{"total":3}` || d.GetSource() != "/http" {
				t.Fatalf("HTTP-posted event over RPC: %v", d)
			}
			if _, err := c.readLog(ctx, &fossilv1.ReadLogRequest{Limit: 1001}); c.code(err) != connect.CodeInvalidArgument {
				t.Fatalf("ReadLog limit 1001: %v", err)
			}

			// Subscribe: history after the cursor, then live, in order.
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			recv, err := c.subscribe(sctx, &fossilv1.SubscribeRequest{Templates: []string{"orders/{id}"}, After: 1})
			if err != nil {
				t.Fatal(err)
			}
			got := receive(t, recv, 2)
			if s := numbers(got); s != "2/orders/1/o-2 3/orders/2/h-1" {
				t.Fatalf("Subscribe history: %s", s)
			}
			if _, err := c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/3", Events: []*pb.CloudEvent{jsonEvent("o-6", `[1]`)}}); err != nil {
				t.Fatal(err)
			}
			srv.MustPost(t, "other/1", testserver.Event{ID: "x-1"})
			srv.MustPost(t, "orders/4", testserver.Event{ID: "h-2", Source: "/http"})
			got = receive(t, recv, 2)
			if s := numbers(got); s != "4/orders/3/o-6 6/orders/4/h-2" {
				t.Fatalf("Subscribe live: %s", s)
			}
			if got[0].GetEvent().GetTextData() != `[1]` {
				t.Fatalf("live event data: %v", got[0])
			}

			// A bad template is INVALID_ARGUMENT.
			recv, err = c.subscribe(ctx, &fossilv1.SubscribeRequest{Templates: []string{"orders/{"}})
			if err == nil {
				_, err = recv()
			}
			if c.code(err) != connect.CodeInvalidArgument {
				t.Fatalf("bad template: %v", err)
			}
		})
	}
}

func assertPositions(t *testing.T, res *fossilv1.CollectResponse, want []*fossilv1.Position, duplicate bool) {
	t.Helper()
	if len(res.GetEvents()) != len(want) || res.GetDuplicate() != duplicate {
		t.Fatalf("collect = %v, want %v duplicate=%v", res, want, duplicate)
	}
	for i := range want {
		if !proto.Equal(res.GetEvents()[i], want[i]) {
			t.Fatalf("position %d = %v, want %v", i, res.GetEvents()[i], want[i])
		}
	}
}

// receive reads until n events arrived (each message may carry several).
func receive(t *testing.T, recv func() (*fossilv1.SubscribeResponse, error), n int) []*fossilv1.Event {
	t.Helper()
	var out []*fossilv1.Event
	for len(out) < n {
		m, err := recv()
		if err != nil {
			t.Fatalf("subscribe after %d events: %v", len(out), err)
		}
		out = append(out, m.GetEvents()...)
	}
	if len(out) != n {
		t.Fatalf("got %d events, want %d", len(out), n)
	}
	return out
}

func numbers(events []*fossilv1.Event) string {
	parts := make([]string, len(events))
	for i, e := range events {
		b, _ := json.Marshal(e.GetEventNumber())
		parts[i] = string(b) + "/" + e.GetStream() + "/" + e.GetEvent().GetId()
	}
	return strings.Join(parts, " ")
}

const secret = "an-rpc-secret-of-at-least-32-bytes!!"

func token(t *testing.T, claim map[string]any) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "tester", "exp": time.Now().Add(time.Hour).Unix()}
	if claim != nil {
		claims["fossil"] = claim
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuth: the bearer token travels in metadata and the grants of the
// HTTP API apply.
func TestAuth(t *testing.T) {
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = secret })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writer := token(t, map[string]any{"write": []string{"orders/{id}"}, "read": []string{"orders/{id}"}})
	for _, c := range callers(t, srv.URL, "") {
		t.Run(c.name+"/no token", func(t *testing.T) {
			_, err := c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("a", `{}`)}})
			if c.code(err) != connect.CodeUnauthenticated {
				t.Fatalf("no token: %v", err)
			}
		})
	}
	for _, c := range callers(t, srv.URL, writer) {
		t.Run(c.name+"/grants", func(t *testing.T) {
			_, err := c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("a", `{}`)}})
			if err != nil {
				t.Fatalf("within the grant: %v", err)
			}
			_, err = c.collect(ctx, &fossilv1.CollectRequest{Stream: "payments/1", Events: []*pb.CloudEvent{jsonEvent("b", `{}`)}})
			if c.code(err) != connect.CodePermissionDenied {
				t.Fatalf("outside the write grant: %v", err)
			}
			if p := c.problem(err); p["status"] != float64(403) {
				t.Fatalf("problem: %v", p)
			}
			if _, err := c.readStr(ctx, &fossilv1.ReadStreamRequest{Stream: "payments/1"}); c.code(err) != connect.CodePermissionDenied {
				t.Fatalf("outside the read grant: %v", err)
			}
		})
	}
}
