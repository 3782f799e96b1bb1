package proof_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/testserver"
	"github.com/fossil-events/fossil/proof"
)

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, b := get(t, url)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// checkpoint fetches and verifies the current checkpoint.
func checkpoint(t *testing.T, srv *testserver.Server, vkey string) proof.Checkpoint {
	t.Helper()
	resp, b := get(t, srv.URL+"/checkpoint")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("GET /checkpoint: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	c, err := proof.Open(b, vkey)
	if err != nil {
		t.Fatalf("checkpoint %q: %v", b, err)
	}
	return c
}

// TestProofs grows a log one event at a time to 300, keeping every
// checkpoint, then checks inclusion proofs with tlog.CheckRecord and
// consistency proofs with tlog.CheckTree between random pairs of them.
func TestProofs(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	vkey := strings.TrimSpace(string(mustGet(t, srv.URL+"/checkpoint/key")))
	empty := checkpoint(t, srv, vkey)
	if empty.Size != 0 || empty.Origin != "fossil" || empty.Root != (tlog.Hash{0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}) {
		t.Fatalf("empty log checkpoint: %+v", empty)
	}
	const n = 300
	roots := make([]tlog.Hash, n+1)
	roots[0] = empty.Root
	for i := 1; i <= n; i++ {
		num := srv.MustPost(t, fmt.Sprintf("s/%d", i%7), testserver.Event{ID: fmt.Sprint(i), Data: fmt.Sprintf(`{"i":%d}`, i)})
		c := checkpoint(t, srv, vkey)
		if c.Size < num || c.Size != int64(i) {
			t.Fatalf("after event %d: checkpoint size %d", num, c.Size)
		}
		roots[i] = c.Root
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for size := int64(1); size <= n; size++ {
		for _, num := range []int64{size, 1 + rng.Int64N(size)} {
			var p proof.InclusionProof
			if err := json.Unmarshal(mustGet(t, fmt.Sprintf("%s/events/%d/proof?tree_size=%d", srv.URL, num, size)), &p); err != nil {
				t.Fatal(err)
			}
			if p.LeafIndex != num-1 || p.TreeSize != size || p.Proof == nil {
				t.Fatalf("proof of %d in %d: %+v", num, size, p)
			}
			if err := tlog.CheckRecord(p.Proof, size, roots[size], num-1, p.LeafHash); err != nil {
				t.Fatalf("proof of %d in %d: %v", num, size, err)
			}
		}
		from := 1 + rng.Int64N(size)
		var c proof.ConsistencyProof
		if err := json.Unmarshal(mustGet(t, fmt.Sprintf("%s/proofs/consistency?from=%d&to=%d", srv.URL, from, size)), &c); err != nil {
			t.Fatal(err)
		}
		if c.From != from || c.To != size || c.Proof == nil {
			t.Fatalf("consistency %d -> %d: %+v", from, size, c)
		}
		if err := tlog.CheckTree(c.Proof, size, roots[size], from, roots[from]); err != nil {
			t.Fatalf("consistency %d -> %d: %v", from, size, err)
		}
	}
	// The default tree size is the current checkpoint's; empty proofs are
	// [] and not null.
	if b := string(mustGet(t, srv.URL+"/proofs/consistency?from=300&to=300")); !strings.Contains(b, `"proof":[]`) {
		t.Fatalf("empty consistency proof: %s", b)
	}
	var p proof.InclusionProof
	if err := json.Unmarshal(mustGet(t, srv.URL+"/events/7/proof"), &p); err != nil || p.TreeSize != n {
		t.Fatalf("default tree size: %+v %v", p, err)
	}
	// Tiles: the level-0 tiles are the leaf hashes, and tlog reads proofs
	// from them.
	tiles := tlog.TileReader(tileReader{t, srv.URL})
	tree := tlog.Tree{N: n, Hash: roots[n]}
	hr := tlog.TileHashReader(tree, tiles)
	th, err := tlog.TreeHash(n, hr)
	if err != nil || th != roots[n] {
		t.Fatalf("tree hash from tiles: %v %v", th, err)
	}
	rp, err := tlog.ProveRecord(n, 41, hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckRecord(rp, n, roots[n], 41, leafHash(t, srv, 42)); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []struct {
		path   string
		status int
	}{
		{"/events/301/proof", 404},
		{"/events/0/proof", 400},
		{"/events/x/proof", 400},
		{"/events/10/proof?tree_size=9", 400},
		{"/events/10/proof?tree_size=301", 400},
		{"/events/10/proof?tree_size=x", 400},
		{"/events/10/proof?size=10", 400},
		{"/proofs/consistency?from=0&to=5", 400},
		{"/proofs/consistency?from=6&to=5", 400},
		{"/proofs/consistency?from=1&to=301", 400},
		{"/proofs/consistency?from=1", 400},
		{"/proofs/consistency", 400},
		{"/tile/0/002", 404},
		{"/tile/0/001.p/44", 200},
		{"/tile/0/001.p/45", 404},
		{"/tile/0/001.p/45x", 404},
		{"/tile/data/000", 404},
		{"/tile/1/000.p/2", 404},
		{"/tile/1/000.p/1", 200},
	} {
		resp, b := get(t, srv.URL+bad.path)
		if resp.StatusCode != bad.status {
			t.Errorf("GET %s: %d %s, want %d", bad.path, resp.StatusCode, b, bad.status)
		}
		if bad.status != 200 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: Content-Type %q", bad.path, resp.Header.Get("Content-Type"))
		}
	}
}

func leafHash(t *testing.T, srv *testserver.Server, n int64) tlog.Hash {
	var p proof.InclusionProof
	if err := json.Unmarshal(mustGet(t, fmt.Sprintf("%s/events/%d/proof", srv.URL, n)), &p); err != nil {
		t.Fatal(err)
	}
	return p.LeafHash
}

// tileReader fetches tiles from /tile/ (the C2SP layout: no height in the
// path).
type tileReader struct {
	t   *testing.T
	url string
}

func (r tileReader) Height() int { return proof.TileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		path := strings.TrimPrefix(tile.Path(), fmt.Sprintf("tile/%d/", proof.TileHeight))
		out[i] = mustGet(r.t, r.url+"/tile/"+path)
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// TestProofsWhileBuilding turns the log into one written before proofs
// existed: the server answers 503 with Retry-After on every proof route,
// keeps appending, and a process started next builds the tree, after which
// the log verifies.
func TestProofsWhileBuilding(t *testing.T) {
	t.Parallel()
	// This process checks its tree once, at start.
	srv := testserver.Start(t, func(c *cmd.Config) { c.TreeWatchInterval = time.Hour })
	for i := range 5 {
		srv.MustPost(t, "old", testserver.Event{ID: fmt.Sprint(i)})
	}
	if _, err := srv.Pool.Exec(context.Background(), `UPDATE fossil_events SET salt = NULL, tree_hashes = NULL;
		DELETE FROM fossil_tree_hashes;
		UPDATE fossil_head SET tree_size = 0, tree_edge = '\x'`); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/checkpoint", "/events/1/proof", "/proofs/consistency?from=1&to=2", "/tile/0/000.p/1", "/proofs/leaves"} {
		resp, b := get(t, srv.URL+path)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "being built") {
			t.Errorf("GET %s while building: %d Retry-After %q %s", path, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
	srv.MustPost(t, "new", testserver.Event{ID: "during"})
	second := testserver.StartOn(t, srv.DBURL)
	testserver.Eventually(t, 10*time.Second, "the tree to be built", func() bool {
		resp, _ := get(t, srv.URL+"/checkpoint")
		return resp.StatusCode == http.StatusOK
	})
	srv.MustPost(t, "new", testserver.Event{ID: "after"})
	key := strings.TrimSpace(string(mustGet(t, second.URL+"/checkpoint/key")))
	res, err := proof.Verify(context.Background(), &proof.HTTPSource{URL: srv.URL, Key: key}, proof.VerifyOptions{})
	if err != nil || res.Checkpoint.Size != 7 {
		t.Fatalf("verify after the build: %+v %v", res, err)
	}
	if m := string(mustGet(t, srv.URL+"/metrics")); !strings.Contains(m, "fossil_tree_hashing_seconds_count") || !strings.Contains(m, "fossil_checkpoint_age_seconds") {
		t.Errorf("metrics lack the tree series")
	}
	if m := string(mustGet(t, second.URL+"/metrics")); !strings.Contains(m, "fossil_tree_size 6") {
		t.Errorf("the builder's process does not report the tree size it built")
	}
}

// TestProofsAuth: checkpoints and consistency proofs need any valid token,
// an inclusion proof read access to the event's stream, and
// /proofs/leaves serves only the events the token may read.
func TestProofsAuth(t *testing.T) {
	t.Parallel()
	const secret = "a-proofs-secret-of-at-least-32-bytes!"
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = secret })
	tok := func(claim map[string]any) string {
		claims := jwt.MapClaims{"sub": "t", "exp": time.Now().Add(time.Hour).Unix()}
		if claim != nil {
			claims["fossil"] = claim
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	full, narrow := tok(nil), tok(map[string]any{"read": []string{"a/{x}"}})
	for i, stream := range []string{"a/1", "b/1", "a/2"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/collect", strings.NewReader(`{}`))
		for k, v := range map[string]string{"Authorization": "Bearer " + full, "Fossil-Stream": stream, "ce-specversion": "1.0", "ce-id": fmt.Sprint(i), "ce-source": "/a", "ce-type": "t", "Content-Type": "application/json"} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("post: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	do := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		path, token string
		status      int
	}{
		{"/checkpoint", "", 401},
		{"/checkpoint", narrow, 200},
		{"/checkpoint/key", narrow, 200},
		{"/proofs/consistency?from=1&to=3", narrow, 200},
		{"/tile/0/000.p/3", narrow, 200},
		{"/proofs/replacements", narrow, 200},
		{"/events/1/proof", narrow, 200},
		{"/events/2/proof", narrow, 403},
		{"/events/2/proof", full, 200},
	} {
		if status, body := do(c.path, c.token); status != c.status {
			t.Errorf("GET %s: %d %s, want %d", c.path, status, body, c.status)
		}
	}
	_, body := do("/proofs/leaves", narrow)
	var page struct {
		Leaves []proof.LeafEntry `json:"leaves"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil || len(page.Leaves) != 2 || page.Leaves[0].Number != 1 || page.Leaves[1].Number != 3 || strings.Contains(body, "b/1") {
		t.Fatalf("/proofs/leaves with a narrow grant: %s %v", body, err)
	}
}

// TestImportGetsItsTree: events restored with POST /import (which copies
// them without the appender) are hashed into the tree by the tree
// builder, after which the log verifies.
func TestImportGetsItsTree(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.TreeWatchInterval = 50 * time.Millisecond })
	var body strings.Builder
	for i := 1; i <= 40; i++ {
		e := fossil.Event{Number: int64(i), Stream: fmt.Sprintf("imp/%d", i%3), Sequence: int64((i-1)/3 + 1), Doc: []byte(fmt.Sprintf(`{"specversion":"1.0","id":"e%d","source":"/import","type":"t","data":{"i":%d}}`, i, i))}
		if i%3 == 0 {
			e.Sequence = int64(i / 3)
		}
		body.Write(e.AppendJSON(nil))
		body.WriteByte('\n')
	}
	resp, err := http.Post(srv.URL+"/import", "application/x-ndjson", strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("import: %d %s", resp.StatusCode, b)
	}
	testserver.Eventually(t, 10*time.Second, "the imported events to be in the tree", func() bool {
		resp, _ := get(t, srv.URL+"/checkpoint")
		return resp.StatusCode == http.StatusOK
	})
	srv.MustPost(t, "imp/1", testserver.Event{ID: "after"})
	key := strings.TrimSpace(string(mustGet(t, srv.URL+"/checkpoint/key")))
	res, err := proof.Verify(context.Background(), &proof.HTTPSource{URL: srv.URL, Key: key}, proof.VerifyOptions{})
	if err != nil || res.Checkpoint.Size != 41 {
		t.Fatalf("verify after the import: %+v %v", res, err)
	}
}
