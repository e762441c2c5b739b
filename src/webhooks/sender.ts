import http from 'node:http';
import https from 'node:https';
import { DnsTimeoutError, webhookResolver, type DnsOptions } from './host-resolver.js';
import { guardedLookup, isBlockedAddress, literalAddressOf, TargetRefusedError } from './target-guard.js';

/*
 * One HTTP POST of a signed delivery. Never follows a redirect (a 3xx is a failed attempt:
 * following it could lead anywhere the guard would refuse), gives up after `timeoutMs` in
 * all (connect, headers and body), and reads at most `maxResponseBytes` of the answer,
 * which is discarded: only the status code is kept. With `requireHttps` (production) an
 * `http://` target is never connected to (`https_required`): an endpoint saved before https
 * was required is kept, but nothing goes to it in plaintext.
 */

export const ATTEMPT_OUTCOMES = ['delivered', 'http_error', 'redirect_not_followed', 'timeout', 'network_error', 'refused_target', 'https_required'] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

export interface AttemptResult {
  outcome: AttemptOutcome;
  responseStatus: number | null;
  latencyMs: number;
}

export interface SenderOptions {
  timeoutMs: number;
  maxResponseBytes: number;
  /** Tests and local development only (refused in production by config.ts). */
  allowPrivateTargets: boolean;
  /** Refuse `http://` targets (production): config.webhooks.requireHttps. */
  requireHttps?: boolean;
  /** How names are resolved when private targets are refused (host-resolver.ts); tests name their own DNS server. */
  dns?: DnsOptions;
}

export function createWebhookSender(options: SenderOptions) {
  const lookup = guardedLookup(options.allowPrivateTargets, webhookResolver(options.allowPrivateTargets, options.dns));

  return async function post(target: string, body: string, headers: Record<string, string>): Promise<AttemptResult> {
    const startedAt = performance.now();
    const done = (outcome: AttemptOutcome, responseStatus: number | null = null): AttemptResult => ({
      outcome,
      responseStatus,
      latencyMs: Math.round(performance.now() - startedAt),
    });
    const url = new URL(target);
    if (options.requireHttps && url.protocol !== 'https:') return done('https_required');
    const literal = literalAddressOf(url);
    // Node never calls `lookup` for a literal IP: that case is checked here.
    if (literal && !options.allowPrivateTargets && isBlockedAddress(literal)) return done('refused_target');
    const client = url.protocol === 'https:' ? https : http;

    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      const finish = (result: AttemptResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.destroy();
        resolve(result);
      };
      const request = client.request(
        url,
        {
          method: 'POST',
          lookup,
          agent: false,
          headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'inboxtrail-webhooks/1' },
        },
        (response) => {
          const status = response.statusCode ?? 0;
          let read = 0;
          response.on('data', (chunk: Buffer) => {
            read += chunk.length;
            // The answer is not kept; a receiver that talks too much has said all it needed to.
            if (read > options.maxResponseBytes) finish(done(outcomeOf(status), status));
          });
          response.on('end', () => finish(done(outcomeOf(status), status)));
          response.on('error', () => finish(done('network_error', status)));
        },
      );
      const timer = setTimeout(() => finish(done('timeout')), options.timeoutMs);
      request.on('error', (error) =>
        finish(done(error instanceof TargetRefusedError ? 'refused_target' : error instanceof DnsTimeoutError ? 'timeout' : 'network_error')),
      );
      request.end(body);
    });
  };
}

function outcomeOf(status: number): AttemptOutcome {
  if (status >= 200 && status < 300) return 'delivered';
  if (status >= 300 && status < 400) return 'redirect_not_followed';
  return 'http_error';
}

export type WebhookSender = ReturnType<typeof createWebhookSender>;
