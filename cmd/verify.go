package cmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/fossil-events/fossil/proof"
	"github.com/fossil-events/fossil/store"
)

// runKeygen implements `fossil keygen --output FILE`: a new checkpoint
// signer key in FILE (mode 0600), its verifier key on stdout.
func runKeygen(args []string, stdout, stderr io.Writer, env envLookup) error {
	fs := flag.NewFlagSet("fossil keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "", "file to write the signer key to (created with mode 0600; must not exist)")
	origin := "fossil"
	if v, ok := env("FOSSIL_LOG_ORIGIN"); ok {
		origin = v
	}
	name := fs.String("name", origin, "key name; use the log's origin ($FOSSIL_LOG_ORIGIN)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *output == "" {
		return usageError("--output FILE is required")
	}
	skey, vkey, err := proof.GenerateKey(*name)
	if err != nil {
		return usageError("key name %q: %v", *name, err)
	}
	f, err := os.OpenFile(*output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(skey + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}

// errVerifyFailed makes `fossil verify` exit 1 after it printed why.
var errVerifyFailed = errors.New("the log does not verify")

// runVerify implements `fossil verify`.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer, env envLookup) error {
	fs := flag.NewFlagSet("fossil verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envOr := func(name, def string) string {
		if v, ok := env(name); ok {
			return v
		}
		return def
	}
	serverURL := fs.String("url", envOr("FOSSIL_URL", "http://127.0.0.1:8080"), "server to verify through its HTTP API ($FOSSIL_URL)")
	token := fs.String("token", envOr("FOSSIL_TOKEN", ""), "bearer token ($FOSSIL_TOKEN)")
	dbURL := fs.String("database-url", "", "verify straight from this PostgreSQL database instead of the API")
	key := fs.String("key", "", "verifier key of the checkpoints, or a file holding it; without it the server's /checkpoint/key is trusted on first use")
	previous := fs.String("previous", "", "a checkpoint kept earlier: check that the log still extends it, then store the current checkpoint there")
	origin := fs.String("log-origin", envOr("FOSSIL_LOG_ORIGIN", "fossil"), "origin of the log (with --database-url)")
	quiet := fs.Bool("quiet", false, "no progress on a terminal")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	vkey, err := readKey(*key)
	if err != nil {
		return err
	}

	var src proof.Source
	if *dbURL != "" {
		st, err := store.Open(ctx, store.Config{DatabaseURL: *dbURL, MaxConns: 4})
		if err != nil {
			return err
		}
		defer st.Close()
		src = &proof.StoreSource{Store: st, Origin: *origin}
	} else {
		hs := &proof.HTTPSource{URL: strings.TrimRight(*serverURL, "/"), Token: *token, Key: vkey, Client: &http.Client{Timeout: time.Minute}}
		if vkey == "" {
			if hs.Key, err = hs.FetchKey(ctx); err != nil {
				return fmt.Errorf("fetch the verifier key: %w", err)
			}
			vkey = hs.Key
			fmt.Fprintf(stderr, "trusting the server's key on first use: %s (pin it with --key)\n", vkey)
		}
		src = hs
	}

	opts := proof.VerifyOptions{}
	if *previous != "" {
		b, err := os.ReadFile(*previous)
		switch {
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(stderr, "%s does not exist yet: nothing earlier to compare with\n", *previous)
		case err != nil:
			return err
		default:
			if vkey == "" {
				return usageError("--previous with --database-url needs --key")
			}
			prev, err := proof.Open(b, vkey)
			if err != nil {
				return fmt.Errorf("%s: %w", *previous, err)
			}
			opts.Previous = &prev
		}
	}
	if isTerminal(stderr) && !*quiet {
		var last time.Time
		opts.Progress = func(done, total int64) {
			if time.Since(last) < 200*time.Millisecond && done < total {
				return
			}
			last = time.Now()
			fmt.Fprintf(stderr, "\rverified %d of %d events (%d%%)", done, total, 100*done/max(total, 1))
			if done == total {
				fmt.Fprintln(stderr)
			}
		}
	}

	res, err := proof.Verify(ctx, src, opts)
	if mm, ok := errors.AsType[*proof.MismatchError](err); ok {
		fmt.Fprintf(stdout, "FAILED: %v\n", mm)
		fmt.Fprintf(stdout, "first event that does not verify: %d\n", mm.Number)
		return errVerifyFailed
	}
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		return errVerifyFailed
	}
	c := res.Checkpoint
	what := "the signed checkpoint"
	if res.Signed == nil {
		what = "the tree stored in the database"
	}
	fmt.Fprintf(stdout, "OK: %d events verified against %s (origin %s, root %s)\n", c.Size, what, c.Origin, c.Root)
	if opts.Previous != nil {
		fmt.Fprintf(stdout, "consistent with the previous checkpoint of %d events\n", opts.Previous.Size)
	}
	if len(res.Replaced) > 0 {
		fmt.Fprintf(stdout, "%d replaced events (authorised, in the replacement chain): %s\n", len(res.Replaced), joinNumbers(res.Replaced))
	} else {
		fmt.Fprintln(stdout, "no replaced events")
	}
	if *previous != "" && res.Signed != nil {
		if err := os.WriteFile(*previous, res.Signed, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readKey returns a verifier key given as itself or as a file holding it.
func readKey(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if _, err := note.NewVerifier(v); err == nil {
		return v, nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return "", usageError("--key: neither a verifier key nor a readable file: %v", err)
	}
	k := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(k); err != nil {
		return "", usageError("--key %s: %v", v, err)
	}
	return k, nil
}

func joinNumbers(ns []int64) string {
	var b strings.Builder
	for i, n := range ns {
		if i == 20 {
			fmt.Fprintf(&b, " … (%d more)", len(ns)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, n)
	}
	return b.String()
}
