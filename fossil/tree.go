package fossil

import (
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// TreeEdge is the right edge of the log's Merkle tree: the roots of the
// complete subtrees of a tree of Size leaves (one per bit set in Size, at
// most 63). It is all that adding a leaf or computing the root needs, so
// the appender keeps it in memory instead of reading the stored hashes.
// The zero value is the empty tree.
type TreeEdge struct {
	Size   int64
	hashes [64]tlog.Hash // hashes[l] is the level-l subtree root, when bit l of Size is set
}

// EdgeIndexes returns the stored-hash indexes of the right edge of a tree
// of size leaves, in the order [TreeEdge.Load] expects.
func EdgeIndexes(size int64) []int64 {
	var idx []int64
	for l := 0; l < 63; l++ {
		if size&(1<<l) != 0 {
			idx = append(idx, tlog.StoredHashIndex(l, size>>l-1))
		}
	}
	return idx
}

// LoadTreeEdge returns the edge of a tree of size leaves from the hashes
// at [EdgeIndexes](size).
func LoadTreeEdge(size int64, hashes []tlog.Hash) (*TreeEdge, error) {
	e := &TreeEdge{Size: size}
	i := 0
	for l := 0; l < 63; l++ {
		if size&(1<<l) == 0 {
			continue
		}
		if i >= len(hashes) {
			return nil, fmt.Errorf("tree edge of size %d: %d hashes", size, len(hashes))
		}
		e.hashes[l] = hashes[i]
		i++
	}
	return e, nil
}

// ReadHashes serves the hashes of the edge; it implements tlog.HashReader
// for [tlog.StoredHashesForRecordHash] and [tlog.TreeHash].
func (e *TreeEdge) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		// The edge holds, at each level l set in Size, node Size>>l - 1.
		l, k := tlog.SplitStoredHashIndex(idx)
		if l >= 63 || e.Size&(1<<l) == 0 || k != e.Size>>l-1 {
			return nil, fmt.Errorf("tree edge of size %d has no stored hash %d", e.Size, idx)
		}
		out[i] = e.hashes[l]
	}
	return out, nil
}

// Add appends a leaf and returns the hashes to store from
// tlog.StoredHashIndex(0, old size) on.
func (e *TreeEdge) Add(leaf tlog.Hash) ([]tlog.Hash, error) {
	hashes, err := tlog.StoredHashesForRecordHash(e.Size, leaf, e)
	if err != nil {
		return nil, err
	}
	// Adding leaf n completes one subtree per trailing one bit of n: the
	// new size has those bits cleared and the next one set.
	l := bits.TrailingZeros64(uint64(e.Size + 1))
	clear(e.hashes[:l])
	e.hashes[l] = hashes[l]
	e.Size++
	return hashes, nil
}

// Root returns the tree hash.
func (e *TreeEdge) Root() tlog.Hash {
	h, err := tlog.TreeHash(e.Size, e)
	if err != nil {
		panic(err) // the edge holds every hash TreeHash reads
	}
	return h
}

// Bytes returns the edge's hashes, lowest level first (the order of
// [EdgeIndexes]), concatenated.
func (e *TreeEdge) Bytes() []byte {
	b := make([]byte, 0, bits.OnesCount64(uint64(e.Size))*tlog.HashSize)
	for l := 0; l < 63; l++ {
		if e.Size&(1<<l) != 0 {
			b = append(b, e.hashes[l][:]...)
		}
	}
	return b
}

// ParseTreeEdge is the inverse of [TreeEdge.Bytes].
func ParseTreeEdge(size int64, b []byte) (*TreeEdge, error) {
	n := bits.OnesCount64(uint64(size))
	if size < 0 || len(b) != n*tlog.HashSize {
		return nil, fmt.Errorf("tree edge of size %d: %d bytes, want %d", size, len(b), n*tlog.HashSize)
	}
	hashes := make([]tlog.Hash, n)
	for i := range hashes {
		copy(hashes[i][:], b[i*tlog.HashSize:])
	}
	return LoadTreeEdge(size, hashes)
}
