package api

import (
	"container/list"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/example/sessionauth/graph"
)

// What one request may ask of the parser and the validator. gqlparser's
// validation is quadratic in the fields that share a response name (rule
// OverlappingFieldsCanBeMerged) and walks every fragment once per operation,
// so its cost is bounded here before it runs, by the text, the tokens and the
// shape of the document. The worst document these admit is measured in
// BENCHMARKS.md ("Parsing and validation").
const (
	// maxQueryBytes bounds the query text (sent, or found by its
	// persisted-query hash). GraphiQL's introspection query is 859 bytes.
	maxQueryBytes = 16 << 10
	// maxQueryTokens bounds the tokens gqlparser reads (comments are not
	// tokens; maxQueryBytes bounds them). The introspection query has 150.
	maxQueryTokens = 1000
	// maxQueryRepeats bounds how often one response path may be selected,
	// counting what fragments and inline fragments select into it.
	maxQueryRepeats = 8
	// maxOperations bounds the operations in one document (GraphiQL sends
	// all those in its editor; the playground's has 7): validation reports
	// errors per operation, the costliest part of an invalid document.
	maxOperations = 32
	// queryCacheBytes bounds the memory of the parsed, validated documents
	// kept for reuse (estimated by documentBytes); persistedQueries bounds
	// the persisted-query texts, each at most maxQueryBytes.
	queryCacheBytes  = 8 << 20
	persistedQueries = 100
)

// queryTextLimit refuses a query text longer than max with BAD_USER_INPUT. It
// runs before the persisted-query extension, which would otherwise keep the
// text.
type queryTextLimit struct{ max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = queryTextLimit{}

func (queryTextLimit) ExtensionName() string                   { return "QueryTextLimit" }
func (queryTextLimit) Validate(graphql.ExecutableSchema) error { return nil }

func (l queryTextLimit) MutateOperationParameters(_ context.Context, p *graphql.RawParams) *gqlerror.Error {
	if len(p.Query) > l.max {
		return &gqlerror.Error{Message: fmt.Sprintf("the query is longer than %d bytes", l.max),
			Extensions: map[string]any{"code": "BAD_USER_INPUT"}}
	}
	return nil
}

// queryLimits refuses documents whose shape alone makes them expensive, before
// gqlgen validates them (validation is where the cost is) and before any
// resolver runs: deep nesting, many fields once fragments are expanded, many
// aliases, a response name repeated in one selection set; and, once the
// operation is known, more than one password-hashing or token-rotating
// mutation. Each refusal answers COMPLEXITY_LIMIT_EXCEEDED.
type queryLimits struct {
	maxTokens     int
	maxDepth      int
	maxAliases    int
	maxSelections int
	maxRepeats    int
	// costly names the root mutation fields of which a request may call
	// one, in schema order: those marked @costly.
	costly []string
	// validated holds documents that already passed these limits (gqlgen's
	// query cache keeps only documents that passed validation, which runs
	// after this check); nil checks every request.
	validated graphql.Cache[*ast.QueryDocument]
}

func defaultQueryLimits() queryLimits {
	return queryLimits{
		maxTokens:     maxQueryTokens,
		maxDepth:      15, // GraphiQL's introspection query needs about 13
		maxAliases:    20,
		maxSelections: 500,
		maxRepeats:    maxQueryRepeats,
		costly:        costlyNames(schemaCostly()),
	}
}

// costlyMutation is a mutation marked @costly in schema.graphqls, the one
// place that says which mutations are limited to one per request (here) and
// counted by result in metric (metrics.go).
type costlyMutation struct{ name, metric string }

// costlyMutations lists the @costly mutations of schema, in its order.
func costlyMutations(schema *ast.Schema) []costlyMutation {
	var out []costlyMutation
	if schema.Mutation == nil {
		return nil
	}
	for _, f := range schema.Mutation.Fields {
		if d := f.Directives.ForName("costly"); d != nil {
			out = append(out, costlyMutation{f.Name, d.Arguments.ForName("metric").Value.Raw})
		}
	}
	return out
}

// schemaCostly is costlyMutations of this server's schema (parsed once, by
// the generated code).
func schemaCostly() []costlyMutation {
	return costlyMutations(graph.NewExecutableSchema(graph.Config{}).Schema())
}

func costlyNames(c []costlyMutation) []string {
	names := make([]string, len(c))
	for i, m := range c {
		names[i] = m.name
	}
	return names
}

// orList writes names as "a", "a or b", "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationContextMutator
} = queryLimits{}

func (queryLimits) ExtensionName() string                   { return "QueryLimits" }
func (queryLimits) Validate(graphql.ExecutableSchema) error { return nil }
func limitError(format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: fmt.Sprintf(format, args...),
		Extensions: map[string]any{"code": "COMPLEXITY_LIMIT_EXCEEDED"}}
}

// MutateOperationParameters parses the query (linear, and bounded by
// maxTokens) and checks the shape of every operation and fragment in it, all
// of which validation would walk. A query that does not parse is left to
// gqlgen, which answers GRAPHQL_PARSE_FAILED.
func (q queryLimits) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	if q.validated != nil {
		if _, ok := q.validated.Get(ctx, p.Query); ok {
			return nil
		}
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: p.Query}, q.maxTokens)
	if err != nil {
		return nil
	}
	return q.checkDocument(doc)
}

func (q queryLimits) checkDocument(doc *ast.QueryDocument) *gqlerror.Error {
	if len(doc.Operations) > maxOperations {
		return limitError("the document holds more than %d operations", maxOperations)
	}
	s := shaper{limits: q, fragments: map[string]*ast.FragmentDefinition{}, memo: map[string]*shape{}, spreading: map[string]bool{}}
	for _, f := range doc.Fragments {
		if _, dup := s.fragments[f.Name]; !dup {
			s.fragments[f.Name] = f
		}
	}
	// Validation walks each operation with its fragments, and each fragment
	// definition once more on its own: count them all, then check the
	// response paths of each (their cost is bounded by the count).
	var roots []ast.SelectionSet
	for _, op := range doc.Operations {
		roots = append(roots, op.SelectionSet)
	}
	for _, f := range doc.Fragments {
		roots = append(roots, f.SelectionSet)
	}
	var selections, aliases int
	for i, root := range roots {
		sh, err := s.set(root)
		if err != nil {
			return err
		}
		// Introspection answers the whole schema (about 3 ms of CPU for
		// GraphiQL's query): once per operation.
		if i < len(doc.Operations) && sh.schemas > 1 {
			return limitError("the query selects __schema more than once")
		}
		selections = sat(selections + sh.selections)
		aliases = sat(aliases + sh.aliases)
		if selections > q.maxSelections {
			return limitError("the query makes more than %d selections (fields and fragments, each use of a fragment counted)", q.maxSelections)
		}
		if aliases > q.maxAliases {
			return limitError("the query uses more than %d aliases", q.maxAliases)
		}
	}
	for _, root := range roots {
		if err := s.paths([]ast.SelectionSet{root}); err != nil {
			return err
		}
	}
	return nil
}

// shape is what a selection set selects, fragments expanded: how many
// selections (fields, fragment spreads, inline fragments) and aliases, and
// the depth of the deepest selection set below it, and how often it selects
// __schema.
type shape struct {
	selections, aliases, below, schemas int
}

// sat keeps counts of a fragment bomb (each fragment spreading the one
// before twice) from overflowing.
func sat(n int) int { return min(n, 1<<30) }

// shaper computes shapes, each fragment once (a document may spread one
// fragment thousands of times at no cost in tokens).
type shaper struct {
	limits    queryLimits
	fragments map[string]*ast.FragmentDefinition
	memo      map[string]*shape
	spreading map[string]bool // the fragments being expanded, to find cycles
}

func (s *shaper) fragment(name string) (*shape, *gqlerror.Error) {
	if sh, ok := s.memo[name]; ok {
		return sh, nil
	}
	def := s.fragments[name]
	if def == nil {
		return &shape{}, nil // validation answers the unknown fragment
	}
	if s.spreading[name] {
		// Validation refuses cycles too, but only after walking them.
		err := gqlerror.ErrorPosf(def.Position, "Cannot spread fragment %.64q within itself.", name)
		err.Extensions = map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}
		return nil, err
	}
	s.spreading[name] = true
	sh, err := s.set(def.SelectionSet)
	delete(s.spreading, name)
	if err != nil {
		return nil, err
	}
	s.memo[name] = sh
	return sh, nil
}

// set returns the shape of set; an error when it nests deeper than maxDepth.
func (s *shaper) set(set ast.SelectionSet) (*shape, *gqlerror.Error) {
	sh := &shape{}
	for _, sel := range set {
		sh.selections = sat(sh.selections + 1)
		var sub *shape
		var err *gqlerror.Error
		switch sel := sel.(type) {
		case *ast.Field:
			if sel.Alias != "" && sel.Alias != sel.Name {
				sh.aliases = sat(sh.aliases + 1)
			}
			if sel.Name == "__schema" {
				sh.schemas = sat(sh.schemas + 1)
			}
			if len(sel.SelectionSet) > 0 {
				sub, err = s.set(sel.SelectionSet)
				if sub != nil {
					sub.below++ // a field's selection set is one level down
				}
			}
		case *ast.InlineFragment:
			sub, err = s.set(sel.SelectionSet)
		case *ast.FragmentSpread:
			sub, err = s.fragment(sel.Name)
		}
		if err != nil {
			return nil, err
		}
		if sub != nil {
			sh.selections = sat(sh.selections + sub.selections)
			sh.aliases = sat(sh.aliases + sub.aliases)
			sh.schemas = sat(sh.schemas + sub.schemas)
			sh.below = max(sh.below, sub.below)
		}
		if sh.below+1 > s.limits.maxDepth {
			return nil, limitError("the query is nested deeper than %d levels", s.limits.maxDepth)
		}
	}
	return sh, nil
}

// paths refuses a response path (the response names from the root down to a
// field) selected more than maxRepeats times, counting what fragments and
// inline fragments select into the same place, as execution merges them.
// Validation compares every two fields on one path, so this bounds its work
// to maxRepeats times the number of fields. sets are the selection sets that
// merge at one path; set has already bounded their expansion, and cycles.
func (s *shaper) paths(sets []ast.SelectionSet) *gqlerror.Error {
	count := map[string]int{}
	var names []string
	below := map[string][]ast.SelectionSet{}
	var collect func(set ast.SelectionSet) *gqlerror.Error
	collect = func(set ast.SelectionSet) *gqlerror.Error {
		for _, sel := range set {
			switch sel := sel.(type) {
			case *ast.Field:
				name := sel.Name
				if sel.Alias != "" {
					name = sel.Alias
				}
				if count[name]++; count[name] > s.limits.maxRepeats {
					return limitError("the query selects %.64q more than %d times in one place", name, s.limits.maxRepeats)
				}
				if count[name] == 1 {
					names = append(names, name)
				}
				if len(sel.SelectionSet) > 0 {
					below[name] = append(below[name], sel.SelectionSet)
				}
			case *ast.InlineFragment:
				if err := collect(sel.SelectionSet); err != nil {
					return err
				}
			case *ast.FragmentSpread:
				if def := s.fragments[sel.Name]; def != nil {
					if err := collect(def.SelectionSet); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	for _, set := range sets {
		if err := collect(set); err != nil {
			return err
		}
	}
	for _, name := range names {
		if sub := below[name]; len(sub) > 0 {
			if err := s.paths(sub); err != nil {
				return err
			}
		}
	}
	return nil
}

// MutateOperationContext refuses more than one costly mutation, counted on
// the operation about to run (with @skip and @include applied).
func (q queryLimits) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil || oc.Operation.Operation != ast.Mutation {
		return nil
	}
	costly := 0
	for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, []string{"Mutation"}) {
		if slices.Contains(q.costly, f.Name) {
			costly++
		}
	}
	if costly > 1 {
		return limitError("at most one %s per request", orList(q.costly))
	}
	return nil
}

// maxErrors bounds the errors one response lists, as graphql-js stops
// validating at 100: a document of maxQueryTokens can hold an error every two
// tokens, and presenting and writing them was a third of its cost.
const maxErrors = 100

// limitErrors is a response middleware that keeps the first maxErrors errors.
func limitErrors(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp != nil && len(resp.Errors) > maxErrors {
		resp.Errors = resp.Errors[:maxErrors]
	}
	return resp
}

// queryCache is gqlgen's parsed-query cache, least recently used first out,
// bounded by the bytes its documents hold rather than by their number: a
// document is keyed by its whole text, so a count alone lets anyone pin
// count × maxQueryBytes (and the syntax tree, several times more).
type queryCache struct {
	mu       sync.Mutex
	max      int
	used     int
	order    *list.List // of *cacheEntry, most recently used first
	byQuery  map[string]*list.Element
	maxCount int
}

type cacheEntry struct {
	query string
	doc   *ast.QueryDocument
	size  int
	// complexity holds what complexityLimit computed for the document's
	// operations without variables, whose complexity never changes.
	complexity map[*ast.OperationDefinition]int
}

func newQueryCache(maxBytes, maxCount int) *queryCache {
	return &queryCache{max: maxBytes, maxCount: maxCount, order: list.New(), byQuery: map[string]*list.Element{}}
}

var _ graphql.Cache[*ast.QueryDocument] = (*queryCache)(nil)

func (c *queryCache) Get(_ context.Context, query string) (*ast.QueryDocument, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byQuery[query]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).doc, true
}

func (c *queryCache) Add(_ context.Context, query string, doc *ast.QueryDocument) {
	size := len(query) + documentBytes(doc)
	if size > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byQuery[query]; ok {
		c.order.MoveToFront(e)
		return
	}
	for c.order.Len() > 0 && (c.used+size > c.max || c.order.Len() >= c.maxCount) {
		old := c.order.Remove(c.order.Back()).(*cacheEntry)
		delete(c.byQuery, old.query)
		c.used -= old.size
	}
	c.byQuery[query] = c.order.PushFront(&cacheEntry{query: query, doc: doc, size: size})
	c.used += size
}

// complexity returns the complexity kept for op, an operation of the cached
// document of query, by keepComplexity.
func (c *queryCache) complexity(query string, op *ast.OperationDefinition) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byQuery[query]; ok {
		n, ok := e.Value.(*cacheEntry).complexity[op]
		return n, ok
	}
	return 0, false
}

// keepComplexity keeps n as the complexity of op, an operation without
// variables (whose complexity is the same every time it runs), with the
// cached document of query that op belongs to, and for as long as it stays
// cached; it keeps nothing when the document is not (or no longer) cached.
func (c *queryCache) keepComplexity(query string, op *ast.OperationDefinition, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byQuery[query]
	if !ok {
		return
	}
	entry := e.Value.(*cacheEntry)
	if !slices.Contains(entry.doc.Operations, op) {
		return // an older parse of the same text, evicted and parsed again
	}
	if entry.complexity == nil {
		entry.complexity = map[*ast.OperationDefinition]int{}
	}
	entry.complexity[op] = n
}

// Bytes returns the estimated bytes the cache holds.
func (c *queryCache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// nodeBytes is what one node of a parsed document holds at most: 317 bytes
// measured (gqlparser v2.5.64, 64-bit), for fields, arguments, values,
// variables and directives alike (see querylimits_test.go).
const nodeBytes = 400

// documentBytes estimates the heap a parsed document holds besides its text.
func documentBytes(doc *ast.QueryDocument) int {
	n := 0
	var value func(v *ast.Value)
	value = func(v *ast.Value) {
		if v == nil {
			return
		}
		n++
		for _, c := range v.Children {
			n++
			value(c.Value)
		}
	}
	directives := func(ds ast.DirectiveList) {
		for _, d := range ds {
			n++
			for _, a := range d.Arguments {
				n++
				value(a.Value)
			}
		}
	}
	var set func(s ast.SelectionSet)
	set = func(s ast.SelectionSet) {
		for _, sel := range s {
			n++
			switch sel := sel.(type) {
			case *ast.Field:
				for _, a := range sel.Arguments {
					n++
					value(a.Value)
				}
				directives(sel.Directives)
				set(sel.SelectionSet)
			case *ast.InlineFragment:
				directives(sel.Directives)
				set(sel.SelectionSet)
			case *ast.FragmentSpread:
				directives(sel.Directives)
			}
		}
	}
	for _, op := range doc.Operations {
		n++
		for _, v := range op.VariableDefinitions {
			n++
			value(v.DefaultValue)
			directives(v.Directives)
		}
		directives(op.Directives)
		set(op.SelectionSet)
	}
	for _, f := range doc.Fragments {
		n++
		directives(f.Directives)
		set(f.SelectionSet)
	}
	return n * nodeBytes
}

// getQueriesOnly serves GraphQL over GET (see graphqlhttp.go), refusing
// mutations with a coded GraphQL error before any work: a link or an <img>
// must never change state.
type getQueriesOnly struct{}

func (getQueriesOnly) Supports(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Upgrade") == ""
}

func (g getQueriesOnly) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	if len(r.URL.RawQuery) > maxBodyBytes {
		writeError(w, http.StatusRequestURITooLong, "BAD_USER_INPUT", fmt.Sprintf("the query string is longer than %d bytes", maxBodyBytes))
		return
	}
	query := r.URL.Query()
	// A query over the limits is left to the executor, which refuses it
	// without parsing it.
	if q := query.Get("query"); len(q) <= maxQueryBytes {
		if doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: q}, maxQueryTokens); err == nil {
			if op := doc.Operations.ForName(query.Get("operationName")); op != nil && op.Operation != ast.Query {
				w.Header().Set("Allow", "POST")
				writeError(w, http.StatusMethodNotAllowed, "BAD_USER_INPUT", "mutations are accepted only in a POST request")
				return
			}
		}
	}
	serveGET(w, r, exec)
}

// maxComplexity bounds gqlgen's complexity of an operation: a point per
// field, its children's added.
const maxComplexity = 1000

// complexityLimit is gqlgen's extension.FixedComplexityLimit(max), answering
// the same error and keeping the same statistics (extension.GetComplexityStats),
// but for an operation without variables of a cached document it computes
// the complexity once (queryCache.keepComplexity): gqlgen walks the
// operation and builds a string per field on every request, about 1 µs of
// { me { id email } } under load (BENCHMARKS.md, "Issue 10, eighth pass").
type complexityLimit struct {
	max   int
	cache *queryCache
	es    graphql.ExecutableSchema
}

func (*complexityLimit) ExtensionName() string { return "ComplexityLimit" }

func (l *complexityLimit) Validate(es graphql.ExecutableSchema) error {
	l.es = es
	return nil
}

func (l *complexityLimit) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	op := oc.Operation
	fixed := op != nil && len(op.VariableDefinitions) == 0
	n, ok := 0, false
	if fixed {
		n, ok = l.cache.complexity(oc.RawQuery, op)
	}
	if !ok {
		n = complexity.Calculate(ctx, l.es, op, oc.Variables)
		if fixed {
			l.cache.keepComplexity(oc.RawQuery, op, n)
		}
	}
	oc.Stats.SetExtension("ComplexityLimit", &extension.ComplexityStats{Complexity: n, ComplexityLimit: l.max})
	if n > l.max {
		err := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d", n, l.max)
		errcode.Set(err, "COMPLEXITY_LIMIT_EXCEEDED")
		return err
	}
	return nil
}
