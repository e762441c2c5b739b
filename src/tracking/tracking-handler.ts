import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';
import { TtlLru } from './lru.js';
import type { Recorder, RawHit } from './recorder.js';
import type { ResolvedSend, SendCache } from './send-cache.js';
import type { TokenCodec, TokenKind, TrackingToken } from './tokens.js';

/*
 * GET /t/o/<token>[.gif]  the open pixel: always a 43-byte GIF, answered before anything
 *                         else happens (invalid, forged and unknown tokens included).
 * GET /t/c/<token>        the click: 302 to the link stored for that send's campaign and
 *                         link index, and nowhere else; a bad token is a plain 404 page.
 *
 * These run in the server's request listener, before Express (see createHttpServer in
 * app.ts): a pixel costs a token check and a push into the event buffer. The query
 * string is never read, so no parameter can steer a redirect.
 */

/** 1×1 transparent GIF89a, 43 bytes. */
export const PIXEL_GIF = Buffer.from('R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==', 'base64');

const PIXEL_HEADERS = {
  'Content-Type': 'image/gif',
  'Content-Length': String(PIXEL_GIF.length),
  'Cache-Control': 'no-store, private',
  Expires: '0',
  'X-Content-Type-Options': 'nosniff',
};

const PAGE_HEADERS = {
  'Content-Type': 'text/html; charset=utf-8',
  'Cache-Control': 'no-store',
  'X-Robots-Tag': 'noindex',
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'none'",
  'Referrer-Policy': 'no-referrer',
};

const page = (title: string, text: string) =>
  Buffer.from(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1><p>${text}</p></body></html>`);
const NOT_FOUND_PAGE = page('Link not found', 'This link is not valid. If you copied it from an email, check that the whole address was copied.');
const UNAVAILABLE_PAGE = page('Please try again', 'This link cannot be followed right now. Please try again in a minute.');

const TOKEN = /^[A-Za-z0-9_-]{1,96}$/;

export const TRACKING_ROUTES = { open: '/t/o/:token', click: '/t/c/:token', other: '/t/*' } as const;

export interface TrackingHandlerDeps {
  codec: TokenCodec;
  cache: SendCache;
  recorder: Recorder;
  /** The client's address, honouring TRUST_PROXY like Express does. */
  clientIp: (req: IncomingMessage) => string | undefined;
  /** Counts an answered request (labels are route patterns, never tokens). */
  count?: (method: string, route: string, status: number) => void;
  onUnresolved?: (type: 'open' | 'click') => void;
  /** A click answered without the database (it failed or was too slow): from what was held, or 503. */
  onDatabaseUnavailable?: (answer: 'stale' | 'unavailable') => void;
  /** How long an uncached click waits for the database (default 800 ms). */
  clickTimeoutMs?: number;
  logger: Logger;
  now?: () => number;
}

/** Handles the request and returns true when it is a tracking URL; false leaves it to Express. */
export type TrackingHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

/**
 * A request header read from the raw list: `req.headers` builds an object of every header
 * on first use, which the pixel does not need. Lowercase name; first occurrence.
 */
/**
 * A client fetching ahead of a person says so: `Sec-Purpose: prefetch` (Chromium, with
 * `;prerender` for a prerender), `Purpose: prefetch` (older Chromium), `X-Purpose: preview`
 * (Safari's previews), `X-Moz: prefetch` (Firefox). Such a hit is no read and no click.
 */
const PURPOSE_HEADERS = new Set(['sec-purpose', 'purpose', 'x-purpose', 'x-moz']);
export function isPrefetch(req: IncomingMessage): boolean {
  // One pass over the raw headers, not req.headers (building that object costs the pixel path);
  // like rawHeader, a key is lowercased only when its length could match (5 to 11 characters).
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i]!;
    if (key.length >= 5 && key.length <= 11 && PURPOSE_HEADERS.has(key.toLowerCase()) && /\b(prefetch|preview)\b/i.test(raw[i + 1]!)) return true;
  }
  return false;
}

export function rawHeader(req: IncomingMessage, name: string): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i]!;
    if (key.length === name.length && key.toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}

export function createTrackingHandler(deps: TrackingHandlerDeps): TrackingHandler {
  const { codec, cache, recorder, logger } = deps;
  const now = deps.now ?? Date.now;
  const count = deps.count ?? (() => undefined);
  const clickTimeoutMs = deps.clickTimeoutMs ?? 800;
  // The same pixel or link is often fetched several times (proxies, prefetch, re-opens,
  // scanners): a token that verified once is remembered, skipping the HMAC (~3 µs).
  // Only tokens that verified are kept, so junk cannot fill it.
  const verified = new TtlLru<string, TrackingToken>(50_000, 3600_000);
  const decode = (text: string, kind: TokenKind): TrackingToken | undefined => {
    const known = verified.get(text);
    if (known) return known.kind === kind ? known : undefined;
    if (!TOKEN.test(text)) return undefined;
    const token = codec.decode(text, kind);
    if (token) verified.set(text, token);
    return token;
  };

  // Buffered hits live until the next flush; the same user agents and addresses recur, so
  // keeping one copy of each lets the per-request strings die young (cheap for the GC).
  let interned = new Map<string, string>();
  const intern = (value: string | undefined) => {
    if (!value) return undefined;
    const known = interned.get(value);
    if (known !== undefined) return known;
    if (interned.size >= 5_000) interned = new Map();
    interned.set(value, value);
    return value;
  };
  const rawHit = (req: IncomingMessage, method: string): RawHit => {
    const hit: RawHit = { atMs: now(), method, ip: intern(deps.clientIp(req)), userAgent: intern(rawHeader(req, 'user-agent')) };
    if (isPrefetch(req)) hit.prefetch = true;
    return hit;
  };

  const sendPage = (res: ServerResponse, method: string, route: string, status: number, body: Buffer, extra: Record<string, string> = {}) => {
    if (res.headersSent) return;
    res.writeHead(status, { ...PAGE_HEADERS, ...extra, 'Content-Length': String(body.length) });
    res.end(method === 'HEAD' ? undefined : body);
    count(method, route, status);
  };

  const methodNotAllowed = (res: ServerResponse, method: string, route: string) => {
    res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': '18', 'Cache-Control': 'no-store' });
    res.end('Method Not Allowed');
    count(method, route, 405);
  };

  function open(req: IncomingMessage, res: ServerResponse, rest: string, method: string) {
    // Answer first: nothing below may delay or prevent the pixel.
    res.writeHead(200, PIXEL_HEADERS);
    res.end(method === 'HEAD' ? undefined : PIXEL_GIF);
    count(method, TRACKING_ROUTES.open, 200);
    const token = decode(rest.endsWith('.gif') ? rest.slice(0, -4) : rest, 'open');
    if (token?.kind !== 'open') return;
    recorder.open(token.sendId, rawHit(req, method));
  }

  const unavailable = (res: ServerResponse, method: string) => sendPage(res, method, TRACKING_ROUTES.click, 503, UNAVAILABLE_PAGE, { 'Retry-After': '60' });

  /** The database did not answer (in time): redirect from what was held before, or 503 — never a guess. */
  function fromStale(res: ServerResponse, method: string, sendId: string, linkIndex: number, hit: RawHit) {
    const stale = cache.peekStale(sendId);
    if (stale?.links.byIndex.has(linkIndex)) {
      deps.onDatabaseUnavailable?.('stale');
      return redirect(res, method, stale, linkIndex, hit, 'stale');
    }
    deps.onDatabaseUnavailable?.('unavailable');
    unavailable(res, method);
  }

  /** `mode`: fresh (may re-read the links once), refreshed (just re-read), stale (held from before an outage). */
  function redirect(res: ServerResponse, method: string, send: ResolvedSend | null, linkIndex: number, hit: RawHit, mode: 'fresh' | 'refreshed' | 'stale' = 'fresh') {
    if (!send) {
      deps.onUnresolved?.('click');
      return sendPage(res, method, TRACKING_ROUTES.click, 404, NOT_FOUND_PAGE);
    }
    const link = send.links.byIndex.get(linkIndex);
    if (!link) {
      if (mode === 'refreshed') return sendPage(res, method, TRACKING_ROUTES.click, 404, NOT_FOUND_PAGE);
      if (mode === 'stale' || !cache.available()) return unavailable(res, method);
      cache.refreshLinks(send).then(
        (fresh) => redirect(res, method, fresh, linkIndex, hit, 'refreshed'),
        () => unavailable(res, method),
      );
      return;
    }
    if (!link.location) {
      logger.warn({ campaignId: send.campaignId, linkIndex }, 'stored campaign link is not an http(s) URL; not redirecting');
      return sendPage(res, method, TRACKING_ROUTES.click, 404, NOT_FOUND_PAGE);
    }
    if (!res.headersSent) {
      res.writeHead(302, { Location: link.location, 'Cache-Control': 'no-store', 'X-Robots-Tag': 'noindex', 'Content-Length': '0' });
      res.end();
      count(method, TRACKING_ROUTES.click, 302);
    }
    recorder.click(send, linkIndex, hit);
  }

  function click(req: IncomingMessage, res: ServerResponse, rest: string, method: string) {
    const token = decode(rest, 'click');
    if (token?.kind !== 'click') return sendPage(res, method, TRACKING_ROUTES.click, 404, NOT_FOUND_PAGE);
    const hit = rawHit(req, method);
    const cached = cache.peek(token.sendId);
    if (cached !== undefined) return redirect(res, method, cached, token.linkIndex, hit);
    // Just failed or timed out: don't make every click wait for a database that is not answering.
    if (!cache.available()) return fromStale(res, method, token.sendId, token.linkIndex, hit);
    let answered = false;
    const deadline = setTimeout(() => {
      answered = true;
      cache.markUnavailable();
      logger.warn({ timeoutMs: clickTimeoutMs }, 'click could not be resolved in time: database not answering');
      fromStale(res, method, token.sendId, token.linkIndex, hit);
    }, clickTimeoutMs);
    // The lookup goes on after the deadline: its answer fills the cache for the next click.
    cache.resolve(token.sendId).then(
      (send) => {
        if (answered) return;
        answered = true;
        clearTimeout(deadline);
        redirect(res, method, send, token.linkIndex, hit);
      },
      (error: unknown) => {
        if (answered) return;
        answered = true;
        clearTimeout(deadline);
        logger.warn({ reason: (error as Error)?.message?.split('\n')[0] }, 'click could not be resolved: database unavailable');
        fromStale(res, method, token.sendId, token.linkIndex, hit);
      },
    );
  }

  /**
   * The request target as a path: RFC 9112 §3.2.2 has servers accept the absolute form
   * (`GET http://host/t/o/….gif`), which a proxy may send; the pixel must be answered then too.
   */
  function originForm(target: string | undefined): string | undefined {
    if (target === undefined || target.startsWith('/')) return target;
    const scheme = /^https?:\/\/[^/?#]*/i.exec(target);
    return scheme ? target.slice(scheme[0].length) || '/' : target;
  }

  return function handleTracking(req, res) {
    const url = originForm(req.url);
    if (url === undefined || !url.startsWith('/t/')) return false;
    const method = req.method ?? 'GET';
    const queryAt = url.indexOf('?');
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    const kind = path.startsWith('/t/o/') ? 'open' : path.startsWith('/t/c/') ? 'click' : 'other';
    try {
      if (method !== 'GET' && method !== 'HEAD') methodNotAllowed(res, method, TRACKING_ROUTES[kind]);
      else if (kind === 'open') open(req, res, path.slice(5), method);
      else if (kind === 'click') click(req, res, path.slice(5), method);
      else sendPage(res, method, TRACKING_ROUTES.other, 404, NOT_FOUND_PAGE);
    } catch (error) {
      // Never let a tracking hit take the process down; the pixel is still owed.
      logger.error({ err: { message: (error as Error)?.message } }, 'tracking request failed');
      if (!res.headersSent) {
        if (kind === 'open') {
          res.writeHead(200, PIXEL_HEADERS);
          res.end(method === 'HEAD' ? undefined : PIXEL_GIF);
        } else {
          sendPage(res, method, TRACKING_ROUTES[kind], 404, NOT_FOUND_PAGE);
        }
      }
    }
    return true;
  };
}
