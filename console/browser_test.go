package console_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/fossil-events/fossil/internal/dbtest"
)

// EnvChromium names the Chromium (or Chrome) binary to use instead of the
// first of chromiumPaths found.
const EnvChromium = "FOSSIL_CHROMIUM"

// EnvScreenshots names the directory the browser tests write their
// screenshots to; by default screenshots/ at the root of the repository
// (ignored by git; CI keeps it as an artefact).
const EnvScreenshots = "FOSSIL_SCREENSHOTS"

var chromiumPaths = []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"}

// TestMain gives every test its own database and closes the one browser the
// package's tests share before leaked goroutines are looked for.
func TestMain(m *testing.M) {
	dbtest.MainWith(m, func() {
		if shared.cancel != nil {
			shared.cancel()
		}
	})
}

// shared is the package's browser: started by the first test that needs
// it, one tab per test.
var shared struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
}

func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		return p
	}
	for _, p := range chromiumPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("headless Chromium is needed for the console's browser tests: run `make test` (it installs it), "+
		"or apt-get install chromium, or set %s to a Chrome binary", EnvChromium)
	return ""
}

// tab is one browser tab on a test server.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu       sync.Mutex
	problems []string // uncaught exceptions and console errors of the page
}

// newTab opens a tab of the shared browser (in a browser context of its
// own, so that session storage is not shared) on the server at base.
func newTab(t *testing.T, base string) *tab {
	t.Helper()
	chromium := findChromium(t)
	shared.once.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromium),
			chromedp.NoSandbox,
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.WindowSize(1280, 800),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		shared.ctx = bctx
		shared.cancel = func() { bcancel(); acancel() }
		shared.err = chromedp.Do(bctx) // starts the browser
	})
	if shared.err != nil {
		t.Fatalf("start chromium: %v", shared.err)
	}
	ctx, cancel := chromedp.NewContext(shared.ctx, chromedp.WithNewBrowserContext())
	tb := &tab{t: t, ctx: ctx, base: base}
	t.Cleanup(func() {
		cancel()
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, p := range tb.problems {
			t.Errorf("browser console: %s", p)
		}
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// Network errors (a 401 or 403 the page shows) are the browser's
			// log, not the page's.
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source != "network") {
				tb.mu.Lock()
				tb.problems = append(tb.problems, m.String())
				tb.mu.Unlock()
			}
		}
	}()
	return tb
}

// do runs actions with a time limit.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v\npage text:\n%s", what, err, tb.text("main"))
	}
}

// open loads a console path, e.g. /ui/streams.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do("open "+path, chromedp.Navigate(tb.base+path))
}

// text returns the text of the first element sel matches ("" if none).
func (tb *tab) text(sel string) string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel)))
	return s
}

// waitText waits until the element sel matches holds every one of want.
func (tb *tab) waitText(sel string, want ...string) {
	tb.t.Helper()
	var conds []string
	for _, w := range want {
		conds = append(conds, fmt.Sprintf(`e.innerText.includes(%q)`, w))
	}
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && %s; })()`, sel, strings.Join(conds, " && "))
	ctx, cancel := context.WithTimeout(tb.ctx, 45*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(40*time.Second))); err != nil {
		tb.t.Fatalf("waiting for %q in %s: %v\npage text:\n%s", want, sel, err, tb.text("main"))
	}
}

// waitJS waits until a JavaScript expression is true.
func (tb *tab) waitJS(expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 45*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(40*time.Second))); err != nil {
		tb.t.Fatalf("waiting for %s: %v\npage text:\n%s", expr, err, tb.text("main"))
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot saves the whole page as name.png in the screenshot directory.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	dir := os.Getenv(EnvScreenshots)
	if dir == "" {
		dir = filepath.Join("..", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 45*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// colorScheme switches the tab's preferred colour scheme (light, dark).
func (tb *tab) colorScheme(scheme string) {
	tb.t.Helper()
	tb.do(scheme+" colour scheme", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	}))
}

// accessibilityJS lists what the page on screen does wrong: form controls
// without a label, links and buttons without a name, images without a text
// alternative, a main without exactly one h1, duplicate ids, and text whose
// contrast with its background is under WCAG AA (4.5:1).
const accessibilityJS = `(() => {
  const bad = [];
  const short = (el) => el.outerHTML.slice(0, 90);
  for (const el of document.querySelectorAll("input, textarea, select")) {
    if (el.type === "hidden") continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby")) bad.push("unlabelled " + short(el));
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    if (!(el.innerText || el.getAttribute("aria-label") || el.querySelector("img[alt]:not([alt=''])") || "").toString().trim()) bad.push("nameless " + short(el));
  }
  for (const el of document.querySelectorAll("img")) if (!el.hasAttribute("alt")) bad.push("no alt " + short(el));
  for (const el of document.querySelectorAll("svg[role=img]")) if (!el.getAttribute("aria-label")) bad.push("unlabelled chart");
  const h1s = document.querySelectorAll("main h1").length;
  if (h1s !== 1) bad.push("main has " + h1s + " h1");
  const ids = new Set();
  for (const el of document.querySelectorAll("[id]")) {
    if (ids.has(el.id)) bad.push("duplicate id " + el.id);
    ids.add(el.id);
  }
  const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest("svg") || !el.offsetParent) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    if (parseFloat(style.opacity) < 1 || el.closest("button:disabled")) continue;
    const a = lum(rgb(style.color).slice(0, 3)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) bad.push("contrast " + ratio.toFixed(2) + " " + short(el));
  }
  return bad;
})()`

// checkAccessible fails the test for what accessibilityJS finds.
func (tb *tab) checkAccessible(page string) {
	tb.t.Helper()
	for _, p := range eval[[]string](tb, accessibilityJS) {
		tb.t.Errorf("%s: %s", page, p)
	}
}
