package proof_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/proof"
	"github.com/fossil-events/fossil/store"
)

// BenchmarkProofAt1M serves inclusion and consistency proofs over HTTP
// from a log of 1,000,000 events (rows made by generate_series, the tree
// hashed in runs of 100 leaves as append groups write them) and reports
// the latency percentiles. Run it with
//
//	go test -run NONE -bench ProofAt1M -benchtime 2000x ./proof
func BenchmarkProofAt1M(b *testing.B) {
	const size = 1_000_000
	ctx := context.Background()
	dbURL := dbtest.NewDB(b)
	st, err := store.Open(ctx, store.Config{DatabaseURL: dbURL, MaxConns: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	fill := `INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc, salt)
		SELECT n, 's/' || (n % 1000), n / 1000 + 1, n::text, '/b', 't', '{}', '\x00'
		FROM generate_series(1, $1::bigint) AS n`
	if _, err := st.Pool().Exec(ctx, fill, size); err != nil {
		b.Fatal(err)
	}
	edge := &fossil.TreeEdge{}
	for lo := int64(0); lo < size; lo += 100 {
		first := tlog.StoredHashIndex(0, edge.Size)
		var run []byte
		for n := lo; n < lo+100; n++ {
			hs, err := edge.Add(tlog.RecordHash(fmt.Appendf(nil, "leaf %d", n)))
			if err != nil {
				b.Fatal(err)
			}
			for _, h := range hs {
				run = append(run, h[:]...)
			}
		}
		if _, err := st.Pool().Exec(ctx, `INSERT INTO fossil_tree_hashes VALUES ($1, $2)`, first, run); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE fossil_head SET last_number = $1, tree_size = $1, tree_edge = $2`, int64(size), edge.Bytes()); err != nil {
		b.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	skey, _, _ := proof.GenerateKey("bench")
	signer, _ := note.NewSigner(skey)
	r := mux.NewRouter()
	proof.New(proof.Config{Store: st, Signer: signer}).Register(r)
	srv := httptest.NewServer(r)
	defer srv.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var url string
		if i%2 == 0 {
			url = fmt.Sprintf("%s/events/%d/proof", srv.URL, 1+rng.Int64N(size))
		} else {
			url = fmt.Sprintf("%s/proofs/consistency?from=%d&to=%d", srv.URL, 1+rng.Int64N(size), size)
		}
		start := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		took = append(took, time.Since(start))
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d", url, resp.StatusCode)
		}
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}
