import { createHash, randomBytes } from 'node:crypto';
import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import type { AuthRepo } from '../auth/auth.repo.js';
import type { ApiKeyRow } from '../db/schema.js';
import { ForbiddenError, NotFoundError, UnauthorizedError } from '../errors.js';
import type { ApiScope } from '../http/api-spec.js';
import type { ApiKeysRepo } from './api-keys.repo.js';

/** Every key starts with this, so a leaked one is recognisable (secret scanners, log redaction). */
export const API_KEY_PREFIX = 'itk_';
const KEY_SHAPE = /^itk_[A-Za-z0-9_-]{43}$/;
/** last_used_at moves at most once a minute per key: a busy key does not write on every request. */
const LAST_USED_INTERVAL_MS = 60_000;

/**
 * A key is 32 random bytes (256 bits), so a plain SHA-256 is enough to store it: nobody can
 * search a 2^256 space, so a slow or keyed hash would add cost (and a secret to manage)
 * without adding safety. Lookup is by that hash, one indexed equality.
 */
export const hashApiKey = (key: string) => createHash('sha256').update(key).digest('hex');

export const looksLikeApiKey = (token: string) => token.startsWith(API_KEY_PREFIX);

function presentApiKey(row: ApiKeyRow) {
  return {
    id: row.id,
    name: row.name,
    scopes: row.scopes as ApiScope[],
    prefix: row.keyPrefix,
    createdBy: row.createdBy,
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
  };
}

export function createApiKeysService(deps: { repo: ApiKeysRepo; authRepo: Pick<AuthRepo, 'findMembership'>; now?: () => Date }) {
  const { repo, authRepo } = deps;
  const now = deps.now ?? (() => new Date());
  /** When this process last moved a key's last_used_at: spares the UPDATE between intervals. */
  const lastTouched = new Map<string, number>();

  /** Keys are managed by people: an owner or admin signed in, never another key. */
  const requireKeyManager = (auth: AuthContext) => {
    if (auth.apiKeyId) throw new ForbiddenError('API keys are managed by a signed-in owner or admin, not by another key');
    if (auth.role === 'member') throw new ForbiddenError('Only owners and admins manage API keys');
  };

  return {
    async create(auth: AuthContext, input: { name: string; scopes: ApiScope[] }) {
      requireKeyManager(auth);
      const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
      const row = await repo.insert(
        {
          workspaceId: auth.workspaceId,
          createdBy: auth.userId,
          name: input.name,
          scopes: [...new Set(input.scopes)],
          keyHash: hashApiKey(key),
          keyPrefix: key.slice(0, API_KEY_PREFIX.length + 6),
        },
        (id) => ({
          workspaceId: auth.workspaceId,
          actor: actorOf(auth),
          action: 'api_key.created',
          subjectType: 'api_key',
          subjectId: id,
          detail: { scopes: input.scopes },
          requestId: auth.requestId,
        }),
      );
      if (!row) throw new ForbiddenError('Only owners and admins of this workspace manage API keys');
      // The only time the key is ever shown.
      return { ...presentApiKey(row), key };
    },

    async list(auth: AuthContext) {
      requireKeyManager(auth);
      return (await repo.list(auth.workspaceId)).map(presentApiKey);
    },

    async revoke(auth: AuthContext, id: string) {
      requireKeyManager(auth);
      const revoked = await repo.revoke(auth.workspaceId, id, now(), {
        workspaceId: auth.workspaceId,
        actor: actorOf(auth),
        action: 'api_key.revoked',
        subjectType: 'api_key',
        subjectId: id,
        requestId: auth.requestId,
      });
      if (!revoked) throw new NotFoundError('API key');
      lastTouched.delete(id);
    },

    /**
     * The caller behind `Bearer itk_…`, checked against the database on every request so a
     * revocation holds at once. The key acts as the member who created it, while they are
     * still a member; without the `admin` scope it never has more than a member's role.
     */
    async authenticate(key: string): Promise<AuthContext> {
      const { row, membership } = await liveKey(KEY_SHAPE.test(key) ? await repo.findByHash(hashApiKey(key)) : undefined);
      const scopes = row.scopes as ApiScope[];
      await touchLastUsed(row);
      return {
        userId: row.createdBy,
        workspaceId: row.workspaceId,
        role: scopes.includes('admin') ? membership.role : 'member',
        apiKeyId: row.id,
        scopes,
      };
    },

    /**
     * Work a key started that outlasts its request's first moment (a CSV import's batches) asks
     * again before each step: a key revoked meanwhile stops it there, as `authenticate` would.
     */
    async recheck(auth: AuthContext): Promise<void> {
      await liveKey(auth.apiKeyId ? await repo.findById(auth.apiKeyId) : undefined);
    },
  };

  /** The key and the membership it acts within; throws when the key is unknown, revoked, or its member gone. */
  async function liveKey(row: ApiKeyRow | undefined) {
    if (!row) throw new UnauthorizedError('invalid_token', 'The API key is not valid');
    if (row.revokedAt) throw new UnauthorizedError('api_key_revoked', 'The API key has been revoked');
    const membership = await authRepo.findMembership(row.workspaceId, row.createdBy);
    // A key acts within the membership it was made in: one from an earlier membership of the
    // same person (removed, invited back) never comes back, whatever revoked it or failed to.
    if (!membership || row.createdAt.getTime() < membership.createdAt.getTime()) throw new UnauthorizedError('invalid_token', 'The API key is not valid');
    return { row, membership };
  }

  async function touchLastUsed(row: ApiKeyRow) {
    const at = now();
    const previous = lastTouched.get(row.id) ?? row.lastUsedAt?.getTime() ?? 0;
    if (at.getTime() - previous < LAST_USED_INTERVAL_MS) return;
    lastTouched.set(row.id, at.getTime());
    await repo.touch(row.id, at, new Date(at.getTime() - LAST_USED_INTERVAL_MS));
  }
}

export type ApiKeysService = ReturnType<typeof createApiKeysService>;
