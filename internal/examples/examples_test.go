package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// root is the repository, two levels up from this package.
const root = "../.."

// statusMarker is what the curl wrapper writes to stderr after each
// response: the status code follows it.
const statusMarker = "@@fossil-example-status "

// prelude wraps curl for the examples: quiet, bounded in time, a stream
// (-N) stopped after 2s without an error, each status code written to
// stderr.
const prelude = `set -o pipefail
curl() {
	local a stream= rc
	for a in "$@"; do [ "$a" = -N ] && stream=1; done
	if [ -n "$stream" ]; then
		command curl -sS --max-time 2 -w '%{stderr}\n` + statusMarker + `%{http_code}\n' "$@"; rc=$?
		[ $rc -eq 28 ] && rc=0
	else
		command curl -sS --max-time 30 -w '%{stderr}\n` + statusMarker + `%{http_code}\n' "$@"; rc=$?
	fi
	return $rc
}
`

// TestExamples runs the shell examples of README.md and docs/*.md; see the
// package documentation for the conventions.
func TestExamples(t *testing.T) {
	files := []string{filepath.Join(root, "README.md")}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, docs...)
	bin := buildFossil(t)
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil && bytes.Contains(b, []byte("\ngrpcurl ")) {
			provideGrpcurl(t, filepath.Dir(bin))
			break
		}
	}

	total := 0
	for _, file := range files {
		exs := parseExamples(t, file)
		runnable := 0
		for _, ex := range exs {
			if ex.skip == "" {
				runnable++
			}
		}
		total += len(exs)
		if runnable == 0 {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			addr, dbURL := startServer(t, bin)
			for _, ex := range exs {
				if ex.skip != "" {
					t.Logf("%s:%d not run: %s", ex.file, ex.line, ex.skip)
					continue
				}
				runExample(t, ex, bin, addr, dbURL)
			}
		})
	}
	if total < 10 {
		t.Fatalf("found %d shell examples in %v: has the convention changed?", total, files)
	}
}

// example is one sh block and the output block that follows it.
type example struct {
	file     string
	line     int // of the opening fence
	script   string
	output   string // "" when no output block follows
	hasOut   bool
	skip     string // the reason it does not run
	commands []command
}

// command is one command of a block.
type command struct {
	line    int // in the file
	text    string
	comment string // the comment at the end of its last line, without "#"
}

var skipMarker = regexp.MustCompile(`^<!--\s*example:\s*skip\b\s*(.*?)\s*-->$`)

// parseExamples reads the sh blocks of a Markdown file.
func parseExamples(t *testing.T, file string) []example {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var out []example
	// block returns the lines of the fenced block opening at i and the index
	// of its closing fence.
	block := func(i int) ([]string, int) {
		var body []string
		for j := i + 1; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) == "```" {
				return body, j
			}
			body = append(body, lines[j])
		}
		t.Fatalf("%s:%d: fenced block is not closed", file, i+1)
		return nil, 0
	}
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(trimmed, "```") {
			continue
		}
		lang := strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))
		body, end := block(i)
		if lang != "sh" && lang != "shell" && lang != "bash" {
			i = end
			continue
		}
		ex := example{file: filepath.Base(file), line: i + 1, script: strings.Join(body, "\n")}
		for p := i - 1; p >= 0; p-- {
			prev := strings.TrimSpace(lines[p])
			if prev == "" {
				continue
			}
			if m := skipMarker.FindStringSubmatch(prev); m != nil {
				if m[1] == "" {
					t.Fatalf("%s:%d: a skipped example must say why: <!-- example: skip REASON -->", file, p+1)
				}
				ex.skip = m[1]
			}
			break
		}
		ex.commands = splitCommands(t, file, i+2, ex.script)
		i = end
		// An output block right after it (blank lines between are allowed).
		j := end + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		if j < len(lines) {
			next := strings.TrimSpace(lines[j])
			if strings.HasPrefix(next, "```") {
				switch strings.TrimSpace(strings.TrimPrefix(next, "```")) {
				case "", "json", "text", "http", "output":
					outBody, outEnd := block(j)
					ex.output, ex.hasOut = strings.Join(outBody, "\n"), true
					i = outEnd
				}
			}
		}
		if len(ex.commands) == 0 {
			t.Fatalf("%s:%d: empty shell example", file, ex.line)
		}
		out = append(out, ex)
	}
	return out
}

// splitCommands splits a script at newlines outside quotes, the way a
// shell reads it: a backslash-newline continues the command, and a # at
// the start of a word begins a comment.
func splitCommands(t *testing.T, file string, firstLine int, script string) []command {
	t.Helper()
	var (
		out             []command
		cur, comment    strings.Builder
		quote           rune // 0, '\'' or '"'
		inComment       bool
		line, startLine = firstLine, firstLine
	)
	flush := func() {
		text := strings.TrimSpace(cur.String())
		if text != "" {
			out = append(out, command{line: startLine, text: text, comment: strings.TrimSpace(comment.String())})
		}
		cur.Reset()
		comment.Reset()
	}
	rs := []rune(script)
	for k := 0; k < len(rs); k++ {
		r := rs[k]
		switch {
		case inComment:
			if r == '\n' {
				inComment = false
				line++
				flush()
				startLine = line
				continue
			}
			comment.WriteRune(r)
		case quote == '\'':
			cur.WriteRune(r)
			if r == '\'' {
				quote = 0
			}
			if r == '\n' {
				line++
			}
		case r == '\\' && k+1 < len(rs):
			cur.WriteRune(r)
			cur.WriteRune(rs[k+1])
			if rs[k+1] == '\n' {
				line++
			}
			k++
		case quote == '"':
			cur.WriteRune(r)
			if r == '"' {
				quote = 0
			}
			if r == '\n' {
				line++
			}
		case r == '\'' || r == '"':
			quote = r
			cur.WriteRune(r)
		case r == '#' && (cur.Len() == 0 || strings.ContainsRune(" \t\n", lastRune(cur.String()))):
			inComment = true
		case r == '\n':
			line++
			flush()
			startLine = line
		default:
			cur.WriteRune(r)
		}
	}
	if quote != 0 {
		t.Fatalf("%s:%d: unterminated %c quote in a shell example", file, startLine, quote)
	}
	flush()
	return out
}

func lastRune(s string) rune {
	r := []rune(s)
	if len(r) == 0 {
		return ' '
	}
	return r[len(r)-1]
}

var statusComment = regexp.MustCompile(`^(\d{3})\b`)

// cmdMarker separates the output of the commands of one block; rcMarker
// precedes a command's exit status on stderr.
const (
	cmdMarker = "\n@@fossil-example-cmd\n"
	rcMarker  = "@@fossil-example-rc "
)

// runExample runs the commands of ex, in one shell so that variables set by
// one are seen by the next as when pasted, and checks each.
func runExample(t *testing.T, ex example, bin, addr, dbURL string) {
	t.Helper()
	replace := strings.NewReplacer("localhost:8080", addr, "127.0.0.1:8080", addr)
	var script strings.Builder
	for _, c := range ex.commands {
		fmt.Fprintf(&script, "printf '\\n@@fossil-example-cmd\\n'; printf '\\n@@fossil-example-cmd\\n' >&2\n%s\nprintf '\\n%s%%d\\n' $? >&2\n",
			replace.Replace(c.text), rcMarker)
	}
	allOut, allErr, err := runCommand(t, bin, addr, dbURL, script.String())
	outs := strings.Split(allOut, cmdMarker)[1:]
	errs := strings.Split(allErr, cmdMarker)[1:]
	for n, c := range ex.commands {
		where := fmt.Sprintf("%s:%d", ex.file, c.line)
		if n >= len(outs) || n >= len(errs) {
			t.Errorf("%s: %s\ndid not run (the block's shell ended: %v)\nstderr:\n%s", where, c.text, err, allErr)
			return
		}
		stdout, stderr := outs[n], errs[n]
		rc := -1
		if i := strings.LastIndex(stderr, rcMarker); i >= 0 {
			rc, _ = strconv.Atoi(strings.TrimSpace(stderr[i+len(rcMarker):]))
			stderr = stderr[:i]
		}
		last := n == len(ex.commands)-1
		isCurl := strings.HasPrefix(c.text, "curl ")
		if rc != 0 {
			t.Errorf("%s: %s\nexited with %d\nstdout:\n%s\nstderr:\n%s", where, c.text, rc, stdout, stderr)
			continue
		}
		if !isCurl {
			if last && ex.hasOut {
				checkOutput(t, where, c.text, ex.output, stdout)
			}
			continue
		}
		statuses := parseStatuses(stderr)
		if len(statuses) != 1 {
			t.Errorf("%s: %s\nmade %d requests (%v), want 1; stderr:\n%s", where, c.text, len(statuses), statuses, stderr)
			continue
		}
		want := 0
		if m := statusComment.FindStringSubmatch(c.comment); m != nil {
			want, _ = strconv.Atoi(m[1])
		}
		if last && ex.hasOut {
			if s := outputStatus(ex.output); s != 0 {
				if want != 0 && want != s {
					t.Errorf("%s: the comment says %d, the output block %d", where, want, s)
				}
				want = s
			}
		}
		got := statuses[0]
		switch {
		case want == 0 && (got < 200 || got > 299):
			t.Errorf("%s: %s\nanswered %d, want 2xx (or say the status in a comment: # %d)\n%s", where, c.text, got, got, stdout)
		case want != 0 && got != want:
			t.Errorf("%s: %s\nanswered %d, want %d\n%s", where, c.text, got, want, stdout)
		}
		if last && ex.hasOut {
			checkOutput(t, where, c.text, ex.output, stdout)
		}
	}
}

// runCommand runs one command with bash.
func runCommand(t *testing.T, bin, addr, dbURL, text string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", prelude+text)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"TOKEN=placeholder-token",
		"DATABASE_URL="+dbURL,
		"FOSSIL_ADDR="+addr,
	)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func parseStatuses(stderr string) []int {
	var out []int
	for _, l := range strings.Split(stderr, "\n") {
		if s, ok := strings.CutPrefix(l, statusMarker); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(s))
			out = append(out, n)
		}
	}
	return out
}

// outputStatus is the status an output block shows: its HTTP/1.1 line, or
// the "status" of a problem JSON body; 0 if none.
func outputStatus(out string) int {
	out = strings.TrimSpace(out)
	if strings.HasPrefix(out, "HTTP/") {
		f := strings.Fields(strings.SplitN(out, "\n", 2)[0])
		if len(f) >= 2 {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if json.Unmarshal([]byte(out), &p) == nil && p.Type != "" {
		return p.Status
	}
	return 0
}

// checkOutput compares what a command printed with its output block.
func checkOutput(t *testing.T, where, cmdText, want, got string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Errorf("%s: %s\n%s\n--- the documentation shows:\n%s\n--- it printed:\n%s", where, cmdText, fmt.Sprintf(format, args...), want, got)
	}
	want = strings.TrimSpace(want)
	if strings.HasPrefix(want, "HTTP/") {
		wantHead, wantBody, _ := strings.Cut(want, "\n\n")
		got = strings.ReplaceAll(got, "\r\n", "\n")
		gotHead, gotBody, _ := strings.Cut(got, "\n\n")
		if !strings.HasPrefix(gotHead, "HTTP/") {
			fail("the output has no HTTP status line (the documentation shows curl -i output)")
			return
		}
		hdr := parseHeader(gotHead)
		for _, l := range strings.Split(wantHead, "\n")[1:] {
			name, value, ok := strings.Cut(l, ":")
			if !ok {
				fail("header line %q has no colon", l)
				continue
			}
			if gv := hdr.Values(strings.TrimSpace(name)); !slices.ContainsFunc(gv, func(v string) bool {
				return textMatch(strings.TrimSpace(value), v)
			}) {
				fail("header %s = %q, want %q", name, gv, strings.TrimSpace(value))
			}
		}
		want, got = wantBody, gotBody
	}
	if msg := bodyMatch(want, got); msg != "" {
		fail("%s", msg)
	}
}

func parseHeader(head string) http.Header {
	h := http.Header{}
	for _, l := range strings.Split(head, "\n")[1:] {
		if name, value, ok := strings.Cut(l, ":"); ok {
			h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
	return h
}

// bodyMatch compares a body; "" when it matches, else what differs.
func bodyMatch(want, got string) string {
	want, got = strings.TrimSpace(want), strings.TrimSpace(got)
	if want == "" {
		return ""
	}
	var wv any
	if json.Unmarshal([]byte(want), &wv) == nil {
		var gv any
		if err := json.Unmarshal([]byte(got), &gv); err != nil {
			return "the documentation shows JSON but the output is not JSON"
		}
		if msg := jsonMatch("$", wv, gv); msg != "" {
			return msg
		}
		return ""
	}
	gotLines := strings.Split(strings.ReplaceAll(got, "\r\n", "\n"), "\n")
	k := 0
	for _, wl := range strings.Split(want, "\n") {
		wl = strings.TrimSpace(wl)
		if wl == "" {
			continue
		}
		found := false
		for ; k < len(gotLines); k++ {
			if lineMatch(wl, strings.TrimSpace(gotLines[k])) {
				found = true
				k++
				break
			}
		}
		if !found {
			return fmt.Sprintf("line %q is not in the output (in this order)", wl)
		}
	}
	return ""
}

// lineMatch compares one line: as JSON when it is (also after "data: "),
// else as text with … matching anything.
func lineMatch(want, got string) bool {
	for _, prefix := range []string{"data: ", ""} {
		wj, ok1 := strings.CutPrefix(want, prefix)
		gj, ok2 := strings.CutPrefix(got, prefix)
		if !ok1 || !ok2 {
			continue
		}
		var wv, gv any
		if json.Unmarshal([]byte(wj), &wv) == nil && strings.ContainsAny(wj[:1], "{[") {
			return json.Unmarshal([]byte(gj), &gv) == nil && jsonMatch("$", wv, gv) == ""
		}
	}
	return textMatch(want, got)
}

// textMatch: equal, with … matching any run of characters.
func textMatch(want, got string) bool {
	parts := strings.Split(want, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$").MatchString(got)
}

var timestamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$`)

// jsonMatch compares decoded JSON values; "" when they match.
func jsonMatch(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %v", path, got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s.%s is missing", path, k)
			}
			if msg := jsonMatch(path+"."+k, wv, gv); msg != "" {
				return msg
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return fmt.Sprintf("%s.%s = %v is not in the documentation", path, k, g[k])
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %d elements, got %v", path, len(w), got)
		}
		for i := range w {
			if msg := jsonMatch(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); msg != "" {
				return msg
			}
		}
	case string:
		if w == "…" {
			return ""
		}
		g, ok := got.(string)
		if ok && timestamp.MatchString(w) && timestamp.MatchString(g) {
			return ""
		}
		if !ok || g != w {
			return fmt.Sprintf("%s = %#v, want %q", path, got, w)
		}
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return fmt.Sprintf("%s = %v, want %v", path, got, want)
		}
	}
	return ""
}

// grpcurlVersion is the grpcurl that .ci/test installs.
const grpcurlVersion = "v1.9.3"

// provideGrpcurl puts grpcurl in dir (first on the examples' PATH): the one
// on PATH, or the one .ci/test installs into $(go env GOPATH)/bin.
func provideGrpcurl(t *testing.T, dir string) {
	t.Helper()
	path, err := exec.LookPath("grpcurl")
	if err != nil {
		out, _ := exec.Command("go", "env", "GOPATH").Output()
		for _, gp := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(gp, "bin", "grpcurl")
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				path = p
				break
			}
		}
	}
	if path == "" {
		t.Fatalf("grpcurl is missing: the gRPC examples run it; bash .ci/test installs it, or go install github.com/fullstorydev/grpcurl/cmd/grpcurl@%s", grpcurlVersion)
	}
	if err := os.Symlink(path, filepath.Join(dir, "grpcurl")); err != nil {
		t.Fatal(err)
	}
}

// buildFossil builds the fossil binary of this tree.
func buildFossil(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fossil")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServer runs `fossil server` on a free loopback port with a fresh
// database and returns its address and the database's URL.
func startServer(t *testing.T, bin string) (addr, dbURL string) {
	t.Helper()
	dbURL = dbtest.NewDB(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(bin, "server", "--addr", addr)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FOSSIL_SSE_KEEPALIVE=1s")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; {
		select {
		case err := <-exited:
			t.Fatalf("fossil server exited: %v\n%s", err, logs.String())
		default:
		}
		if res, err := http.Get("http://" + addr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return addr, dbURL
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fossil server on %s not ready after 60s:\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
