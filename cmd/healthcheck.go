package cmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// runHealthcheck serves `fossil healthcheck`: GET the server's /healthz (or
// /readyz with --ready) and succeed on 200. It needs no shell or curl, so a
// distroless image can use it as its Docker HEALTHCHECK and as a
// Kubernetes exec probe. The default URL follows FOSSIL_ADDR. With
// authentication on, /readyz needs a token: --token or FOSSIL_TOKEN (one
// that grants nothing else will do, see deploy/kubernetes).
func runHealthcheck(ctx context.Context, args []string, stderr io.Writer, env envLookup) error {
	addr := DefaultConfig().Addr
	if v, ok := env("FOSSIL_ADDR"); ok {
		addr = v
	}
	token, _ := env("FOSSIL_TOKEN")
	fs := flag.NewFlagSet("fossil healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "the URL to check (default: /healthz, or /readyz with --ready, at $FOSSIL_ADDR)")
	ready := fs.Bool("ready", false, "check /readyz (the database answers and is migrated) instead of /healthz")
	fs.StringVar(&token, "token", token, "bearer token, for /readyz with authentication on ($FOSSIL_TOKEN)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("healthcheck: unexpected arguments: %v", fs.Args())
	}
	if *url == "" {
		*url = healthURL(addr)
		if *ready {
			*url = strings.TrimSuffix(*url, "/healthz") + "/readyz"
		}
	} else if *ready {
		return usageError("healthcheck: --ready and --url together: give one")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return usageError("healthcheck: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", *url, res.Status)
	}
	return nil
}

// healthURL is the /healthz URL of a server listening on addr; a wildcard
// host (":8080", "0.0.0.0:8080") is reached on the loopback address.
func healthURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/healthz"
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}
