// Runs graphql-http's server audit against a creditgate URL and prints the results as JSON.
// usage: node audit.mjs <url> <bearer token>
import { auditServer } from 'graphql-http';

const [url, token] = process.argv.slice(2);
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};
const results = await auditServer({ url, fetchFn });
const out = await Promise.all(results.map(async (r) => ({
  id: r.id,
  name: r.name,
  status: r.status,
  reason: r.status === 'ok' ? undefined : r.reason,
  response: r.status === 'ok' ? undefined : { status: r.response.status, body: await r.response.text() },
})));
process.stdout.write(JSON.stringify(out));
