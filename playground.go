package main

import (
	"bytes"
	"html/template"
	"net/http"
)

// playgroundDocument is what GraphiQL opens with on a first visit: one named
// operation per step of a session's life, so a newcomer can sign up, call a
// protected field, refresh and log out without reading anything else first.
// playground_test.go validates it against the schema.
const playgroundDocument = `# Session auth: a walk through one device's session.
#
# Put the cursor in an operation and press Ctrl-Enter (or the run button).
# Tokens travel in the Authorization header: open "Headers" below the
# editor and paste a token after "Bearer ", e.g.
#   { "Authorization": "Bearer <accessToken>" }
#
# 1. SignUp (or Login) needs no token. Keep the accessToken and the
#    refreshToken of its answer.
# 2. Me, MySessions and RenameSession need the ACCESS token:
#      { "Authorization": "Bearer <accessToken>" }
#    Without it they answer UNAUTHENTICATED; once it expires (15 minutes by
#    default), TOKEN_EXPIRED: run Refresh.
# 3. Refresh needs the REFRESH token:
#      { "Authorization": "Bearer <refreshToken>" }
#    It answers a new pair; the old access token stops working at once.
# 4. Logout takes either token of the session it ends.
#
# Every error carries extensions.code; the Docs pane (book icon) lists, for
# each field, the token it needs and the codes it can answer.

mutation SignUp {
  # No token needed. EMAIL_TAKEN once this email is registered: run Login.
  signUp(input: {email: "ada@example.com", password: "correct horse battery", deviceName: "GraphiQL"}) {
    accessToken
    refreshToken
    accessTokenExpiresAt
    refreshTokenExpiresAt
    user { id email }
    session { id deviceName }
  }
}

mutation Login {
  # No token needed. Each login is a new session (a new device).
  login(input: {email: "ada@example.com", password: "correct horse battery", deviceName: "GraphiQL"}) {
    accessToken
    refreshToken
    accessTokenExpiresAt
    refreshTokenExpiresAt
    session { id }
  }
}

query Me {
  # Authorization: Bearer <accessToken>
  me { id email createdAt }
}

query MySessions {
  # Authorization: Bearer <accessToken>
  # Most recently used first; current is true for this request's session.
  mySessions { id deviceName userAgent ipAddress createdAt lastUsedAt current }
}

mutation RenameSession {
  # Authorization: Bearer <accessToken>
  # Paste an id from MySessions; any other id answers NOT_FOUND.
  renameSession(id: "paste a session id from MySessions", deviceName: "Work laptop") {
    id deviceName current
  }
}

mutation Refresh {
  # Authorization: Bearer <refreshToken>  (the refresh token, not the access token)
  refresh {
    accessToken
    refreshToken
    accessTokenExpiresAt
    refreshTokenExpiresAt
  }
}

mutation Logout {
  # Authorization: Bearer <accessToken> or Bearer <refreshToken> of the session to end.
  logout
}
`

// playgroundHeaders fills the headers editor of every new tab. It is not
// persisted (shouldPersistHeaders: false), so tokens pasted into it stay out
// of the browser's localStorage.
const playgroundHeaders = `{
  "Authorization": "Bearer <paste accessToken, or refreshToken for Refresh and Logout>"
}`

// playgroundAssets are the GraphiQL and React builds that gqlgen's own
// playground.Handler loads, with their subresource-integrity hashes;
// playground_test.go checks that they still match the gqlgen in go.mod.
var playgroundAssets = struct {
	ReactJS, ReactJSSRI        string
	ReactDOMJS, ReactDOMJSSRI  string
	GraphiQLJS, GraphiQLJSSRI  string
	GraphiQLCSS, GraphiQLCSSRI string
}{
	ReactJS:       "https://cdn.jsdelivr.net/npm/react@18.2.0/umd/react.production.min.js",
	ReactJSSRI:    "sha256-S0lp+k7zWUMk2ixteM6HZvu8L9Eh//OVrt+ZfbCpmgY=",
	ReactDOMJS:    "https://cdn.jsdelivr.net/npm/react-dom@18.2.0/umd/react-dom.production.min.js",
	ReactDOMJSSRI: "sha256-IXWO0ITNDjfnNXIu5POVfqlgYoop36bDzhodR6LW5Pc=",
	GraphiQLJS:    "https://cdn.jsdelivr.net/npm/graphiql@4.1.2/graphiql.min.js",
	GraphiQLJSSRI: "sha256-hnImuor1znlJkD/FOTL3jayfS/xsyNoP04abi8bFJWs=",
	GraphiQLCSS:   "https://cdn.jsdelivr.net/npm/graphiql@4.1.2/graphiql.min.css",
	GraphiQLCSSRI: "sha256-MEh+B2NdMSpj9kexQNN3QKc8UzMrCXW/Sx/phcpuyIU=",
}

// gqlgen's playground.Handler cannot open on a document of our own, so the
// page is ours; html/template escapes the document and headers into
// JavaScript string literals.
var playgroundPage = template.Must(template.New("playground").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Session auth</title>
<style>body { margin: 0; } #graphiql { height: 100vh; }</style>
<script src="{{.Assets.ReactJS}}" integrity="{{.Assets.ReactJSSRI}}" crossorigin="anonymous"></script>
<script src="{{.Assets.ReactDOMJS}}" integrity="{{.Assets.ReactDOMJSSRI}}" crossorigin="anonymous"></script>
<link rel="stylesheet" href="{{.Assets.GraphiQLCSS}}" integrity="{{.Assets.GraphiQLCSSRI}}" crossorigin="anonymous">
</head>
<body>
<div id="graphiql">Loading…</div>
<script src="{{.Assets.GraphiQLJS}}" integrity="{{.Assets.GraphiQLJSSRI}}" crossorigin="anonymous"></script>
<script>
  const fetcher = GraphiQL.createFetcher({ url: location.origin + {{.Endpoint}} });
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: {{.Document}},
      defaultHeaders: {{.Headers}},
      defaultEditorToolsVisibility: 'headers',
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    }),
  );
</script>
</body>
</html>
`))

// playgroundHandler serves GraphiQL for the API at /graphql, opening on
// playgroundDocument with an Authorization header ready to fill in.
func playgroundHandler() http.Handler {
	var page bytes.Buffer
	err := playgroundPage.Execute(&page, map[string]any{
		"Assets":   playgroundAssets,
		"Endpoint": "/graphql",
		"Document": playgroundDocument,
		"Headers":  playgroundHeaders,
	})
	if err != nil {
		panic(err) // the template and its data are constants
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page.Bytes())
	})
}
