package cmd

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/mux"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/fossil-events/fossil/tracing"
)

// tracerName names the tracer of Fossil's own spans (the group commit).
const tracerName = "github.com/fossil-events/fossil"

// setupTracing configures tracing from the OTEL_* environment unless a
// test set Server.Tracing; tracing off leaves it nil, and then nothing
// below adds a span, a middleware or a hook.
func (s *Server) setupTracing(ctx context.Context) error {
	if s.Tracing != nil {
		return nil
	}
	t, err := tracing.FromEnv(ctx, os.Getenv, os.Stderr, Version())
	if err != nil {
		return err
	}
	if t != nil {
		s.Tracing, s.ownTracing = t, true
		s.Logger.Info("tracing is on (OTEL_* environment)")
	}
	return nil
}

// queryTracerProvider traces the statements (see store.Config).
func (s *Server) queryTracerProvider() trace.TracerProvider {
	if s.Tracing == nil {
		return nil
	}
	return s.Tracing.Provider
}

// groupTracer traces the group commits.
func (s *Server) groupTracer() trace.Tracer {
	if s.Tracing == nil {
		return nil
	}
	return s.Tracing.Provider.Tracer(tracerName)
}

// traceHTTP gives every request a server span (otelhttp) that continues
// an incoming traceparent, named by its route ("POST /collect"). The
// probes and /metrics are not traced.
func (s *Server) traceHTTP(h http.Handler, router *mux.Router) http.Handler {
	if s.Tracing == nil {
		return h
	}
	router.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if route := mux.CurrentRoute(r); route != nil {
				if tmpl, err := route.GetPathTemplate(); err == nil {
					span := trace.SpanFromContext(r.Context())
					span.SetName(r.Method + " " + tmpl)
					span.SetAttributes(attribute.String("http.route", tmpl))
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	return otelhttp.NewHandler(h, "fossil",
		otelhttp.WithTracerProvider(s.Tracing.Provider),
		otelhttp.WithPropagators(s.Tracing.Propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return false
			}
			return true
		}),
	)
}

// shutdownTracing exports the spans still buffered.
func (s *Server) shutdownTracing() error {
	if !s.ownTracing {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Tracing.Shutdown(ctx)
}
