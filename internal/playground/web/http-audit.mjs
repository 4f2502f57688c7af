// Runs the graphql-http package's server audits (GraphQL over HTTP,
// https://graphql.github.io/graphql-over-http/draft/) against the URL given
// as the first argument, and prints one JSON object: each audit's id, name
// (it starts with MUST, SHOULD or MAY), status (ok, warn, error) and reason.
// http_audit_test.go runs it and decides what must pass.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node http-audit.mjs http://host:port/graphql');
  process.exit(2);
}
const results = [];
for (const audit of serverAudits({ url })) {
  const r = await audit.fn();
  results.push({ id: r.id, name: r.name, status: r.status, reason: r.reason ?? '' });
}
console.log(JSON.stringify(results));
