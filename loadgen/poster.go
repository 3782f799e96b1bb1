package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// header is one request header line.
type header struct{ name, value string }

// reply is what a writer needs of a response.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// poster sends one writer's POSTs to /collect, one at a time.
type poster interface {
	post(ctx context.Context, headers []header, body []byte) (*reply, error)
	close()
}

// newPoster returns the raw poster for plain-HTTP targets and one over
// net/http's client otherwise (HTTPS).
func (b *bench) newPoster() poster {
	u, err := url.Parse(b.base)
	if err == nil && u.Scheme == "http" {
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
		return &rawPoster{
			dialer: newDialer(b.cfg), addr: host, host: u.Host,
			path: u.EscapedPath() + "/collect",
		}
	}
	return &clientPoster{client: b.post, url: b.base + "/collect"}
}

// clientPoster posts with net/http's client.
type clientPoster struct {
	client *http.Client
	url    string
}

func (p *clientPoster) post(ctx context.Context, headers []header, body []byte) (*reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, h := range headers {
		req.Header.Set(h.name, h.value)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

func (p *clientPoster) close() {}

// rawPoster is one writer's keep-alive HTTP/1.1 connection to a plain-HTTP
// target. Each POST is a single write of a request rendered into a reused
// buffer; the response is parsed by net/http's own parser
// (http.ReadResponse). This spares the load generator the Transport's two
// goroutines and channel hand-offs per request, so that more of a shared
// machine's CPU goes to the server being measured, as pgbench's lean client
// leaves it to PostgreSQL.
type rawPoster struct {
	dialer *net.Dialer
	addr   string // host:port to dial
	host   string // Host header
	path   string

	conn net.Conn
	br   *bufio.Reader
	stop func() bool // unregisters the close-on-cancel of conn
	buf  []byte
	resp bytes.Buffer
}

// errResponseTimeout ends a POST whose response took longer than a minute.
var errResponseTimeout = errors.New("no response within 60s")

func (p *rawPoster) post(ctx context.Context, headers []header, body []byte) (*reply, error) {
	if p.conn == nil {
		conn, err := p.dialer.DialContext(ctx, "tcp", p.addr)
		if err != nil {
			return nil, err
		}
		p.conn, p.br = conn, bufio.NewReaderSize(conn, 16<<10)
		// A run that ends while a response is awaited closes the
		// connection, which ends the read.
		p.stop = context.AfterFunc(ctx, func() { conn.Close() })
	}
	b := append(p.buf[:0], "POST "...)
	b = append(b, p.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, p.host...)
	b = append(b, "\r\nUser-Agent: fossil-bench\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	for _, h := range headers {
		b = append(b, h.name...)
		b = append(b, ": "...)
		b = append(b, h.value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	p.buf = b
	_ = p.conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := p.conn.Write(b); err != nil {
		p.close()
		return nil, err
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		p.close()
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("connection closed before the response: %w", err)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errResponseTimeout
		}
		return nil, err
	}
	p.resp.Reset()
	_, err = p.resp.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		p.close()
		return nil, err
	}
	if resp.Close {
		p.close()
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: p.resp.Bytes()}, nil
}

func (p *rawPoster) close() {
	if p.conn != nil {
		p.stop()
		p.conn.Close()
		p.conn, p.br = nil, nil
	}
}
