package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fossil-events/fossil/fossil"
)

// MaxPage is the largest page the server gives in one read.
const MaxPage = 1000

// Page is one page of a read: its events and, when more may follow, where
// the next page starts.
type Page struct {
	Events []*Event
	// Next is the server's link to the following page ("" when this page
	// is the last one); pass it to [Client.NextPage].
	Next string
}

// ReadLog reads the global log after event number after (0: from the
// start), at most limit events (0: the server's default of 100; at most
// [MaxPage]).
func (c *Client) ReadLog(ctx context.Context, after int64, limit int) (*Page, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return c.readPage(ctx, "/events", q)
}

// ReadStream reads stream's events from sequence from (values below 1 mean
// 1), at most limit (0: 100; at most [MaxPage]). An unknown stream is an
// empty page.
func (c *Client) ReadStream(ctx context.Context, stream string, from int64, limit int) (*Page, error) {
	q := url.Values{"from": {strconv.FormatInt(max(from, 1), 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return c.readPage(ctx, "/streams/"+url.PathEscape(stream)+"/events", q)
}

// NextPage follows [Page.Next].
func (c *Client) NextPage(ctx context.Context, next string) (*Page, error) {
	u, err := url.Parse(next)
	if err != nil {
		return nil, fmt.Errorf("fossil client: next page link %q: %w", next, err)
	}
	return c.readPage(ctx, u.EscapedPath(), u.Query())
}

func (c *Client) readPage(ctx context.Context, path string, q url.Values) (*Page, error) {
	resp, _, err := c.do(ctx, &request{method: http.MethodGet, path: path, query: q}, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fossil client: GET %s: %w", path, err)
	}
	events, err := parseBatch(body)
	if err != nil {
		return nil, err
	}
	return &Page{Events: events, Next: nextLink(resp.Header)}, nil
}

// nextLink returns the target of a Link header's rel="next" entry.
func nextLink(h http.Header) string {
	for _, v := range h.Values("Link") {
		for _, link := range strings.Split(v, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(link), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			for _, p := range strings.Split(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.Trim(v, `"`) == "next" {
					return target[1 : len(target)-1]
				}
			}
		}
	}
	return ""
}

// Log iterates over the global log after event number after, page by page,
// up to the newest event at the time the last page is read. It stops at
// the first error, which it yields.
func (c *Client) Log(ctx context.Context, after int64) iter.Seq2[*Event, error] {
	return c.pages(ctx, func() (*Page, error) { return c.ReadLog(ctx, after, MaxPage) })
}

// Stream iterates over a stream's events from sequence from.
func (c *Client) Stream(ctx context.Context, stream string, from int64) iter.Seq2[*Event, error] {
	return c.pages(ctx, func() (*Page, error) { return c.ReadStream(ctx, stream, from, MaxPage) })
}

func (c *Client) pages(ctx context.Context, first func() (*Page, error)) iter.Seq2[*Event, error] {
	return func(yield func(*Event, error) bool) {
		page, err := first()
		for {
			if err != nil {
				yield(nil, err)
				return
			}
			for _, e := range page.Events {
				if !yield(e, nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			page, err = c.NextPage(ctx, page.Next)
		}
	}
}

// ReadEvent reads the event numbered n. An unknown number is an [*Error]
// that matches fossil.ErrNotFound.
func (c *Client) ReadEvent(ctx context.Context, n int64) (*Event, error) {
	resp, _, err := c.do(ctx, &request{method: http.MethodGet, path: "/events/" + strconv.FormatInt(n, 10)}, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fossil client: GET event %d: %w", n, err)
	}
	return parseEvent(body)
}

// ConsumerInfo is the state of a named consumer.
type ConsumerInfo struct {
	Name        string     `json:"name"`
	Offset      int64      `json:"offset"`
	Lag         int64      `json:"lag"`
	Connected   bool       `json:"connected"`
	CommittedAt *time.Time `json:"committed_at"`
}

// Consumers lists the named consumers.
func (c *Client) Consumers(ctx context.Context) ([]ConsumerInfo, error) {
	var body struct {
		Consumers []ConsumerInfo `json:"consumers"`
	}
	if _, err := c.getJSON(ctx, "/consumers", nil, &body); err != nil {
		return nil, err
	}
	return body.Consumers, nil
}

// Consumer returns one consumer's state; an unknown name is an [*Error]
// that matches fossil.ErrNotFound.
func (c *Client) Consumer(ctx context.Context, name string) (*ConsumerInfo, error) {
	var info ConsumerInfo
	if _, err := c.getJSON(ctx, "/consumer/"+url.PathEscape(name), nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Commit stores n as consumer name's offset. A lower offset than the stored
// one is a conflict unless rewind is true.
func (c *Client) Commit(ctx context.Context, name string, n int64, rewind bool) error {
	r := &request{method: http.MethodPut, path: "/consumer/" + url.PathEscape(name) + "/commit", header: http.Header{}}
	r.header.Set(fossil.HeaderLastEventID, strconv.FormatInt(n, 10))
	if rewind {
		r.header.Set(fossil.HeaderRewind, "true")
	}
	resp, _, err := c.do(ctx, r, true)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Ack acknowledges, as consumer, the event with CloudEvent id id (and
// source, which may be "" when no other source uses the same id), which a
// writer may be waiting for. Acks are idempotent.
func (c *Client) Ack(ctx context.Context, consumer, id, source string) error {
	body, err := json.Marshal(map[string]string{"consumer_name": consumer, "source": source})
	if err != nil {
		return err
	}
	if source == "" {
		body, _ = json.Marshal(map[string]string{"consumer_name": consumer})
	}
	r := &request{method: http.MethodPost, path: "/events/" + url.PathEscape(id) + "/ack", body: body, header: http.Header{"Content-Type": {"application/json"}}}
	resp, _, err := c.do(ctx, r, true)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// ImportResult is the answer to [Client.Import].
type ImportResult struct {
	Events  int64 `json:"events"`  // events restored; the newest has number Events
	Streams int64 `json:"streams"` // distinct streams
	// Replacements counts the records of the tree's replacement chain.
	Replacements int64 `json:"replacements"`
}

// Import restores a log written by `fossil export` (or [Client.Log]: each
// event's Raw JSON, one per line) into the server's store, which must be
// empty. It needs an admin token. The import is one transaction: on any
// error nothing is stored. It is sent once, never retried.
func (c *Client) Import(ctx context.Context, ndjson io.Reader) (*ImportResult, error) {
	req, err := c.newRequest(ctx, &request{method: http.MethodPost, path: "/import", header: http.Header{"Content-Type": {"application/x-ndjson"}}})
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(ndjson)
	req.GetBody = nil
	req.ContentLength = -1
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fossil client: import: %w", err)
	}
	if resp.StatusCode >= 300 {
		return nil, readError(resp)
	}
	defer resp.Body.Close()
	var res ImportResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("fossil client: import: decode answer: %w", err)
	}
	return &res, nil
}
