// The playground's own script: GraphiQL, a guide, and a keeper of the
// current session's tokens. Served from the binary like everything else on
// the page (no inline script: the Content-Security-Policy allows 'self' only).
'use strict';
(function () {
  const root = document.getElementById('graphiql');
  const endpoint = new URL(root.dataset.endpoint, location.href).href;

  // ---- The kept tokens -------------------------------------------------
  // In sessionStorage (gone when the tab closes) unless the developer ticks
  // "Keep after this tab closes", which moves them to localStorage.
  const KEY = 'sessionauth.playground.tokens';
  const PERSIST = 'sessionauth.playground.persist';
  let persist = localStorage.getItem(PERSIST) === 'true';
  let kept = read();

  function store() { return persist ? localStorage : sessionStorage; }
  function read() {
    try { return JSON.parse(store().getItem(KEY)); } catch { return null; }
  }
  function keep(tokens) {
    kept = tokens;
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
    if (tokens) store().setItem(KEY, JSON.stringify(tokens));
    show();
  }
  function setPersist(on) {
    persist = on;
    if (on) localStorage.setItem(PERSIST, 'true'); else localStorage.removeItem(PERSIST);
    keep(kept);
  }
  // Another tab changed what is kept in localStorage.
  addEventListener('storage', (e) => {
    if (e.key === KEY && persist) { kept = read(); show(); }
  });

  // ---- The bar that shows them ----------------------------------------
  const state = document.getElementById('session-state');
  const tokensBox = document.getElementById('session-tokens');
  const persistBox = document.getElementById('session-persist');
  const forget = document.getElementById('session-forget');
  persistBox.checked = persist;
  persistBox.addEventListener('change', () => setPersist(persistBox.checked));
  forget.addEventListener('click', () => keep(null));

  const tail = (t) => '…' + t.slice(-6);
  const time = (iso) => iso ? new Date(iso).toLocaleString() : 'unknown';
  function show() {
    forget.disabled = !kept;
    tokensBox.replaceChildren();
    if (!kept) {
      state.textContent = 'No tokens kept: run SignUp or Login, and the playground will send them for you.';
      tokensBox.textContent = 'None.';
      return;
    }
    const who = kept.email ? 'Session of ' + kept.email : 'Session';
    const refresh = kept.refreshToken ? 'refresh ' + tail(kept.refreshToken)
      : (kept.refreshByCookie ? 'refresh token in the __Host-refresh_token cookie' : 'no refresh token (not selected in the answer)');
    state.textContent = who + ': access ' + tail(kept.accessToken) + ' (until ' + time(kept.accessTokenExpiresAt) + '), ' + refresh +
      (persist ? '. Kept in localStorage.' : '. Kept until this tab closes.');
    const rows = [
      ['accessToken', kept.accessToken],
      ['accessTokenExpiresAt', kept.accessTokenExpiresAt],
      ['refreshToken', kept.refreshToken ?? (kept.refreshByCookie ? '(HttpOnly cookie, not readable here)' : '(none)')],
      ['refreshTokenExpiresAt', kept.refreshTokenExpiresAt],
      ['sessionId', kept.sessionId],
    ];
    for (const [name, value] of rows) {
      if (value == null) continue;
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      dd.textContent = value;
      tokensBox.append(dt, dd);
    }
  }
  show();

  // ---- The fetcher that uses them -------------------------------------
  // The root fields of the operation GraphiQL runs, from the document it
  // parsed: [{name, key}] where key is the alias when there is one.
  function rootFields(doc, operationName) {
    const ops = ((doc && doc.definitions) || []).filter((d) => d.kind === 'OperationDefinition');
    const op = operationName ? ops.find((o) => o.name && o.name.value === operationName) : ops.length === 1 ? ops[0] : null;
    if (!op) return [];
    return op.selectionSet.selections
      .filter((s) => s.kind === 'Field')
      .map((s) => ({ name: s.name.value, key: (s.alias || s.name).value }));
  }
  const hasHeader = (headers, name) => Object.keys(headers).some((k) => k.toLowerCase() === name);
  const codes = (result, key) => ((result && result.errors) || [])
    .filter((e) => !e.path || e.path[0] === key)
    .map((e) => e.extensions && e.extensions.code);

  // One JSON answer per request (the API does not stream @defer results),
  // so the answer can be read before GraphiQL shows it. Subscriptions go
  // over a WebSocket to the same path (graphql-transport-ws, bundled in
  // GraphiQL), with the request's headers, and so the kept access token, as
  // the connection_init payload; the policy's connect-src 'self' covers it.
  const http = GraphiQL.createFetcher({
    url: endpoint,
    subscriptionUrl: endpoint.replace(/^http/, 'ws'),
    enableIncrementalDelivery: false,
  });

  // fetcher adds the kept token, unless the developer typed an
  // Authorization header (theirs wins and the headers editor is never
  // written to), then learns from the answer.
  async function fetcher(params, opts) {
    const typed = (opts && opts.headers) || {};
    const fields = rootFields(opts && opts.documentAST, params.operationName);
    const wantsRefresh = fields.some((f) => f.name === 'refresh');
    const headers = { ...typed };
    let sent = null; // which kept token went with the request
    if (kept && !hasHeader(typed, 'authorization')) {
      const token = wantsRefresh ? kept.refreshToken : kept.accessToken;
      if (token) {
        headers.Authorization = 'Bearer ' + token;
        sent = wantsRefresh ? 'refresh' : 'access';
      } else if (wantsRefresh && kept.refreshByCookie) {
        sent = 'cookie';
      }
    }
    const result = await http(params, { ...opts, headers });
    learn(fields, result, sent, hasHeader(typed, 'x-token-transport'));
    return result;
  }

  function learn(fields, result, sent, cookieAsked) {
    if (!result || typeof result !== 'object' || Array.isArray(result)) return;
    const data = result.data || {};
    for (const { name, key } of fields) {
      const value = data[key];
      if ((name === 'signUp' || name === 'login' || name === 'refresh') && value && value.accessToken) {
        const previous = name === 'refresh' ? kept || {} : {};
        keep({
          accessToken: value.accessToken,
          refreshToken: value.refreshToken || null,
          refreshByCookie: value.refreshToken === null && (cookieAsked || !!previous.refreshByCookie),
          accessTokenExpiresAt: value.accessTokenExpiresAt || null,
          refreshTokenExpiresAt: value.refreshTokenExpiresAt || null,
          email: (value.user && value.user.email) || previous.email || null,
          sessionId: (value.session && value.session.id) || previous.sessionId || null,
        });
      } else if ((name === 'logout' || name === 'deleteMyAccount') && value === true && sent) {
        keep(null); // the kept session has ended
      } else if (name === 'refresh' && sent && codes(result, key).some((c) => c === 'REFRESH_TOKEN_REUSED' || c === 'TOKEN_EXPIRED')) {
        keep(null); // the server has ended the kept session
      }
    }
  }

  // ---- The guide --------------------------------------------------------
  const guide = document.getElementById('guide');
  const h = React.createElement;
  const guidePlugin = {
    title: 'Guide',
    icon: () => h('span', { className: 'guide-icon', 'aria-hidden': 'true' }, '?'),
    content: () => h('div', {
      ref: (el) => { if (el && !el.firstChild) el.append(guide.content.cloneNode(true)); },
    }),
  };

  // The guide opens with the page unless the developer closed it last time.
  const GUIDE = 'sessionauth.playground.guide';
  let guideOpened = false;
  ReactDOM.createRoot(root).render(h(GraphiQL, {
    fetcher,
    defaultQuery: root.dataset.document,
    defaultHeaders: root.dataset.headers,
    shouldPersistHeaders: false,
    isHeadersEditorEnabled: true,
    plugins: [guidePlugin],
    onTogglePluginVisibility: (p) => {
      if (guideOpened) localStorage.setItem(GUIDE, p && p.title === 'Guide' ? 'open' : 'closed');
    },
  }));

  // Once GraphiQL has drawn its editors: wrap long lines in every editor
  // (the walkthrough and 256-character tokens stay readable at any width),
  // and open the guide. The editors are created
  // after GraphiQL's first effects have run, so the guide's button is ready
  // by then; clicking it is the one way that both shows the pane and sizes it.
  new MutationObserver(() => {
    for (const cm of root.querySelectorAll('.CodeMirror')) {
      if (cm.CodeMirror && !cm.CodeMirror.getOption('lineWrapping')) cm.CodeMirror.setOption('lineWrapping', true);
    }
    const button = root.querySelector('.graphiql-sidebar button[aria-label="Show Guide"]');
    if (!guideOpened && button && root.querySelector('.graphiql-query-editor .CodeMirror')) {
      guideOpened = true;
      if (localStorage.getItem(GUIDE) !== 'closed') button.click();
    }
  }).observe(root, { childList: true, subtree: true });
})();
