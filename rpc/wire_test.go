package rpc

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fossil-events/fossil/fossil"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
)

// wireDocs are stored documents: Fossil's compact form (the encoder's own
// path) and forms it hands to ToProto.
var wireDocs = []struct {
	doc  string
	fast bool // the encoder writes it itself
}{
	{`{"specversion":"1.0","id":"be-6-438-95","source":"/fossil-bench","type":"bench.event","datacontenttype":"application/json","data":{"sent_ns":1796306806488483905,"writer":6,"pad":"abcdefgh"}}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t"}`, true},
	{`{}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":null}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":"just text"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"text/plain","data":"just text"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":"x","datacontenttype":"text/plain; charset=utf-8"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"text/plain","data":"line\nnext \"q\" \u00e9"}`, false},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"application/json","data":"a \"quoted\" \\ string"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"application/cloudevents+json","data":[1,"]}",{"a":"\\"}]}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAEC/w=="}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data_base64":"AAECAw=="}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data_base64":""}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data_base64":"not base64!"}`, false},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","time":"2026-01-02T03:04:05.6Z"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","time":"1969-12-31T23:59:59.123456789-02:00"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","time":"1970-01-01T00:00:00Z"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","time":"yesterday"}`, false},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","dataschema":"https://example.com/s.json","subject":"o/1"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","dataschema":""}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","flag":true,"off":false,"n":7,"neg":-7,"zero":0,"big":2147483648,"small":-2147483649,"f":1.5,"e":1e3,"nil":null,"obj":{"a":[1,2]},"arr":[],"s":""}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","tenant":"a\"b"}`, false},
	{`{"specversion":"1.0","id":"a\\b","source":"/s","type":"t"}`, false},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","ten\u0061nt":"x"}`, false},
	{`{"specversion":"1.0","id":"a","id":"b","source":"/s","type":"t"}`, false},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","x":1,"x":2}`, false},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":1,"data":2}`, false},
	{`{"specversion":"1.0","id":7,"source":"/s","type":"t"}`, false},
	{`{"specversion":"1.0","id":null,"source":"/s","type":"t"}`, false},
	{" { \"specversion\" : \"1.0\" , \"id\" : \"a\" ,\n\"source\":\"/s\",\"type\":\"t\",\"data\": {\"k\": 1} , \"x\" : [ 1 ] } ", true},
	{`{"specversion":"1.0","id":"é","source":"/s","type":"t","ext":"日本","data":"ü"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":7,"data":"x"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"text/pl\u0061in","data":"x"}`, false},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":"\ud800"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{"pad":"` + strings.Repeat("abcdefghijklmnopqrstuvwxyz", 20) + `"}}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{"pad":"` + strings.Repeat("abcdefghijklmnopqrstuvwxyz", 2) + `\"q\" é"}}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","ext":"` + strings.Repeat("abcdefghijklmnopqrstuvwxyz", 2) + `é","data":"` + strings.Repeat("x", 40) + `\u00e9"}`, true},
	{`{"specversion":"1.0","id":"a","source":"/s","type":"t","ext":"` + strings.Repeat("abcdefghijklmnopqrstuvwxyz", 2) + `\"","data":1}`, false},
	{`{"specversion":"1.0","id":"` + strings.Repeat("i", 30) + `é","source":"/s","type":"t"}`, true},
}

func TestWireEncoderSameAsToProto(t *testing.T) {
	var w wireEncoder
	for i, tc := range wireDocs {
		if !json.Valid([]byte(tc.doc)) {
			t.Fatalf("doc %d is not JSON: %s", i, tc.doc)
		}
		e := &fossil.Event{Number: int64(i + 1), Stream: "orders/" + strings.Repeat("x", i), Sequence: int64(i), Doc: []byte(tc.doc)}
		if i%3 == 0 {
			e.ExpectAck = []string{"billing", ""}
		}
		if ok := w.parse(e); ok != tc.fast {
			t.Errorf("doc %d: own path %v, want %v: %s", i, ok, tc.fast, tc.doc)
		}
		sameAsToProto(t, &w, e)
	}
}

// sameAsToProto checks that the encoder's bytes for e decode to what
// ToProto returns, and that both refuse the same documents.
func sameAsToProto(t *testing.T, w *wireEncoder, e *fossil.Event) {
	t.Helper()
	want, wantErr := ToProto(e)
	if wantErr == nil {
		if _, err := proto.Marshal(want); err != nil {
			want, wantErr = nil, err
		}
	}
	b, err := w.appendEvent([]byte("prefix"), e)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("doc %s: encoder error %v, ToProto error %v", e.Doc, err, wantErr)
	}
	if err != nil {
		return
	}
	if string(b[:6]) != "prefix" {
		t.Fatalf("doc %s: the encoder overwrote what it appends to", e.Doc)
	}
	got := new(fossilv1.Event)
	if err := proto.Unmarshal(b[6:], got); err != nil {
		t.Fatalf("doc %s: the encoder's bytes do not decode: %v", e.Doc, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("doc %s:\nencoder  %v\nToProto  %v", e.Doc, got, want)
	}
}

// TestSubscribeEventsMessage: a page's bytes are a SubscribeResponse of
// its events, in order.
func TestSubscribeEventsMessage(t *testing.T) {
	var (
		w      wireEncoder
		events []*fossil.Event
	)
	for i, tc := range wireDocs {
		e := &fossil.Event{Number: int64(i + 1), Stream: "s", Sequence: int64(i + 1), Doc: []byte(tc.doc)}
		if _, err := ToProto(e); err == nil {
			events = append(events, e)
		}
	}
	b, err := w.appendSubscribeEvents(nil, events)
	if err != nil {
		t.Fatal(err)
	}
	msg := new(fossilv1.SubscribeResponse)
	if err := proto.Unmarshal(b, msg); err != nil {
		t.Fatal(err)
	}
	if len(msg.GetEvents()) != len(events) {
		t.Fatalf("%d events, want %d", len(msg.GetEvents()), len(events))
	}
	for i, e := range events {
		want, _ := ToProto(e)
		if !proto.Equal(msg.GetEvents()[i], want) {
			t.Fatalf("event %d: %v, want %v", i, msg.GetEvents()[i], want)
		}
	}
	// Handed over as unknown fields, the bytes are the message's.
	out := new(fossilv1.SubscribeResponse)
	out.ProtoReflect().SetUnknown(b)
	m, err := proto.Marshal(out)
	if err != nil || string(m) != string(b) {
		t.Fatalf("marshalled %d bytes (%v), want the %d given", len(m), err, len(b))
	}
	if _, _, n := protowire.ConsumeTag(b); n <= 0 {
		t.Fatal("no tag")
	}
}

func FuzzWireEncoder(f *testing.F) {
	for _, tc := range wireDocs {
		f.Add([]byte(tc.doc))
	}
	var w wireEncoder
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !json.Valid(doc) {
			return // stored documents are JSON
		}
		sameAsToProto(t, &w, &fossil.Event{Number: 9, Stream: "s/1", Sequence: 3, Doc: doc})
	})
}

// benchDoc is an event as `fossil bench` writes it (a 500-byte pad in its
// data).
var benchDoc = `{"specversion":"1.0","id":"5w917b27-4-0-0","source":"/fossil-bench","type":"bench.event","datacontenttype":"application/json","data":{"sent_ns":1796311514194028820,"writer":4,"pad":"` + strings.Repeat("abcdefghijklmnopqrstuvwxyz", 19) + `ab"}}`

func BenchmarkSubscribePage(b *testing.B) {
	doc := []byte(benchDoc)
	events := make([]*fossil.Event, 1000)
	for i := range events {
		events[i] = &fossil.Event{Number: int64(i + 1), Stream: "bench/s70", Sequence: int64(i + 1), Doc: doc}
	}
	b.Run("wire", func(b *testing.B) {
		var (
			w   wireEncoder
			buf []byte
		)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			buf, err = w.appendSubscribeEvents(buf[:0], events)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("messages", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			out := &fossilv1.SubscribeResponse{Events: make([]*fossilv1.Event, len(events))}
			for i, e := range events {
				pe, err := ToProto(e)
				if err != nil {
					b.Fatal(err)
				}
				out.Events[i] = pe
			}
			var err error
			buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], out)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestScanString holds the word-at-a-time scan equal to the byte loop for a
// quote, a backslash or a byte outside ASCII at every offset of the first
// words and past them.
func TestScanString(t *testing.T) {
	for n := 0; n < 70; n++ {
		for _, c := range []string{`\"`, `\\`, "é", "\x80", `\u0041`, "\x01", "\x00"} {
			for at := 0; at <= n; at++ {
				body := strings.Repeat("a", at) + c + strings.Repeat("b", n-at)
				for _, tail := range []string{`"`, `", "x"`, ``} {
					b := []byte(`"` + body + tail)
					end, flags := scanString(b, 0)
					wantEnd, wantFlags := scanEscaped(b, 0)
					if end != wantEnd || (end >= 0 && flags != wantFlags) {
						t.Fatalf("%q: scanString %d %b, byte loop %d %b", b, end, flags, wantEnd, wantFlags)
					}
				}
			}
		}
	}
}
