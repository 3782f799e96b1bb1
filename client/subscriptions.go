package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// Subscription is a subscription as the server describes it (the
// CloudEvents Subscriptions API; see the README's "Delivering events").
// Raw holds the server's JSON as sent, every member included.
type Subscription struct {
	ID               string              `json:"id,omitempty"`
	Source           string              `json:"source,omitempty"`
	Types            []string            `json:"types,omitempty"`
	Filters          []json.RawMessage   `json:"filters,omitempty"`
	Sink             string              `json:"sink,omitempty"`
	SinkCredential   json.RawMessage     `json:"sinkcredential,omitempty"` // write-only: never returned
	Protocol         string              `json:"protocol"`
	ProtocolSettings json.RawMessage     `json:"protocolsettings,omitempty"`
	Config           map[string]string   `json:"config,omitempty"`
	Status           *SubscriptionStatus `json:"status,omitempty"`
	Raw              json.RawMessage     `json:"-"`
}

// SubscriptionStatus is the read-only state of a subscription.
type SubscriptionStatus struct {
	State     string  `json:"state"` // active or disabled
	Position  int64   `json:"position"`
	Lag       int64   `json:"lag"`
	Delivered int64   `json:"delivered"`
	Parked    int64   `json:"parked"`
	LastError *string `json:"lasterror"`
}

// ParkedEvent is an event a subscription gave up delivering.
type ParkedEvent struct {
	Number    int64  `json:"fossileventnumber"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"lasterror"`
	ParkedAt  string `json:"parkedat"`
}

func subscriptionPath(id string) string { return "/subscriptions/" + url.PathEscape(id) }

// sendJSON sends a request with an optional JSON body and decodes a JSON
// answer into v (when v is not nil); it returns the raw answer. Only
// idempotent requests are retried.
func (c *Client) sendJSON(ctx context.Context, method, path string, body []byte, retry bool, v any) ([]byte, error) {
	r := &request{method: method, path: path, body: body}
	if body != nil {
		r.header = http.Header{"Content-Type": {"application/json"}}
	}
	resp, _, err := c.do(ctx, r, retry)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fossil client: %s %s: %w", method, path, err)
	}
	if v != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, v); err != nil {
			return nil, fmt.Errorf("fossil client: %s %s: decode answer: %w", method, path, err)
		}
	}
	return raw, nil
}

func decodeSubscription(raw []byte) (*Subscription, error) {
	var s Subscription
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("fossil client: decode subscription: %w", err)
	}
	s.Raw = raw
	return &s, nil
}

// Subscriptions lists the subscriptions (admin).
func (c *Client) Subscriptions(ctx context.Context) ([]*Subscription, error) {
	var raws []json.RawMessage
	if _, err := c.sendJSON(ctx, http.MethodGet, "/subscriptions", nil, true, &raws); err != nil {
		return nil, err
	}
	out := make([]*Subscription, len(raws))
	for i, raw := range raws {
		s, err := decodeSubscription(raw)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// Subscription returns one subscription with its status; an unknown id
// is an [*Error] that matches fossil.ErrNotFound.
func (c *Client) Subscription(ctx context.Context, id string) (*Subscription, error) {
	raw, err := c.sendJSON(ctx, http.MethodGet, subscriptionPath(id), nil, true, nil)
	if err != nil {
		return nil, err
	}
	return decodeSubscription(raw)
}

// CreateSubscription creates a subscription from its definition (a JSON
// object, as POST /subscriptions takes it) and returns it with its id. It
// is not retried: a lost answer could otherwise create two.
func (c *Client) CreateSubscription(ctx context.Context, definition json.RawMessage) (*Subscription, error) {
	raw, err := c.sendJSON(ctx, http.MethodPost, "/subscriptions", definition, false, nil)
	if err != nil {
		return nil, err
	}
	return decodeSubscription(raw)
}

// DeleteSubscription deletes a subscription and returns what it was.
func (c *Client) DeleteSubscription(ctx context.Context, id string) (*Subscription, error) {
	raw, err := c.sendJSON(ctx, http.MethodDelete, subscriptionPath(id), nil, false, nil)
	if err != nil {
		return nil, err
	}
	return decodeSubscription(raw)
}

// ParkedEvents lists the events a subscription parked, in number order.
func (c *Client) ParkedEvents(ctx context.Context, id string) ([]ParkedEvent, error) {
	var body struct {
		Parked []ParkedEvent `json:"parked"`
	}
	if _, err := c.sendJSON(ctx, http.MethodGet, subscriptionPath(id)+"/parked", nil, true, &body); err != nil {
		return nil, err
	}
	return body.Parked, nil
}

// ReplayParked delivers every parked event of a subscription again.
func (c *Client) ReplayParked(ctx context.Context, id string) error {
	_, err := c.sendJSON(ctx, http.MethodPost, subscriptionPath(id)+"/parked/replay", nil, true, nil)
	return err
}

// DropParked removes one parked event (number) without delivering it.
func (c *Client) DropParked(ctx context.Context, id string, number int64) error {
	_, err := c.sendJSON(ctx, http.MethodDelete, subscriptionPath(id)+"/parked/"+strconv.FormatInt(number, 10), nil, true, nil)
	return err
}
