import { lookup as systemLookup, Resolver } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';

/*
 * How a webhook's host name becomes addresses. `dns.lookup` is getaddrinfo, which runs on
 * libuv's thread pool (4 threads, shared with file I/O, zlib and the scrypt of every password
 * check): a few customer endpoints whose DNS is slow held every thread for the resolver's
 * timeout and stalled sign-ins and file reads of the whole process. With the SSRF guard on
 * (production), names are resolved by c-ares instead (`Resolver`: UDP on the event loop, no
 * thread), A and AAAA, with a bounded time. It asks DNS only: /etc/hosts is not read, which
 * the guard does not need (a name that only the host file knows is refused as not resolving);
 * `localhost` names are loopback by definition (RFC 6761) and answered so, to be refused as such.
 * With private targets allowed (development, tests) names go through getaddrinfo as before, so
 * `localhost` and /etc/hosts work there — and that path does use the thread pool.
 */

export type ResolveHost = (hostname: string, family?: number) => Promise<LookupAddress[]>;

export interface DnsOptions {
  /** Name servers (`ip` or `ip:port`); default: the system's (/etc/resolv.conf). Tests point this at their own. */
  servers?: string[];
  /** c-ares: the first try's timeout per server (ms); later tries wait longer. */
  tryTimeoutMs?: number;
  tries?: number;
  /** The whole resolution gives up after this long, whatever c-ares does (ms). */
  deadlineMs?: number;
}

const DEFAULT_TRY_TIMEOUT_MS = 1_000;
const DEFAULT_TRIES = 2;
const DEFAULT_DEADLINE_MS = 5_000;

/** A name that DNS did not answer for in time: clear for the endpoint's owner, never a thread held. */
export class DnsTimeoutError extends Error {
  readonly code = 'ETIMEOUT';
  constructor(hostname: string) {
    super(`DNS did not answer for ${hostname} in time`);
    this.name = 'DnsTimeoutError';
  }
}

/**
 * A lookup that failed on the resolving side, not a name found missing: the server answered
 * SERVFAIL or REFUSED, or refused the connection (c-ares `ESERVFAIL`, `EREFUSED`,
 * `ECONNREFUSED`). The host may well exist: the owner should try again, not hunt for a typo.
 */
export class DnsLookupFailedError extends Error {
  constructor(
    hostname: string,
    readonly code: string,
  ) {
    super(`DNS lookup for ${hostname} failed (${code})`);
    this.name = 'DnsLookupFailedError';
  }
}

const LOOKUP_FAILED_CODES = new Set(['ESERVFAIL', 'EREFUSED', 'ECONNREFUSED']);

const notFound = (hostname: string) => Object.assign(new Error(`${hostname} does not resolve`), { code: 'ENOTFOUND', hostname });
const isLocalhostName = (hostname: string) => /(^|\.)localhost\.?$/i.test(hostname);

/** c-ares: resolution on the event loop, never on the thread pool. */
export function dnsResolver(options: DnsOptions = {}): ResolveHost {
  const resolver = new Resolver({ timeout: options.tryTimeoutMs ?? DEFAULT_TRY_TIMEOUT_MS, tries: options.tries ?? DEFAULT_TRIES });
  if (options.servers) resolver.setServers(options.servers);
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;

  async function resolveBoth(hostname: string, family: number): Promise<LookupAddress[]> {
    const [v4, v6] = await Promise.allSettled([
      family === 6 ? Promise.resolve([]) : resolver.resolve4(hostname),
      family === 4 ? Promise.resolve([]) : resolver.resolve6(hostname),
    ]);
    const addresses: LookupAddress[] = [
      ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 })) : []),
      ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 })) : []),
    ];
    if (addresses.length > 0) return addresses;
    const codes = [v4, v6].flatMap((r) => (r.status === 'rejected' ? [String((r.reason as NodeJS.ErrnoException).code)] : []));
    if (codes.includes('ETIMEOUT')) throw new DnsTimeoutError(hostname);
    // One family failing is enough to say nothing: its answer might have been the address.
    const failed = codes.find((code) => LOOKUP_FAILED_CODES.has(code));
    throw failed ? new DnsLookupFailedError(hostname, failed) : notFound(hostname);
  }

  return async (hostname, family = 0) => {
    if (isLocalhostName(hostname)) return [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }].filter((a) => !family || a.family === family);
    let timer: NodeJS.Timeout | undefined;
    // A query c-ares is still retrying past the deadline holds a UDP socket, not a thread; it ends on its own.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DnsTimeoutError(hostname)), deadlineMs);
    });
    try {
      return await Promise.race([resolveBoth(hostname, family), deadline]);
    } finally {
      clearTimeout(timer);
    }
  };
}

/** getaddrinfo (thread pool; /etc/hosts, `localhost`): only where private targets are allowed. */
export const systemResolver: ResolveHost = (hostname, family = 0) => systemLookup(hostname, { all: true, family });

/** The resolver the SSRF guard uses: c-ares whenever private targets are refused. */
export const webhookResolver = (allowPrivateTargets: boolean, dns?: DnsOptions): ResolveHost =>
  allowPrivateTargets ? systemResolver : dnsResolver(dns);
