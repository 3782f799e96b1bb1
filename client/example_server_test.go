package client_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/fossil-events/fossil/internal/testserver"
)

// exampleTB lets an Example start a test server: examples get no
// *testing.T. Failures panic, which fails the example.
type exampleTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

func (e *exampleTB) Helper()                   {}
func (e *exampleTB) Name() string              { return "example" }
func (e *exampleTB) Context() context.Context  { return context.Background() }
func (e *exampleTB) Log(args ...any)           {}
func (e *exampleTB) Logf(string, ...any)       {}
func (e *exampleTB) Failed() bool              { return e.failed }
func (e *exampleTB) Fatal(args ...any)         { e.failed = true; panic(fmt.Sprint(args...)) }
func (e *exampleTB) Fatalf(f string, a ...any) { e.failed = true; panic(fmt.Sprintf(f, a...)) }
func (e *exampleTB) Errorf(f string, a ...any) { e.failed = true; fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (e *exampleTB) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

func (e *exampleTB) stop() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// startExampleServer runs a Fossil server on a fresh database for one
// example and returns its URL and the function that stops it.
func startExampleServer() (url string, stop func()) {
	tb := &exampleTB{}
	srv := testserver.Start(tb)
	return srv.URL, tb.stop
}
