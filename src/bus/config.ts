/**
 * The `mqtt` section: the embedded broker (its listeners, who may connect and do what, and the
 * limits on what a client can make it hold), or an external broker instead.
 */
import * as v from 'valibot';
import { portNumber as port, positiveInteger as positive } from '../schema.js';
import { parsePasswordHash } from './passwords.js';

const path = v.pipe(v.string(), v.minLength(1));

/** `a/+/c`, `a/#`: `+` a whole level, `#` only as the whole last level [MQTT-4.7.1]. */
const topicFilter = v.pipe(
  v.string(),
  v.minLength(1),
  v.check((f) => f.split('/').every((level, i, all) => (level === '#' ? i === all.length - 1 : level === '+' || !/[+#]/.test(level))), 'must be an MQTT topic filter: + a whole level, # the whole last one'),
);

/** The agent's own clients log in as `$edge-agent` (embedded.ts); configured names cannot take it. */
export const AGENT_USERNAME = '$edge-agent';

const user = v.pipe(
  v.strictObject({
    username: v.pipe(v.string(), v.minLength(1), v.check((name) => !name.startsWith('$'), 'names starting with $ are the agent’s own')),
    /** What `edge-agent passwd` prints. */
    passwordHash: v.optional(v.pipe(v.string(), v.check((hash) => parsePasswordHash(hash) !== undefined, 'expected a hash printed by edge-agent passwd (scrypt$N$r$p$salt$hash)'))),
    /** A file holding that hash, so the config itself holds no secret. */
    passwordFile: v.optional(path),
    /** `ns/name` or `ns/*`: the devices whose KubeEdge requests it may send and whose answers it may read. */
    devices: v.optional(v.array(v.pipe(v.string(), v.regex(/^[^/+#*\s]+\/([^/+#*\s]+|\*)$/, 'expected NS/NAME or NS/*'))), []),
    /** Further topics it may publish on (a Tasmota plug: `tele/plug-1/#`, `stat/plug-1/#`). */
    publish: v.optional(v.array(topicFilter), []),
    /** Further topics it may subscribe to (a Tasmota plug: `cmnd/plug-1/#`). */
    subscribe: v.optional(v.array(topicFilter), []),
  }),
  v.check((u) => !(u.passwordHash && u.passwordFile), 'passwordHash and passwordFile exclude each other'),
);

const tlsSection = v.pipe(
  v.strictObject({
    /** Default: mqtt.host. */
    host: v.optional(v.string()),
    port: v.optional(port, 8883),
    /** PEM files: the broker's certificate and key. */
    cert: path,
    key: path,
    /** PEM file of the CAs whose client certificates are accepted; a verified certificate's CN is the user name. */
    ca: v.optional(path),
    /** Refuse the TLS handshake of a client without a certificate from `ca`. */
    requireClientCert: v.optional(v.boolean(), false),
  }),
  v.check((tls) => !tls.requireClientCert || tls.ca !== undefined, 'requireClientCert needs ca, the CAs to verify client certificates with'),
);

export const mqttSection = v.pipe(
  v.strictObject({
    host: v.optional(v.string(), '127.0.0.1'),
    port: v.optional(port, 1883),
    /** An external broker (`mqtt://user:password@host:1883`) instead of the embedded one; the sections below are the embedded broker's. */
    url: v.optional(v.pipe(v.string(), v.url('must be a URL such as mqtt://host:1883'))),
    /** Largest `$hw/events` payload the KubeEdge protocol parses; larger ones get an error Result. */
    maxPayloadBytes: v.optional(positive, 64 * 1024),
    /**
     * Who may connect without logging in: `loopback` (KubeEdge mappers connect anonymously to
     * EdgeCore's local broker, so they keep working on 127.0.0.1) or `never`. No value lets an
     * anonymous client in from another address, so no bind address can open the broker to the LAN.
     */
    allowAnonymous: v.optional(v.picklist(['loopback', 'never']), 'loopback'),
    users: v.optional(v.array(user), []),
    tls: v.optional(tlsSection),
    /** Whole MQTT packets, refused (connection closed) as soon as their fixed header announces more. */
    maxPacketBytes: v.optional(positive, 256 * 1024),
    /** Open client connections over all listeners; more get CONNACK 3 (server unavailable). */
    maxConnections: v.optional(positive, 1000),
    /** A client must ask for a keepalive of 1 to this many seconds, or get CONNACK 2: none can sit idle for long. */
    maxKeepaliveSeconds: v.optional(v.pipe(positive, v.maxValue(65535)), 300),
    /** Retained messages all clients together may leave on the broker, by count and bytes (topic and payload). */
    maxRetainedMessages: v.optional(positive, 1000),
    maxRetainedBytes: v.optional(positive, 4 * 1024 * 1024),
    /** Each client's subscriptions; more are refused in the SUBACK (0x80). */
    maxSubscriptionsPerClient: v.optional(positive, 1000),
    /** Client ids whose session the broker keeps (`clean: false`); a new one beyond gets CONNACK 3 (server unavailable). */
    maxPersistentSessions: v.optional(positive, 1000),
    /**
     * QoS 1/2 messages the broker keeps for a persistent session until its client takes them:
     * per session by count, over all sessions by bytes (topic and payload). Beyond, a message is
     * not kept for that session (MQTT lets a server drop them under its storage limits).
     */
    maxQueuedMessages: v.optional(positive, 1000),
    maxQueuedBytes: v.optional(positive, 16 * 1024 * 1024),
  }),
  v.forward(
    v.check((mqtt) => mqtt.maxPayloadBytes < mqtt.maxPacketBytes, 'must be below maxPacketBytes, which bounds the whole packet'),
    ['maxPayloadBytes'],
  ),
  v.forward(
    v.check((mqtt) => new Set(mqtt.users.map((u) => u.username)).size === mqtt.users.length, 'each username once'),
    ['users'],
  ),
  v.forward(
    v.check((mqtt) => mqtt.users.every((u) => u.passwordHash || u.passwordFile) || mqtt.tls?.ca !== undefined, 'a user without passwordHash or passwordFile can log in only with a client certificate: set tls.ca'),
    ['users'],
  ),
  v.forward(
    v.check((mqtt) => mqtt.url === undefined || (mqtt.users.length === 0 && mqtt.tls === undefined), 'users and tls are the embedded broker’s: an external broker (url) has its own'),
    ['url'],
  ),
);

export type MqttConfig = v.InferOutput<typeof mqttSection>;
export type MqttUser = MqttConfig['users'][number];
export type MqttTlsConfig = NonNullable<MqttConfig['tls']>;
