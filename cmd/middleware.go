package cmd

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/fossil-events/fossil/problem"
)

// recoverPanics turns a panic in a handler into a logged stack and a 500
// problem, so no input can take the process down. http.ErrAbortHandler is
// re-raised: it is how a handler aborts a response on purpose.
func recoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
				panic(v)
			}
			logger.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			problem.Write(w, r, problem.FromError(fmt.Errorf("panic: %v", v)))
		}()
		next.ServeHTTP(w, r)
	})
}
