import type { IncomingMessage } from 'node:http';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { clientAddress, ipv6ToBigInt, normalizeIp, type TrustProxy } from './ip.js';

const request = (remoteAddress: string, forwardedFor?: string) =>
  ({ socket: { remoteAddress }, rawHeaders: forwardedFor === undefined ? ['Host', 'x'] : ['Host', 'x', 'X-Forwarded-For', forwardedFor] }) as unknown as IncomingMessage;
const trustOf = (setting: string | number) => express().set('trust proxy', setting).get('trust proxy fn') as TrustProxy;

describe('addresses', () => {
  it('normalises what sockets and proxies hand us, and refuses junk', () => {
    expect(normalizeIp('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(normalizeIp(' 203.0.113.9 ')).toBe('203.0.113.9');
    expect(normalizeIp('2001:DB8::1')).toBe('2001:db8::1');
    expect(normalizeIp('[2001:db8::1]')).toBe('2001:db8::1');
    expect(normalizeIp('fe80::1%eth0')).toBe('fe80::1');
    // A port some proxies append, and an IPv4-mapped address written in hex (an Apple relay's 172.224.226.5).
    expect(normalizeIp('172.224.226.5:443')).toBe('172.224.226.5');
    expect(normalizeIp('[2001:db8::1]:8443')).toBe('2001:db8::1');
    expect(normalizeIp('::ffff:ace0:e205')).toBe('172.224.226.5');
    expect(normalizeIp('::FFFF:AC10:1')).toBe('172.16.0.1');
    expect(normalizeIp('2001:db8::1:443')).toBe('2001:db8::1:443');
    // Every spelling of one address is one stored address.
    expect(normalizeIp('2001:0DB8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
    expect(normalizeIp('0:0:0:0:0:ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(normalizeIp('0000:0000:0000:0000:0000:FFFF:AC10:0001')).toBe('172.16.0.1');
    expect(normalizeIp('[0:0:0:0:0:ffff:ace0:e205]:443')).toBe('172.224.226.5');
    expect(normalizeIp('unknown')).toBeUndefined();
    expect(normalizeIp('1.2.3.4, 5.6.7.8')).toBeUndefined();
    expect(normalizeIp(undefined)).toBeUndefined();
  });

  it('parses every IPv6 spelling to the same number', () => {
    expect(ipv6ToBigInt('::')).toBe(0n);
    expect(ipv6ToBigInt('::1')).toBe(1n);
    expect(ipv6ToBigInt('2001:db8::')).toBe(ipv6ToBigInt('2001:0db8:0000:0000:0000:0000:0000:0000'));
    expect(ipv6ToBigInt('::ffff:1.2.3.4')).toBe((0xffffn << 32n) | 0x01020304n);
    expect(ipv6ToBigInt('64:ff9b::1.2.3.4')).toBe(ipv6ToBigInt('64:ff9b::102:304'));
  });

  it('takes X-Forwarded-For only from trusted proxies, the way Express computes req.ip', () => {
    const loopback = trustOf('loopback');
    expect(clientAddress(request('::ffff:127.0.0.1', '198.51.100.7'), loopback)).toBe('198.51.100.7');
    expect(clientAddress(request('::ffff:127.0.0.1', '203.0.113.1, 198.51.100.7'), loopback)).toBe('198.51.100.7');
    // A client that is not a trusted proxy cannot claim another address.
    expect(clientAddress(request('198.51.100.7', '10.9.9.9'), loopback)).toBe('198.51.100.7');
    expect(clientAddress(request('127.0.0.1'), loopback)).toBe('127.0.0.1');
    expect(clientAddress(request('127.0.0.1', 'garbage'), loopback)).toBeUndefined();
    // Two X-Forwarded-For lines are one list, in order.
    const twoLines = { socket: { remoteAddress: '127.0.0.1' }, rawHeaders: ['x-forwarded-for', '203.0.113.1', 'X-Forwarded-For', '198.51.100.8'] } as unknown as IncomingMessage;
    expect(clientAddress(twoLines, loopback)).toBe('198.51.100.8');
    const twoHops = trustOf(2);
    expect(clientAddress(request('10.0.0.1', '203.0.113.1, 198.51.100.7, 10.0.0.2'), twoHops)).toBe('198.51.100.7');
  });
});
