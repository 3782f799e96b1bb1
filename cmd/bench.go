package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fossil-events/fossil/loadgen"
)

const benchUsage = `Usage: fossil bench [flags]

Load-tests the Fossil server at --url (and nothing else): --clients writers
POST events for --duration or until --events have been written; optional
live subscribers measure delivery latency, idle subscribers measure what
holding streams costs, and --replay times a catch-up read of the whole log.
Only loopback targets are allowed unless --allow-remote is given.

Delivery latency is measured from the "sent_ns" timestamp each writer puts
in the event's data just before the POST to the moment a subscriber reads
the event: it includes the append itself, so it is an upper bound of
commit → delivery.

Flags:
`

// runBench parses the bench flags, runs loadgen and prints its report (a
// table, or JSON with --json) on stdout; progress goes to stderr.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg loadgen.Config
	var asJSON, quiet bool
	fs := flag.NewFlagSet("fossil bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "base URL of the Fossil server to load")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a target that is not a loopback address")
	fs.IntVar(&cfg.Clients, "clients", 64, "concurrent writers (0: write nothing)")
	fs.IntVar(&cfg.Batch, "batch", 1, "events per POST: 1 posts single events in binary mode, more posts batches")
	fs.IntVar(&cfg.DataBytes, "data-bytes", 500, "approximate size of each event's JSON data")
	fs.IntVar(&cfg.Streams, "streams", 1000, "number of streams written to (1: one hot stream)")
	fs.BoolVar(&cfg.ExpectSequence, "expect-sequence", false, "send Fossil-Expected-Sequence-Number (writers own their streams when streams >= clients)")
	fs.StringVar(&cfg.Protocol, "protocol", "http", "how writers append: http (POST /collect) or grpc (one CollectStream call per writer, each on its own HTTP/2 connection)")
	fs.IntVar(&cfg.Pipeline, "pipeline", 256, "grpc writers: requests sent ahead of their answers")
	fs.Float64Var(&cfg.Rate, "rate", 0, "cap on events per second across all writers (0: unlimited)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "length of the write phase (default 10s unless --events is set)")
	fs.Int64Var(&cfg.Events, "events", 0, "stop after this many events (0: no limit)")
	fs.IntVar(&cfg.Subscribers, "subscribers", 0, "live SSE subscribers measuring delivery latency")
	fs.StringVar(&cfg.SubscribeTemplate, "subscribe", "", `stream template of the live subscribers; "{run}" is the run id (default "bench/{run}/{s}")`)
	fs.IntVar(&cfg.IdleSubscribers, "idle-subscribers", 0, "SSE subscribers held open on a stream without events")
	fs.IntVar(&cfg.RSSPid, "rss-pid", 0, "pid of the server on this machine whose VmRSS to sample around the idle subscribers")
	fs.BoolVar(&cfg.Replay, "replay", false, "after writing, replay the log from event 0 over /sse?stream={+all}")
	fs.Int64Var(&cfg.ReplayLimit, "replay-limit", 0, "replay at most this many events (0: up to the head)")
	fs.StringVar(&cfg.ReplayProtocol, "replay-protocol", "http", "how the replay reads: http (/sse) or grpc (Subscribe)")
	fs.StringVar(&cfg.RunID, "run-id", "", "name of this run's streams, bench/<run-id>/s<N> (default random)")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&quiet, "quiet", false, "no progress line on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("bench: unexpected arguments: %v", fs.Args())
	}
	if !quiet {
		cfg.Progress = stderr
		cfg.ProgressPlain = !isTerminal(stderr)
	}
	if err := cfg.Defaults(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Clients > 0 {
		// Fossil keeps every event forever: say so before writing any.
		fmt.Fprintf(stderr, "fossil bench: writing permanent events to %s, streams bench/%s/s0 … s%d (Fossil never deletes them; use a scratch server)\n",
			cfg.URL, cfg.RunID, cfg.Streams-1)
	}
	res, err := loadgen.Run(ctx, cfg)
	switch {
	case errors.Is(err, loadgen.ErrInvalidConfig), errors.Is(err, loadgen.ErrRemoteTarget):
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	case err != nil && res == nil:
		return fmt.Errorf("bench: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if err := res.WriteTable(stdout); err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("bench interrupted: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a character device, where a progress line
// may rewrite itself with "\r".
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
