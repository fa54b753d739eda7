/** Passwords kept out of what the agent prints: log lines, API answers, error messages. */

/**
 * The password of a URL's userinfo (`scheme://user:password@`), up to the last `@` before the
 * host, since a password may hold an unencoded `@`. A JSON-escaped character (`\"`) counts as
 * part of it, so a whole log line can be redacted without leaving its string.
 */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@"]*):(?:[^\s/?#"\\]|\\.)*@/gi;

/**
 * `text` (one URL, or any text holding URLs) with every URL's password replaced by `***`; the
 * user name stays, as it tells which account was used. Text without such URLs comes back as is.
 */
export function redactUrl(text: string): string {
  return text.replace(URL_PASSWORD, '$1:***@');
}
