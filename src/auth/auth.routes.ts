import { Router, type Request, type RequestHandler } from 'express';
import { z } from 'zod';
import { parseId } from '../http/params.js';
import { parseInput, entityId } from '../http/validate.js';
import { authOf, requireRole } from './auth.middleware.js';
import type { AuthService } from './auth.service.js';
import { MAX_DEVICE_TOKEN_LENGTH } from './login-devices.js';

/** Login addresses are trimmed and matched case-insensitively. */
const email = z.string().trim().toLowerCase().pipe(z.email().max(254));
const password = z.string().min(10, 'must be at least 10 characters').max(200);
/**
 * A person's or a workspace's name: one line. Both go into the subjects and display names of
 * the mail we send (invitations, codes); a line break in one would start a header of its own.
 */
const personOrWorkspaceName = z
  .string()
  .trim()
  .min(1)
  .max(200)
  .refine((v) => !/[\r\n\u2028\u2029]/.test(v), 'must be one line');

export const signupBody = z.object({
  email,
  password,
  workspaceName: personOrWorkspaceName,
  name: personOrWorkspaceName.optional(),
});
export const loginBody = z.object({
  email: z.string().max(254),
  password: z.string().max(200),
  workspaceId: entityId.optional(),
  /** What an earlier login answered as `deviceToken`: this client is throttled as a known device. */
  deviceToken: z.string().max(MAX_DEVICE_TOKEN_LENGTH).optional(),
});
/** An account in no workspace making one of its own (own-workspace.ts): the login's credentials and the new workspace's name. */
export const ownWorkspaceBody = loginBody.omit({ workspaceId: true }).extend({ workspaceName: personOrWorkspaceName }).strict();
export const inviteBody = z.object({ email, role: z.enum(['owner', 'admin', 'member']).default('member') });
export const workspaceBody = z
  .object({ name: personOrWorkspaceName, postalAddress: z.string().trim().min(5).max(500).nullable() })
  .partial()
  .strict()
  .refine((v) => Object.keys(v).length > 0, 'give at least one field to change');
/**
 * `password`: an existing account's (a new address chooses its own, and its name, with the mailed
 * code: `name` here is accepted and not used); `deviceToken`: as at login.
 */
export const acceptBody = z.object({
  token: z.string().min(1).max(200),
  password: z.string().max(200).optional(),
  name: personOrWorkspaceName.optional(),
  deviceToken: z.string().max(MAX_DEVICE_TOKEN_LENGTH).optional(),
});
export const roleBody = z.object({ role: z.enum(['owner', 'admin', 'member']) }).strict();

/** `password` (and `name`): chosen here to join by invitation (by whoever holds the mailed code); a signup chose them before. */
export const verifyBody = z.object({ code: z.string().min(1).max(200), password: password.optional(), name: personOrWorkspaceName.optional() });
/** P-12 correction of one's own profile (profile.ts): a new password or address needs the current password. */
export const profileBody = z
  .object({
    name: personOrWorkspaceName.nullable().optional(),
    email: email.optional(),
    currentPassword: z.string().max(200).optional(),
    newPassword: password.optional(),
  })
  .strict()
  .refine((v) => v.name !== undefined || v.newPassword !== undefined || v.email !== undefined, 'give at least one field to change')
  .refine((v) => (v.newPassword === undefined && v.email === undefined) || v.currentPassword !== undefined, {
    message: 'is required to change the password or the login address',
    path: ['currentPassword'],
  });
export const emailCodeBody = z.object({ code: z.string().min(1).max(2000) }).strict();

/** The client address the throttles count: `req.ip`, which honours X-Forwarded-For only from TRUST_PROXY. */
export const clientAddress = (req: Request) => req.ip ?? req.socket.remoteAddress ?? 'unknown';

/** Routes anyone may call: signup (and its confirmation), login, accepting an invitation. */
export function publicAuthRoutes(auth: AuthService): Router {
  const router = Router();
  router.post('/auth/signup', async (req, res) => {
    res.status(202).json(await auth.signup(parseInput(signupBody, req.body), clientAddress(req)));
  });
  router.post('/auth/signup/verify', async (req, res) => {
    res.status(201).json(await auth.verifySignup(parseInput(verifyBody, req.body)));
  });
  router.post('/auth/login', async (req, res) => {
    res.json(await auth.login(parseInput(loginBody, req.body), clientAddress(req)));
  });
  router.post('/auth/workspaces', async (req, res) => {
    res.status(201).json(await auth.createOwnWorkspace(parseInput(ownWorkspaceBody, req.body), clientAddress(req)));
  });
  router.post('/invitations/accept', async (req, res) => {
    const result = await auth.acceptInvitation(parseInput(acceptBody, req.body), clientAddress(req));
    res.status('token' in result ? 201 : 202).json(result);
  });
  return router;
}

/** Routes for members of a workspace; `authenticated` guards their prefixes. */
export function authRoutes(auth: AuthService, authenticated: RequestHandler): Router {
  const router = Router();
  router.use(['/me', '/members', '/invitations', '/workspace'], authenticated);
  router.get('/me', async (req, res) => {
    res.json(await auth.me(authOf(req)));
  });
  router.patch('/me', async (req, res) => {
    res.json(await auth.updateProfile(authOf(req), parseInput(profileBody, req.body), clientAddress(req)));
  });
  router.post('/me/email/verify', async (req, res) => {
    res.json(await auth.confirmEmail(authOf(req), parseInput(emailCodeBody, req.body).code));
  });
  router.patch('/workspace', async (req, res) => {
    res.json(await auth.updateWorkspace(authOf(req), parseInput(workspaceBody, req.body)));
  });
  router.get('/members', async (req, res) => {
    res.json({ members: await auth.listMembers(authOf(req)) });
  });
  router.patch('/members/:id', requireRole('owner', 'admin'), async (req, res) => {
    const userId = parseId(req.params.id, 'Member');
    res.json(await auth.changeRole(authOf(req), userId, parseInput(roleBody, req.body).role));
  });
  // Before `/members/:id`: any member leaves on their own; removing someone else takes an admin.
  router.delete('/members/me', async (req, res) => {
    await auth.leaveWorkspace(authOf(req));
    res.status(204).end();
  });
  router.delete('/members/:id', requireRole('owner', 'admin'), async (req, res) => {
    await auth.removeMember(authOf(req), parseId(req.params.id, 'Member'));
    res.status(204).end();
  });
  router.get('/invitations', requireRole('owner', 'admin'), async (req, res) => {
    res.json({ invitations: await auth.listInvitations(authOf(req)) });
  });
  router.post('/invitations', requireRole('owner', 'admin'), async (req, res) => {
    res.status(201).json(await auth.invite(authOf(req), parseInput(inviteBody, req.body)));
  });
  router.delete('/invitations/:id', requireRole('owner', 'admin'), async (req, res) => {
    await auth.revokeInvitation(authOf(req), parseId(req.params.id, 'Invitation'));
    res.status(204).end();
  });
  return router;
}
