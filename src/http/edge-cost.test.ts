import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseMultipartFields } from './multipart.js';
import { findBadText } from './text.js';
import { parseInput } from './validate.js';

/*
 * A reviewer's findings: two walks of a request's body added for attackers' findings cost far
 * more than the body's size, before any token or credential was checked, on the answering
 * thread. Relative bounds with wide margins (a loaded machine slows both sides alike); each
 * failed by several times before its fix.
 */
const timed = (work: () => unknown) => {
  const t = performance.now();
  work();
  return performance.now() - t;
};
const least = (work: () => unknown) => Math.min(timed(work), timed(work), timed(work));

describe('the multipart reader reads a 64 KB body in time linear in its size', () => {
  // 999 parts whose headers end in CRLF CRLF, then an epilogue of "\n\r": each part's search for
  // the end of its headers ran to the end of the body (1,000 parts × 64 KB: ~0.3 s).
  let parts = '';
  for (let i = 0; i < 999; i += 1) parts += '--b\r\nA:1\r\n\r\nv\r\n';
  const crafted = Buffer.from(parts + '--b--' + '\n\r'.repeat((65_000 - parts.length) / 2));
  const plain = Buffer.from(`--b\r\nContent-Disposition: form-data; name=List-Unsubscribe\r\n\r\n${'x'.repeat(64_000)}\r\n--b--`);

  it('a crafted body costs no more than a few times a plain body of the same size', () => {
    expect(crafted.length).toBeLessThanOrEqual(64 * 1024);
    const plainMs = least(() => parseMultipartFields(plain, 'multipart/form-data; boundary=b'));
    const craftedMs = least(() => parseMultipartFields(crafted, 'multipart/form-data; boundary=b'));
    expect(craftedMs, `crafted ${craftedMs.toFixed(1)} ms, plain ${plainMs.toFixed(1)} ms`).toBeLessThan(Math.max(50, 20 * plainMs));
  });
});

describe("parseInput's __proto__ check costs about what the text rule's walk of the same body does", () => {
  // 1 MB of JSON nested 62 levels (the text rule allows 64), 480,000 numbers at the bottom: the
  // check copied the path of every value, primitives too (~4× the text rule's walk).
  const depth = 62;
  const value = JSON.parse('{"email":' + '['.repeat(depth) + Array(480_000).fill('0').join(',') + ']'.repeat(depth) + '}');
  const schema = z.object({ email: z.string(), password: z.string() });

  it('a body a schema refuses at once is refused in about the time of one walk', () => {
    const textRuleMs = least(() => findBadText(value));
    const parseMs = least(() => {
      try {
        parseInput(schema, value);
      } catch {
        // the 400 expected
      }
    });
    expect(parseMs, `parseInput ${parseMs.toFixed(0)} ms, findBadText ${textRuleMs.toFixed(0)} ms`).toBeLessThan(2 * textRuleMs + 100);
  }, 60_000);
});
