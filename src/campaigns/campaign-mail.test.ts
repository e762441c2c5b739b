import { describe, expect, it } from 'vitest';
import { withFooter } from './campaign-mail.js';

describe('withFooter', () => {
  const footer = '<p>Unsubscribe</p>';

  it('puts the footer inside a whole document, before its closing body tag, whatever its case and spacing', () => {
    expect(withFooter('<html><body><p>Hi</p></body></html>', footer)).toBe('<html><body><p>Hi</p><p>Unsubscribe</p></body></html>');
    expect(withFooter('<HTML><BODY>Hi</BODY >\n</HTML>', footer)).toBe('<HTML><BODY>Hi<p>Unsubscribe</p></BODY >\n</HTML>');
  });

  it('uses the last closing body tag, then a closing html tag, else the end', () => {
    expect(withFooter('<body>a</body><body>b</body>', footer)).toBe('<body>a</body><body>b<p>Unsubscribe</p></body>');
    expect(withFooter('<html>Hi</html>', footer)).toBe('<html>Hi<p>Unsubscribe</p></html>');
    expect(withFooter('<html>a</html><html>b</html>', footer)).toBe('<html>a</html><html>b<p>Unsubscribe</p></html>');
    expect(withFooter('<p>Hi</p>', footer)).toBe('<p>Hi</p><p>Unsubscribe</p>');
  });
});
