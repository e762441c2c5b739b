/**
 * The Limited Use disclosure shipped with this release (P-05). What the connect step shows is
 * the text published in `policy_versions` for POLICY_VERSION (privacy/policy-versions.ts):
 * this text is published under that version the first time a database lacks it, and never
 * replaces a version published before. A new text needs a new version (P-18).
 */
export const LIMITED_USE_DISCLOSURE = {
  version: '2026-11-01',
  title: 'How inboxtrail uses your Gmail',
  points: [
    'inboxtrail uses Gmail access only to send mail you write or schedule here, and — if you turn on sync — to read the messages you exchange with your CRM contacts so they appear on their timelines, and to detect replies and bounces to mail sent from here.',
    'Only the metadata of messages involving your contacts is stored (sender, recipients, date, subject). Message bodies are fetched when you open them and are not stored.',
    'Nobody else reads your message content unless you grant access to a specific message, or for security or legal reasons, and every such access is recorded and shown to your workspace admins.',
    'Your Gmail data is never used for advertising, never sold, never shared with data brokers, and never used to train AI models.',
    'Your Google tokens are encrypted at rest. Disconnecting revokes our access at Google and deletes the synced Gmail data.',
    "inboxtrail's use of information received from Google APIs adheres to the Google API Services User Data Policy, including the Limited Use requirements.",
  ],
} as const;
