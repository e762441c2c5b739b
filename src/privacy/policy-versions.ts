import type { AuthContext } from '../auth/auth.service.js';
import { LIMITED_USE_DISCLOSURE } from '../gmail/disclosure.js';
import type { Disclosure, PolicyVersionsRepo } from './policy-versions.repo.js';

/** What the connect step shows: the current version and its disclosure text, as published. */
export interface PublishedDisclosure extends Disclosure {
  version: string;
}

/**
 * Policy versions (P-18). The version in force is POLICY_VERSION; its text lives in
 * `policy_versions`. A version is published once (boot publishes the configured one with the
 * text shipped in gmail/disclosure.ts if it is absent; `npm run publish-policy` publishes a
 * new one ahead of a release) and never changes afterwards. Consents and connections record
 * the version they were given under.
 */
export function createPolicyVersions(deps: { repo: PolicyVersionsRepo; currentVersion: string }) {
  const { repo, currentVersion } = deps;
  // Published rows never change (trigger), so the current one is read once per process.
  let current: Promise<PublishedDisclosure> | undefined;

  async function loadCurrent(): Promise<PublishedDisclosure> {
    await repo.publishIfAbsent({
      version: currentVersion,
      disclosure: { title: LIMITED_USE_DISCLOSURE.title, points: [...LIMITED_USE_DISCLOSURE.points] },
      publishedBy: 'system:boot',
    });
    const row = (await repo.find(currentVersion))!;
    return { version: row.version, title: row.disclosure.title, points: row.disclosure.points };
  }

  return {
    currentVersion,
    /** The disclosure of the version in force, publishing it first if this database has never seen it. */
    async currentDisclosure(): Promise<PublishedDisclosure> {
      current ??= loadCurrent().catch((error: unknown) => {
        current = undefined;
        throw error;
      });
      return current;
    },

    /** Publishes a new version's disclosure (scripts/publish-policy.ts); false if that version exists already. */
    async publish(version: string, disclosure: Disclosure, publishedBy: string): Promise<boolean> {
      return repo.publishIfAbsent({ version, disclosure, publishedBy });
    },

    /** Which version the member accepted: that of their latest Gmail connection (null before any), and each mailbox's. */
    async acceptedBy(auth: AuthContext) {
      const mailboxes = await repo.versionsAcceptedBy(auth.workspaceId, auth.userId);
      return { currentVersion, acceptedVersion: mailboxes[0]?.version ?? null, mailboxes };
    },
  };
}

export type PolicyVersions = ReturnType<typeof createPolicyVersions>;
