import { accountPages } from './account.pages.js';
import { campaignPages } from './campaigns.pages.js';
import { contactPages } from './contacts.pages.js';
import { importPages } from './import.pages.js';
import { legalRequestPages } from './legal-requests.pages.js';
import { mailboxPages } from './mailboxes.pages.js';
import { messagePages } from './messages.pages.js';
import { resultsPages } from './results.pages.js';
import { integrationPages } from './integrations.pages.js';
import { settingsPages } from './settings.pages.js';
import { suppressionPages } from './suppressions.pages.js';
import { webhookLogPages } from './webhook-log.pages.js';
import type { AppPageGroup } from './web.routes.js';

/** The page groups under /app. The import comes before the contacts: /contacts/import is not a contact id. */
export const APP_PAGE_GROUPS: AppPageGroup[] = [mailboxPages, importPages, contactPages, messagePages, suppressionPages, settingsPages, integrationPages, legalRequestPages, accountPages, webhookLogPages, campaignPages, resultsPages];
