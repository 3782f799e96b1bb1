package rpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"

	"github.com/fossil-events/fossil/internal/testserver"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/rpc"
)

// ev is an event of the equivalence table, sent as a structured JSON
// document over HTTP and as a protobuf CloudEvent over RPC.
type ev struct {
	id, source, typ, data string
	ext                   map[string]string
}

func (e ev) doc() map[string]any {
	d := map[string]any{"specversion": "1.0", "id": e.id, "source": e.source, "type": e.typ, "datacontenttype": "application/json", "data": json.RawMessage(e.data)}
	for k, v := range e.ext {
		d[k] = v
	}
	return d
}

func (e ev) proto() *pb.CloudEvent {
	ce := &pb.CloudEvent{Id: e.id, Source: e.source, SpecVersion: "1.0", Type: e.typ,
		Attributes: map[string]*pb.CloudEventAttributeValue{"datacontenttype": str("application/json")},
		Data:       &pb.CloudEvent_TextData{TextData: e.data}}
	for k, v := range e.ext {
		ce.Attributes[k] = str(v)
	}
	return ce
}

// collectStep is one append of the table.
type collectStep struct {
	name    string
	stream  string
	events  []ev
	expect  uint64 // 0: none
	replace bool
}

// outcome is what a client learns from one call, whatever the protocol:
// the HTTP status (an RPC error's problem detail carries it; its code must
// be the one rpc.Code maps it to), the problem's type and the last
// segment of its first error location, or the positions.
type outcome struct {
	Status    int
	Type      string
	Field     string
	Sequences string // expected/current of a sequence conflict
	Positions string
	Duplicate bool
}

func ok(positions []*fossilv1.Position, dup bool) outcome {
	parts := make([]string, len(positions))
	for i, p := range positions {
		parts[i] = fmt.Sprintf("%s@%d/%d", p.GetId(), p.GetEventNumber(), p.GetSequence())
	}
	return outcome{Status: 200, Positions: strings.Join(parts, " "), Duplicate: dup}
}

// fromProblem reads a problem document (HTTP body or RPC detail).
func fromProblem(p map[string]any) outcome {
	o := outcome{Type: fmt.Sprint(p["type"])}
	if s, ok := p["status"].(float64); ok {
		o.Status = int(s)
	}
	if errs, ok := p["errors"].([]any); ok && len(errs) > 0 {
		loc := fmt.Sprint(errs[0].(map[string]any)["location"])
		o.Field = loc[strings.LastIndexAny(loc, ".]")+1:]
	}
	if e, ok := p["expected_sequence"]; ok {
		o.Sequences = fmt.Sprintf("%v/%v", e, p["current_sequence"])
	}
	return o
}

var collectSteps = []collectStep{
	{name: "first event, expected sequence 1", stream: "orders/1", expect: 1, events: []ev{{id: "e1", source: "/shop", typ: "order.placed", data: `{"total":1}`}}},
	{name: "atomic batch", stream: "orders/1", events: []ev{{id: "e2", source: "/shop", typ: "order.placed", data: `{"total":2}`}, {id: "e3", source: "/shop", typ: "order.paid", data: `[3]`}}},
	{name: "identical retry", stream: "orders/1", events: []ev{{id: "e2", source: "/shop", typ: "order.placed", data: `{"total":2}`}, {id: "e3", source: "/shop", typ: "order.paid", data: `[3]`}}},
	{name: "sequence conflict", stream: "orders/1", expect: 1, events: []ev{{id: "e4", source: "/shop", typ: "order.placed", data: `{}`}}},
	{name: "id reused with other content", stream: "orders/2", events: []ev{{id: "e1", source: "/shop", typ: "order.placed", data: `{"total":99}`}}},
	{name: "missing type", stream: "orders/2", events: []ev{{id: "e5", source: "/shop", data: `{}`}}},
	{name: "reserved extension", stream: "orders/2", events: []ev{{id: "e5", source: "/shop", typ: "order.placed", data: `{}`, ext: map[string]string{"fossilstream": "x"}}}},
	{name: "replace unknown", stream: "orders/1", replace: true, events: []ev{{id: "nope", source: "/shop", typ: "order.placed", data: `{}`}}},
	{name: "replace", stream: "orders/1", replace: true, events: []ev{{id: "e2", source: "/shop", typ: "order.placed", data: `{"total":"erased"}`}}},
	{name: "replace in another stream", stream: "orders/2", replace: true, events: []ev{{id: "e2", source: "/shop", typ: "order.placed", data: `{}`}}},
	{name: "schema violation", stream: "orders/2", events: []ev{{id: "e6", source: "/shop", typ: "order.checked", data: `{"total":"x"}`}}},
	{name: "schema satisfied", stream: "orders/2", events: []ev{{id: "e7", source: "/shop", typ: "order.checked", data: `{"total":7}`}}},
	{name: "expected sequence of a new stream", stream: "orders/3", expect: 1, events: []ev{{id: "e8", source: "/shop", typ: "order.placed", data: `{}`}}},
	{name: "expected sequence too high", stream: "orders/3", expect: 5, events: []ev{{id: "e9", source: "/shop", typ: "order.placed", data: `{}`}}},
	{name: "batch with a bad second event", stream: "orders/3", events: []ev{{id: "e10", source: "/shop", typ: "order.placed", data: `{}`}, {id: "", source: "/shop", typ: "order.placed", data: `{}`}}},
	{name: "same id, other source", stream: "orders/3", events: []ev{{id: "e1", source: "/till", typ: "order.placed", data: `{}`}}},
}

const orderSchema = `{"type":"object","properties":{"total":{"type":"integer"}},"required":["total"]}`

// httpCollect runs a step over POST /collect.
func httpCollect(t *testing.T, url string, s collectStep) outcome {
	t.Helper()
	var body []byte
	ct := "application/cloudevents+json"
	if len(s.events) == 1 {
		body, _ = json.Marshal(s.events[0].doc())
	} else {
		docs := make([]map[string]any, len(s.events))
		for i, e := range s.events {
			docs[i] = e.doc()
		}
		body, _ = json.Marshal(docs)
		ct = "application/cloudevents-batch+json"
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/collect", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Fossil-Stream", s.stream)
	if s.expect > 0 {
		req.Header.Set("Fossil-Expected-Sequence-Number", strconv.FormatUint(s.expect, 10))
	}
	if s.replace {
		req.Header.Set("Fossil-Replace", "true")
	}
	return httpDo(t, req)
}

func httpDo(t *testing.T, req *http.Request) outcome {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var p map[string]any
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
		}
		o := fromProblem(p)
		if o.Status != resp.StatusCode {
			t.Fatalf("problem status %d on a %d", o.Status, resp.StatusCode)
		}
		return o
	}
	if resp.StatusCode == http.StatusNoContent {
		return outcome{Status: 200}
	}
	var r struct {
		Events []struct {
			ID       string `json:"id"`
			Number   uint64 `json:"fossileventnumber"`
			Sequence uint64 `json:"fossilsequenceinstream"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %s", req.URL.Path, b)
	}
	pos := make([]*fossilv1.Position, len(r.Events))
	for i, e := range r.Events {
		pos[i] = &fossilv1.Position{Id: e.ID, EventNumber: e.Number, Sequence: e.Sequence}
	}
	return ok(pos, resp.Header.Get("Fossil-Duplicate") == "true")
}

func (s collectStep) request() *fossilv1.CollectRequest {
	m := &fossilv1.CollectRequest{Stream: s.stream, Replace: s.replace}
	if s.expect > 0 {
		m.ExpectedSequence = u64(s.expect)
	}
	for _, e := range s.events {
		m.Events = append(m.Events, e.proto())
	}
	return m
}

// rpcOutcome reads an RPC's error (or success) as an outcome, checking
// that its code is the one its status maps to.
func rpcOutcome(t *testing.T, c caller, err error) outcome {
	t.Helper()
	p := c.problem(err)
	if p == nil {
		t.Fatalf("%s: an error without a problem detail: %v", c.name, err)
	}
	o := fromProblem(p)
	if got, want := c.code(err), rpc.Code(o.Status); got != want {
		t.Fatalf("%s: code %v for status %d, want %v", c.name, got, o.Status, want)
	}
	return o
}

func streamOutcome(t *testing.T, r *fossilv1.CollectStreamResponse) outcome {
	t.Helper()
	if e := r.GetError(); e != nil {
		o := fromProblem(e.GetProblem().AsMap())
		if got, want := connect.Code(e.GetCode()), rpc.Code(o.Status); got != want {
			t.Fatalf("stream answer %d: code %v for status %d, want %v", r.GetIndex(), got, o.Status, want)
		}
		return o
	}
	return ok(r.GetResult().GetEvents(), r.GetResult().GetDuplicate())
}

// consumerStep is a commit, an ack or a consumer read.
type consumerStep struct {
	name   string
	http   func(url string) *http.Request
	rpc    func(ctx context.Context, c caller) (string, error)
	result func(body []byte) string // of a successful HTTP answer
}

func put(url, path string, headers ...string) *http.Request {
	req, _ := http.NewRequest(http.MethodPut, url+path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

func post(url, path, body string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

func commitStep(name string, offset uint64, rewind bool) consumerStep {
	return consumerStep{
		name: name,
		http: func(url string) *http.Request {
			h := []string{"Last-Event-Id", strconv.FormatUint(offset, 10)}
			if rewind {
				h = append(h, "Fossil-Rewind", "true")
			}
			return put(url, "/consumer/billing/commit", h...)
		},
		rpc: func(ctx context.Context, c caller) (string, error) {
			_, err := c.commit(ctx, &fossilv1.CommitRequest{Consumer: "billing", Offset: u64(offset), Rewind: rewind})
			return "", err
		},
	}
}

func ackStep(name, id, source, consumer string) consumerStep {
	return consumerStep{
		name: name,
		http: func(url string) *http.Request {
			b, _ := json.Marshal(map[string]string{"consumer_name": consumer, "source": source})
			return post(url, "/events/"+id+"/ack", string(b))
		},
		rpc: func(ctx context.Context, c caller) (string, error) {
			_, err := c.ack(ctx, &fossilv1.AckRequest{Consumer: consumer, Id: id, Source: source})
			return "", err
		},
	}
}

var consumerSteps = []consumerStep{
	commitStep("commit", 3, false),
	commitStep("commit backwards", 1, false),
	commitStep("commit backwards with rewind", 2, true),
	commitStep("commit beyond the head", 999, false),
	ackStep("ack", "e3", "", "billing"),
	ackStep("ack again", "e3", "/shop", "billing"),
	ackStep("ack an unknown event", "nope", "", "billing"),
	ackStep("ack an id of two sources", "e1", "", "billing"),
	ackStep("ack without a consumer", "e1", "/till", ""),
	{
		name: "consumer state",
		http: func(url string) *http.Request {
			req, _ := http.NewRequest(http.MethodGet, url+"/consumer/billing", nil)
			return req
		},
		rpc: func(ctx context.Context, c caller) (string, error) {
			m, err := c.consumer(ctx, &fossilv1.GetConsumerRequest{Consumer: "billing"})
			return fmt.Sprintf("offset=%d lag=%d connected=%v committed=%v", m.GetOffset(), m.GetLag(), m.GetConnected(), m.GetCommittedAt() != nil), err
		},
		result: func(b []byte) string {
			var c struct {
				Offset, Lag int64
				Connected   bool
				CommittedAt *string `json:"committed_at"`
			}
			_ = json.Unmarshal(b, &c)
			return fmt.Sprintf("offset=%d lag=%d connected=%v committed=%v", c.Offset, c.Lag, c.Connected, c.CommittedAt != nil)
		},
	},
	{
		name: "unknown consumer",
		http: func(url string) *http.Request {
			req, _ := http.NewRequest(http.MethodGet, url+"/consumer/nobody", nil)
			return req
		},
		rpc: func(ctx context.Context, c caller) (string, error) {
			_, err := c.consumer(ctx, &fossilv1.GetConsumerRequest{Consumer: "nobody"})
			return "", err
		},
	},
}

// storedDocs reads the first limit events of the log over HTTP, as
// stored documents.
func storedDocs(t *testing.T, url string, limit int) []map[string]any {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/events?limit=%d", url, limit))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var docs []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

// logOf reads the whole log over HTTP: number, stream, sequence, id,
// type and data of each event.
func logOf(t *testing.T, url string) []string {
	t.Helper()
	docs := storedDocs(t, url, 1000)
	out := make([]string, len(docs))
	for i, d := range docs {
		data, _ := json.Marshal(d["data"])
		out[i] = fmt.Sprintf("%v %v/%v %v %v %s", d["fossileventnumber"], d["fossilstream"], d["fossilsequenceinstream"], d["id"], d["type"], data)
	}
	return out
}

// rpcLogOf reads the whole log with ReadLog.
func rpcLogOf(ctx context.Context, t *testing.T, c caller) []string {
	t.Helper()
	r, err := c.readLog(ctx, &fossilv1.ReadLogRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(r.GetEvents()))
	for i, e := range r.GetEvents() {
		var data any
		_ = json.Unmarshal([]byte(e.GetEvent().GetTextData()), &data)
		b, _ := json.Marshal(data)
		out[i] = fmt.Sprintf("%d %s/%d %s %s %s", e.GetEventNumber(), e.GetStream(), e.GetSequence(), e.GetEvent().GetId(), e.GetEvent().GetType(), b)
	}
	return out
}

func putSchema(t *testing.T, url string) {
	t.Helper()
	req := put(url, "/schemas/order.checked")
	req.Body = io.NopCloser(strings.NewReader(orderSchema))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT schema: %d", resp.StatusCode)
	}
}

// TestSameAsHTTP runs one table of appends, commits, acks and reads over
// HTTP on one server and over each RPC protocol on a server of its own
// (and the appends also pipelined in one CollectStream call), and
// requires the same outcome of every step: the same events, numbers and
// sequences, the same errors (status, problem type, field), the same log.
func TestSameAsHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ref := testserver.Start(t)
	putSchema(t, ref.URL)
	var want []outcome
	for _, s := range collectSteps {
		want = append(want, httpCollect(t, ref.URL, s))
	}
	var wantConsumers []outcome
	var wantResults []string
	for _, s := range consumerSteps {
		o := httpDoResult(t, s, ref.URL)
		wantConsumers = append(wantConsumers, o.outcome)
		wantResults = append(wantResults, o.result)
	}
	wantLog := logOf(t, ref.URL)
	// A sanity check of the table itself: it covers successes and each error.
	statuses := map[int]bool{}
	for _, o := range append(want, wantConsumers...) {
		statuses[o.Status] = true
	}
	for _, s := range []int{200, 400, 404, 409, 422} {
		if !statuses[s] {
			t.Fatalf("the table has no step answered %d over HTTP: %+v", s, want)
		}
	}

	for _, mode := range []string{"connect", "connect-grpc-h2c", "grpc-go", "collect-stream"} {
		t.Run(mode, func(t *testing.T) {
			srv := testserver.Start(t)
			putSchema(t, srv.URL)
			name := mode
			if mode == "collect-stream" {
				name = "grpc-go"
			}
			var c caller
			for _, x := range callers(t, srv.URL, "") {
				if x.name == name {
					c = x
				}
			}
			var got []outcome
			if mode == "collect-stream" {
				// Every step in one call, sent before any answer is read.
				b, err := c.stream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range collectSteps {
					if err := b.send(s.request()); err != nil {
						t.Fatal(err)
					}
				}
				if err := b.closeSend(); err != nil {
					t.Fatal(err)
				}
				for i := range collectSteps {
					r, err := b.recv()
					if err != nil {
						t.Fatalf("answer %d: %v", i, err)
					}
					if r.GetIndex() != uint64(i) {
						t.Fatalf("answer %d has index %d", i, r.GetIndex())
					}
					got = append(got, streamOutcome(t, r))
				}
				if _, err := b.recv(); err != io.EOF {
					t.Fatalf("after the last answer: %v, want EOF", err)
				}
			} else {
				for _, s := range collectSteps {
					res, err := c.collect(ctx, s.request())
					if err != nil {
						got = append(got, rpcOutcome(t, c, err))
					} else {
						got = append(got, ok(res.GetEvents(), res.GetDuplicate()))
					}
				}
			}
			for i, s := range collectSteps {
				want[i].Field = rpcField(want[i].Field)
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("%s:\n got %+v\nwant %+v (HTTP)", s.name, got[i], want[i])
				}
			}
			for i, s := range consumerSteps {
				res, err := s.rpc(ctx, c)
				o := outcome{Status: 200}
				if err != nil {
					o = rpcOutcome(t, c, err)
					res = ""
				}
				wantConsumers[i].Field = rpcField(wantConsumers[i].Field)
				if o != wantConsumers[i] || res != wantResults[i] {
					t.Errorf("%s:\n got %+v %q\nwant %+v %q (HTTP)", s.name, o, res, wantConsumers[i], wantResults[i])
				}
			}
			if got := logOf(t, srv.URL); !reflect.DeepEqual(got, wantLog) {
				t.Errorf("log over HTTP:\n got %q\nwant %q", got, wantLog)
			}
			if got := rpcLogOf(ctx, t, c); !reflect.DeepEqual(got, wantLog) {
				t.Errorf("log over RPC ReadLog:\n got %q\nwant %q", got, wantLog)
			}
		})
	}
}

// rpcField names the field of an RPC that carries what an HTTP location
// names (a header, a member of a JSON body, the body).
func rpcField(http string) string {
	switch http {
	case "Last-Event-Id":
		return "offset"
	case "consumer_name":
		return "consumer"
	case "body": // the one event of a structured request: events[0]
		return ""
	}
	return http
}

type httpResult struct {
	outcome
	result string
}

func httpDoResult(t *testing.T, s consumerStep, url string) httpResult {
	t.Helper()
	req := s.http(url)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		var p map[string]any
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s: %d %s", s.name, resp.StatusCode, b)
		}
		return httpResult{outcome: fromProblem(p)}
	}
	r := httpResult{outcome: outcome{Status: 200}}
	if s.result != nil {
		r.result = s.result(b)
	}
	return r
}
