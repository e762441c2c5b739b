import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { APPLE_EGRESS_URL, SAMPLE_EGRESS_FILE, appleMppSource, buildRangeSet, createAppleMppRanges, parseEgressCsv } from './apple-mpp.js';

const logger = createLogger('silent');
const dir = mkdtempSync(path.join(os.tmpdir(), 'apple-mpp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('where the Apple table comes from', () => {
  it("production without APPLE_MPP_RANGES loads Apple's list, not the sample; elsewhere the sample; a set value always wins", () => {
    expect(appleMppSource(undefined, 'production')).toBe(APPLE_EGRESS_URL);
    expect(appleMppSource(undefined, 'development')).toBe(SAMPLE_EGRESS_FILE);
    expect(appleMppSource(undefined, 'test')).toBe(SAMPLE_EGRESS_FILE);
    expect(appleMppSource('/srv/apple.csv', 'production')).toBe('/srv/apple.csv');
  });
});

describe("Apple's egress CSV", () => {
  it('parses prefixes of both families and counts junk lines', () => {
    const { cidrs, skipped } = parseEgressCsv(
      ['172.224.226.0/27,GB,GB-EN,London,', '2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,', '104.28.30.0/26,JP,JP-13,,', '', 'garbage line', '10.0.0.0/33,US,,,', '1.2.3.4,US,,,'].join('\n'),
    );
    expect(cidrs).toEqual(['172.224.226.0/27', '2a02:26f7:b3c0:4000::/64', '104.28.30.0/26', '1.2.3.4']);
    expect(skipped).toBe(2);
  });

  it('looks up IPv4, IPv6 and IPv4-mapped addresses, with exact range edges', () => {
    const set = buildRangeSet(['172.224.226.0/27', '172.224.226.32/31', '2a02:26f7:b3c0:4000::/64', '2a09:bac2:b089:100::/56', '0.0.0.0/32']);
    expect(set.contains('172.224.226.0')).toBe(true);
    expect(set.contains('172.224.226.31')).toBe(true);
    expect(set.contains('172.224.226.33')).toBe(true); // adjacent /31 merged in
    expect(set.contains('172.224.226.34')).toBe(false);
    expect(set.contains('172.224.225.255')).toBe(false);
    expect(set.contains('::ffff:172.224.226.5')).toBe(true);
    expect(set.contains('2a02:26f7:b3c0:4000:ffff:ffff:ffff:ffff')).toBe(true);
    expect(set.contains('2a02:26f7:b3c0:4001::')).toBe(false);
    expect(set.contains('2A09:BAC2:B089:1FF::1')).toBe(true);
    expect(set.contains('2a09:bac2:b089:200::1')).toBe(false);
    expect(set.contains('0.0.0.0')).toBe(true);
    expect(set.contains('not an ip')).toBe(false);
    expect(set.size).toBe(4);
  });

  it('stays fast on a list the size of Apple\'s (~300k prefixes)', () => {
    const cidrs: string[] = [];
    for (let i = 0; i < 150_000; i += 1) cidrs.push(`${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/27`);
    for (let i = 0; i < 150_000; i += 1) cidrs.push(`2a02:26f7:${(i >> 8).toString(16)}:${(i & 255).toString(16)}00::/56`);
    const built = performance.now();
    const set = buildRangeSet(cidrs);
    expect(performance.now() - built).toBeLessThan(5_000);
    const started = performance.now();
    for (let i = 0; i < 20_000; i += 1) set.contains(i % 2 ? `101.2.${i & 255}.9` : `2a02:26f7:12:3400::${i.toString(16)}`);
    expect((performance.now() - started) / 20_000).toBeLessThan(0.05); // < 50 µs a lookup, typically ~1 µs
    expect(set.contains('101.2.3.9')).toBe(true);
    expect(set.contains('101.2.3.40')).toBe(false);
  });
});

describe('loading and refreshing', () => {
  it('reads the shipped sample synchronously, so the table is ready before the first request', () => {
    const ranges = createAppleMppRanges({ source: SAMPLE_EGRESS_FILE, logger });
    expect(ranges.contains('172.224.226.7')).toBe(true);
    expect(ranges.contains('2a04:4e41:275f:1700::1')).toBe(true);
    expect(ranges.contains('203.0.113.9')).toBe(false);
    expect(ranges.info().ranges).toBeGreaterThan(0);
  });

  it('loads from a URL, keeps the old table when a refresh fails, and honours ETag', async () => {
    let body = '198.51.100.0/24,US,US-CA,Los Angeles,\n';
    let fail = false;
    let notModified = 0;
    const server: Server = createServer((req, res) => {
      if (fail) {
        res.writeHead(503).end();
        return;
      }
      if (req.headers['if-none-match'] === '"v1"' && body.startsWith('198')) {
        notModified += 1;
        res.writeHead(304).end();
        return;
      }
      res.writeHead(200, { etag: body.startsWith('198') ? '"v1"' : '"v2"', 'content-type': 'text/csv' }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/egress-ip-ranges.csv`;
    try {
      const cacheFile = path.join(dir, 'cached.csv');
      const ranges = createAppleMppRanges({ source: url, logger, cacheFile });
      expect(ranges.contains('198.51.100.1')).toBe(false); // nothing until loaded
      expect(await ranges.refresh()).toBe(true);
      expect(ranges.contains('198.51.100.1')).toBe(true);
      expect(await ranges.refresh()).toBe(false); // 304
      expect(notModified).toBe(1);

      fail = true;
      expect(await ranges.refresh()).toBe(false);
      expect(ranges.contains('198.51.100.1')).toBe(true); // old table kept

      fail = false;
      body = '192.0.2.0/24,US,,,\n';
      expect(await ranges.refresh()).toBe(true);
      expect(ranges.contains('192.0.2.1')).toBe(true);
      expect(ranges.contains('198.51.100.1')).toBe(false);

      // A restart with no network starts from the last good download.
      const offline = createAppleMppRanges({ source: 'http://127.0.0.1:1/unreachable.csv', logger, cacheFile });
      expect(offline.contains('192.0.2.1')).toBe(true);
      expect(await offline.refresh()).toBe(false);
      expect(offline.contains('192.0.2.1')).toBe(true);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('a file that is empty or missing leaves the table in use', async () => {
    const file = path.join(dir, 'ranges.csv');
    writeFileSync(file, '203.0.113.0/24,US,,,\n');
    const ranges = createAppleMppRanges({ source: file, logger });
    expect(ranges.contains('203.0.113.5')).toBe(true);
    writeFileSync(file, 'nothing useful\n');
    expect(await ranges.refresh()).toBe(false);
    rmSync(file);
    expect(await ranges.refresh()).toBe(false);
    expect(ranges.contains('203.0.113.5')).toBe(true);
    expect(createAppleMppRanges({ source: path.join(dir, 'missing.csv'), logger }).contains('203.0.113.5')).toBe(false);
  });
});
