package tracing_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/fossil-events/fossil/tracing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnv(t *testing.T) {
	ctx := context.Background()
	for _, off := range []map[string]string{
		{},
		{"OTEL_TRACES_EXPORTER": "none"},
		{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"},
		{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
	} {
		tr, err := tracing.FromEnv(ctx, env(off), nil, "v1")
		if err != nil || tr != nil {
			t.Fatalf("%v: tracing %v, %v; want off", off, tr, err)
		}
	}
	for _, bad := range []map[string]string{
		{"OTEL_TRACES_EXPORTER": "jaeger"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		{"OTEL_TRACES_EXPORTER": "console", "OTEL_PROPAGATORS": "b3"},
	} {
		if _, err := tracing.FromEnv(ctx, env(bad), nil, "v1"); err == nil {
			t.Fatalf("%v: no error", bad)
		}
	}
	// The OTLP exporter is made without a connection; spans are sent later.
	tr, err := tracing.FromEnv(ctx, env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}), nil, "v1")
	if err != nil || tr == nil {
		t.Fatalf("otlp: %v %v", tr, err)
	}
	_ = tr.Shutdown(context.Background())

	var out bytes.Buffer
	tr, err = tracing.FromEnv(ctx, env(map[string]string{"OTEL_TRACES_EXPORTER": "console"}), &out, "v1.2.3")
	if err != nil || tr == nil {
		t.Fatalf("console: %v %v", tr, err)
	}
	_, span := tr.Provider.Tracer("test").Start(ctx, "hello")
	span.End()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, `"Name":"hello"`) || !strings.Contains(s, `"fossil"`) || !strings.Contains(s, "v1.2.3") {
		t.Fatalf("console exporter wrote %s", s)
	}
}
