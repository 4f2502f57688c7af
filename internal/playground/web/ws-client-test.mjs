// A real subscriptions client: the graphql-ws library, as an app uses it, run
// by Node's test runner against a server that the Go test
// TestSubscriptionsWithGraphQLWS starts (SESSIONAUTH_URL, with an account
// SESSIONAUTH_EMAIL / SESSIONAUTH_PASSWORD and short-lived access tokens).
//
// The client connects lazily with connectionParams that return the current
// access token; after 4401 it refreshes (unless it already holds a newer
// token) and subscribes again; after 4403 SESSION_ENDED it stops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const base = process.env.SESSIONAUTH_URL;
const email = process.env.SESSIONAUTH_EMAIL;
const password = process.env.SESSIONAUTH_PASSWORD;

async function gql(query, variables, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${base}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  const body = await res.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const pairFields = 'accessToken refreshToken session { id }';

async function login() {
  const data = await gql(
    `mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { ${pairFields} } }`,
    { e: email, p: password },
  );
  return data.login;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// Device is one signed-in app: its tokens and its subscriptions client.
class Device {
  constructor(tokens) {
    this.tokens = tokens;
    this.connects = 0;
    this.closes = [];
    this.refreshes = 0;
    this.client = createClient({
      url: `${base.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      lazy: true,
      connectionParams: async () => {
        this.usedToken = this.tokens.accessToken;
        return { Authorization: `Bearer ${this.tokens.accessToken}` };
      },
      retryAttempts: 3,
      retryWait: () => sleep(100),
      // 4403 SESSION_ENDED: signed out, nothing to retry (graphql-ws would).
      shouldRetry: (e) => !(e && e.code === 4403),
      on: {
        connected: () => { this.connects++; },
        closed: (e) => { this.closes.push(`${e.code} ${e.reason}`); },
      },
    });
  }

  // refresh rotates the pair; concurrent callers share one refresh.
  refresh() {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        const data = await gql(`mutation { refresh { ${pairFields} } }`, null, this.tokens.refreshToken);
        this.tokens = data.refresh;
        this.refreshes++;
      })().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  // watch keeps securityEvents subscribed until the session ends; it
  // resolves with the close event that ended it.
  watch(onEvent) {
    return new Promise((resolve) => {
      const subscribe = () => this.client.subscribe({ query: 'subscription { securityEvents { id kind } }' }, {
        next: onEvent,
        error: async (e) => {
          if (e && e.code === 4401) {
            // TOKEN_EXPIRED: refresh, unless this device already did
            // (a refresh replaces the token the connection was opened with;
            // its answer may come after the close it causes).
            if (this.refreshing) await this.refreshing;
            if (this.tokens.accessToken === this.usedToken) await this.refresh();
            subscribe();
            return;
          }
          resolve(e);
        },
        complete: () => resolve(null),
      });
      subscribe();
    });
  }
}

test('graphql-ws: refresh and reconnect after 4401, stop after 4403', async () => {
  const device = new Device(await login());
  const ended = device.watch(() => {});
  await until('the first connection', () => device.connects === 1);

  // The device refreshes on its own: its connection closes (the token it
  // was opened with no longer authenticates) and it reconnects with the
  // new one.
  await device.refresh();
  await until('a reconnection after the refresh', () => device.connects === 2);
  assert.equal(device.closes[0], '4401 TOKEN_EXPIRED');

  // The access token expires (the server gives 3 s): closed with 4401,
  // the device refreshes, reconnects.
  await until('a reconnection after the expiry', () => device.connects === 3);
  assert.equal(device.closes[1], '4401 TOKEN_EXPIRED');
  assert.equal(device.refreshes, 2);

  // Another device of the account revokes this one: 4403, and it stops.
  const other = await login();
  await gql('mutation($id: ID!) { revokeSession(id: $id) }', { id: device.tokens.session.id }, other.accessToken);
  const end = await ended;
  assert.equal(end.code, 4403);
  assert.equal(end.reason, 'SESSION_ENDED');
  await sleep(500);
  assert.equal(device.connects, 3, 'no reconnection after SESSION_ENDED');
  await device.client.dispose();
});

test('graphql-ws: an unknown token is refused with 4401 UNAUTHENTICATED', async () => {
  const client = createClient({
    url: `${base.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    lazy: true,
    connectionParams: { authorization: `Bearer ${'x'.repeat(256)}` },
    retryAttempts: 0,
  });
  const err = await new Promise((resolve) => {
    client.subscribe({ query: 'subscription { securityEvents { id } }' }, {
      next: () => {}, error: resolve, complete: () => resolve(null),
    });
  });
  assert.equal(err.code, 4401);
  assert.equal(err.reason, 'UNAUTHENTICATED');
  await client.dispose();
});
