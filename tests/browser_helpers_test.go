package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// shotsDir is where the browser tests leave a screenshot of every page they visit, for a
// reader to look at (not committed: tests/output is ignored).
const shotsDir = "output/screenshots"

var (
	shotSeq atomic.Int64
	// shotsReset empties the folder once per test run, so it shows this run's pages only.
	shotsReset sync.Once
)

// browser is one headless Chromium with a profile of its own, as one person's browser:
// its cookies are its own.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	name string
}

// newBrowser starts Chromium for the portal of e. It fails (never skips) under CI when
// Chromium is missing; make test installs it.
func (e *env) newBrowser(t *testing.T, name string) *browser {
	t.Helper()
	chromium := requireTool(t, "chromium")
	if e.portal == "" {
		t.Fatal("the daemon printed no portal address")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		// The portal's certificate is self-signed; the tests check TLS is used, not who signed it.
		chromedp.IgnoreCertErrors, chromedp.WindowSize(1100, 900),
		// Containers often have a small /dev/shm; Chromium then crashes without this.
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, base: "https://" + e.portal, name: name}
	// The first Run starts the browser; it must not carry a timeout (see chromedp.Run).
	if err := chromedp.Do(ctx, chromedp.Func(func(context.Context, *chromedp.Target) error { return nil })); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// do runs steps with a deadline, failing the test with what the page showed.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s (%s): %v\npage: %s", what, b.name, err, b.pageText())
	}
}

// pageText is the visible text of the page, for failure messages.
func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// eval evaluates JavaScript in the page, awaiting a promise.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %q (%s): %v", js, b.name, err)
	}
	return v
}

// open navigates to a path of the portal.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// path is the path of the page shown.
func (b *browser) path() string {
	b.t.Helper()
	return eval[string](b, `location.pathname + location.search`)
}

// text is the text of the first element matching css ("" when there is none).
func (b *browser) text(css string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(function(){var e=document.querySelector(%q);return e?e.innerText:""})()`, css))
}

// flash is the message the page shows after a form ("" when none).
func (b *browser) flash() string { return b.text("#flash") }

// fill sets form fields by element id, then clicks the form's submit button and waits
// for the next page.
func (b *browser) fill(form string, fields map[string]string) {
	b.t.Helper()
	steps := []chromedp.Action[chromedp.Void]{chromedp.WaitVisible(chromedp.CSS(form))}
	for id, v := range fields {
		steps = append(steps, chromedp.SetValue(chromedp.CSS(form+" #"+id), v))
	}
	b.do("fill "+form, steps...)
	b.submit(form + " button[type=submit]")
}

// submit clicks a submit button and waits until the next page has loaded.
func (b *browser) submit(button string) {
	b.t.Helper()
	eval[bool](b, `window.__dshOld = true`)
	// On a loaded machine the page may still be replacing nodes when the click lands
	// ("could not find node"): find the button again, a few times, before giving up.
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(button), chromedp.NodeVisible))
		cancel()
		if err == nil {
			break
		}
		if try == 5 || !strings.Contains(err.Error(), "Could not find node") {
			b.t.Fatalf("submit %s (%s): %v\npage: %s", button, b.name, err, b.pageText())
		}
		time.Sleep(200 * time.Millisecond)
		// The click may have landed before the node went: then a new page is loading.
		ctx, cancel = context.WithTimeout(b.ctx, 5*time.Second)
		old, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__dshOld === true`))
		cancel()
		if err != nil || !old {
			break
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		// While the next page loads, evaluating may fail (no context yet): try again.
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		old, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__dshOld === true`))
		cancel()
		if err == nil && !old {
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("no new page after clicking %s (%s)", button, b.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.do("load after "+button, chromedp.WaitReady(chromedp.CSS("body")))
}

// signin signs in with a soft-token code.
func (b *browser) signin(user, password, pin, code string) {
	b.t.Helper()
	b.open("/signin")
	b.fill("#signin-token", map[string]string{"user": user, "password": password, "pin": pin, "code": code})
}

// signedIn reports whether the page shows a signed-in user.
func (b *browser) signedIn() bool {
	b.t.Helper()
	return b.text("#whoami") != ""
}

// shot saves a full-page screenshot under output/screenshots.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 gives PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	shotsReset.Do(func() { os.RemoveAll(shotsDir) })
	if err := os.MkdirAll(shotsDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	file := fmt.Sprintf("%s-%02d-%s.png", strings.TrimPrefix(b.t.Name(), "Test"), shotSeq.Add(1), name)
	if err := os.WriteFile(filepath.Join(shotsDir, file), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// pick chooses files in the upload field, which starts their uploads.
func (b *browser) pick(files ...string) {
	b.t.Helper()
	b.do("pick files", chromedp.SetUploadFiles(chromedp.ID("file"), files))
}

// waitFor polls a JavaScript condition until it holds.
func (b *browser) waitFor(what, js string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !eval[bool](b, js) {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s (%s)\npage: %s", what, b.name, b.pageText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// throttle limits the browser's upload rate (bytes/s); 0 lifts the limit.
func (b *browser) throttle(upload float64) {
	b.t.Helper()
	if upload <= 0 {
		upload = -1
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		b.t.Fatalf("network.enable: %v", err)
	}
	_, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
		MatchedNetworkConditions: []*network.Conditions{{URLPattern: "", DownloadThroughput: -1, UploadThroughput: upload}},
	})
	if err != nil {
		b.t.Fatalf("throttle: %v", err)
	}
}

// phone makes the page a 390-pixel-wide mobile viewport (on) or the desktop window again.
func (b *browser) phone(on bool) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	var err error
	if on {
		_, err = chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 390, Height: 844, DeviceScaleFactor: 1, Mobile: true})
	} else {
		_, err = chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
	}
	if err != nil {
		b.t.Fatalf("viewport: %v", err)
	}
}

// overflows reports whether the page is wider than its viewport (a small screen would
// have to scroll sideways).
func (b *browser) overflows() bool {
	b.t.Helper()
	return eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth + 1`)
}
