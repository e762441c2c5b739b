import { composeMime } from '../gmail/compose-mime.js';
import type { MailboxRow } from '../gmail/mailboxes.repo.js';
import type { TrackingUrls } from '../tracking/urls.js';
import { buildCampaignMail } from './campaign-mail.js';
import type { CampaignRow, CampaignsRepo, EarlierSend } from './campaigns.repo.js';
import type { SendCandidate } from './send-ledger.repo.js';
import type { MergeContact } from './templates.js';

/** What every send of one batch shares: loaded once per batch, not once per message. */
export interface BatchContext {
  campaign: CampaignRow;
  mailbox: MailboxRow;
  postalAddress: string | null;
  links: Awaited<ReturnType<CampaignsRepo['linksOf']>>;
  contacts: Map<string, MergeContact & { trackingRefusedAt: Date | null }>;
  /** The follow-ups' earlier sends, by `followUpKey` of the follow-up: read in one statement for the batch. */
  earlierSends: Map<string, EarlierSend>;
}

/** A follow-up's place in `BatchContext.earlierSends`: its recipient and its own step. */
const followUpKey = (send: { recipientId: string; step: number }) => `${send.recipientId}:${send.step}`;

/** A send rendered and composed, ready for its turn at the pacer. */
export interface Prepared {
  candidate: SendCandidate;
  mail: ReturnType<typeof buildCampaignMail>;
  raw: Buffer;
  /** The earlier step's send this follow-up answers: its Message-ID (In-Reply-To, References) and Gmail thread. */
  previous: EarlierSend | undefined;
}

/**
 * Rendering of a reserved batch (send-worker.ts): the batch's shared context — with the
 * follow-ups' earlier sends, read together (before, one query per follow-up) —, then each send's
 * message (merge fields, tracking, the earlier step's thread), composed as MIME. No side effect:
 * a send rendered and never started costs only the work.
 */
export function createSendPreparation(repo: CampaignsRepo, urls: TrackingUrls) {
  return {
    async batchContext(campaign: CampaignRow, mailbox: MailboxRow, candidates: SendCandidate[]): Promise<BatchContext> {
      const contactIds = candidates.map((c) => c.contactId).filter((id): id is string => id !== null);
      const followUps = candidates.filter((c) => c.step > 0);
      return {
        campaign,
        mailbox,
        postalAddress: await repo.postalAddressOf(campaign.workspaceId),
        links: await repo.linksOf(campaign.id),
        contacts: new Map((await repo.contactsForMerge(contactIds)).map((c) => [c.id, c])),
        earlierSends: new Map((await repo.earlierSends(campaign.id, followUps)).map((e) => [followUpKey(e), e])),
      };
    },

    async prepare(batch: BatchContext, candidate: SendCandidate): Promise<Prepared> {
      const { campaign, mailbox } = batch;
      const previous = candidate.step > 0 ? batch.earlierSends.get(followUpKey(candidate)) : undefined;
      const contact = candidate.contactId ? batch.contacts.get(candidate.contactId) : undefined;
      const mail = buildCampaignMail({
        campaign,
        send: candidate,
        contact: contact ?? { email: candidate.email, firstName: null, lastName: null, attributes: {} },
        tracked: !contact?.trackingRefusedAt,
        from: mailbox.email,
        links: batch.links,
        urls,
        postalAddress: batch.postalAddress,
        previous: previous ? { rfc822MessageId: previous.rfc822MessageId } : undefined,
      });
      return { candidate, mail, raw: await composeMime(mail), previous };
    },
  };
}
