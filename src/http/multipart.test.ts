import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_MULTIPART_PARTS, paramOf, parseMultipartFields } from './multipart.js';

/* The recipient pages' lenient multipart reader: what RFC 7578/2046/2183 allow is read, garbage is a 4xx. */

const parse = (body: string, contentType: string) => parseMultipartFields(Buffer.from(body, 'utf8'), contentType);
const statusOf = (body: string, contentType: string) => {
  try {
    parse(body, contentType);
    return 200;
  } catch (error) {
    return (error as { status: number }).status;
  }
};
const ONE = [{ name: 'List-Unsubscribe', value: 'One-Click' }];

describe('parseMultipartFields reads valid but unusual bodies', () => {
  it('.NET MultipartFormDataContent: quoted boundary, part Content-Type first, unquoted name', () => {
    const b = '4b39ed14-752b-480a-9846-fc0019132d15';
    const body = `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: form-data; name=List-Unsubscribe\r\n\r\nOne-Click\r\n--${b}--\r\n`;
    expect(parse(body, `multipart/form-data; boundary="${b}"`)).toEqual(ONE);
  });

  it('a preamble and an epilogue are ignored (RFC 2046 5.1.1)', () => {
    const body = `This is a multi-part message in MIME format.\r\n--b1\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b1--\r\nepilogue --b1\r\nnot a part`;
    expect(parse(body, 'multipart/form-data; boundary=b1')).toEqual(ONE);
    // A line that only starts like the delimiter is preamble too.
    expect(parse('--b1junk\r\n--b1--', 'multipart/form-data; boundary=b1')).toEqual([]);
  });

  it('no space after ";", the type in another case, padding after a delimiter, LF line breaks, the parameter names in any case', () => {
    expect(parse(`--b2\r\nContent-Disposition: form-data;name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b2--`, 'multipart/form-data; boundary=b2')).toEqual(ONE);
    expect(parse(`--b3 \t\r\ncontent-disposition: Form-Data; NAME="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b3--`, 'Multipart/Form-Data; Boundary=b3')).toEqual(ONE);
    expect(parse(`--b4\nContent-Disposition: FORM-DATA; name=List-Unsubscribe\n\nOne-Click\n--b4--\n`, 'multipart/form-data;boundary=b4')).toEqual(ONE);
  });

  it('several fields in order; a file part and a part without a name are skipped; an empty value is kept', () => {
    const body = [
      '--x',
      'Content-Disposition: form-data; name="topics"',
      '',
      'news',
      '--x',
      'Content-Disposition: form-data; name="upload"; filename="a.txt"',
      'Content-Type: text/plain',
      '',
      'file body',
      '--x',
      'Content-Disposition: attachment',
      '',
      'no field',
      '--x',
      'Content-Disposition: form-data; name="topics"',
      '',
      'offers',
      '--x',
      'Content-Disposition: form-data; name="empty"',
      '',
      '',
      '--x--',
    ].join('\r\n');
    expect(parse(body, 'multipart/form-data; boundary=x')).toEqual([
      { name: 'topics', value: 'news' },
      { name: 'topics', value: 'offers' },
      { name: 'empty', value: '' },
    ]);
  });

  it('a quoted name with escapes, ";" and "=" inside; UTF-8 names and values; a line in the value starting like the boundary', () => {
    const body = `--xx\r\nContent-Disposition: form-data; name="a\\"b;c=d"\r\n\r\nzoë\r\n--xxy\r\n--xx\r\nContent-Disposition: form-data; name="ünï"\r\n\r\n1\r\n--xx--`;
    expect(parse(body, 'multipart/form-data; boundary=xx')).toEqual([
      { name: 'a"b;c=d', value: 'zoë\r\n--xxy' },
      { name: 'ünï', value: '1' },
    ]);
  });

  it('a part naming another charset is decoded in it', () => {
    const body = Buffer.concat([
      Buffer.from('--q\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Disposition: form-data; name="n"\r\n\r\n'),
      Buffer.from([0x7a, 0xe9]),
      Buffer.from('\r\n--q--'),
    ]);
    expect(parseMultipartFields(body, 'multipart/form-data; boundary=q')).toEqual([{ name: 'n', value: 'zé' }]);
  });

  it('what undici reads, this reads the same (any field names and values)', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 20 }).filter((s) => !/[\r\n"\\]/.test(s));
    fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(text.filter((s) => s.length > 0), fc.string({ unit: 'grapheme', maxLength: 40 })), { maxLength: 5 }), async (pairs) => {
        const form = new FormData();
        for (const [name, value] of pairs) form.append(name, value);
        const request = new Request('http://x/', { method: 'POST', body: form });
        const body = Buffer.from(await request.arrayBuffer());
        const fields = parseMultipartFields(body, request.headers.get('content-type')!);
        const expected = [...(await new Response(body, { headers: { 'content-type': request.headers.get('content-type')! } }).formData()).entries()];
        expect(fields.map((f) => [f.name, f.value])).toEqual(expected);
      }),
      { numRuns: 100 },
    );
  });
});

describe('parseMultipartFields refuses garbage', () => {
  it.each([
    ['no boundary', 'x', 'multipart/form-data'],
    ['an empty boundary', '--\r\n', 'multipart/form-data; boundary=""'],
    ['a boundary over 70 characters', 'x', `multipart/form-data; boundary=${'b'.repeat(71)}`],
    ['no delimiter', 'List-Unsubscribe=One-Click', 'multipart/form-data; boundary=x'],
    ['cut short (no close delimiter)', '--x\r\nbroken', 'multipart/form-data; boundary=x'],
    ['a part whose headers never end', '--x\r\nContent-Disposition: form-data; name="a"\r\n--x--', 'multipart/form-data; boundary=x'],
    ['text after the padding of a delimiter', '--x junk\r\n--x--', 'multipart/form-data; boundary=x'],
  ])('%s → 400', (_what, body, contentType) => {
    expect(statusOf(body, contentType)).toBe(400);
  });

  it(`more than ${MAX_MULTIPART_PARTS} parts → 413`, () => {
    const part = '--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n';
    expect(statusOf(`${part.repeat(MAX_MULTIPART_PARTS)}--x--`, 'multipart/form-data; boundary=x')).toBe(200);
    expect(statusOf(`${part.repeat(MAX_MULTIPART_PARTS + 1)}--x--`, 'multipart/form-data; boundary=x')).toBe(413);
  });

  it('never throws anything but a 4xx, and stays fast on the largest body (64 KB of delimiters)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.constantFrom('x', '"x"', 'x; charset=utf-8', ''), (body, boundary) => {
        const status = statusOf(body, `multipart/form-data; boundary=${boundary}`);
        expect([200, 400, 413]).toContain(status);
      }),
      { numRuns: 500 },
    );
    const started = performance.now();
    statusOf('\n--x'.repeat(16_000), 'multipart/form-data; boundary=x');
    statusOf(`--x\r\n${'Content-Disposition: form-data; name=a\r\n'.repeat(1600)}`, 'multipart/form-data; boundary=x');
    expect(performance.now() - started).toBeLessThan(500);
  });
});

describe('paramOf', () => {
  it('reads tokens and quoted strings, in any case, and nothing from the type itself', () => {
    expect(paramOf('multipart/form-data; boundary="a b"; charset=x', 'boundary')).toBe('a b');
    expect(paramOf('form-data;NAME=List-Unsubscribe', 'name')).toBe('List-Unsubscribe');
    expect(paramOf('form-data; filename="x"; name="y"', 'name')).toBe('y');
    expect(paramOf('form-data; name="unterminated', 'name')).toBe('unterminated');
    expect(paramOf('name=x', 'name')).toBeUndefined();
    expect(paramOf('form-data; flag; name=y', 'name')).toBe('y');
  });
});
