import { describe, expect, it } from 'vitest';
import { parseMultipartFields } from './multipart.js';
import { findBodyProblem } from './text.js';

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

describe("the edge's one walk of a body (bad text, `__proto__` keys) costs about what JSON.stringify of it does", () => {
  // 1 MB of JSON nested 62 levels (the text rule allows 64), 480,000 numbers at the bottom. A
  // reviewer found a second walk for `__proto__` keys in parseInput copying every value's path;
  // folded into the text rule's walk, that walk itself still copied the path per value (~90 ms,
  // 30× JSON.stringify of the same value) until it kept one stack and joined it on a hit only.
  const depth = 62;
  const value = JSON.parse('{"email":' + '['.repeat(depth) + Array(480_000).fill('0').join(',') + ']'.repeat(depth) + '}');

  it('a deep 1 MB body is walked in a few times the time JSON.stringify takes over it', () => {
    expect(findBodyProblem(value)).toBeUndefined();
    const stringifyMs = least(() => JSON.stringify(value));
    const walkMs = least(() => findBodyProblem(value));
    expect(walkMs, `walk ${walkMs.toFixed(1)} ms, JSON.stringify ${stringifyMs.toFixed(1)} ms`).toBeLessThan(5 * stringifyMs + 10);
  }, 60_000);

  it('the walk names the first problem by its path: a `__proto__` key, bad text, a bad key', () => {
    expect(findBodyProblem(JSON.parse('{"attributes":{"tier":"a","__proto__":"gold"}}'))).toEqual({ kind: 'proto_key', path: 'attributes.__proto__' });
    expect(findBodyProblem({ list: [1, 'ok', { name: 'a\u0000b' }] }, ['query'])).toEqual({ kind: 'bad_text', path: 'query.list.2.name' });
    expect(findBodyProblem({ ['\ud800']: 1 })).toEqual({ kind: 'bad_text', path: '(key)' });
    expect(findBodyProblem('\udc00')).toEqual({ kind: 'bad_text', path: '(body)' });
    expect(findBodyProblem({ a: [{ b: 'fine' }], c: null, d: 3 })).toBeUndefined();
  });

  it('more than 64 levels is a 400 naming where, not a walk', () => {
    const deep = JSON.parse('{"x":' + '['.repeat(70) + ']'.repeat(70) + '}');
    expect(() => findBodyProblem(deep)).toThrow(expect.objectContaining({ code: 'validation_failed' }));
  });
});
