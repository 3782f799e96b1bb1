package fossil_test

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/fossil-events/fossil/fossil"
)

// TestLeaf pins the leaf encoding of docs/PROOFS.md: its example, byte for
// byte, and that the served form of an event (with the fossil* members)
// gives the leaf of the stored form.
func TestLeaf(t *testing.T) {
	salt := make([]byte, fossil.SaltSize)
	doc := []byte(`{"specversion":"1.0","id":"a1","source":"/shop","type":"order.placed","data":{"n":1}}`)
	tail, err := fossil.LeafTail(doc, "", salt)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(append(append(append([]byte{}, salt...), 'j'), `{"n":1}`...))
	want := "fossil-leaf/v1\n" +
		"fossileventnumber:j:1:1\n" +
		"fossilstream:s:8:orders/1\n" +
		"fossilsequenceinstream:j:1:1\n" +
		"id:s:2:a1\n" +
		"source:s:5:/shop\n" +
		"specversion:s:3:1.0\n" +
		"type:s:12:order.placed\n" +
		"data:d:32:" + string(digest[:]) + "\n"
	if got := string(fossil.AppendLeaf(nil, 1, "orders/1", 1, tail)); got != want {
		t.Fatalf("leaf\n%q\nwant\n%q", got, want)
	}

	served := []byte(`{"specversion":"1.0","id":"a1","source":"/shop","type":"order.placed","data":{"n":1},"fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"orders/1"}`)
	if tail2, err := fossil.LeafTail(served, "", salt); err != nil || string(tail2) != string(tail) {
		t.Fatalf("served form: %q %v", tail2, err)
	}

	for _, c := range []struct{ doc, ack, want string }{
		{`{"id":"x","ext":7,"flag":true,"data_base64":"AAE="}`, "", "ext:j:1:7\nflag:j:4:true\nid:s:1:x\n"},
		{`{"id":"a\u00e9\n"}`, "c1,c2", "fossilexpectack:s:5:c1,c2\nid:s:4:a\xc3\xa9\n\n"},
	} {
		tail, err := fossil.LeafTail([]byte(c.doc), c.ack, salt)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(tail[:len(tail)-len("data:d:32:")-33]); got != c.want {
			t.Errorf("%s: %q, want %q", c.doc, got, c.want)
		}
	}
	for _, bad := range []string{`{"id":"x","id":"y"}`, `{"data":1,"data_base64":"AA=="}`, `{"data_base64":"%%"}`, `[1]`, `{"id":"x"} 1`, `{"id":`} {
		if _, err := fossil.LeafTail([]byte(bad), "", salt); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestEncodeDocLeaf checks that the leaf tail EncodeDocLeaf builds from an
// event's attributes is the one LeafTail reads from its document.
func TestEncodeDocLeaf(t *testing.T) {
	salt := make([]byte, fossil.SaltSize)
	salt[0] = 7
	for i, c := range []struct {
		set        func(*event.Event)
		source     string
		dataschema string
		kind       fossil.DataKind
		data       string
	}{
		{set: func(e *event.Event) {}, source: "/s"},
		{set: func(e *event.Event) {
			e.SetSubject("Euro € \u2028 \"q\"\\")
			e.SetTime(time.Date(2024, 4, 5, 3, 56, 24, 123000000, time.FixedZone("x", 3600)))
			e.SetDataContentType("application/json")
			e.SetExtension("tenant", "acme")
			e.SetExtension("count", int32(-5))
			e.SetExtension("flag", true)
			e.SetExtension("zz", "\x01")
		}, source: "http://example.com/a b", dataschema: "http://x/s.json", kind: fossil.DataJSON, data: `{"a":[1,"\u00e9"]}`},
		{set: func(e *event.Event) { e.SetDataContentType("text/plain") }, source: "/s", kind: fossil.DataString, data: "line\n\"two\" \u2029"},
		{set: func(e *event.Event) { e.SetExtension("a", "b") }, source: "/s", kind: fossil.DataBase64, data: "\x00\xff\x10"},
		{set: func(e *event.Event) {
			for _, n := range []string{"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"} {
				e.SetExtension(n, n)
			}
		}, source: "/s", kind: fossil.DataJSON, data: `1`},
	} {
		ev := event.New()
		ev.SetID(fmt.Sprintf("id-%d", i))
		ev.SetType("t.y.p.e")
		c.set(&ev)
		doc, tail := fossil.EncodeDocLeaf(&ev, c.source, c.dataschema, c.kind, []byte(c.data), salt)
		if want := fossil.EncodeDocVerbatim(&ev, c.source, c.dataschema, c.kind, []byte(c.data)); string(doc) != string(want) {
			t.Fatalf("%d: document %s, want %s", i, doc, want)
		}
		want, err := fossil.LeafTail(doc, "", salt)
		if err != nil {
			t.Fatal(err)
		}
		if string(tail) != string(want) {
			t.Errorf("%d: tail\n%q\nwant\n%q", i, tail, want)
		}
	}
	ev := event.New()
	ev.SetID("a\xffb")
	if _, tail := fossil.EncodeDocLeaf(&ev, "/s", "", fossil.DataNone, nil, salt); tail != nil {
		t.Errorf("invalid UTF-8: tail %q, want none", tail)
	}
}
