package cmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealthcheck serves `fossil healthcheck`: GET the server's /healthz and
// succeed on 200. It needs no shell or curl, so a distroless image can use
// it as its Docker HEALTHCHECK. The default URL follows FOSSIL_ADDR.
func runHealthcheck(ctx context.Context, args []string, stderr io.Writer, env envLookup) error {
	addr := DefaultConfig().Addr
	if v, ok := env("FOSSIL_ADDR"); ok {
		addr = v
	}
	fs := flag.NewFlagSet("fossil healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", healthURL(addr), "the URL to check ($FOSSIL_ADDR sets the default)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("healthcheck: unexpected arguments: %v", fs.Args())
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return usageError("healthcheck: %v", err)
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
