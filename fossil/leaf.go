package fossil

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"
	"golang.org/x/mod/sumdb/tlog"
)

// Leaves of the log's Merkle tree (docs/PROOFS.md is the normative
// description; keep the two in step).
//
// A leaf is the byte string
//
//	"fossil-leaf/v1\n" field*
//	field = name ":" kind ":" len ":" value "\n"
//
// with kind "s" (a JSON string; value is its decoded UTF-8), "j" (any other
// JSON value; value is its JSON text) or "d" (the data digest), len the
// decimal byte length of value. The fields are, in this order:
// fossileventnumber, fossilstream, fossilsequenceinstream, fossilexpectack
// (only when present), every other member of the event except data,
// data_base64 and names starting with "fossil", sorted by name (byte
// order), and last "data" of kind "d": SHA-256(salt ‖ k ‖ payload) where
// salt is the event's 32 random bytes and k, payload are "n" and nothing
// (no data), "j" and the JSON text of the data member, or "b" and the
// decoded bytes of data_base64. The leaf hash is tlog.RecordHash(leaf).

// SaltSize is the length of an event's salt.
const SaltSize = 32

const leafMagic = "fossil-leaf/v1\n"

// NewSalt returns a fresh random salt.
func NewSalt() []byte {
	if !TreeWork {
		return nil
	}
	s := make([]byte, SaltSize)
	_, _ = rand.Read(s) // crypto/rand.Read never fails
	return s
}

// NewSalts returns n fresh random salts, read from the random source at
// once.
func NewSalts(n int) [][]byte {
	if !TreeWork {
		return make([][]byte, n)
	}
	b := make([]byte, n*SaltSize)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	out := make([][]byte, n)
	for i := range out {
		out[i] = b[i*SaltSize : (i+1)*SaltSize : (i+1)*SaltSize]
	}
	return out
}

// LeafTail returns the part of an event's leaf that does not depend on its
// position in the log: everything after fossilsequenceinstream. doc is the
// event's document (without fossil* members, as stored, or with them, as
// served: they are skipped), expectAck its fossilexpectack value ("" when
// absent). It is computed before the event is numbered, off the appender's
// path.
func LeafTail(doc []byte, expectAck string, salt []byte) ([]byte, error) {
	if len(salt) != SaltSize {
		return nil, fmt.Errorf("leaf: salt of %d bytes, want %d", len(salt), SaltSize)
	}
	// The appender calls this for every event, so the document is read
	// with jsoniter's streaming iterator rather than into a map.
	type member struct {
		name  string
		kind  byte
		value []byte
	}
	members := make([]member, 0, 12)
	var (
		data      []byte
		dataKind  byte = 'n'
		memberErr error
	)
	// Raw values are copied into one buffer as large as the document, so
	// that the slices taken from it stay valid.
	scratch := make([]byte, 0, len(doc))
	raw := func(it *jsoniter.Iterator) []byte {
		k := len(scratch)
		scratch = it.SkipAndAppendBytes(scratch)
		return scratch[k:len(scratch):len(scratch)]
	}
	it := leafJSON.BorrowIterator(doc)
	defer leafJSON.ReturnIterator(it)
	ok := it.ReadObjectCB(func(it *jsoniter.Iterator, name string) bool {
		switch {
		case (name == "data" || name == "data_base64") && dataKind != 'n':
			memberErr = errors.New("leaf: the event has data twice")
			return false
		case name == "data":
			data, dataKind = raw(it), 'j'
		case name == "data_base64":
			if it.WhatIsNext() != jsoniter.StringValue {
				memberErr = errors.New("leaf: data_base64 is not a string")
				return false
			}
			b, err := base64.StdEncoding.DecodeString(it.ReadString())
			if err != nil {
				memberErr = fmt.Errorf("leaf: data_base64: %w", err)
				return false
			}
			data, dataKind = b, 'b'
		case strings.HasPrefix(name, ReservedPrefix):
			it.Skip()
		case it.WhatIsNext() == jsoniter.StringValue:
			members = append(members, member{name, 's', []byte(it.ReadString())})
		default:
			members = append(members, member{name, 'j', raw(it)})
		}
		return it.Error == nil
	})
	if memberErr != nil {
		return nil, memberErr
	}
	if !ok || (it.Error != nil && it.Error != io.EOF) {
		return nil, fmt.Errorf("leaf: event document: %v", it.Error)
	}
	it.WhatIsNext() // only white space may follow
	if it.Error != io.EOF {
		return nil, errors.New("leaf: event document: data after the object")
	}
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(members); i++ {
		if members[i].name == members[i-1].name {
			return nil, fmt.Errorf("leaf: member %q appears twice", members[i].name)
		}
	}
	b := make([]byte, 0, len(doc)-len(data)+128)
	if expectAck != "" {
		b = appendLeafField(b, ExtExpectAck, 's', []byte(expectAck))
	}
	for _, m := range members {
		b = appendLeafField(b, m.name, m.kind, m.value)
	}
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte{dataKind})
	h.Write(data)
	return appendLeafField(b, "data", 'd', h.Sum(nil)), nil
}

// leafJSON reads event documents for their leaves; it only iterates.
var leafJSON = jsoniter.ConfigCompatibleWithStandardLibrary

// AppendLeaf appends the leaf of the event at number in stream at
// sequence whose [LeafTail] is tail.
func AppendLeaf(b []byte, number int64, stream string, sequence int64, tail []byte) []byte {
	b = append(b, leafMagic...)
	var num [20]byte
	b = appendLeafField(b, ExtEventNumber, 'j', strconv.AppendInt(num[:0], number, 10))
	b = appendLeafField(b, ExtStream, 's', []byte(stream))
	b = appendLeafField(b, ExtSequenceInStream, 'j', strconv.AppendInt(num[:0], sequence, 10))
	return append(b, tail...)
}

// LeafHash returns the tree's hash of the event at number in stream at
// sequence whose [LeafTail] is tail.
func LeafHash(number int64, stream string, sequence int64, tail []byte) tlog.Hash {
	var buf [512]byte
	return tlog.RecordHash(AppendLeaf(buf[:0], number, stream, sequence, tail))
}

// LeafHash computes the leaf hash of a stored or served event: doc
// may carry the fossil* members (they are skipped; number, stream,
// sequence and expectAck come from the event itself).
func (e *Event) LeafHash(salt []byte) (tlog.Hash, error) {
	tail, err := LeafTail(e.Doc, strings.Join(e.ExpectAck, ","), salt)
	if err != nil {
		return tlog.Hash{}, err
	}
	return LeafHash(e.Number, e.Stream, e.Sequence, tail), nil
}

func appendLeafField(b []byte, name string, kind byte, value []byte) []byte {
	b = append(b, name...)
	b = append(b, ':', kind, ':')
	b = strconv.AppendInt(b, int64(len(value)), 10)
	b = append(b, ':')
	b = append(b, value...)
	return append(b, '\n')
}

// Replacement records. Replacing an event never changes its leaf; instead
// every replacement appends a record to a hash chain that checkpoints name
// in an extension line. Record i (from 1) is
//
//	"fossil-replacement/v1\n" "index:" i "\n" "number:" n "\n" "leaf:" base64(new leaf hash) "\n"
//
// and chain(i) = SHA-256(chain(i-1) ‖ record i), chain(0) = 32 zero bytes.

// ReplacementRecord returns the text of replacement record index.
func ReplacementRecord(index, number int64, leaf tlog.Hash) []byte {
	return fmt.Appendf(nil, "fossil-replacement/v1\nindex:%d\nnumber:%d\nleaf:%s\n", index, number, base64.StdEncoding.EncodeToString(leaf[:]))
}

// NextChain returns chain(i) from chain(i-1) and record i.
func NextChain(prev tlog.Hash, record []byte) tlog.Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(record)
	var out tlog.Hash
	h.Sum(out[:0])
	return out
}

// ReplacementsExtension is the checkpoint extension line's keyword.
const ReplacementsExtension = "fossil-replacements"

// FormatReplacementsLine returns the checkpoint extension line naming a
// chain of count records (no trailing newline).
func FormatReplacementsLine(count int64, chain tlog.Hash) string {
	return fmt.Sprintf("%s %d %s", ReplacementsExtension, count, base64.StdEncoding.EncodeToString(chain[:]))
}

// ParseReplacementsLine parses a line made by [FormatReplacementsLine].
func ParseReplacementsLine(line string) (count int64, chain tlog.Hash, err error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != ReplacementsExtension {
		return 0, chain, errors.New("not a " + ReplacementsExtension + " line")
	}
	count, err = strconv.ParseInt(f[1], 10, 64)
	if err != nil || count < 0 {
		return 0, chain, fmt.Errorf("bad replacement count %q", f[1])
	}
	chain, err = tlog.ParseHash(f[2])
	return count, chain, err
}

// leafMembers gathers the members of a document as [EncodeDocLeaf] writes
// it, for its leaf tail.
type leafMembers struct {
	on    bool
	valid bool
	n     int
	fixed [8]leafMember
	more  []leafMember
}

type leafMember struct {
	name  string
	kind  byte
	value string
}

func (l *leafMembers) add(name string, kind byte, value string) {
	if !l.on {
		return
	}
	if l.n == 0 {
		l.valid = true
	}
	if kind == 's' && !utf8.ValidString(value) {
		l.valid = false
	}
	if l.n < len(l.fixed) {
		l.fixed[l.n] = leafMember{name, kind, value}
	} else {
		l.more = append(l.more, leafMember{name, kind, value})
	}
	l.n++
}

// tail returns the leaf tail of the gathered members with the data digest
// of dataKind and payload.
func (l *leafMembers) tail(salt []byte, dataKind byte, payload []byte) []byte {
	members := l.fixed[:min(l.n, len(l.fixed))]
	if len(l.more) > 0 {
		members = append(slices.Clone(members), l.more...)
	}
	slices.SortFunc(members, func(a, b leafMember) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(members); i++ {
		if members[i].name == members[i-1].name {
			return nil
		}
	}
	// The tail's size: each member as name:k:len:value\n (24 bytes bound
	// the punctuation and the decimal length), and the data digest.
	size := len("data:d:32:\n") + sha256.Size
	for _, m := range members {
		size += len(m.name) + len(m.value) + 24
	}
	b := make([]byte, 0, size)
	for _, m := range members {
		b = append(b, m.name...)
		b = append(b, ':', m.kind, ':')
		b = strconv.AppendInt(b, int64(len(m.value)), 10)
		b = append(b, ':')
		b = append(b, m.value...)
		b = append(b, '\n')
	}
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte{dataKind})
	h.Write(payload)
	var sum [sha256.Size]byte
	return appendLeafField(b, "data", 'd', h.Sum(sum[:0]))
}
