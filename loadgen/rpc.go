package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/proto/fossil/v1/fossilv1connect"
)

// Protocols of the writers and of the replay.
const (
	ProtocolHTTP = "http" // POST /collect, GET /sse
	ProtocolGRPC = "grpc" // CollectStream, Subscribe (gRPC over h2c)
)

// rpcClient returns an EventStore client speaking gRPC on a connection of
// its own (HTTP/2 cleartext for http:// URLs), dialling loopback only
// unless AllowRemote.
func (b *bench) rpcClient() fossilv1connect.EventStoreClient {
	// No gzip: on loopback, compressing pages costs more than it saves.
	return fossilv1connect.NewEventStoreClient(b.rpcHTTPClient(0), b.base, connect.WithGRPC(), connect.WithAcceptCompression("gzip", nil, nil))
}

// rpcHTTPClient returns an HTTP client of one connection (HTTP/2
// cleartext for http:// URLs), dialling loopback only unless AllowRemote,
// that asks for HTTP/2 frames of up to maxFrame bytes and a larger flow
// control window (0: Go's defaults, 16 KiB frames and 4 MiB).
func (b *bench) rpcHTTPClient(maxFrame uint32) *http.Client {
	dialer := newDialer(b.cfg)
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		ForceAttemptHTTP2:   true,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.Protocols.SetHTTP2(true)
	if maxFrame > 0 {
		// With large frames, a 16 MiB window per stream (Go's default is
		// 4 MiB): several pages of a replay on their way at once.
		tr.HTTP2 = &http.HTTP2Config{MaxReadFrameSize: int(maxFrame), MaxReceiveBufferPerStream: 16 << 20, MaxReceiveBufferPerConnection: 32 << 20}
	}
	return &http.Client{Transport: tr}
}

// rpcWriter is one writer over CollectStream: one connection, one call,
// at most Config.Pipeline requests sent ahead of their answers.
type rpcWriter struct {
	*writer
	client fossilv1connect.EventStoreClient
	// seqMu guards writer.seqs: the sender counts what it sends, the
	// receiver resets a stream's count after a 409.
	seqMu sync.Mutex
}

type rpcSent struct {
	at     time.Time
	n      int
	stream int
}

func (w *rpcWriter) run(ctx context.Context, stopAt time.Time) {
	cfg := w.b.cfg
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	call := w.client.CollectStream(ctx)
	inflight := make(chan rpcSent, cfg.Pipeline)
	go func() {
		defer close(inflight)
		defer func() { _ = call.CloseRequest() }()
		perWriter := max(1, cfg.Streams/cfg.Clients)
		for k := 0; ctx.Err() == nil; k++ {
			if !stopAt.IsZero() && !time.Now().Before(stopAt) {
				return
			}
			n := cfg.Batch
			if cfg.Events > 0 && w.b.issued.Add(int64(n)) > cfg.Events {
				return
			}
			if w.b.limiter != nil {
				w.b.limiter.wait(ctx, n)
				if ctx.Err() != nil {
					return
				}
			}
			var stream int
			if cfg.Streams >= cfg.Clients {
				stream = (w.id + cfg.Clients*(k%perWriter)) % cfg.Streams
			} else {
				stream = (w.id + k) % cfg.Streams
			}
			req := w.request(stream, k, n)
			select {
			case inflight <- rpcSent{at: time.Now(), n: n, stream: stream}:
			case <-ctx.Done():
				return
			}
			if err := call.Send(req); err != nil {
				return // Receive reports why
			}
		}
	}()
	for s := range inflight {
		r, err := call.Receive()
		if err != nil {
			if ctx.Err() == nil {
				w.b.fail("transport", "CollectStream: "+err.Error())
			}
			cancel()
			continue // drain: the sender ends
		}
		if e := r.GetError(); e != nil {
			key := connect.Code(e.GetCode()).String()
			if st, ok := e.GetProblem().AsMap()["status"].(float64); ok {
				key = strconv.Itoa(int(st))
			}
			w.b.fail(key, fmt.Sprintf("CollectStream: %s: %s", connect.Code(e.GetCode()), e.GetMessage()))
			if cur, ok := e.GetProblem().AsMap()["current_sequence"].(float64); ok && cfg.ExpectSequence {
				w.seqMu.Lock()
				w.seqs[s.stream] = int64(cur) + 1
				w.seqMu.Unlock()
			}
			continue
		}
		w.hist.record(time.Since(s.at))
		w.b.requests.Add(1)
		w.b.events.Add(int64(s.n))
		if r.GetResult().GetDuplicate() {
			w.b.dups.Add(int64(s.n))
		}
	}
	if _, err := call.Receive(); err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
		w.b.fail("transport", "CollectStream: "+err.Error())
	}
	_ = call.CloseResponse()
}

// request renders the k-th request of this writer: n events for stream.
func (w *rpcWriter) request(stream, k, n int) *fossilv1.CollectRequest {
	req := &fossilv1.CollectRequest{Stream: w.prefix + strconv.Itoa(stream), Events: make([]*pb.CloudEvent, n)}
	for j := range n {
		req.Events[j] = &pb.CloudEvent{
			Id: w.eventID(k, j), Source: "/fossil-bench", SpecVersion: "1.0", Type: "bench.event",
			Attributes: map[string]*pb.CloudEventAttributeValue{"datacontenttype": {Attr: &pb.CloudEventAttributeValue_CeString{CeString: "application/json"}}},
			Data:       &pb.CloudEvent_TextData{TextData: string(w.appendData(nil))},
		}
	}
	if w.b.cfg.ExpectSequence {
		w.seqMu.Lock()
		next, ok := w.seqs[stream]
		if !ok {
			next = 1
		}
		w.seqs[stream] = next + int64(n) // pipelined: counted as sent
		w.seqMu.Unlock()
		seq := uint64(next)
		req.ExpectedSequence = &seq
	}
	return req
}

// replayRPC reads the log from event 0 with Subscribe on {+all} up to
// target and times it, as replay does over /sse.
//
// As the SSE replay reads only each event's "id:" line, this one reads
// only each event's event_number: its codec walks a SubscribeResponse's
// wire form (subscribePage) instead of building every CloudEvent. The
// bytes come from the server all the same; decoding them into messages
// would time this process (on the same machine), not the server.
func (b *bench) replayRPC(ctx context.Context, target int64) (*ReplayResult, error) {
	res := &ReplayResult{Head: target}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	// Frames of up to 1 MiB: with the 16 KiB that Go's transport asks for
	// by default, the server writes (and hands between its goroutines)
	// one frame per 16 KiB of the pages.
	client := connect.NewClient[fossilv1.SubscribeRequest, subscribePage](b.rpcHTTPClient(1<<20),
		b.base+fossilv1connect.EventStoreSubscribeProcedure,
		connect.WithGRPC(), connect.WithCodec(pageCodec{}), connect.WithAcceptCompression("gzip", nil, nil))
	s, err := client.CallServerStream(ctx, connect.NewRequest(&fossilv1.SubscribeRequest{Templates: []string{"{+all}"}}))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var count int64
	for s.Receive() {
		m := s.Msg()
		count += m.events
		if m.events > 0 && int64(m.last) >= target {
			break
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("replay ended after %d events: %w", count, err)
	}
	res.Seconds = time.Since(start).Seconds()
	res.Events = count
	if res.Seconds > 0 {
		res.EventsPerSecond = float64(count) / res.Seconds
	}
	return res, nil
}

// subscribePage is what the replay keeps of a SubscribeResponse: how many
// events it holds and the last one's event_number.
type subscribePage struct {
	events int64
	last   uint64
}

// pageCodec is the protobuf codec of the replay: requests are marshalled
// as usual, answers are walked into a subscribePage.
type pageCodec struct{}

func (pageCodec) Name() string { return "proto" }

func (pageCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("pageCodec: cannot marshal %T", m)
	}
	return proto.Marshal(pm)
}

func (pageCodec) Unmarshal(b []byte, m any) error {
	p, ok := m.(*subscribePage)
	if !ok {
		return fmt.Errorf("pageCodec: cannot unmarshal into %T", m)
	}
	*p = subscribePage{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType { // SubscribeResponse.events
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		ev, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		p.events++
		for len(ev) > 0 { // Event.event_number (3) among the fields
			num, typ, n := protowire.ConsumeTag(ev)
			if n < 0 {
				return protowire.ParseError(n)
			}
			ev = ev[n:]
			if num == 3 && typ == protowire.VarintType {
				v, n := protowire.ConsumeVarint(ev)
				if n < 0 {
					return protowire.ParseError(n)
				}
				p.last = v
				ev = ev[n:]
				continue
			}
			n = protowire.ConsumeFieldValue(num, typ, ev)
			if n < 0 {
				return protowire.ParseError(n)
			}
			ev = ev[n:]
		}
	}
	return nil
}
