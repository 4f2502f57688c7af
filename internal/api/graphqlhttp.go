package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// GraphQL over HTTP as https://graphql.github.io/graphql-over-http/draft/
// asks: the response's media type follows the client's Accept header, and
// so does the status of a request error (one raised before execution: the
// document does not parse or validate, the variables do not coerce, a limit
// refuses it). gqlgen's POST and GET transports pick the media type by the
// order of Accept alone (not its q-values), answer 422 under
// application/json, and always write "data": null, which
// application/graphql-response+json forbids on a 4xx.

// responseFormat is one way of serving a GraphQL response.
type responseFormat struct {
	contentType string
	// requestErrorStatus is the status of a request error.
	requestErrorStatus func(gqlerror.List) int
	// omitData leaves the data entry out of a request error's response: no
	// data, never "data": null, goes with a 4xx.
	omitData bool
}

const graphqlResponseJSON = "application/graphql-response+json"

var (
	// asGraphQLResponse is application/graphql-response+json: a request
	// error answers 400, without data.
	asGraphQLResponse = responseFormat{graphqlResponseJSON, func(gqlerror.List) int { return http.StatusBadRequest }, true}
	// asJSON is the legacy application/json, chosen by an Accept header:
	// every well-formed request answers 200, request errors included,
	// since a 4xx may come from any proxy on the way.
	asJSON = responseFormat{"application/json", func(gqlerror.List) int { return http.StatusOK }, false}
	// asDefault answers a request without an Accept header: application/json
	// (what API.md's clients read), with 422 for a document that does not
	// parse or validate, as this server always has. The spec would have
	// 200 here (as asJSON), or application/graphql-response+json since its
	// 2025 watershed; clients that want either say so in Accept.
	asDefault = responseFormat{"application/json", legacyStatus, false}
)

func legacyStatus(errs gqlerror.List) int {
	if errcode.GetErrorKind(errs) == errcode.KindProtocol {
		return http.StatusUnprocessableEntity
	}
	return http.StatusOK
}

// negotiate picks the format of the response from the request's Accept
// header (RFC 9110, section 12.5.1): each media type served gets the q of the
// most specific range that matches it; the highest q wins, then a type named
// outright over one matched by a wildcard, then the one listed first, then
// application/json. ok is false when Accept admits neither.
func negotiate(h http.Header) (f responseFormat, ok bool) {
	accept := strings.Join(h.Values("Accept"), ",")
	if strings.TrimSpace(accept) == "" {
		return asDefault, true
	}
	type rank struct {
		q           float64
		specificity int // 2 named, 1 application/*, 0 */*
		position    int
	}
	var best rank
	for _, candidate := range []responseFormat{asJSON, asGraphQLResponse} {
		r := rank{specificity: -1}
		for i, part := range strings.Split(accept, ",") {
			mediaType, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			s := -1
			switch mediaType {
			case candidate.contentType:
				s = 2
			case "application/*":
				s = 1
			case "*/*":
				s = 0
			}
			if s <= r.specificity {
				continue
			}
			q := 1.0
			if v, set := params["q"]; set {
				if q, err = strconv.ParseFloat(v, 64); err != nil || q < 0 || q > 1 {
					continue
				}
			}
			r = rank{q, s, i}
		}
		if r.specificity < 0 || r.q == 0 {
			continue
		}
		if !ok || r.q > best.q || r.q == best.q && (r.specificity > best.specificity ||
			r.specificity == best.specificity && r.specificity == 2 && r.position < best.position) {
			f, best, ok = candidate, r, true
		}
	}
	return f, ok
}

// postJSON serves a GraphQL request POSTed as JSON.
type postJSON struct{}

var _ graphql.Transport = postJSON{}

func (postJSON) Supports(r *http.Request) bool {
	if r.Header.Get("Upgrade") != "" || r.Method != http.MethodPost {
		return false
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mediaType == "application/json"
}

func (postJSON) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	f, ok := negotiate(r.Header)
	if !ok {
		notAcceptable(w)
		return
	}
	start := graphql.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		status := http.StatusBadRequest
		if tooLarge := new(http.MaxBytesError); errors.As(err, &tooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		f.fail(w, r.Context(), exec, status, gqlerror.Errorf("could not read the request body: %v", err))
		return
	}
	params := &graphql.RawParams{Headers: r.Header}
	if err := jsonDecode(body, params); err != nil {
		// Never echo the body: it may hold a password.
		f.fail(w, r.Context(), exec, http.StatusBadRequest, gqlerror.Errorf("json request body could not be decoded: %v", err))
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	f.execute(w, r.Context(), exec, params, false)
}

// serveGET serves a GraphQL query sent as the query string of a GET.
func serveGET(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	f, ok := negotiate(r.Header)
	if !ok {
		notAcceptable(w)
		return
	}
	start := graphql.Now()
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		f.fail(w, r.Context(), exec, http.StatusBadRequest, gqlerror.Errorf("the query string could not be decoded: %v", err))
		return
	}
	params := &graphql.RawParams{Query: query.Get("query"), OperationName: query.Get("operationName"), Headers: r.Header}
	for name, into := range map[string]any{"variables": &params.Variables, "extensions": &params.Extensions} {
		if v := query.Get(name); v != "" {
			if err := jsonDecode([]byte(v), into); err != nil {
				f.fail(w, r.Context(), exec, http.StatusBadRequest, gqlerror.Errorf("%s could not be decoded: %v", name, err))
				return
			}
		}
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	f.execute(w, r.Context(), exec, params, true)
}

func jsonDecode(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

// execute runs a request. queriesOnly refuses any other operation (a GET's,
// whose query was sent only as a persisted-query hash: getQueriesOnly
// refuses the others before this).
func (f responseFormat) execute(w http.ResponseWriter, ctx context.Context, exec graphql.GraphExecutor, params *graphql.RawParams, queriesOnly bool) {
	if params.Query == "" && params.Extensions["persistedQuery"] == nil {
		// Not a GraphQL-over-HTTP request at all (a misspelt "query",
		// say): the spec's 400 in every format.
		f.fail(w, ctx, exec, http.StatusBadRequest, gqlerror.Errorf("the request has no query"))
		return
	}
	rc, errs := exec.CreateOperationContext(ctx, params)
	if errs != nil {
		f.write(w, f.requestErrorStatus(errs), exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs), true)
		return
	}
	if queriesOnly && rc.Operation.Operation != ast.Query {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "BAD_USER_INPUT", "mutations are accepted only in a POST request")
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, rc)
	f.write(w, http.StatusOK, responses(ctx), false)
}

// fail answers a request that is not a well-formed GraphQL-over-HTTP request
// (its body or query string does not decode) with status, in every format.
func (f responseFormat) fail(w http.ResponseWriter, ctx context.Context, exec graphql.GraphExecutor, status int, err *gqlerror.Error) {
	f.write(w, status, exec.DispatchError(ctx, gqlerror.List{err}), true)
}

func (f responseFormat) write(w http.ResponseWriter, status int, resp *graphql.Response, requestError bool) {
	var v any = resp
	if requestError && f.omitData {
		v = struct {
			Errors     gqlerror.List  `json:"errors"`
			Extensions map[string]any `json:"extensions,omitempty"`
		}{resp.Errors, resp.Extensions}
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Errorf("unable to marshal a GraphQL response: %w", err))
	}
	w.Header().Set("Content-Type", f.contentType)
	w.WriteHeader(status)
	w.Write(b)
}

func notAcceptable(w http.ResponseWriter) {
	writeError(w, http.StatusNotAcceptable, "BAD_USER_INPUT", "Accept admits neither application/graphql-response+json nor application/json")
}
