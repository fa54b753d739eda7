/**
 * `edge-agent passwd`: reads a password on standard input (typed without echo on a terminal,
 * else the first line of what is piped in) and prints its hash on one line, for
 * `mqtt.users[].passwordHash` or the file `passwordFile` names.
 */
import { hashPassword } from './passwords.js';

const ENTER = new Set(['\r', '\n', '\u0004']);
const BACKSPACE = new Set(['\u007f', '\b']);
const CTRL_C = '\u0003';

async function readPassword(input: NodeJS.ReadStream): Promise<string | undefined> {
  const terminal = input.isTTY;
  if (terminal) {
    process.stderr.write('Password: ');
    input.setRawMode(true);
  }
  input.setEncoding('utf8');
  let password = '';
  try {
    for await (const chunk of input as AsyncIterable<string>) {
      for (const char of chunk) {
        if (ENTER.has(char)) return password;
        if (terminal && char === CTRL_C) return undefined;
        if (terminal && BACKSPACE.has(char)) password = [...password].slice(0, -1).join('');
        else password += char;
      }
    }
    return password;
  } finally {
    if (terminal) {
      input.setRawMode(false);
      process.stderr.write('\n');
    }
  }
}

/** Prints the hash; exit status 2 when no password was given. */
export async function passwd(input: NodeJS.ReadStream): Promise<number> {
  const password = await readPassword(input);
  if (!password) {
    console.error('edge-agent passwd: no password given (type it, or pipe it in on one line)');
    return 2;
  }
  console.log(await hashPassword(password));
  return 0;
}
