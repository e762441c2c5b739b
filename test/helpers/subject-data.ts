import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import type { Db } from '../../src/db/connect.js';
import { campaignSends, campaigns, consents, contacts, mailEvents, messages, recipients, suppressions, trackingEvents } from '../../src/db/schema.js';

/**
 * One of every kind of row a workspace can hold about a person, all dated `at`, inserted
 * directly (the export and disclosure tests are about reading them back, not making them):
 * contact (created once), consent, campaign send with an open and a click, a 1:1 message
 * with a reply, a topic suppression.
 */
export async function seedSubjectData(db: Db, input: { workspaceId: string; email: string; at: Date; mailboxId?: string; sentBy?: string }) {
  const { workspaceId, email, at } = input;
  const [existing] = await db
    .select({ id: contacts.id })
    .from(contacts)
    .where(and(eq(contacts.workspaceId, workspaceId), eq(sql`lower(${contacts.email})`, email.toLowerCase())));
  const contactId = existing?.id ?? (await db.insert(contacts).values({ workspaceId, email, firstName: 'Sub', lastName: 'Ject' }).returning({ id: contacts.id }))[0]!.id;
  const [consent] = await db
    .insert(consents)
    .values({ workspaceId, contactId, status: 'opted_in', source: `form-${randomUUID()}`, policyVersion: 'test', actor: 'user:seed', at })
    .returning({ id: consents.id });
  const [campaign] = await db
    .insert(campaigns)
    .values({ workspaceId, name: `Seeded ${randomUUID()}`, kind: 'marketing', subject: 'Hi', html: '<p>x</p>', audience: { contactIds: [] }, status: 'completed', mailboxId: input.mailboxId ?? null })
    .returning({ id: campaigns.id });
  await db.insert(recipients).values({ workspaceId, email }).onConflictDoNothing();
  const [recipient] = await db
    .select({ id: recipients.id })
    .from(recipients)
    .where(and(eq(recipients.workspaceId, workspaceId), eq(sql`lower(${recipients.email})`, email.toLowerCase())));
  const [send] = await db
    .insert(campaignSends)
    .values({ workspaceId, campaignId: campaign!.id, step: 0, contactId, recipientId: recipient!.id, email, status: 'sent', rfc822MessageId: `${randomUUID()}@t`, sentAt: at, createdAt: at })
    .returning({ id: campaignSends.id });
  const eventIds = [randomUUID(), randomUUID()];
  await db.insert(trackingEvents).values(
    (['open', 'click'] as const).map((type, i) => ({
      id: eventIds[i]!,
      workspaceId,
      campaignId: campaign!.id,
      sendId: send!.id,
      type,
      linkIndex: type === 'click' ? 0 : null,
      at: new Date(at.getTime() + 60_000),
      method: 'GET',
      ip: '203.0.113.7',
      userAgent: 'Mozilla/5.0 test',
      classification: 'human' as const,
      reasons: [],
    })),
  );
  const [message] = await db
    .insert(messages)
    .values({ workspaceId, mailboxId: input.mailboxId ?? null, direction: 'outbound', status: 'sent', fromAddress: 'sender@acme.test', toAddresses: [email], subject: `About ${randomUUID()}`, sentBy: input.sentBy ?? null, at })
    .returning({ id: messages.id });
  const [mailEvent] = await db
    .insert(mailEvents)
    .values({ workspaceId, messageId: message!.id, type: 'reply', sourceGmailMessageId: randomUUID(), recipient: email, at: new Date(at.getTime() + 3_600_000) })
    .returning({ id: mailEvents.id });
  const [suppression] = await db
    .insert(suppressions)
    .values({ workspaceId, email, scope: `topic:t-${randomUUID()}`, reason: 'unsubscribe', createdAt: at })
    .returning({ id: suppressions.id });
  return { contactId, consentId: consent!.id, campaignId: campaign!.id, sendId: send!.id, eventIds, messageId: message!.id, mailEventId: mailEvent!.id, suppressionId: suppression!.id };
}

/** Reads a streamed response: how many chunks arrived, and the whole text. */
export async function readChunked(response: Response): Promise<{ chunks: number; text: string }> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let chunks = 0;
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks += 1;
    text += decoder.decode(value, { stream: true });
  }
  return { chunks, text: text + decoder.decode() };
}
