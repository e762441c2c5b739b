/*
 * Automatic answers (out of office, vacation, "I have a new address", ticket receipts):
 * marked by RFC 3834 `Auto-Submitted`, by the common non-standard headers, or only by a
 * subject line in the sender's language. They are not replies from a person.
 */

type Headers = Record<string, string>;

/**
 * Subjects that out-of-office and other auto-responders start with, in the languages we
 * meet most. Anchored at the start of the subject as received: a person's answer reads
 * "Re: …", so a campaign titled "Out of office tips" answered by a person never matches. A tag
 * in brackets may come first ("[Auto-Reply] …"), and the words may be hyphenated or cut to "OOO".
 */
const AUTO_REPLY_SUBJECT = new RegExp(
  '^\\s*[[(]?\\s*(?:' +
    [
      String.raw`auto(matic|matische|matisch|matique|matica|mático|matico)?[ -]?(reply|response|respon[sd]e?|antwort|antwoord|réponse|reponse|risposta|respuesta|resposta|svar)`,
      String.raw`autoreply`,
      String.raw`out[ -]of[ -](the[ -])?office`,
      String.raw`ooo(?=\s*[:\-\])]|\s)`,
      String.raw`(away|on vacation|on holiday|on leave|absent)\b`,
      String.raw`(abwesenheitsnotiz|abwesend|nicht im büro|außer haus)`,
      String.raw`(réponse automatique|absence du bureau|absent du bureau|message d'absence)`,
      String.raw`(respuesta automática|respuesta automatica|fuera de la oficina)`,
      String.raw`(risposta automatica|fuori (sede|ufficio))`,
      String.raw`(resposta automática|resposta automatica|ausência|fora do escritório)`,
      String.raw`(automatisch antwoord|afwezig)`,
      String.raw`(autosvar|frånvaro|fraværende|automatisk svar)`,
      String.raw`(automaattinen vastaus|poissa)`,
      String.raw`(odpowiedź automatyczna|automatyczna odpowiedź)`,
      String.raw`(自動返信|自動応答|不在|自动回复|自動回覆|자동 응답|автоматический ответ|автоответ)`,
    ].join('|') +
    ')',
  'i',
);

/** Precedence values that mark machine mail; `bulk`/`junk` replies come from lists and robots, not people. */
const AUTOMATIC_PRECEDENCE = /^(auto_reply|bulk|junk)$/i;

export function isAutomaticReply(headers: Headers): boolean {
  const autoSubmitted = headers['auto-submitted']?.trim().toLowerCase();
  if (autoSubmitted && !autoSubmitted.startsWith('no')) return true;
  if (headers['x-autoreply'] !== undefined || headers['x-autorespond'] !== undefined || headers['x-autoresponder'] !== undefined) return true;
  if (AUTOMATIC_PRECEDENCE.test(headers['precedence']?.trim() ?? '')) return true;
  return AUTO_REPLY_SUBJECT.test(headers['subject'] ?? '');
}
