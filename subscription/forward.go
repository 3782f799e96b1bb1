package subscription

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
)

// Pull members and their acks may reach any Fossil process on the database
// (a load balancer picks one), but a pull subscription's members are served
// by the one process holding its lease. A process that does not hold it
// forwards the request to the holder, whose advertised URL is part of the
// lease's holder name, and relays the answer (the event stream included).

// ForwardedHeader marks a request one Fossil process forwarded to another.
// A forwarded request is never forwarded again, so two processes that
// disagree about a lease cannot bounce it between them.
const ForwardedHeader = "Fossil-Forwarded-By"

// holderURL returns the advertised URL in a lease holder name, or "".
func holderURL(holder string) string {
	_, u, _ := strings.Cut(holder, "@")
	return u
}

// holderID returns the random part of a lease holder name.
func holderID(holder string) string {
	id, _, _ := strings.Cut(holder, "@")
	return id
}

var forwardTransport = &http.Transport{
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost:   64,
	IdleConnTimeout:       90 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
}

// forward sends r to the process holding subscription id's lease, with body
// instead of r's body when body is not nil, and copies its answer to w. It
// reports false, having written nothing, when r was forwarded already,
// nobody else holds the lease, or the holder advertises no URL.
func (m *Manager) forward(w http.ResponseWriter, r *http.Request, id string, body []byte) (bool, error) {
	if r.Header.Get(ForwardedHeader) != "" {
		return false, nil
	}
	holder, err := m.cfg.Store.SubscriptionLeaseHolder(r.Context(), id)
	if err != nil {
		return false, err
	}
	if holder == "" || holder == m.holder {
		return false, nil
	}
	target, err := url.Parse(holderURL(holder))
	if err != nil || target.Host == "" || (target.Scheme != "http" && target.Scheme != "https") {
		return false, nil
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(ForwardedHeader, holderID(m.holder))
			if body != nil {
				pr.Out.Body = io.NopCloser(bytes.NewReader(body))
				pr.Out.ContentLength = int64(len(body))
				pr.Out.Header.Set("Content-Type", "application/json")
			}
		},
		Transport:     forwardTransport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			m.logger.DebugContext(r.Context(), "forwarding to the subscription's lease holder failed", "subscription", id, "holder", target.String(), "error", err)
			w.Header().Set("Retry-After", "1")
			problem.Error(m.logger, w, r, fmt.Errorf("%w: the Fossil process delivering subscription %q cannot be reached; retry", fossil.ErrUnavailable, id))
		},
	}
	m.logger.DebugContext(r.Context(), "forwarding to the subscription's lease holder", "subscription", id, "holder", target.String(), "path", r.URL.Path)
	proxy.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w)}, r)
	return true, nil
}

// deadlineWriter gives every write of a relayed answer its own deadline, as
// the pull handler does, so that a member that stops reading is cut off
// instead of holding the relay forever.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(pullWriteTimeout))
	return d.ResponseWriter.Write(b)
}

func (d *deadlineWriter) Flush() { _ = d.rc.Flush() }

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }
