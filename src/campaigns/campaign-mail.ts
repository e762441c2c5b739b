import type { CampaignStep } from '../db/schema.js';
import type { OutgoingMail } from '../gmail/compose-mime.js';
import { renderTrackedHtml } from '../tracking/rewrite.js';
import type { TrackingUrls } from '../tracking/urls.js';
import { escapeHtml } from '../web/html.js';
import type { CampaignRow } from './campaigns.repo.js';
import type { SendCandidate } from './send-ledger.repo.js';
import { htmlToText, renderTemplate, type MergeContact } from './templates.js';

export interface CampaignLink {
  linkIndex: number;
  url: string;
  honeypot: boolean;
}

/** What step `n` says: step 0 is the campaign itself, later steps are follow-ups in its thread. */
export function stepContent(campaign: CampaignRow, step: number): { subject: string; html?: string; text?: string } {
  if (step === 0) return { subject: campaign.subject, html: campaign.html ?? undefined, text: campaign.text ?? undefined };
  const followUp: CampaignStep = campaign.steps[step - 1]!;
  // A follow-up without its own subject stays visibly in the same conversation.
  const subject = followUp.subject ?? (/^re:/i.test(campaign.subject) ? campaign.subject : `Re: ${campaign.subject}`);
  return { subject, html: followUp.html, text: followUp.text };
}

/** Merge fields filled for one contact: the subject on one line, HTML values escaped, a text part always. */
export function renderContent(content: { subject: string; html?: string; text?: string }, contact: MergeContact) {
  const subject = renderTemplate(content.subject, contact, 'text').replace(/[\r\n]+/g, ' ');
  const html = content.html === undefined ? undefined : renderTemplate(content.html, contact, 'html');
  const text = content.text === undefined ? (html === undefined ? '' : htmlToText(html)) : renderTemplate(content.text, contact, 'text');
  return { subject, html, text };
}

/** What every marketing mail ends with: why they get it, unsubscribe, preferences, the sender's postal address. */
export function marketingFooter(links: { unsubscribe: string; preferences: string }, postalAddress: string) {
  return {
    html: `<hr><p style="font-size:12px;color:#666">You receive this because you agreed to hear from us. <a href="${escapeHtml(links.unsubscribe)}">Unsubscribe</a> · <a href="${escapeHtml(links.preferences)}">Choose what you receive</a><br>${escapeHtml(postalAddress)}</p>`,
    text: `\n\n--\nUnsubscribe: ${links.unsubscribe}\nChoose what you receive: ${links.preferences}\n${postalAddress}\n`,
  };
}

/**
 * A mail body with the footer inside its document: before the last `</body>` (or `</html>`)
 * when the template is a whole document — after it, some clients drop or misplace what follows
 * — else at the end.
 */
export function withFooter(html: string, footerHtml: string): string {
  const closing = /<\/(body|html)\s*>/gi;
  let lastBody = -1;
  let lastHtml = -1;
  for (let match = closing.exec(html); match; match = closing.exec(html)) {
    if (match[1]!.toLowerCase() === 'body') lastBody = match.index;
    else lastHtml = match.index;
  }
  const at = lastBody >= 0 ? lastBody : lastHtml;
  return at < 0 ? `${html}${footerHtml}` : `${html.slice(0, at)}${footerHtml}${html.slice(at)}`;
}

/**
 * One recipient's message: merge fields filled, and for marketing mail the tracking
 * rewrite (unless the recipient refused tracking), a visible unsubscribe link, the preference center, the postal address, and
 * RFC 8058 one-click headers. Transactional mail carries none of those.
 */
export function buildCampaignMail(input: {
  campaign: CampaignRow;
  send: SendCandidate;
  contact: MergeContact;
  from: string;
  links: CampaignLink[];
  urls: TrackingUrls;
  /** False for a recipient who refused tracking: no pixel, no rewritten links (the opt-out links stay). */
  tracked: boolean;
  postalAddress: string | null;
  previous?: { rfc822MessageId: string };
}): OutgoingMail {
  const { campaign, send, contact, urls } = input;
  const rendered = renderContent(stepContent(campaign, send.step), contact);
  const subject = rendered.subject;
  let { html, text } = rendered;
  const headers: Record<string, string> = {};

  if (campaign.kind === 'marketing') {
    const unsubscribe = urls.unsubscribe(send.recipientId, campaign.id);
    const preferences = urls.preferences(send.recipientId, campaign.id);
    const footer = marketingFooter({ unsubscribe, preferences }, input.postalAddress ?? '');
    if (html !== undefined) {
      const linkIndexByUrl = new Map(input.links.filter((l) => !l.honeypot).map((l) => [l.url, l.linkIndex]));
      const honeypotIndex = input.links.find((l) => l.honeypot)?.linkIndex;
      const withItsFooter = withFooter(html, footer.html);
      html = input.tracked ? renderTrackedHtml(withItsFooter, { sendId: send.id, linkIndexByUrl, honeypotIndex, urls }) : withItsFooter;
    }
    text = `${text}${footer.text}`;
    headers['List-Unsubscribe'] = `<${unsubscribe}>`;
    headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
  }

  return {
    from: input.from,
    to: [send.email],
    subject,
    html,
    text,
    messageId: send.rfc822MessageId,
    inReplyTo: input.previous?.rfc822MessageId,
    references: input.previous ? [input.previous.rfc822MessageId] : undefined,
    headers,
  };
}
