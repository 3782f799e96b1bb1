// Command bank-account is the event-sourcing loop with Fossil's Go client:
// sixteen tellers deposit into and withdraw from three accounts at once,
// each decision appended with the expected sequence (client.Aggregate
// decides again when another teller got there first), while a projection
// runs as a named consumer; every append waits for the projection's ack,
// so the balances it prints at the end are consistent with the log.
//
//	go run . server &                                   # a Fossil server
//	FOSSIL_URL=http://127.0.0.1:8080 go run ./examples/bank-account
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/fossil-events/fossil/client"
)

func main() {
	url := os.Getenv("FOSSIL_URL")
	if url == "" {
		fmt.Fprintln(os.Stderr, "bank-account: set FOSSIL_URL to a running Fossil server, for example:\n  go run . server &\n  FOSSIL_URL=http://127.0.0.1:8080 go run ./examples/bank-account")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, url, os.Getenv("FOSSIL_TOKEN"), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bank-account:", err)
		os.Exit(1)
	}
}

const (
	tellers  = 16
	accounts = 3
	rounds   = 2
)

type amount struct {
	Amount int `json:"amount"`
}

// apply folds one event into a balance.
func apply(balance int, ev *client.Event) (int, error) {
	var a amount
	if err := ev.DataAs(&a); err != nil {
		return balance, err
	}
	switch ev.Type() {
	case "bank.deposited":
		return balance + a.Amount, nil
	case "bank.withdrawn":
		return balance - a.Amount, nil
	}
	return balance, fmt.Errorf("unknown event type %q", ev.Type())
}

var errInsufficientFunds = errors.New("insufficient funds")

func movement(typ string, n int) event.Event {
	ev := event.New()
	ev.SetSource("/examples/bank-account")
	ev.SetType(typ)
	_ = ev.SetData(event.ApplicationJSON, amount{n})
	return ev
}

// run plays the tellers against the server at url and prints each
// account's balance as the projection and the log see it.
func run(ctx context.Context, url, token string, out io.Writer) error {
	c, err := client.New(url, client.WithToken(token))
	if err != nil {
		return err
	}
	runID := rand.Text()[:8] // streams of their own, so runs do not mix
	stream := func(a int) string { return fmt.Sprintf("bank/%s/account-%d", runID, a) }
	projection := "bank-projection-" + runID

	// The projection: balances by stream, fed by a named consumer.
	var mu sync.Mutex
	balances := map[string]int{}
	pctx, stopProjection := context.WithCancel(ctx)
	projected := make(chan error, 1)
	go func() {
		projected <- c.Consume(pctx, projection, client.ConsumeOptions{Streams: []string{"bank/" + runID + "/{account}"}},
			func(_ context.Context, ev *client.Event) error {
				mu.Lock()
				defer mu.Unlock()
				b, err := apply(balances[ev.Stream], ev)
				balances[ev.Stream] = b
				return err
			})
	}()

	// The tellers: each deposits 100 then withdraws 40 on every account,
	// rounds times, all at once.
	var wg sync.WaitGroup
	errs := make(chan error, tellers)
	for t := range tellers {
		wg.Go(func() {
			for r := range rounds {
				for a := range accounts {
					account := client.Aggregate[int]{Client: c, Stream: stream(a), Apply: apply}
					for _, step := range []struct {
						typ string
						n   int
					}{{"bank.deposited", 100}, {"bank.withdrawn", 40}} {
						_, err := account.Execute(ctx, func(balance int) ([]event.Event, error) {
							if step.typ == "bank.withdrawn" && balance < step.n {
								return nil, fmt.Errorf("teller %d round %d: %w", t, r, errInsufficientFunds)
							}
							return []event.Event{movement(step.typ, step.n)}, nil
						}, client.WaitFor(projection, 30*time.Second))
						if err != nil {
							errs <- err
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		stopProjection()
		<-projected
		return err
	}
	stopProjection()
	if err := <-projected; !errors.Is(err, context.Canceled) {
		return fmt.Errorf("projection: %w", err)
	}

	// Every append waited for the projection's ack: it is up to date.
	want := tellers * rounds * (100 - 40)
	names := make([]string, 0, accounts)
	for a := range accounts {
		names = append(names, stream(a))
	}
	sort.Strings(names)
	for _, name := range names {
		account := client.Aggregate[int]{Client: c, Stream: name, Apply: apply}
		balance, version, err := account.Load(ctx)
		if err != nil {
			return err
		}
		mu.Lock()
		projectedBalance := balances[name]
		mu.Unlock()
		fmt.Fprintf(out, "%s: balance %d after %d events (projection %d)\n", name, balance, version, projectedBalance)
		if balance != want || projectedBalance != want {
			return fmt.Errorf("%s: balance %d, projection %d, want %d", name, balance, projectedBalance, want)
		}
	}
	return nil
}
