import { describe, expect, it } from 'vitest';
import { checkTemplate, htmlToText, mergeFieldsOf, renderTemplate } from './templates.js';

const ada = { email: 'ada@example.com', firstName: 'Ada', lastName: null, attributes: { companyName: 'Engines & <Co>', seats: 3 } };
const nobody = { email: 'x@example.com', firstName: null, lastName: null, attributes: {} };

describe('merge-field templates', () => {
  it('fills built-in fields, attributes and defaults', () => {
    expect(renderTemplate('Hi {{firstName}} of {{ companyName }} ({{seats}})', ada, 'text')).toBe('Hi Ada of Engines & <Co> (3)');
    expect(renderTemplate('Hi {{firstName | "there"}}, {{lastName|"friend"}}', nobody, 'text')).toBe('Hi there, friend');
    expect(renderTemplate('Hi {{firstName | "there"}}', ada, 'text')).toBe('Hi Ada');
    expect(renderTemplate('{{x | "say \\"hi\\""}}', nobody, 'text')).toBe('say "hi"');
  });

  it("an attribute named like an object's own machinery is only the contact's: never inherited code text", () => {
    const withOne = { ...nobody, attributes: { constructor: 'Acme' } };
    expect(renderTemplate('from {{constructor}}', withOne, 'text')).toBe('from Acme');
    expect(renderTemplate('from {{constructor | "none"}} {{toString}}{{hasOwnProperty}}{{__proto__ | "-"}}', nobody, 'text')).toBe('from none -');
  });

  it('escapes values in HTML so contact data never becomes markup', () => {
    expect(renderTemplate('<p>{{companyName}}</p>', ada, 'html')).toBe('<p>Engines &amp; &lt;Co&gt;</p>');
  });

  it('lists the fields used, and names unknown or malformed ones', () => {
    expect(mergeFieldsOf('{{a}} {{b | "x"}} {{a}}')).toEqual(['a', 'b']);
    const known = new Set(['companyName']);
    expect(checkTemplate('Hi {{firstName}} at {{companyName}}', known)).toEqual([]);
    expect(checkTemplate('Hi {{frstName}}', known)).toEqual([{ field: 'frstName', message: 'is not a contact field or an attribute any contact has' }]);
    expect(checkTemplate('Hi {{first Name}}', known)).toHaveLength(1);
    expect(checkTemplate('Hi {{firstName', known)).toHaveLength(1);
    expect(checkTemplate('Hi {{firstName | there}}', known)).toHaveLength(1);
  });

  it('derives a readable text alternative from HTML', () => {
    const text = htmlToText('<h1>News</h1><p>Read <a href="https://example.com/a">the post</a>.</p><img src="x.gif">');
    expect(text).toContain('NEWS');
    expect(text).toContain('the post [https://example.com/a]');
    expect(text).not.toContain('x.gif');
  });
});
