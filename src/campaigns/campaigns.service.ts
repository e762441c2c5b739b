import type { Readable } from 'node:stream';
import { keysetPage, type PageCursor } from '../http/cursor.js';
import type { AuthContext } from '../auth/auth.service.js';
import type { ContactsService } from '../contacts/contacts.service.js';
import { ConflictError, ForbiddenError, NotFoundError, UnprocessableError } from '../errors.js';
import type { MailboxesRepo } from '../gmail/mailboxes.repo.js';
import type { MailboxService } from '../gmail/mailboxes.service.js';
import type { MailboxPacer } from '../gmail/pacer.js';
import type { Logger } from '../logger.js';
import type { CampaignRow, CampaignsRepo } from './campaigns.repo.js';
import { campaignFields, campaignLinksOf, MAX_TRACKED_LINKS, type CampaignInput, type PreviewContent } from './campaign-input.js';
import { presentCampaign } from './campaign-presenter.js';
import type { CancelledSends } from './cancelled-sends.js';
import { marketingFooter, withFooter, renderContent, stepContent } from './campaign-mail.js';
import { isInsideWindow, nextWindowOpening } from './sending-window.js';
import { mailboxHold, refuseHold } from './mailbox-hold.js';
import { checkTemplate, type MergeContact } from './templates.js';
import { deletionRequested, purgeDate, requesterOf } from '../privacy/deletion.js';

const notEditable = (message = 'Only a draft can be edited') => new ConflictError('campaign_not_editable', message);
/** Why a draft's write changed nothing: deleted meanwhile (gone, 404, as to every other call), else launched (409). */
const lostDraftWrite = async (repo: Pick<CampaignsRepo, 'findById'>, workspaceId: string, id: string, message?: string) =>
  (await repo.findById(workspaceId, id)) ? notEditable(message) : new NotFoundError('Campaign');

/** Whether the caller may send from a mailbox connected by `ownerUserId`: their own, or any as an admin or owner (the service's rule; the web app hides what it refuses). */
export const maySendFrom = (auth: Pick<AuthContext, 'userId' | 'role'>, ownerUserId: string) => ownerUserId === auth.userId || auth.role !== 'member';

export function createCampaignsService(deps: {
  repo: CampaignsRepo;
  contacts: ContactsService;
  mailboxRepo: MailboxesRepo;
  mailboxes: MailboxService;
  pacer: MailboxPacer;
  /** Skips a cancelled campaign's queued sends after the cancel committed. */
  cancelledSends: CancelledSends;
  publicBaseUrl: string;
  logger: Logger;
  /** P-13: days between a deletion and its purge. */
  purgeAfterDays: number;
  now?: () => Date;
}) {
  const { repo } = deps;
  const now = deps.now ?? (() => new Date());

  async function requireCampaign(auth: AuthContext, id: string): Promise<CampaignRow> {
    const campaign = await repo.findById(auth.workspaceId, id);
    if (!campaign) throw new NotFoundError('Campaign');
    return campaign;
  }

  /**
   * Campaigns send from the caller's own mailbox; an admin or owner may use any of the
   * workspace's. Checked on every act of a member that makes mail go out from a mailbox or
   * changes who gets it or what is kept of it: saving a draft, its recipients, launching,
   * resuming, deleting, and cancelling a draft (which ends it unsent). Pausing and cancelling a
   * campaign under way stay open to every member: stopping mail is always safe.
   */
  function assertMaySendFrom(auth: AuthContext, mailbox: { userId: string }) {
    if (!maySendFrom(auth, mailbox.userId)) {
      throw new ForbiddenError('Campaigns send from your own mailbox; an admin may use any of the workspace');
    }
  }

  /** A saved campaign that the caller may act on as its sender (assertMaySendFrom). One whose mailbox is gone protects nobody's: launching it fails on its own. */
  async function requireSendableCampaign(auth: AuthContext, id: string): Promise<CampaignRow> {
    const campaign = await requireCampaign(auth, id);
    await assertSenderOf(auth, campaign);
    return campaign;
  }

  async function assertSenderOf(auth: AuthContext, campaign: CampaignRow): Promise<void> {
    if (auth.role !== 'member' || !campaign.mailboxId) return;
    const mailbox = await deps.mailboxRepo.findById(auth.workspaceId, campaign.mailboxId);
    if (mailbox) assertMaySendFrom(auth, mailbox);
  }

  /** Everything a saved campaign must satisfy; each problem is named in one 422. */
  async function validate(auth: AuthContext, input: CampaignInput) {
    const mailbox = await deps.mailboxRepo.findById(auth.workspaceId, input.mailboxId);
    if (!mailbox) throw new NotFoundError('Mailbox');
    assertMaySendFrom(auth, mailbox);
    if ('contactIds' in input.audience) {
      const unique = [...new Set(input.audience.contactIds)];
      if ((await repo.countContacts(auth.workspaceId, unique)) !== unique.length) {
        throw new UnprocessableError('unknown_contacts', 'Some contact ids do not name contacts of this workspace');
      }
    }
    const known = await repo.knownAttributes(auth.workspaceId);
    const templates: [string, string | undefined][] = [
      ['subject', input.subject],
      ['html', input.html],
      ['text', input.text],
      ...input.steps.flatMap((step, i): [string, string | undefined][] => [
        [`steps.${i}.subject`, step.subject],
        [`steps.${i}.html`, step.html],
        [`steps.${i}.text`, step.text],
      ]),
    ];
    const problems = templates.flatMap(([where, template]) => (template ? checkTemplate(template, known).map((p) => ({ where, ...p })) : []));
    // Every distinct link is a row of campaign_links, written in one statement: past ~13,000 it
    // went over PostgreSQL's 65,535 parameters (a 500). No real mail needs a thousand.
    const linkCount = campaignLinksOf(input, deps.publicBaseUrl).length - 1;
    if (linkCount > MAX_TRACKED_LINKS) {
      throw new UnprocessableError('too_many_links', `A campaign may hold at most ${MAX_TRACKED_LINKS} distinct links across its steps; it holds ${linkCount}`);
    }
    if (problems.length > 0) {
      throw new UnprocessableError('unknown_merge_field', `Unknown merge field: ${problems.map((p) => `${p.field} in ${p.where}`).join(', ')}`, problems);
    }
  }

  /** Why a sending campaign is not sending right now, in words a sender understands. */
  async function waitingFor(campaign: CampaignRow, nextDueAt: Date | null): Promise<string | null> {
    if (campaign.status === 'paused') return campaign.statusReason ?? 'paused';
    if (campaign.status === 'scheduled') return 'start_time';
    if (campaign.status !== 'sending') return null;
    const mailbox = campaign.mailboxId ? await deps.mailboxRepo.findByIdUnscoped(campaign.mailboxId) : undefined;
    if (!mailbox) return 'mailbox_disconnected';
    const hold = mailboxHold(campaign, mailbox);
    if (hold) return hold;
    if (!isInsideWindow(campaign.sendingWindow, now())) return 'sending_window';
    if ((await deps.mailboxes.remainingBudget(mailbox)) <= 0) return 'daily_budget';
    if (await deps.pacer.pauseEndsAt(mailbox.id)) return 'gmail_rate_limit';
    if (nextDueAt && nextDueAt > now()) return 'next_step_schedule';
    return null;
  }

  /**
   * Merge fields filled, and for marketing the footer with the workspace's postal address.
   * Links stay as written (a preview records no click) and the footer's links point nowhere.
   */
  async function renderPreview(auth: AuthContext, content: PreviewContent, contact: MergeContact & { id: string; email: string }) {
    const known = await repo.knownAttributes(auth.workspaceId);
    const problems = [content.subject, content.html, content.text].flatMap((template) => (template ? checkTemplate(template, known) : []));
    const rendered = renderContent(content, contact);
    const preview = { contactId: contact.id, to: contact.email, subject: rendered.subject, html: rendered.html, text: rendered.text, problems };
    if (content.kind !== 'marketing') return preview;
    const footer = marketingFooter({ unsubscribe: '#unsubscribe', preferences: '#preferences' }, (await repo.postalAddressOf(auth.workspaceId)) ?? '');
    return { ...preview, html: preview.html === undefined ? undefined : withFooter(preview.html, footer.html), text: `${preview.text}${footer.text}` };
  }

  const service = {
    async create(auth: AuthContext, input: CampaignInput) {
      await validate(auth, input);
      const campaign = await repo.transaction(async (tx) => {
        const row = await tx.insert({ workspaceId: auth.workspaceId, createdBy: auth.userId, ...campaignFields(input) });
        await tx.replaceLinks(row, campaignLinksOf(input, deps.publicBaseUrl));
        return row;
      });
      return presentCampaign(campaign);
    },

    /** A page of campaigns, newest first; `nextCursor` names the next one (null: the last). */
    async list(auth: AuthContext, query: { limit: number; cursor?: PageCursor }) {
      const { page, nextCursor } = keysetPage(await repo.list(auth.workspaceId, { limit: query.limit + 1, before: query.cursor }), query.limit);
      return { campaigns: page.map(presentCampaign), nextCursor };
    },

    /** The campaign with its progress: counts by state, the next send time, and why it waits. */
    async get(auth: AuthContext, id: string) {
      const campaign = await requireCampaign(auth, id);
      const { counts, nextDueAt } = await repo.progress(campaign.id);
      const waiting = await waitingFor(campaign, nextDueAt);
      // Nothing queued, no next send (a scheduled campaign's is its start time).
      const nextSendAt =
        (campaign.status === 'sending' && nextDueAt) || campaign.status === 'scheduled'
          ? nextWindowOpening(campaign.sendingWindow, new Date(Math.max(now().getTime(), (nextDueAt ?? campaign.startAt ?? now()).getTime())))
          : null;
      return {
        ...presentCampaign(campaign),
        progress: { ...counts, skippedBecause: await repo.skipReasons(campaign.id), nextSendAt, waitingFor: waiting },
      };
    },

    /**
     * A draft the caller may change, for an editor to show: refused as `update` would refuse its
     * save (403 `forbidden` for a member on a teammate's mailbox's campaign, 409 past the draft),
     * so no page offers an editor whose save is then refused.
     */
    async getEditable(auth: AuthContext, id: string) {
      const campaign = await requireSendableCampaign(auth, id);
      if (campaign.status !== 'draft') throw notEditable();
      return presentCampaign(campaign);
    },

    async update(auth: AuthContext, id: string, input: CampaignInput) {
      const campaign = await requireSendableCampaign(auth, id);
      if (campaign.status !== 'draft') throw notEditable();
      await validate(auth, input);
      const updated = await repo.transaction(async (tx) => {
        const row = await tx.updateDraft(campaign.id, campaignFields(input));
        if (!row) throw await lostDraftWrite(tx, auth.workspaceId, campaign.id);
        await tx.replaceLinks(campaign, campaignLinksOf(input, deps.publicBaseUrl));
        return row;
      });
      return presentCampaign(updated);
    },

    /**
     * A draft's recipients from a CSV file: the rows are imported as contacts (idempotent on
     * the address, as any import) and the draft's audience becomes exactly those contacts.
     */
    async importRecipients(auth: AuthContext, id: string, csv: Readable) {
      const campaign = await requireSendableCampaign(auth, id);
      if (campaign.status !== 'draft') throw notEditable('Only a draft can take recipients');
      const addresses = new Set<string>();
      const report = await deps.contacts.importCsv(auth, csv, { onAddress: (email) => addresses.add(email.toLowerCase()) });
      const contactIds = await repo.contactIdsByEmails(auth.workspaceId, [...addresses]);
      // A file none of whose rows names a contact (every row refused) leaves the draft as it was:
      // an empty audience is one the API itself refuses.
      if (contactIds.length === 0) throw new UnprocessableError('no_recipients', 'No row of the file names a contact to send to; the draft keeps its audience', { import: report });
      if (!(await repo.updateDraft(campaign.id, { audience: { contactIds } }))) throw await lostDraftWrite(repo, auth.workspaceId, campaign.id, 'Only a draft can take recipients');
      return { import: report, recipients: contactIds.length };
    },

    /** P-10: who would get it, who is suppressed, who lacks opt-in, whose address is bad, whether the postal address is missing — and one rendered sample. */
    async preflight(auth: AuthContext, id: string) {
      const campaign = await requireCampaign(auth, id);
      const counts = await repo.preflightCounts(campaign);
      const contact = await repo.sampleContact(campaign);
      const rendered = contact ? renderContent(stepContent(campaign, 0), contact) : undefined;
      const sample = contact && rendered ? { contactId: contact.id, subject: rendered.subject, html: rendered.html ?? null, text: rendered.text } : null;
      const postalAddressMissing = campaign.kind === 'marketing' && !(await repo.postalAddressOf(auth.workspaceId));
      return { ...counts, postalAddressMissing, sample };
    },

    /**
     * A message as one chosen contact would get it, from content not saved yet (the editor's
     * live preview). Unknown merge fields are listed, not thrown: a preview shows them.
     */
    async preview(auth: AuthContext, content: PreviewContent, contactId: string) {
      const contact = await repo.contactInWorkspace(auth.workspaceId, contactId);
      if (!contact) throw new NotFoundError('Contact');
      return renderPreview(auth, content, contact);
    },

    /** A saved campaign's first message, for a chosen contact or else the first of its audience (null: nobody to show it for). */
    async previewSaved(auth: AuthContext, id: string, contactId?: string) {
      const campaign = await requireCampaign(auth, id);
      const contact = contactId ? await repo.contactInWorkspace(auth.workspaceId, contactId) : await repo.sampleContact(campaign);
      if (!contact) {
        if (contactId) throw new NotFoundError('Contact');
        return null;
      }
      return renderPreview(auth, { kind: campaign.kind, ...stepContent(campaign, 0) }, contact);
    },

    async launch(auth: AuthContext, id: string, options: { startAt?: Date }) {
      const campaign = await requireSendableCampaign(auth, id);
      if (campaign.status !== 'draft') throw new ConflictError('campaign_not_draft', `A ${campaign.status} campaign cannot be launched`);
      const mailbox = campaign.mailboxId ? await deps.mailboxRepo.findById(auth.workspaceId, campaign.mailboxId) : undefined;
      if (!mailbox) throw new UnprocessableError('mailbox_missing', 'The campaign has no connected mailbox');
      refuseHold(mailboxHold(campaign, mailbox), 'launching');
      if (campaign.kind === 'marketing' && !(await repo.postalAddressOf(auth.workspaceId))) {
        throw new UnprocessableError('postal_address_required', 'Marketing mail carries the sender’s postal address: set it with PATCH /api/workspace');
      }
      const startAt = options.startAt ?? campaign.startAt ?? now();
      const launched = await repo.transaction(async (tx) => {
        // Launched from what was checked above: an edit of its kind or mailbox since then (the
        // postal-address rule, the mailbox's state and domain) makes this a 409, not a launch.
        const row = await tx.transition(
          campaign.id,
          ['draft'],
          { status: startAt > now() ? 'scheduled' : 'sending', startAt, launchedAt: now(), statusReason: null },
          { kind: campaign.kind, mailboxId: campaign.mailboxId },
        );
        if (!row) {
          const current = await tx.findById(auth.workspaceId, campaign.id);
          // Deleted while it was being launched (the deletion committed first): gone, as to every other call.
          if (!current) throw new NotFoundError('Campaign');
          if (current.status === 'draft') {
            throw new ConflictError('campaign_changed', 'The draft was edited while it was being launched; check it and launch again');
          }
          throw new ConflictError('campaign_not_draft', 'The campaign was launched already');
        }
        const written = await tx.materializeFirstStep(row, mailbox.email.split('@')[1]!, startAt);
        return { row, written };
      });
      // After the commit (the rows counted): a failure costs slower first batches, not the launch.
      await repo.analyzeLedgerAfterLaunch(launched.written).catch((error: unknown) => {
        deps.logger.warn({ campaignId: id, err: error }, 'analysing the send ledger after a launch failed');
      });
      return service.get(auth, launched.row.id);
    },

    /** Pause and resume only move the campaign's state; the ledger keeps every row as it is, so nothing is sent twice. */
    async pause(auth: AuthContext, id: string) {
      const campaign = await requireCampaign(auth, id);
      if (!(await repo.transition(campaign.id, ['scheduled', 'sending'], { status: 'paused', statusReason: 'paused_by_user' }))) {
        throw new ConflictError('campaign_not_running', `A ${campaign.status} campaign cannot be paused`);
      }
      return service.get(auth, id);
    },

    /**
     * A campaign whose mailbox was disconnected continues from the address's mailbox connected
     * again (a new record: before, nothing could lift that pause, and the campaign's queued sends
     * could only be cancelled); without one, 409 `mailbox_disconnected`.
     */
    async resume(auth: AuthContext, id: string) {
      const campaign = await requireSendableCampaign(auth, id);
      const mailbox = campaign.mailboxId
        ? ((await deps.mailboxRepo.findById(auth.workspaceId, campaign.mailboxId)) ?? (await deps.mailboxRepo.findLiveSameAddress(auth.workspaceId, campaign.mailboxId)))
        : undefined;
      if (!mailbox) throw new ConflictError('mailbox_disconnected', "The campaign's mailbox was disconnected: connect the same Gmail address again, then resume");
      assertMaySendFrom(auth, mailbox);
      // Whatever paused it: a mailbox that cannot serve it now would only pause it again.
      refuseHold(mailboxHold(campaign, mailbox), 'resuming');
      // From the mailbox it read: an edit committed in between changes nothing here.
      if (!(await repo.transition(campaign.id, ['paused'], { status: 'sending', statusReason: null, mailboxId: mailbox.id }, { mailboxId: campaign.mailboxId }))) {
        throw new ConflictError('campaign_not_paused', `A ${campaign.status} campaign cannot be resumed`);
      }
      // What replies skipped while it was paused may have been all it had left: completed now, not at a tick.
      await repo.completeIfDone(campaign.id, now());
      return service.get(auth, id);
    },

    /**
     * P-13: a campaign still running is cancelled first (nothing more goes out), in the same
     * transaction that marks it deleted; it disappears from every API at once and is purged
     * after `purgeAfterDays`. Its queued sends are skipped after that, as for a cancel.
     */
    async remove(auth: AuthContext, id: string) {
      const campaign = await requireSendableCampaign(auth, id);
      const at = now();
      const purgeAfter = purgeDate(at, deps.purgeAfterDays);
      const stopped = await repo.transaction(async (tx) => {
        // The row first: a launch racing this deletion either committed (cancelled below) or now fails.
        if (!(await tx.lockForDeletion(auth.workspaceId, campaign.id))) throw new NotFoundError('Campaign');
        const row = await tx.transition(campaign.id, ['scheduled', 'sending', 'paused'], { status: 'cancelled', statusReason: 'deleted', skippingQueuedSince: at });
        if (!(await tx.markDeleted(auth.workspaceId, campaign.id, at, purgeAfter))) throw new NotFoundError('Campaign');
        await tx.audit(deletionRequested(requesterOf(auth), 'campaign', campaign.id, purgeAfter));
        return row;
      });
      if (stopped) await deps.cancelledSends.afterCancel(campaign.id);
      return { purgeAfter };
    },

    /**
     * The cancel commits the state alone (a few rows, at any size): from then on the gate claims
     * none of its sends. Its queued sends are then skipped in short batches — for up to a second
     * before the answer, which covers a campaign of ~26,000 (measured); a larger one still shows
     * sends `queued` for a few seconds while the worker's sweep finishes them (cancelled-sends.ts).
     * One statement over all of them took seconds, and at 400,000 met the statement timeout.
     */
    async cancel(auth: AuthContext, id: string) {
      const campaign = await requireCampaign(auth, id);
      // A draft sends nothing yet: cancelling it only ends its sender's unsent work.
      if (campaign.status === 'draft') await assertSenderOf(auth, campaign);
      const cancelled = await repo.transition(campaign.id, ['draft', 'scheduled', 'sending', 'paused'], {
        status: 'cancelled',
        statusReason: 'cancelled_by_user',
        skippingQueuedSince: now(),
      });
      if (!cancelled) throw new ConflictError('campaign_finished', `A ${campaign.status} campaign cannot be cancelled`);
      await deps.cancelledSends.afterCancel(campaign.id);
      return service.get(auth, id);
    },
  };
  return service;
}

export type CampaignsService = ReturnType<typeof createCampaignsService>;
