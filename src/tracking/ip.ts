import type { IncomingMessage } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';

/*
 * Client addresses for tracking hits. Addresses come from the socket, or from
 * X-Forwarded-For only as far as the proxies in front of us are trusted (the same
 * TRUST_PROXY rule Express applies to the rest of the app). Anything that is not a
 * valid address is dropped rather than stored.
 */

/** A valid IPv4 or IPv6 address in a canonical form (IPv4-mapped IPv6 becomes IPv4), or undefined. */
export function normalizeIp(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  let ip = raw.trim();
  // Some proxies append the client's port ("203.0.113.5:443", "[2001:db8::1]:443"): the address is what counts.
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(ip);
  const v4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(ip);
  if (bracketed) ip = bracketed[1]!;
  else if (v4WithPort) ip = v4WithPort[1]!;
  const zone = ip.indexOf('%');
  if (zone >= 0) ip = ip.slice(0, zone);
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip)) return undefined;
  const lower = ip.toLowerCase();
  // The common case, a dual-stack socket's view of an IPv4 client, without the parse below.
  if (lower.startsWith('::ffff:') && isIPv4(lower.slice(7))) return lower.slice(7);
  // One spelling per address (RFC 5952: lowercase, no leading zeros, the longest zero run as ::),
  // from the URL parser: 2001:0db8:0:0::1 and 0:0:0:0:0:ffff:1.2.3.4 are stored, counted and
  // matched against the proxy ranges as 2001:db8::1 and 1.2.3.4.
  let canonical: string;
  try {
    canonical = new URL(`http://[${lower}]`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  // IPv4-mapped (the parser writes it in hex: ::ffff:ace0:e205 is 172.224.226.5): the IPv4 address.
  const hexMapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (hexMapped) {
    const [high, low] = [parseInt(hexMapped[1]!, 16), parseInt(hexMapped[2]!, 16)];
    return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
  }
  return canonical;
}

/** IPv4 dotted quad → unsigned 32-bit integer. The input must be a valid IPv4 address. */
export function ipv4ToNumber(ip: string): number {
  let value = 0;
  let octet = 0;
  for (let i = 0; i < ip.length; i += 1) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      value = value * 256 + octet;
      octet = 0;
    } else {
      octet = octet * 10 + (c - 48);
    }
  }
  return value * 256 + octet;
}

/** IPv6 text (any valid form, including an embedded IPv4 tail) → 128-bit integer. The input must be valid. */
export function ipv6ToBigInt(ip: string): bigint {
  let text = ip;
  let tail = 0n;
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) >= 0) {
    tail = BigInt(ipv4ToNumber(text.slice(lastColon + 1)));
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  const left = halves[0] ? halves[0].split(':') : [];
  const right = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = halves.length > 1 ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  let value = 0n;
  for (const group of groups) value = (value << 16n) | BigInt(parseInt(group, 16));
  return value | tail;
}

/** Express's compiled "trust proxy" rule: is the address at this hop (0 = the socket peer) a proxy we trust? */
export type TrustProxy = (address: string, hop: number) => boolean;

/**
 * The client's address the way Express's `req.ip` computes it (proxy-addr): walk
 * X-Forwarded-For from the nearest hop outwards while each hop is trusted.
 */
export function clientAddress(req: IncomingMessage, trust: TrustProxy): string | undefined {
  const peer = req.socket.remoteAddress;
  if (!peer) return undefined;
  // Several X-Forwarded-For lines join into one list, as Node does for req.headers; read raw
  // so that a pixel does not build the whole headers object. The trust rule (which parses
  // addresses) is only asked when there is a header to believe or not.
  let header = '';
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 15 && raw[i]!.toLowerCase() === 'x-forwarded-for') header = header ? `${header}, ${raw[i + 1]}` : raw[i + 1]!;
  }
  if (!header || !trust(peer, 0)) return normalizeIp(peer);
  const forwarded = header.split(',').map((s) => s.trim());
  const hops = [peer, ...forwarded.reverse()];
  let i = 0;
  while (i < hops.length - 1 && trust(hops[i]!, i)) i += 1;
  return normalizeIp(hops[i]);
}
