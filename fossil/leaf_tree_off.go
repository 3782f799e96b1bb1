//go:build benchnotree

package fossil

// TreeWork is false in a benchmark build with the tag benchnotree: no
// salts, no leaf tails, no hashing, no tree in the head row, no tree
// builder. It exists only to measure what the tree costs the append path
// against the same code without it (docs/PERFORMANCE.md, "The Merkle tree
// (proofs)"); such a build serves no proofs and is never a product.
const TreeWork = false
