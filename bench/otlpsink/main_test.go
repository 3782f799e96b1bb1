package main

import (
	"context"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The sink takes what the OTLP/HTTP exporter sends, plain and gzipped,
// and counts every span.
func TestSinkCountsExportedSpans(t *testing.T) {
	for _, compression := range []otlptracehttp.Compression{otlptracehttp.NoCompression, otlptracehttp.GzipCompression} {
		var st stats
		srv := httptest.NewServer(st.handler())
		ctx := context.Background()
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"), otlptracehttp.WithCompression(compression))
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(100)))
		tr := tp.Tracer("test")
		for range 250 {
			_, span := tr.Start(ctx, "a")
			_, child := tr.Start(ctx, "b")
			child.End()
			span.End()
		}
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatalf("compression %v: export: %v", compression, err)
		}
		srv.Close()
		if st.spans.Load() != 500 || st.bad.Load() != 0 || st.requests.Load() < 5 {
			t.Fatalf("compression %v: %d spans in %d requests (%d undecodable), want 500 in at least 5", compression, st.spans.Load(), st.requests.Load(), st.bad.Load())
		}
	}
}
