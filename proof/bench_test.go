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
// from a log of 1,000,000 events (each row with the stored hashes its
// append adds, as the appender writes them) and reports
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
	// Each event row carries the stored hashes its append added, as the
	// appender writes them.
	fill := `INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc, salt, tree_hashes)
		SELECT n, 's/' || (n % 1000), n / 1000 + 1, n::text, '/b', 't', '{}', '\x00', h
		FROM unnest($1::bigint[], $2::bytea[]) AS u(n, h)`
	edge := &fossil.TreeEdge{}
	const chunk = 50_000
	for lo := int64(0); lo < size; lo += chunk {
		numbers, runs := make([]int64, 0, chunk), make([][]byte, 0, chunk)
		for n := lo; n < lo+chunk; n++ {
			hs, err := edge.Add(tlog.RecordHash(fmt.Appendf(nil, "leaf %d", n)))
			if err != nil {
				b.Fatal(err)
			}
			var run []byte
			for _, h := range hs {
				run = append(run, h[:]...)
			}
			numbers, runs = append(numbers, n+1), append(runs, run)
		}
		if _, err := st.Pool().Exec(ctx, fill, numbers, runs); err != nil {
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
