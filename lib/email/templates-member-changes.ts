import type { EmailMessage } from './sender.js';

/**
 * Notices of changes to a membership. They carry no link and no secret: they tell the person what
 * changed, so that an unexpected change gets noticed.
 */

export type MemberNoticeKind = 'roles_changed' | 'deactivated' | 'reactivated' | 'operator_deactivated';

/** An account environment as a notice names it: the account's name and the environment's. */
export interface NoticePlace {
  accountName: string;
  environment: string;
}

export type MemberNoticeInput =
  | {
      kind: 'roles_changed';
      to: string;
      place: NoticePlace;
      /** Display names of the roles, sorted. */
      before: string[];
      after: string[];
      /** The membership is still an invitation, so the roles apply once it is accepted. */
      invited: boolean;
      changedBy: string | null;
    }
  | { kind: 'deactivated'; to: string; place: NoticePlace; wasInvited: boolean; changedBy: string | null }
  | { kind: 'reactivated'; to: string; place: NoticePlace; roles: string[]; changedBy: string | null }
  | { kind: 'operator_deactivated'; to: string; places: NoticePlace[] };

const CLOSING = 'If you did not expect this change, contact an administrator of the account.';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

function describePlace(place: NoticePlace): string {
  return `${place.accountName} (${place.environment})`;
}

function roleList(roles: string[]): string {
  return roles.length > 0 ? roles.join(', ') : 'none';
}

/** Paragraphs of the notice; each becomes a paragraph of the HTML part and a block of the text part. */
function noticeContent(input: MemberNoticeInput): { subject: string; paragraphs: string[][] } {
  switch (input.kind) {
    case 'roles_changed': {
      const place = describePlace(input.place);
      const actor = input.changedBy ?? 'An administrator';
      const paragraphs = [[`${actor} changed your roles in ${place}.`], [`Before: ${roleList(input.before)}`, `Now: ${roleList(input.after)}`]];
      if (input.invited) {
        paragraphs.push(['These roles apply once you accept your pending invitation.']);
      }
      return { subject: `Your roles in ${place} changed`, paragraphs: [...paragraphs, [CLOSING]] };
    }
    case 'deactivated': {
      const place = describePlace(input.place);
      const actor = input.changedBy ?? 'An administrator';
      if (input.wasInvited) {
        return {
          subject: `Your invitation to ${place} was withdrawn`,
          paragraphs: [[`${actor} withdrew your invitation to ${place}. The link in the invitation email no longer works.`], [CLOSING]],
        };
      }
      return {
        subject: `Your access to ${place} was deactivated`,
        paragraphs: [[`${actor} deactivated your membership in ${place}. Your sessions and API keys no longer work there.`], [CLOSING]],
      };
    }
    case 'reactivated': {
      const place = describePlace(input.place);
      const actor = input.changedBy ?? 'An administrator';
      return {
        subject: `Your access to ${place} is restored`,
        paragraphs: [
          [`${actor} reactivated your membership in ${place}, with the roles you had: ${roleList(input.roles)}.`],
          ['API keys from before the deactivation stay revoked; create new ones if you need them.'],
          [CLOSING],
        ],
      };
    }
    case 'operator_deactivated':
      return {
        subject: 'Your access was deactivated',
        paragraphs: [
          ['Platform support deactivated your access to these account environments:'],
          input.places.map((place) => `- ${describePlace(place)}`),
          ['Your sessions have ended, and your API keys for these environments no longer work.'],
          ['If you did not ask for this, contact platform support or an administrator of the account.'],
        ],
      };
  }
}

export function memberNoticeEmail(input: MemberNoticeInput): EmailMessage {
  const { subject, paragraphs } = noticeContent(input);
  const text = paragraphs.map((lines) => lines.join('\n')).join('\n\n');
  const html = paragraphs.map((lines) => `<p>${lines.map(escapeHtml).join('<br>\n')}</p>`).join('\n');
  return { to: input.to, subject, text, html, categories: [`member-${input.kind.replace('_', '-')}`] };
}
