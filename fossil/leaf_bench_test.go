package fossil_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

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

// BenchmarkEncodeDocLeaf is the collector's encoding of an event as make
// bench sends it (500 bytes of JSON data) without a salt (no leaf: the
// document only) and with one (the document and the leaf tail): the
// difference is the tree's CPU in the request's goroutine.
func BenchmarkEncodeDocLeaf(b *testing.B) {
	ev := event.New()
	ev.SetID("0a1b2c3d-4e5f-6789")
	ev.SetType("bench.event")
	ev.SetDataContentType("application/json")
	data := []byte(`{"sent_ns":1764748800123456789,"pad":"` + strings.Repeat("x", 450) + `"}`)
	for _, bc := range []struct {
		name string
		salt []byte
	}{{"Doc", nil}, {"DocAndLeaf", make([]byte, fossil.SaltSize)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fossil.EncodeDocLeaf(&ev, "/fossil-bench", "", fossil.DataJSON, data, bc.salt)
			}
		})
	}
}

// BenchmarkNewSalts is the salt of one event, read with those of its
// request.
func BenchmarkNewSalts(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fossil.NewSalts(n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/salt")
		})
	}
}
