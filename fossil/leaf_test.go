package fossil_test

import (
	"crypto/sha256"
	"testing"

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
