package feed

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/fossil-events/fossil/fossil"
)

// MaxTemplates is the most stream templates one SSE request may carry.
const MaxTemplates = 64

// ParseRequest reads what an SSE request (/sse and /consumer/{name}/sse
// alike) asks for, with one set of rules:
//   - stream: 1 to MaxTemplates RFC 6570 templates;
//   - Last-Event-Id: absent means from the beginning (0); present, it must
//     be a non-negative integer (an empty value is a 400, as any other
//     value that is not one);
//   - any other query parameter is a 400 naming it, except extra (the
//     endpoint's own) and access_token (read by authentication).
//
// It fills Templates and After of the returned Params.
func ParseRequest(r *http.Request, extra ...string) (Params, error) {
	q := r.URL.Query()
	if err := fossil.CheckQuery(q, append([]string{"stream"}, extra...)...); err != nil {
		return Params{}, err
	}
	templates, err := parseStreamParams(q)
	if err != nil {
		return Params{}, err
	}
	after, err := parseLastEventID(r.Header)
	if err != nil {
		return Params{}, err
	}
	return Params{Templates: templates, After: after}, nil
}

// parseStreamParams compiles the stream query parameters.
func parseStreamParams(q url.Values) (fossil.Templates, error) {
	raws := q["stream"]
	if len(raws) == 0 {
		return nil, fossil.Invalid("query.stream", "at least one stream template is required, e.g. ?stream=orders%%2F%%7Bid%%7D (orders/{id}) or ?stream=%%7B%%2Ball%%7D ({+all}), URL-encoded")
	}
	if len(raws) > MaxTemplates {
		return nil, fossil.Invalid("query.stream", "at most %d stream templates are allowed", MaxTemplates)
	}
	ts, err := fossil.ParseTemplates("query.stream", raws)
	var inv *fossil.InvalidError
	if err != nil && errors.As(err, &inv) {
		for _, raw := range raws {
			if strings.Contains(raw, "{ ") {
				// The classic mistake: ?stream={+all} unencoded, where the
				// '+' arrives as a space.
				return nil, fossil.Invalid(inv.Location, "%s; a '+' in a query string means a space, send it as %%2B (e.g. ?stream=%%7B%%2Ball%%7D for {+all})", inv.Message)
			}
		}
	}
	return ts, err
}

// parseLastEventID reads the Last-Event-Id cursor; absent means 0.
func parseLastEventID(hd http.Header) (int64, error) {
	v, ok := hd[http.CanonicalHeaderKey(fossil.HeaderLastEventID)]
	if !ok || len(v) == 0 {
		return 0, nil
	}
	return fossil.ParseEventNumber("header."+fossil.HeaderLastEventID, strings.TrimSpace(v[0]))
}
