package fossil_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/fossil-events/fossil/fossil"
)

func TestParseJSONRoundTrip(t *testing.T) {
	events := []*fossil.Event{
		{Number: 1, Stream: "orders/42", Sequence: 1, ID: "o1", Source: "/shop", Type: "order.placed",
			Doc: []byte(`{"specversion":"1.0","id":"o1","source":"/shop","type":"order.placed","data":{"fossileventnumber":9,"x":"\"fossilstream\":"}}`)},
		{Number: 5_000_000_000, Stream: "café/1", Sequence: 7, ID: "b", Source: "urn:x", Type: "t", Subject: "s",
			Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), ExpectAck: []string{"billing", "mail\"er"},
			Doc: []byte(`{"specversion":"1.0","id":"b","source":"urn:x","type":"t","subject":"s","time":"2026-01-02T03:04:05.000006Z","ext":"v","data_base64":"AAEC"}`)},
	}
	for _, want := range events {
		line := want.AppendJSON(nil)
		got, err := fossil.ParseJSON("line 1", line)
		if err != nil {
			t.Fatalf("parse %s: %v", line, err)
		}
		if got.Number != want.Number || got.Stream != want.Stream || got.Sequence != want.Sequence || got.ID != want.ID ||
			got.Source != want.Source || got.Type != want.Type || got.Subject != want.Subject || !got.Time.Equal(want.Time) ||
			len(got.ExpectAck) != len(want.ExpectAck) || !bytes.Equal(got.Doc, want.Doc) {
			t.Fatalf("parse %s:\n got %+v\nwant %+v", line, got, want)
		}
		if again := got.AppendJSON(nil); !bytes.Equal(again, line) {
			t.Fatalf("re-rendered %s, want %s", again, line)
		}
	}
}

func TestParseJSONRejects(t *testing.T) {
	for _, line := range []string{
		``,
		`{}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"t"}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"t","fossileventnumber":1,"fossilsequenceinstream":1}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"t","fossileventnumber":0,"fossilsequenceinstream":1,"fossilstream":"s"}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"t","fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"/s"}`,
		`{"specversion":"0.3","id":"a","source":"/s","type":"t","fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"s"}`,
		`{"specversion":"1.0","source":"/s","type":"t","fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"s"}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"t","time":"yesterday","fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"s"}`,
		`{"specversion":"1.0", "id":"a","source":"/s","type":"t","fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"s"}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"t","fossileventnumber":1,"fossilstream":"s","fossilsequenceinstream":1}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{,"fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"s"}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"t","fossilx":"1","fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"s"}`,
	} {
		if _, err := fossil.ParseJSON("line 3", []byte(line)); !errors.Is(err, fossil.ErrInvalid) {
			t.Errorf("ParseJSON(%s) = %v, want ErrInvalid", line, err)
		}
	}
}
