package api

import (
	"net/http"

	"github.com/example/sessionauth/internal/playground"
)

// mountPlayground serves GraphiQL at / and its embedded assets under
// playground.AssetPrefix; internal/playground holds the page, its assets and
// its tests.
func mountPlayground(mux *http.ServeMux) {
	h := playground.Handler("/graphql")
	mux.Handle("GET /{$}", h)
	mux.Handle("GET "+playground.AssetPrefix, h)
}
