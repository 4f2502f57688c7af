package playground

import (
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

var (
	tagRe   = regexp.MustCompile(`<(script|link)\b[^>]*>`)
	attrRe  = regexp.MustCompile(`\b(src|href|integrity)="([^"]*)"`)
	cssURL  = regexp.MustCompile(`url\(\s*["']?([^"')]+)["']?\s*\)`)
	inlineJ = regexp.MustCompile(`<script\b[^>]*>\s*[^<\s]`)
)

// TestPageLoadsOnlyEmbeddedAssets: every script and stylesheet of the page
// is one of ours, under a content-hashed URL, with an integrity hash that
// matches the bytes served there; no inline script, no style attribute.
func TestPageLoadsOnlyEmbeddedAssets(t *testing.T) {
	h := Handler("/graphql")
	rec := get(t, h, "/", nil)
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	page := rec.Body.String()
	loaded := map[string]bool{}
	for _, tag := range tagRe.FindAllString(page, -1) {
		attrs := map[string]string{}
		for _, m := range attrRe.FindAllStringSubmatch(tag, -1) {
			attrs[m[1]] = html.UnescapeString(m[2])
		}
		url := attrs["src"] + attrs["href"]
		if url == "" {
			t.Errorf("%s loads nothing", tag)
			continue
		}
		if !strings.HasPrefix(url, AssetPrefix+load().version+"/") {
			t.Errorf("%s is not a content-hashed asset of ours", tag)
			continue
		}
		served := get(t, h, url, nil)
		if served.Code != http.StatusOK {
			t.Errorf("%s: GET = %d", url, served.Code)
			continue
		}
		sum := sha512.Sum384(served.Body.Bytes())
		want := "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
		if strings.Contains(tag, `rel="icon"`) {
			continue // browsers do not check a favicon's integrity
		}
		if attrs["integrity"] != want {
			t.Errorf("%s: integrity %q, the served bytes hash to %q", url, attrs["integrity"], want)
		}
		loaded[strings.TrimPrefix(url, AssetPrefix+load().version+"/")] = true
	}
	for _, name := range []string{"vendor/react.production.min.js", "vendor/react-dom.production.min.js", "vendor/graphiql.min.js", "vendor/graphiql.min.css", "playground.js", "playground.css"} {
		if !loaded[name] {
			t.Errorf("the page does not load %s", name)
		}
	}
	if inlineJ.MatchString(page) {
		t.Error("the page has an inline script")
	}
	if strings.Contains(page, " style=") || strings.Contains(page, "<style") {
		t.Error("the page has inline style, which its policy refuses")
	}
}

// TestContentSecurityPolicy: the page allows nothing but its own origin.
func TestContentSecurityPolicy(t *testing.T) {
	rec := get(t, Handler("/graphql"), "/", nil)
	csp := rec.Header().Get("Content-Security-Policy")
	if csp != ContentSecurityPolicy {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	directives := map[string]bool{}
	for _, d := range strings.Split(csp, ";") {
		fields := strings.Fields(d)
		if len(fields) < 2 {
			t.Fatalf("directive %q has no source", d)
		}
		directives[fields[0]] = true
		for _, source := range fields[1:] {
			if source != "'self'" && source != "'none'" {
				t.Errorf("%s allows %s", fields[0], source)
			}
		}
	}
	for _, d := range []string{"default-src", "script-src", "style-src", "connect-src", "img-src", "font-src", "object-src", "base-uri", "frame-ancestors"} {
		if !directives[d] {
			t.Errorf("no %s", d)
		}
	}
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
}

// TestCaching: assets are immutable under their hashed URL and revalidate
// by ETag; the page is revalidated on every visit; any other version or
// name is not found, so no URL cached as immutable can change meaning.
func TestCaching(t *testing.T) {
	h := Handler("/graphql")
	url := load().URL("vendor/graphiql.min.js")
	rec := get(t, h, url, nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Fatalf("GET %s = %d, Cache-Control %q", url, rec.Code, rec.Header().Get("Cache-Control"))
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if again := get(t, h, url, http.Header{"If-None-Match": {etag}}); again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Fatalf("If-None-Match %s = %d with %d bytes", etag, again.Code, again.Body.Len())
	}
	if other := get(t, h, url, http.Header{"If-None-Match": {`"other"`}}); other.Code != http.StatusOK {
		t.Fatalf("another ETag = %d", other.Code)
	}

	page := get(t, h, "/", nil)
	if page.Header().Get("Cache-Control") != "no-cache" || page.Header().Get("ETag") == "" {
		t.Fatalf("page Cache-Control %q ETag %q", page.Header().Get("Cache-Control"), page.Header().Get("ETag"))
	}
	if again := get(t, h, "/", http.Header{"If-None-Match": {page.Header().Get("ETag")}}); again.Code != http.StatusNotModified {
		t.Fatalf("page revalidation = %d", again.Code)
	}

	for _, missing := range []string{
		AssetPrefix + "0000000000000000/vendor/graphiql.min.js",
		AssetPrefix + "vendor/graphiql.min.js",
		AssetPrefix + load().version + "/vendor/nothing.js",
		AssetPrefix + load().version + "/../page.html",
		"/index.html",
	} {
		if rec := get(t, h, missing, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", missing, rec.Code)
		}
	}
}

// TestStylesheetReferencesResolve: the fonts and images graphiql.min.css
// points to are served next to it (build.mjs took them out of data: URIs,
// which the policy would refuse).
func TestStylesheetReferencesResolve(t *testing.T) {
	h := Handler("/graphql")
	for _, name := range []string{"vendor/graphiql.min.css", "playground.css"} {
		css := get(t, h, load().URL(name), nil).Body.String()
		if strings.Contains(css, "data:") {
			t.Errorf("%s holds a data: URI", name)
		}
		refs := cssURL.FindAllStringSubmatch(css, -1)
		if name == "vendor/graphiql.min.css" && len(refs) == 0 {
			t.Fatalf("%s points to no font: did the build change?", name)
		}
		for _, m := range refs {
			target := path.Join(path.Dir(load().URL(name)), m[1])
			if rec := get(t, h, target, nil); rec.Code != http.StatusOK {
				t.Errorf("%s: url(%s) -> GET %s = %d", name, m[1], target, rec.Code)
			}
		}
	}
}

// webDir is the npm project that builds assets/vendor and drives the
// browser test.
const webDir = "web"

// TestVendorIsReproducible rebuilds assets/vendor from the exact packages
// of web/package-lock.json and compares it with what is committed (and
// embedded): the committed files are npm's, changed only as build.mjs says.
func TestVendorIsReproducible(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: install Node.js 20 or later with npm, then bash test.sh (it runs npm ci --prefix internal/playground/web)")
	}
	if _, err := os.Stat(filepath.Join(webDir, "node_modules", "graphiql", "package.json")); err != nil {
		t.Fatal("internal/playground/web/node_modules is missing: npm ci --prefix internal/playground/web (bash test.sh does it)")
	}
	out := t.TempDir()
	cmd := exec.Command(node, "build.mjs", out)
	cmd.Dir = webDir
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node build.mjs: %v\n%s", err, msg)
	}
	built := map[string][]byte{}
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, p)
			built[filepath.ToSlash(rel)], _ = os.ReadFile(p)
		}
		return err
	})
	committed := map[string][]byte{}
	fs.WalkDir(assetFS, "assets/vendor", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			committed[strings.TrimPrefix(p, "assets/vendor/")], _ = assetFS.ReadFile(p)
		}
		return err
	})
	for name, b := range built {
		if c, ok := committed[name]; !ok {
			t.Errorf("the build makes %s, which is not committed: run npm run build in internal/playground/web", name)
		} else if !bytes.Equal(b, c) {
			t.Errorf("committed %s differs from the build: run npm run build in internal/playground/web", name)
		}
	}
	for name := range committed {
		if _, ok := built[name]; !ok {
			t.Errorf("committed %s is not made by the build", name)
		}
	}
}

// TestVersionsArePinned: package.json names exact versions, and the lock
// file agrees, so npm ci installs the same bytes everywhere.
func TestVersionsArePinned(t *testing.T) {
	var manifest struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	for file, v := range map[string]any{"package.json": &manifest, "package-lock.json": &lock} {
		raw, err := os.ReadFile(filepath.Join(webDir, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	exact := regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	for _, name := range []string{"graphiql", "react", "react-dom", "playwright-core"} {
		version := manifest.DevDependencies[name]
		if !exact.MatchString(version) {
			t.Errorf("package.json: %s %q is not an exact version", name, version)
		}
		if locked := lock.Packages["node_modules/"+name].Version; locked != version {
			t.Errorf("package-lock.json has %s %s, package.json %s", name, locked, version)
		}
	}
}

// TestGzip: text assets go gzipped to a client that takes gzip, with their
// own ETag; the bytes they unpack to are the ones the integrity hash covers.
func TestGzip(t *testing.T) {
	h := Handler("/graphql")
	url := load().URL("vendor/graphiql.min.js")
	plain := get(t, h, url, nil)
	if plain.Header().Get("Content-Encoding") != "" || !strings.Contains(plain.Header().Get("Vary"), "Accept-Encoding") {
		t.Fatalf("plain: Content-Encoding %q Vary %q", plain.Header().Get("Content-Encoding"), plain.Header().Get("Vary"))
	}
	for _, refused := range []string{"gzip;q=0", "gzip; q=0.000", "br", "identity"} {
		if rec := get(t, h, url, http.Header{"Accept-Encoding": {refused}}); rec.Header().Get("Content-Encoding") != "" {
			t.Errorf("Accept-Encoding %q got %q", refused, rec.Header().Get("Content-Encoding"))
		}
	}
	zipped := get(t, h, url, http.Header{"Accept-Encoding": {"br, gzip;q=0.8"}})
	if zipped.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", zipped.Header().Get("Content-Encoding"))
	}
	if zipped.Header().Get("ETag") == plain.Header().Get("ETag") {
		t.Fatal("the gzipped and plain bodies share an ETag")
	}
	if zipped.Body.Len() >= plain.Body.Len()/2 {
		t.Fatalf("gzipped %d bytes, plain %d", zipped.Body.Len(), plain.Body.Len())
	}
	zr, err := gzip.NewReader(zipped.Body)
	if err != nil {
		t.Fatal(err)
	}
	unpacked, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unpacked, plain.Body.Bytes()) {
		t.Fatalf("the gzipped body does not unpack to the plain one (%v)", err)
	}
	again := get(t, h, url, http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {zipped.Header().Get("ETag")}})
	if again.Code != http.StatusNotModified {
		t.Fatalf("revalidating the gzipped body = %d", again.Code)
	}
	var fontURL string
	for name := range load().assets {
		if strings.HasSuffix(name, ".woff2") {
			fontURL = load().URL(name)
		}
	}
	font := get(t, h, fontURL, http.Header{"Accept-Encoding": {"gzip"}})
	if font.Code != http.StatusOK || font.Header().Get("Content-Encoding") != "" {
		t.Fatalf("a font: %d, Content-Encoding %q", font.Code, font.Header().Get("Content-Encoding"))
	}
}
