import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../logger.js';
import { ipv4ToNumber, ipv6ToBigInt, normalizeIp } from './ip.js';

/*
 * Apple Mail Privacy Protection fetches remote images through Apple's relay egress
 * addresses, at delivery, whether or not anyone opens the message. Apple publishes
 * those ranges (https://mask-api.icloud.com/egress-ip-ranges.csv), one line per prefix:
 *   172.224.226.0/27,GB,GB-EN,London,
 *   2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,
 * The list has ~300k lines, so lookups use merged, sorted ranges and a binary search.
 *
 * The same ranges carry iCloud Private Relay browsing: a *click* from them is a person
 * in Safari, so only opens are judged by this table, and not an open whose agent is
 * Safari's (classify.ts).
 */

export const APPLE_EGRESS_URL = 'https://mask-api.icloud.com/egress-ip-ranges.csv';
/** A small excerpt of Apple's file, shipped for tests and as the default table. */
export const SAMPLE_EGRESS_FILE = fileURLToPath(new URL('./data/apple-egress-ip-ranges.sample.csv', import.meta.url));

/**
 * Where the table comes from: `APPLE_MPP_RANGES` when set; else, in production, Apple's own
 * list (the sample recognises almost no real traffic: with it MPP opens would count as people);
 * else the sample, so that development and tests run without network.
 */
export function appleMppSource(configured: string | undefined, env: string): string {
  return configured ?? (env === 'production' ? APPLE_EGRESS_URL : SAMPLE_EGRESS_FILE);
}

export interface IpRangeSet {
  contains(ip: string): boolean;
  /** Number of merged ranges (IPv4 + IPv6). */
  readonly size: number;
}

/** The prefixes of an egress CSV; lines that are not `cidr,…` with a valid CIDR are counted as skipped. */
export function parseEgressCsv(text: string): { cidrs: string[]; skipped: number } {
  const cidrs: string[] = [];
  let skipped = 0;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    const comma = line.indexOf(',');
    const cidr = (comma < 0 ? line : line.slice(0, comma)).trim();
    if (parseCidr(cidr)) cidrs.push(cidr);
    else skipped += 1;
  }
  return { cidrs, skipped };
}

type ParsedCidr = { family: 4; start: number; end: number } | { family: 6; start: bigint; end: bigint };

function parseCidr(cidr: string): ParsedCidr | undefined {
  const slash = cidr.indexOf('/');
  const address = slash < 0 ? cidr : cidr.slice(0, slash);
  const bitsText = slash < 0 ? undefined : cidr.slice(slash + 1);
  if (bitsText !== undefined && !/^\d{1,3}$/.test(bitsText)) return undefined;
  if (isIPv4(address)) {
    const bits = bitsText === undefined ? 32 : Number(bitsText);
    if (bits > 32) return undefined;
    const size = 2 ** (32 - bits);
    const start = Math.floor(ipv4ToNumber(address) / size) * size;
    return { family: 4, start, end: start + size - 1 };
  }
  if (!isIPv6(address)) return undefined;
  const bits = bitsText === undefined ? 128 : Number(bitsText);
  if (bits > 128) return undefined;
  const mask = (1n << BigInt(128 - bits)) - 1n;
  const start = ipv6ToBigInt(address) & ~mask;
  return { family: 6, start, end: start | mask };
}

/** Sorted, merged ranges: overlapping or adjacent prefixes become one, so an address is in at most one range. */
function mergeV4(ranges: { start: number; end: number }[]) {
  ranges.sort((a, b) => a.start - b.start);
  const starts: number[] = [];
  const ends: number[] = [];
  for (const { start, end } of ranges) {
    const last = ends.length - 1;
    if (last >= 0 && start <= ends[last]! + 1) ends[last] = Math.max(ends[last]!, end);
    else {
      starts.push(start);
      ends.push(end);
    }
  }
  return { starts: Float64Array.from(starts), ends: Float64Array.from(ends) };
}

function mergeV6(ranges: { start: bigint; end: bigint }[]) {
  ranges.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const starts: bigint[] = [];
  const ends: bigint[] = [];
  for (const { start, end } of ranges) {
    const last = ends.length - 1;
    if (last >= 0 && start <= ends[last]! + 1n) {
      if (end > ends[last]!) ends[last] = end;
    } else {
      starts.push(start);
      ends.push(end);
    }
  }
  return { starts, ends };
}

/** Index of the last start <= value, or -1. */
function floorIndex<T extends number | bigint>(starts: ArrayLike<T>, value: T): number {
  let lo = 0;
  let hi = starts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= value) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

export function buildRangeSet(cidrs: Iterable<string>): IpRangeSet {
  const v4: { start: number; end: number }[] = [];
  const v6: { start: bigint; end: bigint }[] = [];
  for (const cidr of cidrs) {
    const parsed = parseCidr(cidr);
    if (parsed?.family === 4) v4.push(parsed);
    else if (parsed?.family === 6) v6.push(parsed);
  }
  const { starts: starts4, ends: ends4 } = mergeV4(v4);
  const { starts: starts6, ends: ends6 } = mergeV6(v6);
  return {
    size: starts4.length + starts6.length,
    contains(raw: string): boolean {
      const ip = normalizeIp(raw);
      if (!ip) return false;
      if (!ip.includes(':')) {
        const value = ipv4ToNumber(ip);
        const i = floorIndex(starts4, value);
        return i >= 0 && value <= ends4[i]!;
      }
      if (starts6.length === 0) return false;
      const value = ipv6ToBigInt(ip);
      const i = floorIndex(starts6, value);
      return i >= 0 && value <= ends6[i]!;
    },
  };
}

export const EMPTY_RANGE_SET: IpRangeSet = { size: 0, contains: () => false };

export interface AppleMppRangesOptions {
  /** A file path or an http(s) URL of a CSV in Apple's format. */
  source: string;
  logger: Logger;
  /** How often to reload (default daily). */
  refreshMs?: number;
  /** Where a downloaded list is kept, so that a restart without network still has it. */
  cacheFile?: string;
  fetch?: typeof fetch;
}

/**
 * Apple's egress table, loaded from a file or URL and refreshed on a timer. A failed
 * refresh is logged and the table in use is kept. A file source is read synchronously
 * at construction, so the table is ready before the first request.
 */
export function createAppleMppRanges(options: AppleMppRangesOptions) {
  const { source, logger } = options;
  const isUrl = /^https?:\/\//i.test(source);
  const fetchImpl = options.fetch ?? fetch;
  let table: IpRangeSet = EMPTY_RANGE_SET;
  let loadedAt: Date | undefined;
  let etag: string | undefined;
  let timer: NodeJS.Timeout | undefined;

  const install = (text: string, from: string) => {
    const { cidrs, skipped } = parseEgressCsv(text);
    if (cidrs.length === 0) throw new Error(`no prefixes in ${from}`);
    table = buildRangeSet(cidrs);
    loadedAt = new Date();
    logger.info({ source: from, prefixes: cidrs.length, ranges: table.size, skipped }, 'Apple Mail Privacy Protection ranges loaded');
  };

  if (!isUrl) {
    try {
      install(readFileSync(source, 'utf8'), source);
    } catch (error) {
      logger.warn({ source, reason: (error as Error).message }, 'Apple Mail Privacy Protection ranges could not be read; opens from Apple are not recognised until they can');
    }
  } else if (options.cacheFile && existsSync(options.cacheFile)) {
    try {
      install(readFileSync(options.cacheFile, 'utf8'), options.cacheFile);
    } catch (error) {
      logger.warn({ source: options.cacheFile, reason: (error as Error).message }, 'cached Apple ranges unreadable');
    }
  }

  /** Reloads the table; true when a new table was installed. Never throws. */
  async function refresh(): Promise<boolean> {
    try {
      if (!isUrl) {
        install(await readFile(source, 'utf8'), source);
        return true;
      }
      const response = await fetchImpl(source, {
        headers: etag ? { 'if-none-match': etag } : {},
        signal: AbortSignal.timeout(60_000),
      });
      if (response.status === 304) return false;
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const text = await response.text();
      install(text, source);
      etag = response.headers.get('etag') ?? undefined;
      if (options.cacheFile) {
        try {
          writeFileSync(options.cacheFile, text);
        } catch (error) {
          logger.warn({ file: options.cacheFile, reason: (error as Error).message }, 'could not keep a copy of the Apple ranges');
        }
      }
      return true;
    } catch (error) {
      logger.warn({ source, reason: (error as Error).message }, 'Apple Mail Privacy Protection ranges not refreshed; keeping the table in use');
      return false;
    }
  }

  return {
    contains: (ip: string) => table.contains(ip),
    refresh,
    /** Loads a URL source now (in the background) and reloads any source every `refreshMs`. */
    start() {
      if (timer) return;
      if (isUrl) void refresh();
      timer = setInterval(() => void refresh(), options.refreshMs ?? 24 * 3600_000);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
    info: () => ({ source, ranges: table.size, loadedAt }),
  };
}

export type AppleMppRanges = ReturnType<typeof createAppleMppRanges>;
