// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables. It is off unless they ask for it: then no
// tracer provider exists and the server adds no middleware, no span and
// no statement hook, so tracing that is off costs nothing.
//
// On when OTEL_TRACES_EXPORTER names an exporter ("otlp" or "console") or
// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set,
// and OTEL_SDK_DISABLED is not "true". OTLP is sent over HTTP/protobuf
// (OTEL_EXPORTER_OTLP_PROTOCOL "http/protobuf", the default); the
// exporter reads its endpoint, headers, timeout, compression and
// certificates from the OTEL_EXPORTER_OTLP_* variables itself, the SDK
// its sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), its batch
// span processor (OTEL_BSP_*) and its resource (OTEL_SERVICE_NAME,
// default "fossil"; OTEL_RESOURCE_ATTRIBUTES). OTEL_PROPAGATORS takes
// "tracecontext" and "baggage" (the default is both) or "none".
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is a configured tracer provider and propagator.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	shutdown   func(context.Context) error
}

// Shutdown flushes the spans not yet exported and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// New returns tracing around an existing provider (tests use an
// in-memory exporter), with the W3C trace context and baggage propagators.
func New(tp trace.TracerProvider) *Tracing {
	return &Tracing{Provider: tp, Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
}

// FromEnv configures tracing from the environment (see the package
// documentation); it returns nil, nil when tracing is off. console is
// where the "console" exporter writes (standard error for the server, so
// that standard output stays machine-readable).
func FromEnv(ctx context.Context, getenv func(string) string, console io.Writer, version string) (*Tracing, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	exporterName := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	if exporterName == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		exporterName = "otlp"
	}
	var exporter sdktrace.SpanExporter
	switch exporterName {
	case "", "none":
		return nil, nil
	case "otlp":
		protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if protocol == "" {
			protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		if protocol != "" && protocol != "http/protobuf" {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%s: Fossil sends OTLP over http/protobuf only (a collector listens for it on port 4318)", protocol)
		}
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		exporter = exp
	case "console":
		exp, err := stdouttrace.New(stdouttrace.WithWriter(console))
		if err != nil {
			return nil, err
		}
		exporter = exp
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: Fossil knows otlp, console and none", exporterName)
	}
	propagator, err := propagatorFromEnv(getenv("OTEL_PROPAGATORS"))
	if err != nil {
		return nil, err
	}
	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the defaults.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "fossil"), attribute.String("service.version", version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Propagator: propagator, shutdown: tp.Shutdown}, nil
}

func propagatorFromEnv(v string) (propagation.TextMapPropagator, error) {
	if strings.TrimSpace(v) == "" {
		v = "tracecontext,baggage"
	}
	var list []propagation.TextMapPropagator
	for _, name := range strings.Split(v, ",") {
		switch strings.TrimSpace(name) {
		case "tracecontext":
			list = append(list, propagation.TraceContext{})
		case "baggage":
			list = append(list, propagation.Baggage{})
		case "none":
		default:
			return nil, fmt.Errorf("OTEL_PROPAGATORS: %q: Fossil knows tracecontext, baggage and none", name)
		}
	}
	return propagation.NewCompositeTextMapPropagator(list...), nil
}
