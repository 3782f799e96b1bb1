package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/fossil-events/fossil/client"
	"github.com/fossil-events/fossil/fossil"
)

func ExampleClient_Collect() {
	url, stop := startExampleServer() // a Fossil server, e.g. "http://127.0.0.1:8080"
	defer stop()
	ctx := context.Background()

	c, err := client.New(url) // client.WithToken(jwt) when auth is on
	if err != nil {
		log.Fatal(err)
	}
	ev := event.New()
	ev.SetID("o1")
	ev.SetSource("/shop")
	ev.SetType("order.placed")
	_ = ev.SetData(event.ApplicationJSON, map[string]int{"total": 10})

	res, err := c.CollectEvent(ctx, "orders/42", ev, client.ExpectSequence(1))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("number", res.Last().Number, "sequence", res.Last().Sequence)

	// The stream is no longer empty: a typed 409.
	ev2 := ev.Clone()
	ev2.SetID("o2")
	_, err = c.CollectEvent(ctx, "orders/42", ev2, client.ExpectSequence(1))
	var problem *client.Error
	if errors.As(err, &problem) && errors.Is(err, fossil.ErrSequenceConflict) {
		fmt.Println(problem.Status, "current sequence", problem.CurrentSequence)
	}
	// Output:
	// number 1 sequence 1
	// 409 current sequence 1
}

func ExampleClient_Subscribe() {
	url, stop := startExampleServer()
	defer stop()
	c, _ := client.New(url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, typ := range []string{"order.placed", "order.paid"} {
		ev := event.New()
		ev.SetID(fmt.Sprint("o", i))
		ev.SetSource("/shop")
		ev.SetType(typ)
		if _, err := c.CollectEvent(ctx, "orders/42", ev); err != nil {
			log.Fatal(err)
		}
	}

	err := c.Subscribe(ctx, []string{"orders/{id}"}, 0, func(ctx context.Context, ev *client.Event) error {
		fmt.Println(ev.Number, ev.Stream, ev.Type())
		if ev.Number == 2 {
			cancel() // a real subscriber keeps following live events
		}
		return nil
	})
	fmt.Println(errors.Is(err, context.Canceled))
	// Output:
	// 1 orders/42 order.placed
	// 2 orders/42 order.paid
	// true
}

func ExampleAggregate() {
	url, stop := startExampleServer()
	defer stop()
	c, _ := client.New(url)
	ctx := context.Background()

	type amount struct{ Amount int }
	account := client.Aggregate[int]{
		Client: c,
		Stream: "accounts/7",
		Apply: func(balance int, ev *client.Event) (int, error) {
			var a amount
			err := ev.DataAs(&a)
			if ev.Type() == "withdrawn" {
				a.Amount = -a.Amount
			}
			return balance + a.Amount, err
		},
	}
	withdraw := func(n int) error {
		_, err := account.Execute(ctx, func(balance int) ([]event.Event, error) {
			if balance < n {
				return nil, fmt.Errorf("cannot withdraw %d from %d", n, balance)
			}
			ev := event.New()
			ev.SetSource("/bank")
			ev.SetType("withdrawn")
			_ = ev.SetData(event.ApplicationJSON, amount{n})
			return []event.Event{ev}, nil
		})
		return err
	}

	deposit := event.New()
	deposit.SetSource("/bank")
	deposit.SetType("deposited")
	_ = deposit.SetData(event.ApplicationJSON, amount{100})
	if _, err := c.CollectEvent(ctx, "accounts/7", deposit); err != nil {
		log.Fatal(err)
	}
	fmt.Println(withdraw(30))
	fmt.Println(withdraw(80))
	balance, version, _ := account.Load(ctx)
	fmt.Println("balance", balance, "version", version)
	// Output:
	// <nil>
	// cannot withdraw 80 from 70
	// balance 70 version 2
}

func ExampleClient_Consume() {
	url, stop := startExampleServer()
	defer stop()
	c, _ := client.New(url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	go func() {
		// The writer waits until the consumer "mailer" has handled its event.
		ev := event.New()
		ev.SetID("u1")
		ev.SetSource("/accounts")
		ev.SetType("user.signed_up")
		res, err := c.CollectEvent(ctx, "users/1", ev, client.WaitFor("mailer", 0))
		if err == nil {
			fmt.Println("acknowledged:", len(res.TimedOut) == 0)
		}
		cancel()
	}()

	err := c.Consume(ctx, "mailer", client.ConsumeOptions{Streams: []string{"users/{id}"}},
		func(ctx context.Context, ev *client.Event) error {
			fmt.Println("welcome mail for", ev.Stream)
			return nil
		})
	fmt.Println(errors.Is(err, context.Canceled))
	info, _ := c.Consumer(context.Background(), "mailer")
	fmt.Println("offset", info.Offset)
	// Output:
	// welcome mail for users/1
	// acknowledged: true
	// true
	// offset 1
}
