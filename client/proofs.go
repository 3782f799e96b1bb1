package client

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// Leaf is what the log's Merkle tree holds for one event (GET
// /proofs/leaves): the salt of its data digest and its leaf hash.
type Leaf struct {
	Number   int64  `json:"number"`
	Salt     []byte `json:"salt"`      // base64 in JSON
	LeafHash []byte `json:"leaf_hash"` // base64 in JSON
}

// Leaves reads the tree leaves of the events after number after (at most
// limit, 0: 100). Events outside the token's read grant are left out.
func (c *Client) Leaves(ctx context.Context, after int64, limit int) ([]Leaf, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var body struct {
		Leaves []Leaf `json:"leaves"`
	}
	if _, err := c.getJSON(ctx, "/proofs/leaves", q, &body); err != nil {
		return nil, err
	}
	return body.Leaves, nil
}

// Replacement is one record of the log's replacement chain (GET
// /proofs/replacements): event Number was replaced, and LeafHash is the
// leaf of its new content.
type Replacement struct {
	Index      int64     `json:"index"`
	Number     int64     `json:"number"`
	LeafHash   []byte    `json:"leaf_hash"`
	Chain      []byte    `json:"chain"`
	ReplacedAt time.Time `json:"replaced_at"`
}

// Replacements reads the replacement records after index after (at most
// limit, 0: 100), in index order.
func (c *Client) Replacements(ctx context.Context, after int64, limit int) ([]Replacement, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var body struct {
		Replacements []Replacement `json:"replacements"`
	}
	if _, err := c.getJSON(ctx, "/proofs/replacements", q, &body); err != nil {
		return nil, err
	}
	return body.Replacements, nil
}
