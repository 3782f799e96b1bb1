package fossil_test

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/fossil"
)

type hashStorage []tlog.Hash

func (s hashStorage) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = s[x]
	}
	return out, nil
}

// TestTreeEdge checks the in-memory edge against tlog's own stored-hash
// construction for every size up to 600, and that an edge loaded from
// stored hashes continues identically.
func TestTreeEdge(t *testing.T) {
	var stored hashStorage
	edge := &fossil.TreeEdge{}
	for n := int64(0); n < 600; n++ {
		leaf := tlog.RecordHash(fmt.Appendf(nil, "leaf %d", n))
		want, err := tlog.StoredHashesForRecordHash(n, leaf, stored)
		if err != nil {
			t.Fatal(err)
		}
		got, err := edge.Add(leaf)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("size %d: stored hashes %v, want %v", n, got, want)
		}
		stored = append(stored, want...)
		root, err := tlog.TreeHash(n+1, stored)
		if err != nil {
			t.Fatal(err)
		}
		if edge.Root() != root {
			t.Fatalf("size %d: root %v, want %v", n+1, edge.Root(), root)
		}
		hs, _ := stored.ReadHashes(fossil.EdgeIndexes(n + 1))
		loaded, err := fossil.LoadTreeEdge(n+1, hs)
		if err != nil {
			t.Fatal(err)
		}
		if *loaded != *edge {
			t.Fatalf("size %d: loaded edge differs", n+1)
		}
	}
}
