import { ReadChangedBeforeLock } from '../db/pg-errors.js';
import { NotFoundError } from '../errors.js';
import type { TokenCodec } from '../tracking/tokens.js';
import { maskEmailAddress, type RecipientView } from './recipient-view.js';
import type { ReachedContacts } from './suppression-rules.js';
import type { SuppressionListQueries, SuppressionRow } from './suppression.repo.js';

/*
 * Whom a recipient's link speaks for: the recipient row it names (which outlives campaigns and
 * contacts) and the campaign it came with. Shared by the opt-out pages (suppression.service.ts)
 * and the mailed confirmation that undoes an opt-out (resubscribe.service.ts).
 */

export interface TokenTarget {
  recipientId: string;
  workspaceId: string;
  email: string;
  campaignId?: string;
  workspaceName: string;
}

/** Every bad, forged, truncated or orphaned link gets the same answer, which says nothing about why. */
export const linkNotFound = () => new NotFoundError('Link', 'link_not_found');

/**
 * The recipient row decides the workspace; a campaign that still exists must belong to it, a
 * deleted one no longer matters.
 */
export async function resolveRecipient(q: SuppressionListQueries, recipientId: string, campaignId: string | undefined): Promise<TokenTarget> {
  const recipient = await q.findRecipientById(recipientId);
  if (!recipient) throw linkNotFound();
  if (campaignId) {
    const campaignWorkspace = await q.findCampaignWorkspaceId(campaignId);
    if (campaignWorkspace !== undefined && campaignWorkspace !== recipient.workspaceId) throw linkNotFound();
  }
  const workspaceName = await q.findWorkspaceName(recipient.workspaceId);
  if (workspaceName === undefined) throw linkNotFound();
  return { recipientId: recipient.id, workspaceId: recipient.workspaceId, email: recipient.email, campaignId, workspaceName };
}

/** An unsubscribe/preferences token (tracking/tokens.ts, kind `unsubscribe`) → its recipient. */
export async function resolveToken(q: SuppressionListQueries, codec: TokenCodec, token: string): Promise<TokenTarget> {
  const decoded = codec.decode(token, 'unsubscribe');
  if (!decoded || decoded.kind !== 'unsubscribe') throw linkNotFound();
  return resolveRecipient(q, decoded.recipientId, decoded.campaignId);
}

export const viewOf = (target: TokenTarget): RecipientView => ({ workspaceName: target.workspaceName, maskedEmail: maskEmailAddress(target.email) });

/**
 * An opt-out through a recipient's link is also the person's whose campaign mail went to that
 * address: their contact, when its address changed since, is opted out too (marketing to the
 * new address then needs a new opt-in; the suppression entry stays the address's).
 * Everyone it touches is locked at once, in one key order (address-lock.ts): the address, the
 * contacts that moved from it and the contact at it, with their addresses and those of their
 * unsent sends — taken one after another, a claim or a 1:1 send locking two of them the other
 * way round deadlocked with it (a reviewer's finding). Then read again: an address change takes
 * the same locks (lockAddressChange), so once they are held no contact moves; one that moved
 * between the first read and the locks makes the transaction run again (40001: the caller's
 * againAfterConcurrencyFailure). Reading only before the lock, a contact moving in between was
 * in neither lookup and kept its opt-in (an attacker's finding).
 */
export async function movedContacts(q: SuppressionListQueries, target: TokenTarget): Promise<ReachedContacts> {
  const read = async () => {
    const moved = await q.findContactsMovedFromRecipient(target.workspaceId, target.recipientId, target.campaignId);
    const atAddress = await q.findContactIdByEmail(target.workspaceId, target.email);
    return { moved, atAddress, touched: atAddress ? [...moved, atAddress] : moved };
  };
  const before = await read();
  await q.lockAddressesAndContacts(target.workspaceId, [target.email], before.touched);
  const after = await read();
  if (after.touched.some((id) => !before.touched.includes(id))) throw new ReadChangedBeforeLock('the contacts at or moved from this address');
  return { moved: after.moved, atAddress: after.atAddress };
}

/** The audit row of a recipient's change to an entry, written in the change's transaction. */
export function auditRecipientChange(q: SuppressionListQueries, target: TokenTarget, action: 'suppression.added' | 'suppression.removed', row: SuppressionRow, detail: Record<string, unknown>) {
  return q.insertAudit({ workspaceId: target.workspaceId, actor: `recipient:${target.recipientId}`, action, subjectType: 'suppression', subjectId: row.id, detail });
}
