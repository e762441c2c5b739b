import { describe, expect, it } from 'vitest';
import { countRows } from '../helpers/test-db.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/* Issue 9, part 7: the import's limits hold on the stream itself, whatever the headers say. */

const ctx = useAppWithOwner();

/** A chunked body (no Content-Length) of `total` bytes, made of `line` repeated. */
function chunked(header: string, line: string, total: number): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let sent = 0;
  const block = encoder.encode(line.repeat(Math.ceil(64 * 1024 / line.length)));
  return new ReadableStream({
    start(controller) {
      controller.enqueue(encoder.encode(header));
    },
    pull(controller) {
      if (sent >= total) return controller.close();
      controller.enqueue(block);
      sent += block.length;
    },
  });
}

const upload = (body: ReadableStream<Uint8Array> | string) =>
  fetch(`${ctx.app.baseUrl}/api/contacts/import`, {
    method: 'POST',
    headers: { 'content-type': 'text/csv', authorization: `Bearer ${ctx.owner.token}` },
    body,
    duplex: 'half',
  } as RequestInit);

describe('CSV import limits', () => {
  it('a chunked upload past 50 MB is a 413 on the stream, and nothing is imported', async () => {
    const before = await countRows(ctx.app.database.db, 'contacts');
    const res = await upload(chunked('email,company\n', 'someone@example.com,Acme\n', 51 * 1024 * 1024));
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
    expect(await countRows(ctx.app.database.db, 'contacts')).toBe(before);
  });

  it('more than 100,000 rows is a 400 before any row is written', async () => {
    const before = await countRows(ctx.app.database.db, 'contacts');
    const rows = Array.from({ length: 100_001 }, (_, i) => `r${i}@example.com`).join('\n');
    const res = await upload(`email\n${rows}\n`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; details: { field: string }[] } };
    expect(body.error.details[0]!.field).toBe('rows');
    expect(await countRows(ctx.app.database.db, 'contacts')).toBe(before);
  });

  it('headers named after Object.prototype members become plain attributes', async () => {
    const res = await upload('email,Constructor,__proto__,toString\nproto@example.com,ctor,p,ts\n');
    expect(res.status).toBe(200);
    const list = await ctx.app.api('GET', '/api/contacts?q=proto%40example.com', { token: ctx.owner.token });
    const attributes = list.body.contacts[0].attributes;
    expect(attributes).toEqual({ constructor: 'ctor', proto: 'p', toString: 'ts' });
    expect(JSON.stringify(attributes)).not.toContain('native code');
  });

  it('a file with more than 100 attribute columns is a 400 naming the header, and nothing is imported', async () => {
    const before = await countRows(ctx.app.database.db, 'contacts');
    const names = Array.from({ length: 101 }, (_, i) => `a${i}`);
    const res = await upload(`email,${names.join(',')}
wide@example.com,${names.join(',')}
`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; details: { field: string; message: string }[] } };
    expect(body.error.details[0]).toMatchObject({ field: 'header', message: expect.stringContaining('101 attribute columns') });
    expect(await countRows(ctx.app.database.db, 'contacts')).toBe(before);
  });

  it('a row that would grow its contact past 100 attributes fails whole, its opt-out is still recorded, and its other rows go in', async () => {
    const first = Array.from({ length: 60 }, (_, i) => `f${i}`);
    const second = Array.from({ length: 60 }, (_, i) => `s${i}`);
    const seeded = await upload(`email,${first.join(',')}
grow@example.com,${first.join(',')}
`);
    expect(seeded.status).toBe(200);
    // Two rows of the refused address (one batch merges them), one other address that fits.
    const csv = [
      `email,firstName,consent,${second.join(',')}`,
      `grow@example.com,Gina,opted_out,${second.join(',')}`,
      `fits@example.com,Finn,,${second.join(',')}`,
      `GROW@example.com,Gina,opted_out,${second.join(',')}`,
    ].join('\n');
    const res = await upload(`${csv}\n`);
    expect(res.status).toBe(200);
    const report = (await res.json()) as { rows: number; created: number; updated: number; unchanged: number; failed: number; consents: number; errors: { line: number; code: string }[] };
    expect(report).toMatchObject({ rows: 3, created: 1, updated: 0, unchanged: 0, failed: 2, consents: 1 });
    expect(report.errors).toEqual([expect.objectContaining({ line: 4, code: 'too_many_attributes' })]);

    const grow = (await ctx.app.api('GET', '/api/contacts?q=grow%40example.com', { token: ctx.owner.token })).body.contacts[0];
    expect(Object.keys(grow.attributes)).toHaveLength(60);
    expect(grow.firstName).toBeNull();
    expect(grow.consent?.status).toBe('opted_out');
    const fits = (await ctx.app.api('GET', '/api/contacts?q=fits%40example.com', { token: ctx.owner.token })).body.contacts[0];
    expect(Object.keys(fits.attributes)).toHaveLength(60);
  });
});
