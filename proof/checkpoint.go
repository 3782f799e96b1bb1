// Package proof makes Fossil's log a transparency log: signed checkpoints
// of the Merkle tree the appender keeps over every event, inclusion and
// consistency proofs, hash tiles, and the verifier behind `fossil verify`.
// Hashes and proofs are golang.org/x/mod/sumdb/tlog's, notes
// golang.org/x/mod/sumdb/note's; the leaf encoding is fossil's (see
// docs/PROOFS.md). Its SQL lives in package store.
package proof

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/fossil"
)

// DefaultOrigin is the checkpoint origin line unless configured.
const DefaultOrigin = "fossil"

// Checkpoint is the content of a checkpoint note.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	// Replacements and Chain name the replacement chain (no extension
	// line when Replacements is 0).
	Replacements int64
	Chain        tlog.Hash
}

// Text renders the checkpoint body in the C2SP tlog-checkpoint format.
func (c Checkpoint) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
	if c.Replacements > 0 {
		b.WriteString(fossil.FormatReplacementsLine(c.Replacements, c.Chain))
		b.WriteByte('\n')
	}
	return b.String()
}

// ParseCheckpoint parses a checkpoint body (the note's text).
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if !strings.HasSuffix(text, "\n") || len(lines) < 3 {
		return c, errors.New("checkpoint: want origin, size and root hash lines")
	}
	c.Origin = lines[0]
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return c, fmt.Errorf("checkpoint: bad tree size %q", lines[1])
	}
	c.Size = size
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return c, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	copy(c.Root[:], root)
	for _, l := range lines[3:] {
		if strings.HasPrefix(l, fossil.ReplacementsExtension+" ") {
			c.Replacements, c.Chain, err = fossil.ParseReplacementsLine(l)
			if err != nil {
				return c, fmt.Errorf("checkpoint: %w", err)
			}
		}
	}
	return c, nil
}

// Sign returns the signed note of c.
func Sign(c Checkpoint, signer note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Text()}, signer)
}

// Open verifies a signed checkpoint with the verifier key vkey and parses
// it.
func Open(signed []byte, vkey string) (Checkpoint, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("verifier key: %w", err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	return ParseCheckpoint(n.Text)
}

// GenerateKey returns a new Ed25519 note signer key and its verifier key.
func GenerateKey(name string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, name)
}

// VerifierKey returns the verifier key of a signer key.
func VerifierKey(skey string) (string, error) {
	// A signer key is PRIVATE+KEY+name+hash+base64(alg ‖ seed); note
	// has no function for its verifier key, so derive the public key from
	// the Ed25519 seed and let note format it.
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key")
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != 33 || key[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	return note.NewEd25519VerifierKey(parts[2], ed25519Public(key[1:]))
}

// SameKey reports whether two verifier keys are equal.
func SameKey(a, b string) bool {
	return bytes.Equal([]byte(strings.TrimSpace(a)), []byte(strings.TrimSpace(b)))
}

func ed25519Public(seed []byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}
