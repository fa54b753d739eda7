/**
 * Who an MQTT client is: anonymous (from loopback only, unless `mqtt.allowAnonymous: never`),
 * a configured user (password, or the CN of a verified TLS client certificate), or the agent's
 * own client (the mqtt mapper on the embedded broker), which logs in with a secret made at start.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { AGENT_USERNAME, type MqttConfig } from './config.js';
import { parsePasswordHash, unknownUserHash, verifyPassword, type PasswordHash } from './passwords.js';
import { Rights } from './rights.js';

/** Where a connection comes from. */
export interface Peer {
  address: string;
  /** The CN of a client certificate the TLS listener verified. */
  certificateName?: string;
}

export interface Identity {
  /** For logs: `anonymous`, `user plug-1`, `agent`. */
  readonly name: string;
  /** What a user may do; none for anonymous clients on loopback and the agent, which may use any topic but the agent's answers. */
  readonly rights?: Rights;
  /** The agent's own client, which per-client limits do not count. */
  readonly agent?: boolean;
}

/** CONNACK return codes of MQTT 3.1.1 (§3.2.2.3) that a refused login gets. */
export const CONNACK = { identifierRejected: 2, serverUnavailable: 3, badUsernameOrPassword: 4, notAuthorized: 5 } as const;

export interface LoginRefusal {
  returnCode: (typeof CONNACK)[keyof typeof CONNACK];
  reason: string;
}

interface User {
  identity: Identity;
  hash?: PasswordHash;
}

const ANONYMOUS: Identity = { name: 'anonymous' };
const AGENT: Identity = { name: 'agent', agent: true };

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6 (`::ffff:127.0.0.1`), as a dual-stack socket reports them. */
export function isLoopback(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/** The configured users, their hashes read (from `passwordFile` too) and checked; an unreadable file is a ConfigError naming the user. */
function loadUsers(users: MqttConfig['users']): Map<string, User> {
  return new Map(
    users.map((user, i) => {
      let hash: PasswordHash | undefined;
      if (user.passwordHash) hash = parsePasswordHash(user.passwordHash);
      if (user.passwordFile) {
        const where = `mqtt.users[${i}].passwordFile`;
        let text: string;
        try {
          text = readFileSync(user.passwordFile, 'utf8');
        } catch (error) {
          throw new ConfigError(`${where}: cannot read ${user.passwordFile}: ${(error as Error).message}`);
        }
        hash = parsePasswordHash(text);
        if (!hash) throw new ConfigError(`${where}: ${user.passwordFile} does not hold a hash printed by edge-agent passwd`);
      }
      return [user.username, { identity: { name: `user ${user.username}`, rights: new Rights(user) }, hash }];
    }),
  );
}

export class Authenticator {
  private readonly users: Map<string, User>;
  private readonly allowAnonymous: MqttConfig['allowAnonymous'];
  private readonly agentPassword: Buffer;

  constructor(config: Pick<MqttConfig, 'users' | 'allowAnonymous'>, agentPassword: string) {
    this.users = loadUsers(config.users);
    this.allowAnonymous = config.allowAnonymous;
    this.agentPassword = Buffer.from(agentPassword);
  }

  /** The identity of a client logging in, or why it may not. */
  async login(peer: Peer, username: string | undefined, password: Buffer | undefined): Promise<Identity | LoginRefusal> {
    if (username === AGENT_USERNAME) {
      const given = password ?? Buffer.alloc(0);
      const ok = given.length === this.agentPassword.length && timingSafeEqual(given, this.agentPassword);
      return ok ? AGENT : { returnCode: CONNACK.badUsernameOrPassword, reason: 'bad user name or password' };
    }
    const { certificateName } = peer;
    if (certificateName !== undefined && (username === undefined || username === certificateName)) {
      const user = this.users.get(certificateName);
      return user ? user.identity : { returnCode: CONNACK.notAuthorized, reason: `certificate CN ${certificateName} names no user in mqtt.users` };
    }
    if (username !== undefined) {
      const user = this.users.get(username);
      // An unknown user costs a check too, so the time of a refusal does not tell who exists.
      const ok = await verifyPassword(user?.hash ?? unknownUserHash, password ?? Buffer.alloc(0));
      return ok && user?.hash ? user.identity : { returnCode: CONNACK.badUsernameOrPassword, reason: 'bad user name or password' };
    }
    if (this.allowAnonymous === 'loopback' && isLoopback(peer.address)) return ANONYMOUS;
    const reason = this.allowAnonymous === 'never' ? 'anonymous clients are refused (mqtt.allowAnonymous: never)' : 'anonymous clients are accepted from loopback only';
    return { returnCode: CONNACK.notAuthorized, reason };
  }
}
