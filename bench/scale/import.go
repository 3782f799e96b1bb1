package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fossil-events/fossil/fossil"
)

// importFill fills an empty log in one POST /import: it generates the
// export that a log filled through POST /collect with the same plan would
// give (the same streams, sequences and documents, numbered in plan
// order), each event with a salt and its leaf hash, so the server restores
// the events, the stream table and the Merkle tree in one transaction
// (COPY, secondary indexes built once, the tree hashed from the leaves as
// they stream in). At 10M events this takes minutes where the HTTP batch
// path takes hours. The server must allow a long body (FOSSIL_BODY_TIMEOUT).
func importFill(ctx context.Context, client *http.Client, c config) error {
	jobs := make(chan job, 64)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go plan(ctx, c, jobs)
	pr, pw := io.Pipe()
	var written atomic.Int64
	go func() {
		pw.CloseWithError(writeExport(pw, jobs, c.dataBytes, &written))
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/import", pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	start := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				n := written.Load()
				fmt.Fprintf(os.Stderr, "scale: import: %d/%d events sent (%.0f/s)\n", n, c.target, float64(n)/time.Since(start).Seconds())
			}
		}
	}()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST /import: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /import: %d %s", resp.StatusCode, b)
	}
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "scale: imported %d events in %s (%.0f events/s): %s\n", written.Load(), el.Round(time.Second), float64(written.Load())/el.Seconds(), strings.TrimSpace(string(b)))
	return nil
}

// writeExport writes the events of jobs as `fossil export --tree` lines
// (the event as served, then fossilsalt and fossilleafhash).
func writeExport(w io.Writer, jobs <-chan job, dataBytes int, written *atomic.Int64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	pad := strings.Repeat("x", max(0, dataBytes-40))
	seqs := make(map[string]int64)
	rng := rand.NewChaCha8([32]byte{'f', 'o', 's', 's', 'i', 'l'})
	var (
		line, doc []byte
		salt      [fossil.SaltSize]byte
	)
	for j := range jobs {
		for i := range j.n {
			pos := j.first + int64(i)
			doc = append(doc[:0], `{"specversion":"1.0","id":"scale-`...)
			doc = strconv.AppendInt(doc, pos, 10)
			doc = append(doc, `","source":"bench/scale","type":"bench.scale","datacontenttype":"application/json","data":{"n":`...)
			doc = strconv.AppendInt(doc, pos, 10)
			doc = append(doc, `,"pad":"`...)
			doc = append(doc, pad...)
			doc = append(doc, `"}}`...)
			seqs[j.stream]++
			e := fossil.Event{Number: pos + 1, Stream: j.stream, Sequence: seqs[j.stream], Doc: doc}
			_, _ = rng.Read(salt[:])
			leaf, err := e.LeafHash(salt[:])
			if err != nil {
				return err
			}
			line = e.AppendJSON(line[:0])
			line = append(line[:len(line)-1], `,"fossilsalt":"`...)
			line = base64.StdEncoding.AppendEncode(line, salt[:])
			line = append(line, `","fossilleafhash":"`...)
			line = base64.StdEncoding.AppendEncode(line, leaf[:])
			line = append(line, "\"}\n"...)
			if _, err := bw.Write(line); err != nil {
				return err
			}
			written.Add(1)
		}
	}
	return bw.Flush()
}
