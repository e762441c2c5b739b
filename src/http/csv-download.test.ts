import { describe, expect, it } from 'vitest';
import { csvCell, csvLine } from './csv-download.js';

/* The one CSV cell rule (results CSV, compliance report): OWASP "CSV Injection". */
describe('csvCell', () => {
  it('prefixes text a spreadsheet would run as a formula: = + - @, or a tab or carriage return first', () => {
    for (const formula of ['=HYPERLINK("http://x")', '+1+2', '-2+3', '@SUM(A1)', '\t=1', '\r=1', '-5']) {
      expect(csvCell(formula).replace(/^"/, '').startsWith("'"), formula).toBe(true);
    }
    expect(csvCell('=1+1')).toBe("'=1+1");
    expect(csvCell('=cmd|"/c calc"')).toBe(`"'=cmd|""/c calc"""`);
  });

  it('writes numbers, booleans and dates as themselves: a negative number stays a number', () => {
    expect(csvCell(-5)).toBe('-5');
    expect(csvCell(-3.25)).toBe('-3.25');
    expect(csvCell(0)).toBe('0');
    expect(csvCell(12n)).toBe('12');
    expect(csvCell(false)).toBe('false');
    expect(csvCell(new Date('2030-01-01T10:00:00Z'))).toBe('2030-01-01T10:00:00.000Z');
    // Not a finite number: written as text, and guarded as text.
    expect(csvCell(-Infinity)).toBe("'-Infinity");
  });

  it('writes objects as JSON, quoted as RFC 4180 says; null and undefined as empty cells', () => {
    expect(csvCell({ status: 'opted_in', n: -1 })).toBe('"{""status"":""opted_in"",""n"":-1}"');
    expect(csvCell(['=1'])).toBe('"[""=1""]"');
    expect(csvCell('Ann')).toBe('Ann');
    expect(csvCell('a, "b"')).toBe('"a, ""b"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
    expect(csvCell(null)).toBe('');
    expect(csvCell(undefined)).toBe('');
  });

  it('csvLine joins cells and ends the line with CRLF', () => {
    expect(csvLine(['a', -5, '-5', null, { x: 1 }])).toBe(`a,-5,'-5,,"{""x"":1}"\r\n`);
  });
});
