import { BlockList, isIP, type LookupFunction } from 'node:net';
import { DnsLookupFailedError, DnsTimeoutError, webhookResolver, type ResolveHost } from './host-resolver.js';

/*
 * SSRF guard. In production a webhook never reaches loopback, link-local (cloud metadata at
 * 169.254.169.254), private, carrier-grade NAT, unique-local, multicast or otherwise
 * reserved addresses, v4 or v6 — nor a v6 form embedding a v4 address (`::ffff:127.0.0.1`,
 * v4-translated `::ffff:0:7f00:1`, NAT64, 6to4, Teredo; a v4-mapped address is judged by the v4 rules). A literal IP is checked as written; a name is checked at connect
 * time by the socket's own `lookup` (below), so the address checked is the address
 * connected to: no second resolution for DNS rebinding to slip into. Redirects are never
 * followed (sender.ts). Names are resolved by `host-resolver.ts`: c-ares, off the thread pool,
 * whenever private targets are refused.
 */

const BLOCKED = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network", incl. 0.0.0.0 (reaches the local host on Linux)
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  BLOCKED.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['::', 96], // v4-compatible (deprecated)
  ['::ffff:0:0:0', 96], // v4-translated (SIIT, RFC 2765): `::ffff:0:7f00:1` embeds 127.0.0.1
  ['64:ff9b::', 96], // NAT64
  ['64:ff9b:1::', 48],
  ['100::', 64], // discard
  ['2001::', 32], // Teredo
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4
  ['fc00::', 7], // unique-local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  BLOCKED.addSubnet(network, prefix, 'ipv6');
}

/** True when an IP address must not be reached from production (BlockList also matches v4-mapped v6 against the v4 ranges). */
export function isBlockedAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return BLOCKED.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** The host of a URL as an address, when it is a literal IP (`[::1]` → `::1`). */
export function literalAddressOf(url: URL): string | undefined {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return isIP(host) ? host : undefined;
}

/**
 * Why a target was refused: its address is one we never reach (`blocked`), or its name gave no
 * address to judge (`unresolved`: no such name; `dns_timeout`: its DNS did not answer;
 * `dns_failed`: the lookup failed — SERVFAIL, REFUSED, a resolver refusing connections — and the
 * name may exist). The owner fixes these differently (another URL, the host name, their DNS,
 * trying again), so the message says which.
 */
export type TargetRefusal = 'blocked' | 'unresolved' | 'dns_timeout' | 'dns_failed';

export class TargetRefusedError extends Error {
  readonly code = 'refused_target';
  constructor(
    message = 'The webhook URL resolves to an address that is not allowed',
    readonly reason: TargetRefusal = 'blocked',
  ) {
    super(message);
    this.name = 'TargetRefusedError';
  }
}

/**
 * A `lookup` for http(s).request that resolves the name and refuses the connection if any
 * address it resolves to is blocked; the socket then connects to exactly what was checked.
 */
export function guardedLookup(allowPrivate: boolean, resolve: ResolveHost = webhookResolver(allowPrivate)): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, options.family as number | undefined)
      .then((addresses) => {
        if (addresses.length === 0) throw Object.assign(new Error('no address'), { code: 'ENOTFOUND' });
        if (!allowPrivate && addresses.some((a) => isBlockedAddress(a.address))) throw new TargetRefusedError();
        if (options.all) (callback as (e: null, a: typeof addresses) => void)(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      })
      .catch((error: NodeJS.ErrnoException) => callback(error, '', 0));
  };
}

/**
 * The check when an endpoint is saved: a literal address must be allowed, and a name must
 * resolve, to allowed addresses only. (Delivery checks again at connect time: names move.)
 */
export async function assertAllowedTarget(url: URL, allowPrivate: boolean, resolve: ResolveHost = webhookResolver(allowPrivate)): Promise<void> {
  if (allowPrivate) return;
  const literal = literalAddressOf(url);
  if (literal) {
    if (isBlockedAddress(literal)) throw new TargetRefusedError('The webhook URL points at an address that is not allowed');
    return;
  }
  const unresolved = () => new TargetRefusedError(`The webhook URL host could not be resolved: DNS has no address for ${url.hostname}`, 'unresolved');
  let addresses: { address: string }[];
  try {
    addresses = await resolve(url.hostname);
  } catch (error) {
    if (error instanceof DnsTimeoutError) throw new TargetRefusedError('The webhook URL host did not resolve in time (its DNS did not answer)', 'dns_timeout');
    // Not "could not be resolved": the name may well exist. Refused all the same, as a timeout is —
    // a saved endpoint is one seen to resolve to allowed addresses — but as something to retry.
    if (error instanceof DnsLookupFailedError) throw new TargetRefusedError(`The webhook URL host could not be checked: DNS lookup failed for ${url.hostname} (${error.code}); try again`, 'dns_failed');
    throw unresolved();
  }
  if (addresses.length === 0) throw unresolved();
  if (addresses.some((a) => isBlockedAddress(a.address))) throw new TargetRefusedError();
}
