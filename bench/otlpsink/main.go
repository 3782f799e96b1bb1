// Command otlpsink accepts OTLP/HTTP trace exports and drops them, so that
// a benchmark can run Fossil with tracing on — every span sampled,
// batched, encoded and sent — without a collector. It listens on -addr
// (default 127.0.0.1:0, a free port), prints its base URL (the value for
// OTEL_EXPORTER_OTLP_ENDPOINT) on the first line of standard output, and
// on SIGINT or SIGTERM prints the requests, bytes and spans it received
// and its own CPU time on standard error. bench/ab.sh starts it with
// AB_TRACING=1.
package main

import (
	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("otlpsink: %v", err)
	}
	var st stats
	srv := &http.Server{Handler: st.handler(), ReadHeaderTimeout: 10 * time.Second}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "http://%s\n", ln.Addr())
	_ = out.Flush()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("otlpsink: %v", err)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Fprintf(os.Stderr, "otlpsink: received and dropped %d spans in %d requests, %d bytes (%d undecodable); its own CPU time %s\n",
		st.spans.Load(), st.requests.Load(), st.bytes.Load(), st.bad.Load(), cpu.Round(time.Millisecond))
}

// stats counts what the sink received.
type stats struct{ requests, bytes, spans, bad atomic.Int64 }

// handler answers POST /v1/traces with an empty ExportTraceServiceResponse
// (everything accepted) after counting the request's spans.
func (st *stats) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			defer zr.Close()
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n, ok := countSpans(b)
		if !ok {
			st.bad.Add(1)
		}
		st.requests.Add(1)
		st.bytes.Add(int64(len(b)))
		st.spans.Add(int64(n))
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

// countSpans counts the spans of an ExportTraceServiceRequest without
// decoding them: resource_spans (1) → scope_spans (2) → spans (2).
func countSpans(b []byte) (int, bool) {
	n := 0
	ok := eachField(b, 1, func(rs []byte) bool {
		return eachField(rs, 2, func(ss []byte) bool {
			return eachField(ss, 2, func([]byte) bool { n++; return true })
		})
	})
	return n, ok
}

// eachField calls fn with each length-delimited field numbered num of the
// message b, and skips the others; false when b is malformed.
func eachField(b []byte, num protowire.Number, fn func([]byte) bool) bool {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 || !fn(v) {
				return false
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return false
		}
		b = b[l:]
	}
	return true
}
