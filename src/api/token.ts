/**
 * The local API's bearer token: 32 random bytes as 64 hex characters, made at first start into
 * `<dataDir>/api-token` (0600). The agent and the CLI read the same file; readers trim whitespace,
 * so a token an operator wrote with an editor (and its final newline) works too.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import { writeSecretFile } from '../secret-file.js';

/** A shorter token, written by hand, would be easier to guess than a generated one. */
const MIN_TOKEN_LENGTH = 32;

export function apiTokenFile(dataDir: string): string {
  return join(dataDir, 'api-token');
}

/** The token in `file`; throws the read error (ENOENT, EACCES) for the caller to explain. */
export function readApiToken(file: string): string {
  return readFileSync(file, 'utf8').trim();
}

/** The stored token, or a new one written to `file` when there is none yet. */
export function loadOrCreateApiToken(file: string): string {
  let token: string;
  try {
    token = readApiToken(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    token = randomBytes(32).toString('hex');
    writeSecretFile(file, token);
  }
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new ConfigError(`${file}: the API token has ${token.length} characters, at least ${MIN_TOKEN_LENGTH} are needed (delete the file and the agent makes a new one)`);
  }
  return token;
}
