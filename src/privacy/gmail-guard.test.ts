import { describe, expect, it } from 'vitest';
import type { AuthContext } from '../auth/auth.service.js';
import { decideContentAccess, type ContentAccess } from './gmail-guard.js';

/* The guard's rules alone (the HTTP behaviour and the audit rows are in test/integration/privacy-guard.test.ts). */

const target = { workspaceId: 'w', mailboxId: 'm', ownerUserId: 'owner', messageId: 'msg', gmailMessageId: 'g' };
const member = (userId: string, role: AuthContext['role'] = 'member'): ContentAccess['reader'] => ({ kind: 'member', auth: { userId, workspaceId: 'w', role } });
const decide = (access: ContentAccess, hasGrant = false) => decideContentAccess(access, target, hasGrant);
const code = (access: ContentAccess, hasGrant = false) => {
  const decision = decide(access, hasGrant);
  return decision.allowed ? `allowed:${decision.basis}:${decision.audited ? 'audited' : 'silent'}` : decision.code;
};

describe('decideContentAccess', () => {
  it('P-03 the owner reads without a basis and unaudited; anyone else needs one', () => {
    expect(code({ reader: member('owner') })).toBe('allowed:owner:silent');
    expect(code({ reader: member('owner'), basis: 'legal' })).toBe('allowed:owner:silent');
    expect(code({ reader: member('other', 'admin') })).toBe('access_basis_required');
    expect(code({ reader: member('other'), basis: 'owner' })).toBe('access_basis_required');
  });

  it('P-03 a grant works only while one is active', () => {
    expect(code({ reader: member('other'), basis: 'grant' }, true)).toBe('allowed:grant:audited');
    expect(code({ reader: member('other'), basis: 'grant' }, false)).toBe('no_active_grant');
  });

  it('P-03 security and legal: owners and admins, with a case reference', () => {
    expect(code({ reader: member('other', 'admin'), basis: 'security', caseReference: 'C-1' })).toBe('allowed:security:audited');
    expect(code({ reader: member('other', 'owner'), basis: 'legal', caseReference: 'C-2' })).toBe('allowed:legal:audited');
    expect(code({ reader: member('other', 'admin'), basis: 'legal' })).toBe('case_reference_required');
    expect(code({ reader: member('other', 'member'), basis: 'security', caseReference: 'C-1' })).toBe('basis_needs_admin');
  });

  it('P-03 aggregate never gives content; service_operation is the service\'s alone', () => {
    expect(code({ reader: member('other', 'owner'), basis: 'aggregate' })).toBe('aggregate_has_no_content');
    expect(code({ reader: member('other', 'owner'), basis: 'service_operation' })).toBe('basis_not_allowed');
    expect(code({ reader: { kind: 'system', job: 'sync' }, basis: 'service_operation' })).toBe('allowed:service_operation:silent');
    expect(code({ reader: { kind: 'system', job: 'sync' }, basis: 'security', caseReference: 'x' })).toBe('basis_not_allowed');
  });

  it('P-02 P-04 advertising, ai_training and sale are refused for every reader and basis', () => {
    for (const purpose of ['advertising', 'ai_training', 'sale'] as const) {
      expect(code({ reader: member('owner'), purpose })).toBe('purpose_refused');
      expect(code({ reader: member('other'), basis: 'grant', purpose }, true)).toBe('purpose_refused');
      expect(code({ reader: { kind: 'system', job: 'sync' }, basis: 'service_operation', purpose })).toBe('purpose_refused');
    }
  });
});
