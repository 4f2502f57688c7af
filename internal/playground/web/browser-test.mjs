// Drives the playground in headless Chromium as a developer would, with
// every host but the loopback one blocked:
//
//   node browser-test.mjs <playground URL> <screenshot directory>
//
// TestPlaygroundInBrowser (playground_test.go at the repository's root)
// starts the real server and runs this. The browser is Debian's chromium
// (CHROMIUM overrides the path); playwright-core only drives it.
//
// Steps: the page renders with no CSP violation, no horizontal scrolling of
// the walkthrough at 1,280 px; SignUp run from the UI; Me run from the UI
// answers the email with no header typed; Show tokens shows them, and the
// persist opt-in moves them to localStorage and back; Refresh sends the
// refresh token and the new pair is kept; a typed Authorization wins and is
// left as typed; Logout forgets the pair; Me answers UNAUTHENTICATED. With
// COOKIE_PATH=1 (the server allows the page's origin), the browser path too:
// Login with X-Token-Transport: cookie, Refresh by the cookie, Logout.
// A screenshot of each step is saved. Exit status 0 when every step passed;
// otherwise a message on stderr says which did not.
import { chromium } from 'playwright-core';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const [url, shots] = process.argv.slice(2);
if (!url || !shots) {
  console.error('usage: node browser-test.mjs <playground URL> <screenshot directory>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
for (const f of readdirSync(shots)) if (/^(\d|failed-).*\.png$/.test(f)) rmSync(join(shots, f)); // an earlier run's
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// COOKIE_PATH=1: the server's ALLOWED_ORIGINS holds the page's origin, so
// the browser path can be tried too.
const cookiePath = process.env.COOKIE_PATH === '1';
const TOKENS = 'sessionauth.playground.tokens';

const blocked = [];      // requests to any other host, aborted
const problems = [];     // console errors, page errors, CSP violations
const graphql = [];      // {operationName, authorization, headers} of each POST /graphql

function fail(message) { throw new Error(message); }

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let step = 'start';
let page = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.route('**/*', (route) => {
    const { hostname } = new URL(route.request().url());
    if (hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]') return route.continue();
    blocked.push(route.request().url());
    return route.abort('blockedbyclient');
  });
  page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/graphql') {
      const body = r.postDataJSON() || {};
      if (body.operationName === 'IntrospectionQuery') return;
      graphql.push({ operationName: body.operationName, authorization: r.headers()['authorization'] ?? null });
    }
  });
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push({
      directive: e.violatedDirective, blockedURI: e.blockedURI, sourceFile: e.sourceFile, line: e.lineNumber, column: e.columnNumber,
    }));
  });

  const shot = async (name) => {
    const file = join(shots, name + '.png');
    await page.screenshot({ path: file });
    console.log('screenshot ' + file);
  };
  const response = () => page.evaluate(() => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue());
  const kept = () => page.evaluate((k) => ({ session: sessionStorage.getItem(k), local: localStorage.getItem(k) }), TOKENS);
  // GraphiQL draws the variables editor, then the headers editor.
  const headersEditor = '.graphiql-editor-tool .graphiql-editor:nth-of-type(2) .CodeMirror';
  const headersTyped = () => page.evaluate((sel) => document.querySelector(sel).CodeMirror.getValue(), headersEditor);
  // run picks the operation from the run button's list, as a developer
  // would with the mouse, and waits for its answer.
  const run = async (name) => {
    step = name;
    const before = graphql.length;
    await page.evaluate(() => { document.querySelector('.result-window .CodeMirror').CodeMirror.setValue(''); });
    await page.locator('.graphiql-execute-button').click();
    await page.getByRole('menuitem', { name, exact: true }).click();
    await page.waitForFunction(() => {
      const v = document.querySelector('.result-window .CodeMirror').CodeMirror.getValue();
      return v.trim().startsWith('{');
    }, null, { timeout: 30000 });
    if (graphql.length !== before + 1) fail(`${name}: ${graphql.length - before} requests to /graphql, want 1`);
    const sent = graphql[graphql.length - 1];
    if (sent.operationName !== name) fail(`${name}: the request ran ${sent.operationName}`);
    return { answer: JSON.parse(await response()), authorization: sent.authorization };
  };

  step = 'render';
  await page.goto(url);
  await page.locator('.graphiql-query-editor .CodeMirror').waitFor({ timeout: 60000 });
  await page.locator('.graphiql-execute-button').waitFor();
  await page.locator('.guide').waitFor();
  // Wait for the schema (introspection), so the Docs and the run button's
  // list reflect the API.
  await page.waitForFunction(() => !document.querySelector('.graphiql-spinner'), null, { timeout: 30000 }).catch(() => {});
  const overflow = await page.evaluate(() => {
    const out = {};
    const scroller = document.querySelector('.graphiql-query-editor .CodeMirror-scroll');
    out.editor = scroller.scrollWidth - scroller.clientWidth;
    const guide = document.querySelector('.graphiql-plugin');
    out.guide = guide ? guide.scrollWidth - guide.clientWidth : -1;
    out.document = document.documentElement.scrollWidth - document.documentElement.clientWidth;
    return out;
  });
  await shot('1-rendered');
  if (overflow.editor > 1) fail(`at 1280 px the walkthrough in the editor scrolls sideways by ${overflow.editor} px`);
  if (overflow.guide > 1 || overflow.guide < 0) fail(`the guide does not wrap (overflow ${overflow.guide} px)`);
  if (overflow.document > 1) fail(`the page scrolls sideways by ${overflow.document} px`);
  const headersBefore = await headersTyped();

  const signUp = await run('SignUp');
  const pair = signUp.answer.data && signUp.answer.data.signUp;
  if (!pair || !pair.accessToken || !pair.refreshToken) fail('SignUp answered ' + JSON.stringify(signUp.answer));
  if (signUp.authorization !== null) fail('SignUp was sent with an Authorization header');
  let stored = await kept();
  if (!stored.session || JSON.parse(stored.session).accessToken !== pair.accessToken) fail('SignUp: the pair is not kept in sessionStorage: ' + JSON.stringify(stored) + ' ' + JSON.stringify(signUp.answer).slice(0, 200));
  if (stored.local) fail('SignUp: the tokens went to localStorage without the developer asking');
  const bar = await page.locator('#session-state').textContent();
  if (!bar.includes(pair.user.email) || !bar.includes(pair.accessToken.slice(-6))) fail('the bar does not show the kept session: ' + bar);
  await shot('2-signup');

  const me = await run('Me');
  if (me.authorization !== 'Bearer ' + pair.accessToken) fail('Me was not sent with the kept access token');
  if (!me.answer.data || !me.answer.data.me || me.answer.data.me.email !== pair.user.email) fail('Me answered ' + JSON.stringify(me.answer));
  if (await headersTyped() !== headersBefore) fail('the headers editor was written to');
  await shot('3-me');

  // What the playground holds is visible in full.
  step = 'show tokens';
  await page.locator('#session-details summary').click();
  const shown = await page.locator('#session-tokens').textContent();
  if (!shown.includes(pair.accessToken) || !shown.includes(pair.refreshToken)) fail('Show tokens does not show the kept pair');
  await shot('3b-show-tokens');
  await page.locator('#session-details summary').click();

  // Kept across the tab's end only when the developer asks.
  step = 'persist';
  await page.locator('#session-persist').check();
  stored = await kept();
  if (stored.session || !stored.local) fail('ticking "Keep after this tab closes" did not move the pair to localStorage: ' + JSON.stringify(stored));
  await page.locator('#session-persist').uncheck();
  stored = await kept();
  if (!stored.session || stored.local) fail('unticking it did not move the pair back to sessionStorage: ' + JSON.stringify(stored));

  const refresh = await run('Refresh');
  if (refresh.authorization !== 'Bearer ' + pair.refreshToken) fail('Refresh was not sent with the kept refresh token');
  const next = refresh.answer.data && refresh.answer.data.refresh;
  if (!next || !next.accessToken || next.accessToken === pair.accessToken) fail('Refresh answered ' + JSON.stringify(refresh.answer));
  stored = await kept();
  const nextKept = JSON.parse(stored.session || 'null');
  if (!nextKept || nextKept.accessToken !== next.accessToken || nextKept.refreshToken !== next.refreshToken) fail('Refresh: the new pair is not kept');
  await shot('4-refresh');

  // An Authorization typed in Headers wins, and stays as typed.
  step = 'typed header';
  await page.getByRole('button', { name: 'Headers', exact: true }).click();
  await page.locator(headersEditor).click();
  const typed = '{"Authorization": "Bearer typed-by-hand"}';
  await page.keyboard.insertText(typed);
  if (await headersTyped() !== typed) fail('the headers editor holds ' + JSON.stringify(await headersTyped()));
  const typedMe = await run('Me');
  if (typedMe.authorization !== 'Bearer typed-by-hand') fail('Me was sent with ' + typedMe.authorization + ', not the typed header');
  if (await headersTyped() !== typed) fail('the headers editor was written to: ' + JSON.stringify(await headersTyped()));
  stored = await kept();
  if (!stored.session || JSON.parse(stored.session).accessToken !== next.accessToken) fail('a typed header changed the kept pair');
  await shot('4b-typed-header');
  await page.evaluate((sel) => document.querySelector(sel).CodeMirror.setValue(''), headersEditor);

  const logout = await run('Logout');
  if (logout.authorization !== 'Bearer ' + next.accessToken) fail('Logout was not sent with the new access token');
  if (!logout.answer.data || logout.answer.data.logout !== true) fail('Logout answered ' + JSON.stringify(logout.answer));
  stored = await kept();
  if (stored.session || stored.local) fail('Logout: the tokens are still kept: ' + JSON.stringify(stored));
  await shot('5-logout');

  const after = await run('Me');
  if (after.authorization !== null) fail('Me after Logout was sent with an Authorization header');
  const code = after.answer.errors && after.answer.errors[0].extensions && after.answer.errors[0].extensions.code;
  if (code !== 'UNAUTHENTICATED') fail('Me after Logout answered ' + JSON.stringify(after.answer));
  await shot('6-me-unauthenticated');

  // The browser path: the refresh token as the __Host-refresh_token cookie.
  if (cookiePath) {
    step = 'cookie transport';
    await page.locator(headersEditor).click();
    const cookieHeader = '{"X-Token-Transport": "cookie"}';
    await page.keyboard.insertText(cookieHeader);
    const login = await run('Login');
    const lp = login.answer.data && login.answer.data.login;
    if (!lp || !lp.accessToken || lp.refreshToken !== null) fail('Login with cookie transport answered ' + JSON.stringify(login.answer));
    const cookies = async () => (await context.cookies()).filter((c) => c.name === '__Host-refresh_token');
    if ((await cookies()).length !== 1) fail('no __Host-refresh_token cookie after Login');
    let k = JSON.parse((await kept()).session || 'null');
    if (!k || k.accessToken !== lp.accessToken || k.refreshToken !== null || !k.refreshByCookie) fail('Login with cookie transport: kept ' + JSON.stringify(k));
    const bar = await page.locator('#session-state').textContent();
    if (!bar.includes('__Host-refresh_token')) fail('the bar does not say the refresh token is in the cookie: ' + bar);
    const cookieRefresh = await run('Refresh');
    if (cookieRefresh.authorization !== null) fail('Refresh by cookie was sent with an Authorization header');
    const rp = cookieRefresh.answer.data && cookieRefresh.answer.data.refresh;
    if (!rp || !rp.accessToken || rp.refreshToken !== null) fail('Refresh by cookie answered ' + JSON.stringify(cookieRefresh.answer));
    k = JSON.parse((await kept()).session || 'null');
    if (!k || k.accessToken !== rp.accessToken || !k.refreshByCookie) fail('Refresh by cookie: kept ' + JSON.stringify(k));
    await shot('7-cookie-refresh');
    const cookieLogout = await run('Logout');
    if (!cookieLogout.answer.data || cookieLogout.answer.data.logout !== true) fail('Logout answered ' + JSON.stringify(cookieLogout.answer));
    if ((await cookies()).length !== 0) fail('the cookie outlived Logout');
    const k2 = await kept();
    if (k2.session || k2.local) fail('Logout: the tokens are still kept');
    if (await headersTyped() !== cookieHeader) fail('the headers editor was written to: ' + JSON.stringify(await headersTyped()));
  }

  step = 'end';
  // Nothing of the session outlives the tab: no token anywhere in
  // localStorage (GraphiQL keeps its tabs and history there).
  const seen = [pair.accessToken, pair.refreshToken, next.accessToken, next.refreshToken, 'typed-by-hand'];
  const local = await page.evaluate(() => Object.entries(localStorage).map(([k, v]) => k + '=' + v).join('\n'));
  for (const token of seen) if (local.includes(token)) fail('localStorage holds a token: ' + token.slice(0, 12) + '…');
  // The one thing the policy blocks: the <style> element that GraphiQL's
  // menus and dialogs (react-remove-scroll-bar) add to lock the body's
  // scrolling while they are open. The page never scrolls, so nothing is
  // lost; anything else the policy blocks fails the test.
  const csp = await page.evaluate(() => window.__csp);
  const scrollLock = (v) => v.directive === 'style-src-elem' && v.blockedURI === 'inline' && /\/vendor\/graphiql\.min\.js$/.test(v.sourceFile);
  for (const v of csp.filter((v) => !scrollLock(v))) problems.push('CSP violation: ' + JSON.stringify(v));
  const known = /^console: Applying inline style violates the following Content Security Policy directive 'style-src 'self''/;
  if (csp.some(scrollLock)) problems.splice(0, problems.length, ...problems.filter((p) => !known.test(p)));
  if (blocked.length) fail('requests to other hosts were attempted: ' + blocked.join(', '));
  if (problems.length) fail('the page reported problems:\n  ' + problems.join('\n  '));
  console.log('ok: rendered, SignUp, Me, Refresh, Logout, Me UNAUTHENTICATED' + (cookiePath ? ', the cookie path' : '') + '; no request left the loopback host');
} catch (e) {
  console.error(`FAIL at step ${step}: ${e.message}`);
  if (page) {
    const file = join(shots, 'failed-' + step.replace(/\W+/g, '-') + '.png');
    await page.screenshot({ path: file }).then(() => console.error('screenshot ' + file), () => {});
  }
  if (blocked.length) console.error('blocked requests: ' + blocked.join(', '));
  if (problems.length) console.error('page problems:\n  ' + problems.join('\n  '));
  process.exitCode = 1;
} finally {
  await browser.close();
}
