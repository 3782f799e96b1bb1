package fossil_test

import (
	"strings"
	"testing"

	"github.com/fossil-events/fossil/fossil"
)

var benchDoc = []byte(`{"specversion":"1.0","id":"0a1b2c3d-4e5f","source":"/bench/writer/7","type":"bench.event","time":"2026-12-03T08:00:00.123456Z","datacontenttype":"application/json","data":{"sent_ns":1764748800123456789,"pad":"` + strings.Repeat("x", 480) + `"}}`)

func BenchmarkLeafTail(b *testing.B) {
	salt := fossil.NewSalt()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fossil.LeafTail(benchDoc, "", salt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLeafHash(b *testing.B) {
	tail, _ := fossil.LeafTail(benchDoc, "", fossil.NewSalt())
	b.ReportAllocs()
	for b.Loop() {
		fossil.LeafHash(12345678, "bench/9p09oj89/s17", 4242, tail)
	}
}

func BenchmarkTreeEdgeAdd(b *testing.B) {
	e := &fossil.TreeEdge{}
	tail, _ := fossil.LeafTail(benchDoc, "", fossil.NewSalt())
	h := fossil.LeafHash(1, "s", 1, tail)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Add(h); err != nil {
			b.Fatal(err)
		}
	}
}
