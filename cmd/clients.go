package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/schollz/progressbar/v3"

	"github.com/fossil-events/fossil/client"
)

// The client commands talk to a running server through package client.
// Machine-readable output goes to stdout, one JSON value per line;
// messages and progress go to stderr. Exit codes: 0 success, 1 a runtime
// failure (the server refused, the network failed), 2 a usage error.

// stdin is where `fossil collect` and `fossil import` read by default.
var stdin io.Reader = os.Stdin

// clientCommands maps each client command to its function.
var clientCommands = map[string]func(ctx context.Context, cc *clientCmd, args []string) error{
	"collect":       runCollect,
	"tail":          runTail,
	"export":        runExport,
	"import":        runImport,
	"consumers":     runConsumers,
	"subscriptions": runSubscriptions,
}

const clientUsage = `Client commands (server at --url or FOSSIL_URL, default %s;
bearer token --token or FOSSIL_TOKEN):
  fossil collect --stream S [--batch N] [--expect-sequence N]
                                     append NDJSON CloudEvents (structured mode) from stdin
  fossil tail [--after N] [--count N] TEMPLATE…
                                     print matching events as NDJSON, following live
  fossil export [--after N] [--output FILE]
                                     write the log (after event N) as NDJSON, in number order
  fossil import [--input FILE]       restore an export into an empty store, or continue
                                     a store with an export --after its newest event (admin)
  fossil consumers [NAME…]           print the named consumers as NDJSON
  fossil subscriptions [list]        print the subscriptions as NDJSON (admin)
  fossil subscriptions get ID…       print subscriptions with their status
  fossil subscriptions create [--input FILE]
                                     create one from a JSON definition on stdin
  fossil subscriptions delete ID…    delete subscriptions (prints what they were)
  fossil subscriptions parked ID     print a subscription's parked events as NDJSON
  fossil subscriptions replay ID     deliver its parked events again
Exit status: 0 success, 1 failure, 2 usage error.
`

// clientCmd is one client command's flags and streams.
type clientCmd struct {
	name           string
	fs             *flag.FlagSet
	url, token     string
	stdout, stderr io.Writer
	c              *client.Client
}

// runClientCommand runs `fossil <name> args…`.
func runClientCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer, env envLookup) error {
	cc := &clientCmd{name: name, stdout: stdout, stderr: stderr}
	cc.fs = flag.NewFlagSet("fossil "+name, flag.ContinueOnError)
	cc.fs.SetOutput(stderr)
	url, _ := env("FOSSIL_URL")
	if url == "" {
		url = client.DefaultURL
	}
	token, _ := env("FOSSIL_TOKEN")
	cc.fs.StringVar(&cc.url, "url", url, "Fossil server (env FOSSIL_URL)")
	cc.fs.StringVar(&cc.token, "token", token, "JWT bearer token (env FOSSIL_TOKEN)")
	cc.fs.Usage = func() {
		fmt.Fprintf(stderr, clientUsage, client.DefaultURL)
		fmt.Fprintf(stderr, "\nFlags of fossil %s:\n", name)
		cc.fs.PrintDefaults()
	}
	return clientCommands[name](ctx, cc, args)
}

// parse parses the flags and makes the client; it returns a usage error
// for bad flags, and for positional arguments unless allowed.
func (cc *clientCmd) parse(args []string, positional bool) error {
	if err := cc.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("%s: %s", cc.name, err.Error())
	}
	if !positional && cc.fs.NArg() > 0 {
		return usageError("%s: unexpected arguments: %s", cc.name, strings.Join(cc.fs.Args(), " "))
	}
	opts := []client.Option{client.WithUserAgent("fossil-cli/" + Version())}
	if cc.token != "" {
		opts = append(opts, client.WithToken(cc.token))
	}
	c, err := client.New(cc.url, opts...)
	if err != nil {
		return usageError("%s: --url: %s", cc.name, err.Error())
	}
	cc.c = c
	return nil
}

// progress returns a progress bar on stderr when it is a terminal, else nil.
func (cc *clientCmd) progress(max int64, description string, bytes bool) *progressbar.ProgressBar {
	if !isTerminal(cc.stderr) {
		return nil
	}
	if bytes {
		return progressbar.DefaultBytes(max, description)
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(cc.stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)
}

// runCollect: fossil collect --stream S — NDJSON structured CloudEvents
// from stdin, sent in atomic batches; one result line per event.
func runCollect(ctx context.Context, cc *clientCmd, args []string) error {
	stream := cc.fs.String("stream", "", "the stream the events go to (required)")
	batch := cc.fs.Int("batch", 100, "events per request, at most 1000 (each request is atomic)")
	expect := cc.fs.Int64("expect-sequence", 0, "the first event must get this sequence (the stream holds exactly N-1 events); later batches expect to follow it")
	input := cc.fs.String("input", "-", "file to read instead of stdin")
	if err := cc.parse(args, false); err != nil {
		return err
	}
	if *stream == "" {
		return usageError("collect: --stream is required")
	}
	if *batch < 1 || *batch > 1000 {
		return usageError("collect: --batch must be 1…1000")
	}
	in, closeIn, err := openInput(*input)
	if err != nil {
		return err
	}
	defer closeIn()
	out := bufio.NewWriter(cc.stdout)
	defer out.Flush()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), client.MaxFrame)
	var (
		pending []json.RawMessage
		line    int
		total   int
		next    = *expect
	)
	printResult := func(res *client.Result) error {
		for _, p := range res.Events {
			b, _ := json.Marshal(struct {
				client.Position
				Duplicate bool `json:"duplicate,omitempty"`
			}{p, res.Duplicate})
			out.Write(append(b, '\n'))
		}
		return out.Flush()
	}
	// Inputs of more than one batch go over a gRPC CollectStream call: each
	// batch is sent without waiting for the previous one's commit, and the
	// answers are printed in order as they come.
	type sent struct {
		pd          *client.Pending
		first, last int // event ordinals, for errors
		line        int
	}
	var (
		pipe   *client.Pipeline
		queue  []sent
		failed error
	)
	awaitHead := func() error {
		s := queue[0]
		queue = queue[1:]
		res, err := s.pd.Wait(ctx)
		if err != nil {
			return fmt.Errorf("collect: events %d–%d (lines up to %d): %w", s.first, s.last, s.line, err)
		}
		return printResult(res)
	}
	closePipe := func() error {
		if pipe == nil {
			return nil
		}
		for len(queue) > 0 && failed == nil {
			failed = awaitHead()
		}
		if err := pipe.Close(); err != nil && failed == nil {
			failed = err
		}
		pipe = nil
		return failed
	}
	defer func() { _ = closePipe() }()
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		var opts []client.CollectOption
		if next > 0 {
			opts = append(opts, client.ExpectSequence(next))
		}
		if pipe == nil && len(pending) == *batch {
			var err error
			if pipe, err = cc.c.Pipeline(ctx, 16); err != nil {
				return err
			}
		}
		if pipe != nil {
			events := make([]event.Event, len(pending))
			for i, raw := range pending {
				if err := json.Unmarshal(raw, &events[i]); err != nil {
					return fmt.Errorf("collect: event %d: not a CloudEvent: %w", total+i+1, err)
				}
			}
			pd, err := pipe.Collect(*stream, events, opts...)
			if err != nil {
				return fmt.Errorf("collect: events %d–%d (lines up to %d): %w", total+1, total+len(pending), line, err)
			}
			queue = append(queue, sent{pd, total + 1, total + len(pending), line})
			if next > 0 {
				next += int64(len(pending)) // pipelined: the batch is counted as sent
			}
			total += len(pending)
			pending = pending[:0]
			for len(queue) > 32 {
				if failed = awaitHead(); failed != nil {
					return failed
				}
			}
			return nil
		}
		res, err := cc.c.CollectJSON(ctx, *stream, pending, opts...)
		if err != nil {
			return fmt.Errorf("collect: events %d–%d (lines up to %d): %w", total+1, total+len(pending), line, err)
		}
		if next > 0 {
			next = res.Last().Sequence + 1
		}
		total += len(pending)
		pending = pending[:0]
		return printResult(res)
	}
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if !json.Valid(b) || b[0] != '{' {
			_ = flush()
			return fmt.Errorf("collect: line %d: not a JSON object (one structured CloudEvent per line)", line)
		}
		pending = append(pending, bytes.Clone(b))
		if len(pending) == *batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		_ = flush()
		_ = closePipe()
		return fmt.Errorf("collect: read line %d: %w", line+1, err)
	}
	if err := flush(); err != nil {
		return err
	}
	return closePipe()
}

// runTail: fossil tail TEMPLATE… — matching events as NDJSON, following
// live events and resuming after broken connections.
func runTail(ctx context.Context, cc *clientCmd, args []string) error {
	after := cc.fs.Int64("after", 0, "start after this event number")
	count := cc.fs.Int64("count", 0, "stop after this many events (0: follow until interrupted)")
	if err := cc.parse(args, true); err != nil {
		return err
	}
	templates := cc.fs.Args()
	if len(templates) == 0 {
		return usageError("tail: name at least one stream template, such as 'orders/{id}' or '{+all}'")
	}
	if *count < 0 || *after < 0 {
		return usageError("tail: --after and --count must not be negative")
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	out := bufio.NewWriter(cc.stdout)
	defer out.Flush()
	var n int64
	err := cc.c.Subscribe(ctx, templates, *after, func(_ context.Context, ev *client.Event) error {
		out.Write(ev.Raw)
		out.WriteByte('\n')
		n++
		if *count > 0 && n >= *count {
			stop()
		}
		// Flush each event unless more are already waiting behind it.
		return out.Flush()
	})
	if errors.Is(err, context.Canceled) && (*count > 0 && n >= *count || ctx.Err() != nil) {
		return nil // --count reached, or interrupted: a normal end
	}
	return err
}

// runExport: fossil export — the global log as NDJSON in number order,
// exactly as the server serves each event.
func runExport(ctx context.Context, cc *clientCmd, args []string) error {
	after := cc.fs.Int64("after", 0, "export the events after this number (0: all)")
	output := cc.fs.String("output", "-", "file to write instead of stdout")
	if err := cc.parse(args, false); err != nil {
		return err
	}
	var w io.Writer = cc.stdout
	var f *os.File
	if *output != "-" {
		var err error
		if f, err = os.OpenFile(*output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer f.Close()
		w = f
	}
	out := bufio.NewWriterSize(w, 256<<10)
	bar := cc.progress(-1, "exporting", false)
	last := *after
	for {
		page, err := cc.c.ReadLog(ctx, last, client.MaxPage)
		if err != nil {
			return fmt.Errorf("export: after event %d: %w", last, err)
		}
		if len(page.Events) == 0 {
			break
		}
		// The tree's leaf of each event (salt and hash), so that an
		// import rebuilds the same tree and the same checkpoint root.
		leaves, err := cc.c.Leaves(ctx, last, len(page.Events))
		if err != nil {
			return fmt.Errorf("export: leaves after event %d: %w", last, err)
		}
		byNumber := make(map[int64]client.Leaf, len(leaves))
		for _, l := range leaves {
			byNumber[l.Number] = l
		}
		for _, ev := range page.Events {
			if ev.Number != last+1 {
				return fmt.Errorf("export: event %d is missing (got %d): does the token grant reading every stream?", last+1, ev.Number)
			}
			leaf, ok := byNumber[ev.Number]
			if !ok {
				return fmt.Errorf("export: event %d has no leaf in the tree yet; try again", ev.Number)
			}
			last = ev.Number
			out.Write(ev.Raw[:len(ev.Raw)-1])
			fmt.Fprintf(out, `,"fossilsalt":"%s","fossilleafhash":"%s"}`, base64.StdEncoding.EncodeToString(leaf.Salt), base64.StdEncoding.EncodeToString(leaf.LeafHash))
			if err := out.WriteByte('\n'); err != nil {
				return fmt.Errorf("export: write: %w", err)
			}
			if bar != nil {
				_ = bar.Add(1)
			}
		}
		if page.Next == "" {
			break
		}
	}
	// The replacement chain: the records that let a verifier accept
	// replaced events, after the events they name. An incremental export
	// (--after) carries the whole chain too: the import checks the
	// records the store holds and adds the new ones.
	// A record naming an event appended after the events were read ends
	// the chain here (records are in order; the next export has it).
	var index int64
chain:
	for {
		reps, err := cc.c.Replacements(ctx, index, client.MaxPage)
		if err != nil {
			return fmt.Errorf("export: replacements after %d: %w", index, err)
		}
		for _, r := range reps {
			if r.Number > last {
				break chain
			}
			b, _ := json.Marshal(map[string]client.Replacement{"fossilreplacement": r})
			out.Write(append(b, '\n'))
			index = r.Index
		}
		if len(reps) < client.MaxPage {
			break
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("export: write: %w", err)
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	fmt.Fprintf(cc.stderr, "exported %d events\n", last-*after)
	return nil
}

// runImport: fossil import — restore an export into an empty store, or
// continue a store with an export after its newest event.
func runImport(ctx context.Context, cc *clientCmd, args []string) error {
	input := cc.fs.String("input", "-", "file to read instead of stdin")
	if err := cc.parse(args, false); err != nil {
		return err
	}
	in, closeIn, err := openInput(*input)
	if err != nil {
		return err
	}
	defer closeIn()
	if f, ok := in.(*os.File); ok && *input != "-" {
		if fi, err := f.Stat(); err == nil {
			if bar := cc.progress(fi.Size(), "importing", true); bar != nil {
				r := progressbar.NewReader(in, bar)
				in = &r
				defer bar.Finish()
			}
		}
	}
	res, err := cc.c.Import(ctx, in)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	b, _ := json.Marshal(res)
	_, err = fmt.Fprintf(cc.stdout, "%s\n", b)
	return err
}

// runConsumers: fossil consumers [NAME…] — consumers as NDJSON.
func runConsumers(ctx context.Context, cc *clientCmd, args []string) error {
	if err := cc.parse(args, true); err != nil {
		return err
	}
	var list []client.ConsumerInfo
	if names := cc.fs.Args(); len(names) > 0 {
		for _, name := range names {
			info, err := cc.c.Consumer(ctx, name)
			if err != nil {
				return fmt.Errorf("consumers: %s: %w", name, err)
			}
			list = append(list, *info)
		}
	} else {
		var err error
		if list, err = cc.c.Consumers(ctx); err != nil {
			return fmt.Errorf("consumers: %w", err)
		}
	}
	enc := json.NewEncoder(cc.stdout)
	for _, info := range list {
		if err := enc.Encode(info); err != nil {
			return err
		}
	}
	return nil
}

// runSubscriptions: fossil subscriptions [list|get|create|delete|parked|replay] …
// Subscriptions are printed as the server describes them, one per line.
func runSubscriptions(ctx context.Context, cc *clientCmd, args []string) error {
	sub := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	input := "-"
	if sub == "create" {
		cc.fs.StringVar(&input, "input", "-", "file holding the definition instead of stdin")
	}
	if err := cc.parse(args, sub != "create" && sub != "list"); err != nil {
		return err
	}
	ids := cc.fs.Args()
	needIDs := func(n int) error {
		if len(ids) == 0 || n == 1 && len(ids) != 1 {
			return usageError("subscriptions %s: name %s", sub, map[bool]string{true: "one subscription id", false: "subscription ids"}[n == 1])
		}
		return nil
	}
	out := bufio.NewWriter(cc.stdout)
	defer out.Flush()
	emit := func(raw []byte) {
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			b.Reset()
			b.Write(raw)
		}
		out.Write(append(b.Bytes(), '\n'))
	}
	switch sub {
	case "list":
		list, err := cc.c.Subscriptions(ctx)
		if err != nil {
			return fmt.Errorf("subscriptions: %w", err)
		}
		for _, s := range list {
			emit(s.Raw)
		}
	case "get", "delete":
		if err := needIDs(0); err != nil {
			return err
		}
		for _, id := range ids {
			get := cc.c.Subscription
			if sub == "delete" {
				get = cc.c.DeleteSubscription
			}
			s, err := get(ctx, id)
			if err != nil {
				return fmt.Errorf("subscriptions %s %s: %w", sub, id, err)
			}
			emit(s.Raw)
		}
	case "create":
		in, closeIn, err := openInput(input)
		if err != nil {
			return err
		}
		defer closeIn()
		def, err := io.ReadAll(in)
		if err != nil {
			return fmt.Errorf("subscriptions create: read the definition: %w", err)
		}
		if def = bytes.TrimSpace(def); !json.Valid(def) || len(def) == 0 || def[0] != '{' {
			return usageError("subscriptions create: the definition must be one JSON object (the body of POST /subscriptions)")
		}
		s, err := cc.c.CreateSubscription(ctx, def)
		if err != nil {
			return fmt.Errorf("subscriptions create: %w", err)
		}
		emit(s.Raw)
	case "parked":
		if err := needIDs(1); err != nil {
			return err
		}
		parked, err := cc.c.ParkedEvents(ctx, ids[0])
		if err != nil {
			return fmt.Errorf("subscriptions parked %s: %w", ids[0], err)
		}
		for _, p := range parked {
			b, _ := json.Marshal(p)
			emit(b)
		}
	case "replay":
		if err := needIDs(1); err != nil {
			return err
		}
		if err := cc.c.ReplayParked(ctx, ids[0]); err != nil {
			return fmt.Errorf("subscriptions replay %s: %w", ids[0], err)
		}
		fmt.Fprintf(cc.stderr, "replaying the parked events of %s\n", ids[0])
	default:
		return usageError("subscriptions: unknown subcommand %q (list, get, create, delete, parked, replay)", sub)
	}
	return out.Flush()
}

// openInput opens name, or returns stdin for "-".
func openInput(name string) (io.Reader, func(), error) {
	if name == "-" || name == "" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}
