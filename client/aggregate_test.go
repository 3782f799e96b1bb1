package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/fossil-events/fossil/client"
)

var errInsufficientFunds = errors.New("insufficient funds")

type movement struct {
	Amount int `json:"amount"`
}

func account(c *client.Client, id string) *client.Aggregate[int] {
	return &client.Aggregate[int]{
		Client: c,
		Stream: "accounts/" + id,
		Apply: func(balance int, ev *client.Event) (int, error) {
			var m movement
			if err := ev.DataAs(&m); err != nil {
				return balance, err
			}
			switch ev.Type() {
			case "deposited":
				return balance + m.Amount, nil
			case "withdrawn":
				return balance - m.Amount, nil
			}
			return balance, fmt.Errorf("unknown type %q", ev.Type())
		},
	}
}

func move(t testing.TB, typ string, amount int) event.Event {
	ev := event.New()
	ev.SetSource("/bank")
	ev.SetType(typ)
	if err := ev.SetData(event.ApplicationJSON, movement{amount}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// Sixteen goroutines deposit and withdraw on one account at once; each
// decision is appended with the expected sequence and retried on conflict,
// so the balance comes out exactly right and the stream has no gap.
func TestAggregateUnderRacingWriters(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := newClient(t, srv.URL)
	const writers, rounds = 16, 3
	acct := account(c, "42")
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				// Deposit 100, then withdraw 30 + w: each writer's own
				// deposits cover its withdrawals, so none is refused.
				for _, step := range []struct {
					typ    string
					amount int
				}{{"deposited", 100}, {"withdrawn", 30 + w}} {
					_, err := acct.Execute(context.Background(), func(balance int) ([]event.Event, error) {
						if step.typ == "withdrawn" && balance < step.amount {
							return nil, fmt.Errorf("writer %d round %d: %w", w, r, errInsufficientFunds)
						}
						return []event.Event{move(t, step.typ, step.amount)}, nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := 0
	for w := range writers {
		want += rounds * (100 - 30 - w)
	}
	balance, version, err := acct.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if balance != want || version != writers*rounds*2 {
		t.Fatalf("balance %d at version %d, want %d at %d", balance, version, want, writers*rounds*2)
	}
	// Refused decisions store nothing.
	_, err = acct.Execute(context.Background(), func(balance int) ([]event.Event, error) {
		if balance < 1_000_000 {
			return nil, errInsufficientFunds
		}
		return []event.Event{move(t, "withdrawn", 1_000_000)}, nil
	})
	if !errors.Is(err, errInsufficientFunds) {
		t.Fatalf("err = %v", err)
	}
	if _, v, _ := acct.Load(context.Background()); v != version {
		t.Fatalf("version %d after a refused decision, want %d", v, version)
	}
}
