package collector_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvConformanceDir names a folder holding the CloudEvents conformance
// suite's material (v1.yaml, v1_minimum.yaml,
// http-protocol-binding.feature). When it is set, TestConformance runs that
// material as well as the project's own vectors; .ci/run sets it when the
// material is present beside the repository.
const EnvConformanceDir = "FOSSIL_CONFORMANCE_DIR"

// EnvConformanceReport names a file that TestConformance writes when it
// ran the material of EnvConformanceDir ("conformance: N cases"), so that
// CI can tell that it really ran.
const EnvConformanceReport = "FOSSIL_CONFORMANCE_REPORT"

// vectorsDir holds the project's own test vectors (see its README.md).
const vectorsDir = "testdata/vectors"

// readConformance reads a file of the conformance material. A missing file
// fails the test: it must never pass by testing nothing.
func readConformance(t *testing.T, name string) []byte {
	t.Helper()
	dir := os.Getenv(EnvConformanceDir)
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		abs, _ := filepath.Abs(path)
		t.Fatalf("CloudEvents conformance material is missing: %v\n"+
			"%s=%s must name the folder holding it: %s", err, EnvConformanceDir, dir, abs)
	}
	return b
}

// conformanceCase is one request and the event a receiver must parse out
// of it.
type conformanceCase struct {
	name   string
	header http.Header
	body   []byte
	want   wantEvent
}

// wantEvent is what must be stored.
type wantEvent struct {
	attrs map[string]string // context attributes, extensions included, as strings
	data  []byte            // nil: no data
	json  bool              // compare data as JSON values, else byte for byte
}

// TestConformance sends every case of the project's own vectors
// (testdata/vectors) and, when FOSSIL_CONFORMANCE_DIR names it, of the
// CloudEvents conformance material to a real server and checks that the
// stored document holds the same attributes and data.
func TestConformance(t *testing.T) {
	t.Parallel()

	cases := vectorCases(t)
	if len(cases) < 12 {
		t.Fatalf("found %d vectors in %s, want at least 12", len(cases), vectorsDir)
	}
	t.Logf("%d own vectors", len(cases))
	if os.Getenv(EnvConformanceDir) != "" {
		var material []conformanceCase
		for _, file := range []string{"v1.yaml", "v1_minimum.yaml"} {
			material = append(material, yamlCases(t, file)...)
		}
		material = append(material, featureCases(t, "http-protocol-binding.feature")...)
		if len(material) < 12 {
			t.Fatalf("found %d conformance cases, want at least 12: has the material changed?", len(material))
		}
		t.Logf("%d conformance cases from %s", len(material), os.Getenv(EnvConformanceDir))
		cases = append(cases, material...)
		t.Run("V1ModesAreTheSameEvent", testV1Modes)
		if report := os.Getenv(EnvConformanceReport); report != "" {
			t.Cleanup(func() {
				if t.Failed() {
					return
				}
				if err := os.WriteFile(report, fmt.Appendf(nil, "conformance: %d cases\n", len(material)), 0o644); err != nil {
					t.Errorf("write %s: %v", report, err)
				}
			})
		}
	} else {
		t.Logf("%s is not set: the CloudEvents conformance material is not run", EnvConformanceDir)
	}
	for _, tc := range cases {
		// Cases share source and id, so each gets its own database.
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			res := b.post(t, tc.header, tc.body)
			pos := requireOK(t, res, false)
			if len(pos) != 1 || pos[0].ID != tc.want.attrs["id"] || pos[0].Source != tc.want.attrs["source"] {
				t.Errorf("positions = %+v, want id %q source %q", pos, tc.want.attrs["id"], tc.want.attrs["source"])
			}
			stored := b.events(t)
			if len(stored) != 1 {
				t.Fatalf("%d events stored, want 1", len(stored))
			}
			requireStoredEvent(t, stored[0], tc.want)

			// Retrying the request is a duplicate.
			requireOK(t, b.post(t, tc.header, tc.body), true)
		})
	}

}

// testV1Modes: v1.yaml holds the same event in binary and in structured
// mode; the server must see one event.
func testV1Modes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	v1 := yamlCases(t, "v1.yaml")
	first := requireOK(t, b.post(t, v1[0].header, v1[0].body), false)
	for _, tc := range v1[1:] {
		requirePositions(t, requireOK(t, b.post(t, tc.header, tc.body), true), first)
	}
}

// vector is one case of testdata/vectors/*.json.
type vector struct {
	Name       string            `json:"name"`
	Header     map[string]string `json:"header"`
	Body       string            `json:"body"`
	BodyBase64 []byte            `json:"body_base64"`
	Want       struct {
		Attrs      map[string]string `json:"attrs"`
		Data       *string           `json:"data"`
		DataBase64 []byte            `json:"data_base64"`
		JSON       bool              `json:"json"`
	} `json:"want"`
}

// vectorCases reads the project's own vectors.
func vectorCases(t *testing.T) []conformanceCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(vectorsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors in %s: %v", vectorsDir, err)
	}
	var out []conformanceCase
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var vs []vector
		if err := json.Unmarshal(raw, &vs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range vs {
			h := http.Header{"Fossil-Stream": {"vectors"}}
			for k, val := range v.Header {
				h.Set(k, val)
			}
			body := []byte(v.Body)
			if v.BodyBase64 != nil {
				body = v.BodyBase64
			}
			want := wantEvent{attrs: v.Want.Attrs, json: v.Want.JSON}
			switch {
			case v.Want.DataBase64 != nil:
				want.data = v.Want.DataBase64
			case v.Want.Data != nil:
				want.data = []byte(*v.Want.Data)
			}
			if want.attrs["id"] == "" || want.attrs["source"] == "" {
				t.Fatalf("%s: vector %q has no id or source", f, v.Name)
			}
			out = append(out, conformanceCase{name: "Vectors/" + v.Name, header: h, body: body, want: want})
		}
	}
	return out
}

// requireStoredEvent compares a stored event with what the material says.
func requireStoredEvent(t *testing.T, e storedEvent, want wantEvent) {
	t.Helper()
	for k, v := range want.attrs {
		got, ok := e.Doc[k]
		if !ok {
			t.Errorf("attribute %s is missing from %s", k, e.RawDoc)
			continue
		}
		if k == "time" {
			wt, err1 := time.Parse(time.RFC3339Nano, v)
			gt, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(got))
			if err1 != nil || err2 != nil || !wt.Equal(gt) {
				t.Errorf("time = %v, want the instant %s", got, v)
			}
			if e.Time == nil || !e.Time.Equal(wt) {
				t.Errorf("time column = %v, want %s", e.Time, v)
			}
			continue
		}
		if s, isStr := got.(string); !isStr || s != v {
			t.Errorf("attribute %s = %#v, want %q", k, got, v)
		}
	}
	for k := range e.Doc {
		if _, ok := want.attrs[k]; !ok && k != "data" && k != "data_base64" {
			t.Errorf("stored doc has attribute %s that was not sent: %s", k, e.RawDoc)
		}
	}
	if e.ID != want.attrs["id"] || e.Source != want.attrs["source"] || e.Type != want.attrs["type"] {
		t.Errorf("columns id/source/type = %q/%q/%q", e.ID, e.Source, e.Type)
	}

	var got []byte
	switch {
	case e.Doc["data_base64"] != nil:
		b, err := base64.StdEncoding.DecodeString(fmt.Sprint(e.Doc["data_base64"]))
		if err != nil {
			t.Fatalf("data_base64: %v", err)
		}
		got = b
	case e.Doc["data"] != nil && !want.json:
		s, ok := e.Doc["data"].(string)
		if !ok {
			t.Fatalf("text data stored as %T, want a string: %s", e.Doc["data"], e.RawDoc)
		}
		got = []byte(s)
	case e.Doc["data"] != nil:
		got = mustJSON(t, e.Doc["data"])
	}
	switch {
	case want.data == nil:
		if got != nil {
			t.Errorf("data = %q, want none", got)
		}
	case got == nil:
		t.Errorf("no data stored, want %q", want.data)
	case want.json:
		if !jsonEqual(t, got, want.data) {
			t.Errorf("data = %s, want the JSON value %s", got, want.data)
		}
	default:
		if !bytes.Equal(got, want.data) {
			t.Errorf("data = %q, want exactly %q", got, want.data)
		}
	}
}

// yamlEvent is one document of the conformance YAML files.
type yamlEvent struct {
	Mode                string               `yaml:"Mode"`
	ContextAttributes   map[string]yaml.Node `yaml:"ContextAttributes"`
	TransportExtensions map[string]string    `yaml:"TransportExtensions"`
	Data                string               `yaml:"Data"`
}

// yamlCases turns each YAML document into a request the way the
// conformance tool's sender does: attribute values are trimmed of
// surrounding white space (YAML block scalars end in a newline), binary
// mode puts them in ce-* headers and the data in the body, structured mode
// sends a JSON object whose data is the Data parsed as JSON.
func yamlCases(t *testing.T, file string) []conformanceCase {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readConformance(t, file)))
	var out []conformanceCase
	for i := 0; ; i++ {
		var ev yamlEvent
		err := dec.Decode(&ev)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s document %d: %v", file, i, err)
		}
		want := wantEvent{attrs: map[string]string{}}
		for k, n := range ev.ContextAttributes {
			if k == "Extensions" {
				var exts map[string]string
				if err := n.Decode(&exts); err != nil {
					t.Fatalf("%s document %d: Extensions: %v", file, i, err)
				}
				for ek, ev := range exts {
					want.attrs[ek] = strings.TrimSpace(ev)
				}
				continue
			}
			want.attrs[k] = strings.TrimSpace(n.Value)
		}
		if want.attrs["id"] == "" || want.attrs["specversion"] == "" {
			t.Fatalf("%s document %d has no id or specversion: parsed wrongly?", file, i)
		}
		mode := ev.Mode
		if mode == "" {
			mode = "binary" // the tool's default
		}
		h := http.Header{"Fossil-Stream": {"conformance"}}
		for k, v := range ev.TransportExtensions {
			h.Set(k, strings.TrimSpace(v))
		}
		var body []byte
		ct := want.attrs["datacontenttype"]
		switch mode {
		case "binary":
			for k, v := range want.attrs {
				if k == "datacontenttype" {
					h.Set("Content-Type", v)
					continue
				}
				h.Set("ce-"+k, v)
			}
			body = []byte(ev.Data)
		case "structured":
			obj := map[string]any{}
			for k, v := range want.attrs {
				obj[k] = v
			}
			if ev.Data != "" {
				obj["data"] = json.RawMessage(ev.Data)
			}
			b, err := json.Marshal(obj)
			if err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			body = b
			h.Set("Content-Type", "application/cloudevents+json; charset=UTF-8")
		default:
			t.Fatalf("%s document %d: unknown mode %q", file, i, mode)
		}
		if ev.Data != "" {
			want.data = []byte(ev.Data)
			want.json = isJSONType(ct) || (ct == "" && json.Valid(want.data))
		}
		out = append(out, conformanceCase{
			name:   fmt.Sprintf("%s/Doc%d%s", camel(strings.TrimSuffix(file, ".yaml")), i, camel(mode)),
			header: h,
			body:   body,
			want:   want,
		})
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no event", file)
	}
	return out
}

// featureCases expands every Scenario Outline of a Gherkin feature file
// with its Examples: the HTTP request of the "Given an HTTP request"
// doc string, the "Then the attributes are" table and the data of "And the
// data is equal to the following JSON".
func featureCases(t *testing.T, file string) []conformanceCase {
	t.Helper()
	type scenario struct {
		name     string
		request  string
		attrs    [][]string
		data     string
		examples [][]string
	}
	var (
		scenarios []*scenario
		cur       *scenario
		section   string // the step a doc string or table belongs to
	)
	lines := strings.Split(string(readConformance(t, file)), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], "\r")
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "Scenario Outline:"):
			cur = &scenario{name: strings.TrimSpace(strings.TrimPrefix(trimmed, "Scenario Outline:"))}
			scenarios = append(scenarios, cur)
			section = ""
		case cur == nil:
		case trimmed == `"""`:
			// A doc string: its lines lose the indentation of the opening quotes.
			indent := strings.Index(line, `"""`)
			var doc []string
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != `"""`; i++ {
				l := strings.TrimRight(lines[i], "\r")
				if len(l) >= indent && strings.TrimSpace(l[:indent]) == "" {
					l = l[indent:]
				} else {
					l = strings.TrimLeft(l, " ")
				}
				doc = append(doc, l)
			}
			switch section {
			case "request":
				cur.request = strings.Join(doc, "\n")
			case "data":
				cur.data = strings.Join(doc, "\n")
			default:
				t.Fatalf("%s:%d: doc string after an unknown step", file, i)
			}
		case strings.HasPrefix(trimmed, "|"):
			var cells []string
			for _, c := range strings.Split(strings.Trim(trimmed, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			switch section {
			case "attributes":
				cur.attrs = append(cur.attrs, cells)
			case "examples":
				cur.examples = append(cur.examples, cells)
			}
		case strings.HasPrefix(trimmed, "Given an HTTP request"):
			section = "request"
		case strings.HasPrefix(trimmed, "Then the attributes are"):
			section = "attributes"
		case strings.HasPrefix(trimmed, "And the data is equal to the following JSON"):
			section = "data"
		case strings.HasPrefix(trimmed, "Examples:"):
			section = "examples"
		case trimmed != "" && !strings.HasPrefix(trimmed, "#"):
			if section != "examples" {
				section = ""
			}
		}
	}

	var out []conformanceCase
	for _, sc := range scenarios {
		if sc.request == "" || len(sc.attrs) < 2 || len(sc.examples) < 2 {
			t.Fatalf("%s: scenario %q lacks a request, attributes or examples", file, sc.name)
		}
		header := sc.examples[0]
		for n, row := range sc.examples[1:] {
			subst := func(s string) string {
				for j, name := range header {
					s = strings.ReplaceAll(s, "<"+name+">", row[j])
				}
				return s
			}
			raw := subst(sc.request)
			head, body, ok := strings.Cut(raw, "\n\n")
			if !ok {
				t.Fatalf("%s: scenario %q: request has no blank line before the body", file, sc.name)
			}
			wire := strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(wire)))
			if err != nil {
				t.Fatalf("%s: scenario %q: %v", file, sc.name, err)
			}
			sent, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatalf("%s: scenario %q: body shorter than its Content-Length: %v", file, sc.name, err)
			}
			if cl := req.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
				t.Fatalf("%s: scenario %q: Content-Length %s but the body has %d bytes: parsed wrongly?", file, sc.name, cl, len(body))
			}
			h := req.Header.Clone()
			h.Del("Content-Length")
			h.Set("Fossil-Stream", "conformance")
			want := wantEvent{attrs: map[string]string{}, json: true}
			for _, kv := range sc.attrs[1:] {
				want.attrs[kv[0]] = subst(kv[1])
			}
			if sc.data != "" {
				want.data = []byte(sc.data)
			}
			out = append(out, conformanceCase{
				name:   fmt.Sprintf("Feature/%s%d", camel(sc.name), n),
				header: h,
				body:   sent,
				want:   want,
			})
		}
	}
	return out
}

func isJSONType(ct string) bool {
	mt, _, _ := strings.Cut(strings.ToLower(ct), ";")
	mt = strings.TrimSpace(mt)
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// camel turns "Binary content mode (<contentType>)" into
// "BinaryContentMode": the words before any parenthesis, capitalised.
func camel(s string) string {
	s, _, _ = strings.Cut(s, "(")
	var b strings.Builder
	for _, w := range strings.FieldsFunc(s, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9')
	}) {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}
