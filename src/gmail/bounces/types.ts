/*
 * What the bounce reader extracts from a delivery status notification, whatever its shape.
 * Pure data: the sync service decides what to record and whom to suppress.
 */

/** hard: the address cannot receive mail (suppress). soft: this delivery failed for a reason that may pass (counted). delay: still being retried (recorded only). */
export type BounceClass = 'hard' | 'soft' | 'delay';

/** Why delivery failed, as far as the status code or the prose tells. */
export type BounceReason =
  | 'unknown_user'
  | 'mailbox_disabled'
  | 'bad_domain'
  | 'mailbox_full'
  | 'policy'
  | 'message_too_large'
  | 'network'
  | 'other';

/** The shape a notice came in: which reader recognized it. */
export type NoticeFormat =
  | 'rfc3464'
  | 'gmail-text'
  | 'exim'
  | 'qmail'
  | 'exchange'
  | 'opensmtpd'
  | 'postfix-text'
  | 'sendmail-text'
  | 'amazonses-text'
  | 'x-failed-recipients';

export interface FailedRecipient {
  /** Lowercased bare address (the report's Final-Recipient). */
  address: string;
  /** The address as first given, when a report names it apart (RFC 3464 Original-Recipient: a forward or alias). */
  originalRecipient?: string;
  action: 'failed' | 'delayed';
  /** Enhanced status code (RFC 3463) from the report, else found in the prose; absent when neither gives one. */
  status?: string;
  /** The remote server's words (or the notice's), trimmed to a few hundred characters. */
  diagnostic?: string;
  class: BounceClass;
  reason: BounceReason;
}

export interface BounceNotice {
  format: NoticeFormat;
  recipients: FailedRecipient[];
  /** Message-ID (no angle brackets) of the message that bounced: attached, its headers attached, or quoted inline. */
  originalMessageId?: string;
}

/** A recipient as a family reader finds it, before status and class are worked out. */
export interface RawRecipient {
  address: string;
  originalRecipient?: string;
  action: 'failed' | 'delayed';
  status?: string;
  /** Text about this recipient (its own block in the notice, or the report's Diagnostic-Code). */
  diagnostic?: string;
}
