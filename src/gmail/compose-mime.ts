import { randomUUID } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer';

export interface OutgoingMail {
  from: string;
  to: string[];
  cc?: string[];
  bcc?: string[];
  subject: string;
  text?: string;
  html?: string;
  /** Without angle brackets. */
  messageId: string;
  inReplyTo?: string;
  references?: string[];
  headers?: Record<string, string>;
}

/** Our own Message-ID: it is how a send is found in the mailbox after a crash (invariant 3). */
export function newMessageId(senderAddress: string): string {
  const domain = senderAddress.split('@')[1] ?? 'inboxtrail.invalid';
  return `${randomUUID()}@${domain}`;
}

/**
 * RFC 5322 bytes for `users.messages.send`. Bcc stays in the headers on purpose: Gmail
 * reads it to deliver the blind copies and strips it from what recipients get.
 */
export async function composeMime(mail: OutgoingMail): Promise<Buffer> {
  const node = new MailComposer({
    from: mail.from,
    to: mail.to,
    cc: mail.cc,
    bcc: mail.bcc,
    subject: mail.subject,
    text: mail.text,
    html: mail.html,
    messageId: `<${mail.messageId}>`,
    inReplyTo: mail.inReplyTo ? `<${mail.inReplyTo}>` : undefined,
    references: mail.references?.map((id) => `<${id}>`),
    headers: mail.headers,
  }).compile();
  node.keepBcc = true;
  return node.build();
}
