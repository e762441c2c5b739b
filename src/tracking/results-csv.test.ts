import { describe, expect, it } from 'vitest';
import { resultsCsv } from './results-csv.js';
import type { RecipientResult } from './results.service.js';

const row = (overrides: Partial<RecipientResult>): RecipientResult => ({
  email: 'a@example.com',
  firstName: 'Ann',
  lastName: null,
  step: 0,
  status: 'sent',
  skipReason: null,
  sentAt: new Date('2030-01-01T10:00:00Z'),
  opens: { human: 1, machine: 2, unknown: 0 },
  clicks: { human: 0, machine: 0, unknown: 1 },
  replied: false,
  bounced: false,
  unsubscribed: true,
  ...overrides,
});

describe('results CSV', () => {
  it('writes the header, then one line per send, page by page', async () => {
    async function* pages() {
      yield [row({ firstName: '=cmd|calc' })];
      yield [];
      yield [row({ email: 'b@example.com', lastName: 'O"Neil', unsubscribed: false })];
    }
    const chunks: string[] = [];
    for await (const chunk of resultsCsv(pages())) chunks.push(chunk);
    expect(chunks).toHaveLength(3);
    const lines = chunks.join('').trimEnd().split('\r\n');
    expect(lines[0]).toBe('email,first_name,last_name,step,status,skip_reason,sent_at,opens_human,opens_machine,opens_unknown,clicks_human,clicks_machine,clicks_unknown,replied,bounced,unsubscribed');
    expect(lines[1]).toBe("a@example.com,'=cmd|calc,,0,sent,,2030-01-01T10:00:00.000Z,1,2,0,0,0,1,false,false,true");
    expect(lines[2]).toBe('b@example.com,Ann,"O""Neil",0,sent,,2030-01-01T10:00:00.000Z,1,2,0,0,0,1,false,false,false');
    // The formula guard is csv-download.ts's (csv-download.test.ts): text only, never the counts.
    expect(lines.slice(1).every((line) => line.split(',').slice(7, 13).every((n) => /^\d+$/.test(n)))).toBe(true);
  });
});
