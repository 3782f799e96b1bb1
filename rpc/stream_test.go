package rpc_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
)

// TestCollectStreamOrderUnderConcurrency: several calls of each protocol
// at once pipeline single events and small batches into one hot stream
// and into streams of their own, with a few failing requests among them.
// Each call gets one answer per request, in request order; its successful
// requests are committed in the order sent (increasing event numbers, and
// increasing sequences in each stream); the log ends up dense with every
// acknowledged event and nothing else.
func TestCollectStreamOrderUnderConcurrency(t *testing.T) {
	// A loaded machine may take seconds per group: the test is about order,
	// not about the append timeout.
	srv := testserver.Start(t, func(c *cmd.Config) { c.AppendTimeout = 2 * time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const perCall, callsPerProtocol = 200, 3
	type ack struct {
		call      string
		index     int
		positions []*fossilv1.Position
	}
	var mu sync.Mutex
	var acked []ack
	var wg sync.WaitGroup
	for _, c := range callers(t, srv.URL, "") {
		for k := range callsPerProtocol {
			call := fmt.Sprintf("%s-%d", c.name, k)
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := c.stream(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				own := "own/" + call
				reqs := make([]*fossilv1.CollectRequest, perCall)
				ownSeq := uint64(0)
				for i := range reqs {
					r := &fossilv1.CollectRequest{Stream: "hot", Events: []*pb.CloudEvent{jsonEvent(fmt.Sprintf("%s-%d", call, i), `{}`)}}
					switch {
					case i%50 == 7: // invalid: fails its checks
						r.Events[0].Type = ""
					case i%50 == 13: // a sequence conflict in the hot stream
						r.ExpectedSequence = u64(1)
					case i%3 == 1: // its own stream, with the expected sequence
						ownSeq++
						r.Stream = own
						r.ExpectedSequence = u64(ownSeq)
					case i%5 == 0: // a batch of three
						r.Events = append(r.Events, jsonEvent(fmt.Sprintf("%s-%d-b", call, i), `[]`), jsonEvent(fmt.Sprintf("%s-%d-c", call, i), `[]`))
					}
					reqs[i] = r
				}
				sent := make(chan error, 1)
				go func() {
					for _, r := range reqs {
						if err := b.send(r); err != nil {
							sent <- err
							return
						}
					}
					sent <- b.closeSend()
				}()
				var lastNumber uint64
				lastSeq := map[string]uint64{}
				for i := range perCall {
					r, err := b.recv()
					if err != nil {
						t.Errorf("%s: answer %d: %v", call, i, err)
						return
					}
					if r.GetIndex() != uint64(i) {
						t.Errorf("%s: answer %d has index %d", call, i, r.GetIndex())
						return
					}
					switch {
					case i%50 == 7:
						if connect.Code(r.GetError().GetCode()) != connect.CodeInvalidArgument {
							t.Errorf("%s: answer %d: %v, want INVALID_ARGUMENT", call, i, r)
						}
						continue
					case i%50 == 13:
						if connect.Code(r.GetError().GetCode()) != connect.CodeAborted || r.GetError().GetProblem().AsMap()["expected_sequence"] != float64(1) {
							t.Errorf("%s: answer %d: %v, want ABORTED", call, i, r)
						}
						continue
					case r.GetError() != nil:
						t.Errorf("%s: answer %d failed: %v", call, i, r.GetError())
						return
					}
					pos := r.GetResult().GetEvents()
					if len(pos) != len(reqs[i].GetEvents()) {
						t.Errorf("%s: answer %d: %d positions for %d events", call, i, len(pos), len(reqs[i].GetEvents()))
						return
					}
					for j, p := range pos {
						stream := reqs[i].GetStream()
						if p.GetId() != reqs[i].GetEvents()[j].GetId() || p.GetEventNumber() <= lastNumber || p.GetSequence() <= lastSeq[stream] {
							t.Errorf("%s: answer %d event %d: %v after number %d, sequence %d of %s", call, i, j, p, lastNumber, lastSeq[stream], stream)
							return
						}
						lastNumber, lastSeq[stream] = p.GetEventNumber(), p.GetSequence()
					}
					mu.Lock()
					acked = append(acked, ack{call, i, pos})
					mu.Unlock()
				}
				if _, err := b.recv(); err == nil {
					t.Errorf("%s: an answer more than requests", call)
				}
				if err := <-sent; err != nil {
					t.Errorf("%s: send: %v", call, err)
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Every acknowledged event is stored where its answer said, and the
	// log holds nothing else: dense numbers, dense sequences.
	stored := map[uint64]string{}
	var after uint64
	for {
		r, err := callers(t, srv.URL, "")[0].readLog(ctx, &fossilv1.ReadLogRequest{After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range r.GetEvents() {
			if e.GetEventNumber() != after+1 {
				t.Fatalf("log: event %d after %d", e.GetEventNumber(), after)
			}
			after = e.GetEventNumber()
			stored[after] = fmt.Sprintf("%s/%d/%s", e.GetStream(), e.GetSequence(), e.GetEvent().GetId())
		}
		if !r.GetMore() {
			break
		}
	}
	n := 0
	for _, a := range acked {
		for _, p := range a.positions {
			n++
			if got := stored[p.GetEventNumber()]; !strings.HasSuffix(got, fmt.Sprintf("/%d/%s", p.GetSequence(), p.GetId())) {
				t.Fatalf("%s answer %d: %v, but the log has %q", a.call, a.index, p, got)
			}
		}
	}
	if n != len(stored) {
		t.Fatalf("%d events acknowledged, %d stored", n, len(stored))
	}
}

// TestSubscribeResumesAfterKilledConnection: a grpc-go subscriber whose
// TCP connection is cut while events are being written resubscribes with
// the last event number it received and gets every event exactly once, in
// order.
func TestSubscribeResumesAfterKilledConnection(t *testing.T) {
	srv := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var connsMu sync.Mutex
	var conns []net.Conn
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		}
		return c, err
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(srv.URL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	subscribe := func(after uint64) grpc.ServerStreamingClient[fossilv1.SubscribeResponse] {
		s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/fossil.v1.EventStore/Subscribe")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg(&fossilv1.SubscribeRequest{Templates: []string{"orders/{id}"}, After: after}); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		return &grpc.GenericClientStream[fossilv1.SubscribeRequest, fossilv1.SubscribeResponse]{ClientStream: s}
	}

	const total = 1500
	writer := grpcCaller(t, srv.URL, "")
	written := make(chan error, 1)
	go func() {
		b, err := writer.stream(ctx)
		if err != nil {
			written <- err
			return
		}
		go func() {
			for i := range total {
				stream := fmt.Sprintf("orders/%d", i%7)
				if i%10 == 9 {
					stream = "other/1" // not subscribed to
				}
				if err := b.send(&fossilv1.CollectRequest{Stream: stream, Events: []*pb.CloudEvent{jsonEvent(fmt.Sprintf("r-%d", i), `{}`)}}); err != nil {
					return
				}
			}
			_ = b.closeSend()
		}()
		for range total {
			r, err := b.recv()
			if err == nil && r.GetError() != nil {
				err = fmt.Errorf("%v", r.GetError())
			}
			if err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()

	var got []uint64
	want := total - total/10
	s := subscribe(0)
	kills, cut := 0, false
	for len(got) < want {
		m, err := s.Recv()
		if err != nil {
			if !cut {
				t.Fatalf("subscribe after %d events: %v", len(got), err)
			}
			// The cut connection: resume after the last event received.
			s = subscribe(got[len(got)-1])
			cut = false
			continue
		}
		for _, e := range m.GetEvents() {
			if n := len(got); n > 0 && e.GetEventNumber() <= got[n-1] {
				t.Fatalf("event %d after %d", e.GetEventNumber(), got[n-1])
			}
			if !strings.HasPrefix(e.GetStream(), "orders/") {
				t.Fatalf("event of %s", e.GetStream())
			}
			got = append(got, e.GetEventNumber())
		}
		// Cut the connection twice along the way, mid-stream.
		if !cut && kills < 2 && len(got) > (kills+1)*want/3 {
			kills++
			cut = true
			connsMu.Lock()
			for _, c := range conns {
				_ = c.Close()
			}
			conns = nil
			connsMu.Unlock()
		}
	}
	if err := <-written; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if kills != 2 {
		t.Fatalf("the connection was cut %d times, want 2", kills)
	}
	// Nothing lost: the subscribed events are exactly those of the log's
	// orders/ streams.
	var all []uint64
	var after uint64
	for {
		r, err := writer.readLog(ctx, &fossilv1.ReadLogRequest{After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range r.GetEvents() {
			after = e.GetEventNumber()
			if strings.HasPrefix(e.GetStream(), "orders/") {
				all = append(all, after)
			}
		}
		if !r.GetMore() {
			break
		}
	}
	if fmt.Sprint(all) != fmt.Sprint(got) {
		t.Fatalf("received %d events, the log has %d", len(got), len(all))
	}
}

// TestStreamAndConsumerAuth: grants apply to each request of a stream and
// to commits and acks, as over HTTP.
func TestStreamAndConsumerAuth(t *testing.T) {
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = secret })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := token(t, nil)
	limited := token(t, map[string]any{"write": []string{"orders/{id}"}, "read": []string{"orders/{id}"}, "consume": []string{"billing"}})
	full := grpcCaller(t, srv.URL, admin)
	if _, err := full.collect(ctx, &fossilv1.CollectRequest{Stream: "secret/1", Events: []*pb.CloudEvent{jsonEvent("s-1", `{}`)}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range callers(t, srv.URL, limited) {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.stream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			id := "o-" + c.name
			for _, stream := range []string{"orders/1", "secret/1", "orders/2"} {
				if err := b.send(&fossilv1.CollectRequest{Stream: stream, Events: []*pb.CloudEvent{jsonEvent(id+stream, `{}`)}}); err != nil {
					t.Fatal(err)
				}
			}
			_ = b.closeSend()
			for i, want := range []connect.Code{0, connect.CodePermissionDenied, 0} {
				r, err := b.recv()
				if err != nil {
					t.Fatal(err)
				}
				if got := connect.Code(r.GetError().GetCode()); got != want {
					t.Fatalf("answer %d: %v, want code %v", i, r, want)
				}
			}
			if _, err := c.commit(ctx, &fossilv1.CommitRequest{Consumer: "shipping", Offset: u64(1)}); c.code(err) != connect.CodePermissionDenied {
				t.Fatalf("commit outside the consume grant: %v", err)
			}
			if _, err := c.commit(ctx, &fossilv1.CommitRequest{Consumer: "billing", Offset: u64(1)}); err != nil {
				t.Fatalf("commit: %v", err)
			}
			// An event outside the read grant is unknown.
			if _, err := c.ack(ctx, &fossilv1.AckRequest{Consumer: "billing", Id: "s-1"}); c.code(err) != connect.CodeNotFound {
				t.Fatalf("ack outside the read grant: %v", err)
			}
			if _, err := c.ack(ctx, &fossilv1.AckRequest{Consumer: "billing", Id: id + "orders/1"}); err != nil {
				t.Fatalf("ack: %v", err)
			}
		})
	}
	// Without a token a stream is refused as a whole.
	b, err := grpcCaller(t, srv.URL, "").stream(ctx)
	if err == nil {
		_ = b.send(&fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("x", `{}`)}})
		_, err = b.recv()
	}
	if c := full.code(err); c != connect.CodeUnauthenticated {
		t.Fatalf("no token: %v", err)
	}
}

// TestWaitConsumers: wait_consumers holds the answer until the consumer
// acks (here over RPC) or its timeout passes, as Fossil-Wait-Consumer.
func TestWaitConsumers(t *testing.T) {
	srv := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := grpcCaller(t, srv.URL, "")
	start := time.Now()
	res, err := c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("w-1", `{}`)},
		WaitConsumers: []*fossilv1.WaitConsumer{{Name: "billing", TimeoutMs: u64(200)}}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.GetTimedOut(), ",") != "billing" || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("timed out: %v after %v", res.GetTimedOut(), time.Since(start))
	}
	ge, err := c.getEvent(ctx, &fossilv1.GetEventRequest{EventNumber: 1})
	if err != nil || strings.Join(ge.GetEvent().GetExpectAck(), ",") != "billing" {
		t.Fatalf("stored event: %v %v", ge, err)
	}

	done := make(chan *fossilv1.CollectResponse, 1)
	go func() {
		res, err := c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("w-2", `{}`)},
			WaitConsumers: []*fossilv1.WaitConsumer{{Name: "billing", TimeoutMs: u64(20000)}, {Name: "audit", TimeoutMs: u64(300)}}})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	testserver.Eventually(t, 10*time.Second, "event 2 stored", func() bool {
		_, err := c.getEvent(ctx, &fossilv1.GetEventRequest{EventNumber: 2})
		return err == nil
	})
	if _, err := c.ack(ctx, &fossilv1.AckRequest{Consumer: "billing", Id: "w-2"}); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if strings.Join(res.GetTimedOut(), ",") != "audit" {
			t.Fatalf("timed out: %v, want audit only", res.GetTimedOut())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the ack did not release the writer")
	}

	for _, bad := range [][]*fossilv1.WaitConsumer{{{Name: ""}}, {{Name: "a"}, {Name: "a"}}, {{Name: "a,b"}}} {
		_, err := c.collect(ctx, &fossilv1.CollectRequest{Stream: "orders/1", Events: []*pb.CloudEvent{jsonEvent("w-3", `{}`)}, WaitConsumers: bad})
		if c.code(err) != connect.CodeInvalidArgument {
			t.Fatalf("wait_consumers %v: %v", bad, err)
		}
	}
}

// TestReflectionAndHealth: standard gRPC tools find the service by
// reflection and the health service answers SERVING.
func TestReflectionAndHealth(t *testing.T) {
	srv := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(strings.TrimPrefix(srv.URL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, service := range []string{"", "fossil.v1.EventStore"} {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v", service, res, err)
		}
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); connect.Code(status.Code(err)) != connect.CodeNotFound {
		t.Fatalf("health of an unknown service: %v", err)
	}

	rs, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rs.CloseSend() }()
	if err := rs.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if got := strings.Join(names, " "); got != "fossil.v1.EventStore grpc.health.v1.Health" {
		t.Fatalf("services: %s", got)
	}
	// The descriptors of the service and of the CloudEvent message.
	if err := rs.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "fossil.v1.EventStore"}}); err != nil {
		t.Fatal(err)
	}
	res, err = rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.GetFileDescriptorResponse().GetFileDescriptorProto()); n < 2 {
		t.Fatalf("file descriptors for fossil.v1.EventStore: %d, want the file and its imports", n)
	}
}
