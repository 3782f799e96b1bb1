//go:build !benchnotree

package fossil

// TreeWork is true in every Fossil build: events are salted and hashed
// into the log's Merkle tree. Only a benchmark build with the tag
// benchnotree sets it false, to measure what the tree costs the append
// path against the same code without it (docs/PERFORMANCE.md, "The Merkle
// tree (proofs)"); such a build serves no proofs and is never a product.
const TreeWork = true
