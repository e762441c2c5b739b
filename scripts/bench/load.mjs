// One autocannon run, in its own process so that the load generator never shares the
// measured server's thread. Usage: JSON options on stdin (thousands of paths do not fit in
// one argument) → JSON summary on stdout.
// Options: { url, paths?: string[], seconds, connections, rate?, userAgent }
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

const options = JSON.parse(readFileSync(0, 'utf8'));
const result = await autocannon({
  url: options.url,
  connections: options.connections,
  duration: options.seconds,
  ...(options.rate ? { overallRate: Math.round(options.rate) } : {}),
  headers: { 'user-agent': options.userAgent },
  // Several paths: each connection cycles through them (many distinct tokens).
  ...(options.paths ? { requests: options.paths.map((path) => ({ method: 'GET', path })) } : {}),
});
const expected = (result.statusCodeStats['200']?.count ?? 0) + (result.statusCodeStats['302']?.count ?? 0);
process.stdout.write(
  JSON.stringify({
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    answered: result.requests.total,
    sent: result.requests.sent,
    unexpected: result.requests.total - expected,
    errors: result.errors + result.timeouts,
  }),
);
