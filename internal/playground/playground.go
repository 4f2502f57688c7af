// Package playground serves GraphiQL for the API entirely from the binary:
// the page, React, GraphiQL and their fonts are embedded, loaded under
// content-hashed URLs with subresource-integrity hashes, and allowed by a
// Content-Security-Policy of 'self' alone, so the playground works with no
// network but the API's own origin.
//
// The page's script (assets/playground.js) keeps the current session's
// tokens: it sends the access token (the refresh token for refresh) unless
// the developer typed an Authorization header, keeps the pair that signUp,
// login and refresh answer, and forgets it on logout.
//
// assets/vendor is built from the npm registry by web/build.mjs (see
// web/package.json for the exact versions); TestVendorIsReproducible checks
// that the committed files are what it builds.
package playground

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// AssetPrefix is the path under which the assets are served; a router mounts
// Handler at "/" (exactly) and at AssetPrefix.
const AssetPrefix = "/playground/"

// Document is what GraphiQL opens with on a first visit: one named
// operation per step of a session's life, so a newcomer can sign up, call a
// protected field, refresh and log out without reading anything else first.
//
//go:embed document.graphql
var Document string

// Headers fills the headers editor of a new tab: nothing, since the
// playground sends the kept token itself. It is not persisted.
const Headers = ""

// ContentSecurityPolicy is sent with the page: everything from the page's
// own origin, nothing from anywhere else, no inline script or style.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed assets
var assetFS embed.FS

//go:embed page.html
var pageTemplate string

// asset is one embedded file as served.
type asset struct {
	body        []byte
	contentType string
	etag        string
	sri         string
	// gzipped compresses body once, on first use; nil for types that are
	// compressed already (fonts, images).
	gzipped func() []byte
}

func gzipOnce(body []byte) func() []byte {
	return sync.OnceValue(func() []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		return b.Bytes()
	})
}

// site is what the handler serves: the assets under a version that changes
// whenever any of them does, and the rendered page.
type site struct {
	version string // hex, from the hash of every asset's name and content
	assets  map[string]asset
	page    []byte
	etag    string
}

// load reads and hashes the embedded assets once per process.
var load = sync.OnceValue(func() *site {
	s := &site{assets: map[string]asset{}}
	var names []string
	err := fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		panic(err) // embedded: cannot fail at run time
	}
	sort.Strings(names)
	all := sha256.New()
	for _, p := range names {
		body, err := assetFS.ReadFile(p)
		if err != nil {
			panic(err)
		}
		name := strings.TrimPrefix(p, "assets/")
		sum := sha256.Sum256(body)
		sri := sha512.Sum384(body)
		ct := mime.TypeByExtension(path.Ext(name))
		switch path.Ext(name) { // the system's MIME table may not know these
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".woff2":
			ct = "font/woff2"
		case ".woff":
			ct = "font/woff"
		case ".md":
			ct = "text/markdown; charset=utf-8"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		a := asset{
			body:        body,
			contentType: ct,
			etag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
			sri:         "sha384-" + base64.StdEncoding.EncodeToString(sri[:]),
		}
		if strings.HasPrefix(ct, "text/") || strings.HasPrefix(ct, "image/svg") {
			a.gzipped = gzipOnce(body)
		}
		s.assets[name] = a
		all.Write([]byte(name))
		all.Write([]byte{0})
		all.Write(sum[:])
	}
	s.version = hex.EncodeToString(all.Sum(nil)[:8])
	return s
})

// URL returns the content-hashed path of the named asset ("playground.js",
// "vendor/graphiql.min.js"); it panics on a name that is not embedded.
func (s *site) URL(name string) string {
	if _, ok := s.assets[name]; !ok {
		panic("playground: no asset " + name)
	}
	return AssetPrefix + s.version + "/" + name
}

// render builds the page for the API at endpoint.
func (s *site) render(endpoint string) []byte {
	t := template.Must(template.New("page").Funcs(template.FuncMap{
		"asset": s.URL,
		"sri": func(name string) string {
			s.URL(name) // same panic for a name that is not embedded
			return s.assets[name].sri
		},
	}).Parse(pageTemplate))
	var page bytes.Buffer
	if err := t.Execute(&page, map[string]string{"Endpoint": endpoint, "Document": Document, "Headers": Headers}); err != nil {
		panic(err) // the template and its data are constants
	}
	return page.Bytes()
}

// Handler serves the playground for the GraphQL API at endpoint (a path of
// the same origin, e.g. "/graphql"): the page at "/" and the assets under
// AssetPrefix. Anything else answers 404.
func Handler(endpoint string) http.Handler {
	s := load()
	page := s.render(endpoint)
	sum := sha256.Sum256(page)
	pageETag := `"` + hex.EncodeToString(sum[:16]) + `"`
	versioned := AssetPrefix + s.version + "/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		switch {
		case r.URL.Path == "/":
			h.Set("Content-Security-Policy", ContentSecurityPolicy)
			h.Set("Referrer-Policy", "no-referrer")
			// Revalidated on every visit, so a new build's page (and
			// with it the new asset URLs) is seen at once.
			h.Set("Cache-Control", "no-cache")
			serve(w, r, "text/html; charset=utf-8", pageETag, page)
		case strings.HasPrefix(r.URL.Path, versioned):
			a, ok := s.assets[strings.TrimPrefix(r.URL.Path, versioned)]
			if !ok {
				http.NotFound(w, r)
				return
			}
			// The URL changes with the content: cache it for good.
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
			if a.gzipped == nil {
				serve(w, r, a.contentType, a.etag, a.body)
				return
			}
			h.Add("Vary", "Accept-Encoding")
			if !acceptsGzip(r.Header.Get("Accept-Encoding")) {
				serve(w, r, a.contentType, a.etag, a.body)
				return
			}
			h.Set("Content-Encoding", "gzip")
			serve(w, r, a.contentType, strings.TrimSuffix(a.etag, `"`)+`-gzip"`, a.gzipped())
		default:
			// Another version's assets (a page from an older build), or
			// no asset at all: never serve today's bytes under a URL
			// cached as immutable.
			http.NotFound(w, r)
		}
	})
}

func serve(w http.ResponseWriter, r *http.Request, contentType, etag string, body []byte) {
	h := w.Header()
	h.Set("ETag", etag)
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", contentType)
	w.Write(body)
}

// acceptsGzip reports whether an Accept-Encoding header takes gzip (and
// does not refuse it with q=0).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if strings.TrimSpace(coding) != "gzip" {
			continue
		}
		q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !ok {
			return true
		}
		weight, err := strconv.ParseFloat(q, 64)
		return err == nil && weight > 0
	}
	return false
}

func etagMatches(header, etag string) bool {
	for _, candidate := range strings.Split(header, ",") {
		candidate = strings.TrimSpace(candidate)
		if candidate == "*" || strings.TrimPrefix(candidate, "W/") == etag {
			return true
		}
	}
	return false
}
