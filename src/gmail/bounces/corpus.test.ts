import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { isAutomaticReply } from './auto-reply.js';
import { readBounceNotice } from './read-notice.js';
import type { BounceNotice } from './types.js';

/*
 * The reader against real notices from the field: `../shared/fixtures/bounces/` beside the
 * repository (a sample of the BSD-licensed sisimai corpus; never copied into the repo).
 * BOUNCE_CORPUS_DIR points elsewhere. Absent → skipped, saying so.
 */

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const corpusDir = process.env.BOUNCE_CORPUS_DIR ?? join(repoRoot, '..', 'shared', 'fixtures', 'bounces');
const present = existsSync(corpusDir);
if (!present) console.log(`bounce corpus not found at ${corpusDir}: skipping the real-world notices (set BOUNCE_CORPUS_DIR to run them)`);

/** Gmail's own plain-text notices in the corpus, and the recipient each one is about. */
const GMAIL_TEXT: Record<string, { address: string; class: 'soft' | 'hard' | 'delay' }> = {
  'lhost-gmail-03.eml': { address: 'kijitora@example.co.jp', class: 'soft' },
  'lhost-gmail-04.eml': { address: 'kijitora@example.com', class: 'soft' },
  'lhost-gmail-05.eml': { address: 'shironeko@example.jp', class: 'soft' },
  'lhost-gmail-06.eml': { address: 'kijitora@example.jp', class: 'delay' },
  'lhost-gmail-07.eml': { address: 'kijitora@example.ed.jp', class: 'soft' },
  'lhost-gmail-08.eml': { address: 'kijitora@example.com', class: 'delay' },
  'lhost-gmail-09.eml': { address: 'kijitora@9jo.example.jp', class: 'delay' },
  'lhost-gmail-10.eml': { address: 'kijitora@6jo.example.co.jp', class: 'soft' },
  'lhost-gmail-11.eml': { address: 'kijitora@example.com', class: 'soft' },
};

describe.skipIf(!present)('bounce reader over the real-world corpus', () => {
  const files = present ? readdirSync(corpusDir).filter((f) => f.endsWith('.eml')).sort() : [];
  const read = new Map<string, BounceNotice | undefined>();

  it('reads every notice, and reports how many it parsed and how each was classified', async () => {
    for (const file of files) read.set(file, await readBounceNotice(readFileSync(join(corpusDir, file))));
    const notices = files.filter((f) => !f.startsWith('rfc3834-'));
    const parsed = notices.filter((f) => read.get(f));
    const lines = files.map((f) => {
      const n = read.get(f);
      return n
        ? `${f.padEnd(28)} ${n.format.padEnd(20)} ${n.recipients.map((r) => `${r.address} ${r.class} ${r.status ?? '-'} (${r.reason})`).join('; ')}`
        : `${f.padEnd(28)} ${f.startsWith('rfc3834-') ? 'not a bounce (automatic reply)' : 'NOT PARSED'}`;
    });
    const classes = { hard: 0, soft: 0, delay: 0 };
    for (const n of read.values()) for (const r of n?.recipients ?? []) classes[r.class] += 1;
    console.log(`bounce corpus: parsed ${parsed.length} of ${notices.length} notices; recipients hard ${classes.hard}, soft ${classes.soft}, delay ${classes.delay}\n${lines.join('\n')}`);
    expect(files.length).toBeGreaterThan(0);
  });

  it('recognizes Gmail\'s plain-text notices with the right recipient and class', () => {
    const gmail = files.filter((f) => f in GMAIL_TEXT);
    expect(gmail.length).toBeGreaterThan(0);
    for (const file of gmail) {
      const notice = read.get(file);
      expect(notice, file).toBeDefined();
      expect(notice!.format, file).toBe('gmail-text');
      expect(notice!.recipients.map((r) => [r.address, r.class]), file).toEqual([[GMAIL_TEXT[file]!.address, GMAIL_TEXT[file]!.class]]);
      // The original is quoted inline: its Message-ID is found there.
      expect(notice!.originalMessageId, file).toMatch(/@/);
    }
  });

  // (The sample's anonymization sometimes renamed the address in the body but not in the header: counts, not names.)
  it('every notice carrying X-Failed-Recipients yields as many recipients as the header names', async () => {
    for (const file of files) {
      const parsed = await simpleParser(readFileSync(join(corpusDir, file)));
      const header = parsed.headers.get('x-failed-recipients');
      if (typeof header !== 'string') continue;
      const expected = header.split(',').map((a) => a.trim().toLowerCase()).filter(Boolean);
      expect(read.get(file)?.recipients.length, file).toBe(expected.length);
    }
  });

  it('automatic replies (rfc3834-*) are not bounces, and are recognized as automatic', async () => {
    for (const file of files.filter((f) => f.startsWith('rfc3834-'))) {
      expect(read.get(file), file).toBeUndefined();
      const parsed = await simpleParser(readFileSync(join(corpusDir, file)));
      const headers = Object.fromEntries(parsed.headerLines.map((h) => [h.key, h.line.slice(h.line.indexOf(':') + 1).trim()]));
      expect(isAutomaticReply(headers), file).toBe(true);
    }
  });
});
