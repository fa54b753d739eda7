/**
 * What changed between the KubeEdge releases this agent speaks (1.16.2 to 1.23), in one place:
 * the device states EdgeCore accepts on `state/update` and how it writes a device's last-online
 * time, towards the cloud and on `state/update/result` (edge/pkg/devicetwin/dtmanager/device.go
 * dealDeviceStateUpdate and dttype BuildDeviceState / BuildDeviceCloudMsgState at each tag).
 */

/** Minor releases; `1.16` stands for 1.16.2 and later, the oldest this agent speaks. */
export const KUBEEDGE_VERSIONS = ['1.16', '1.17', '1.18', '1.19', '1.20', '1.21', '1.22', '1.23'] as const;
export type KubeEdgeVersion = (typeof KUBEEDGE_VERSIONS)[number];
export const NEWEST_KUBEEDGE: KubeEdgeVersion = KUBEEDGE_VERSIONS[KUBEEDGE_VERSIONS.length - 1]!;

/** Up to 1.17 a mapper could say `disconnected`; 1.18 replaced it with `unhealthy` (dtcommon DeviceStatus*). */
const STATES_UP_TO_1_17 = ['online', 'offline', 'ok', 'unknown', 'disconnected'] as const;
const STATES_FROM_1_18 = ['online', 'offline', 'ok', 'unknown', 'unhealthy'] as const;

const minor = (version: KubeEdgeVersion) => Number(version.split('.')[1]);
const pad = (n: number) => String(n).padStart(2, '0');

/** Go's "2006-01-02 15:04:05" in local time: EdgeCore up to 1.17. */
function localTime(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** 1.18 formatted the local clock with apis.ISO8601UTC ("2006-01-02T15:04:05Z"): a `Z` on local time, which 1.19 fixed. */
function localTimeMarkedUtc(d: Date): string {
  return `${localTime(d).replace(' ', 'T')}Z`;
}

/** RFC 3339 in UTC, whole seconds: EdgeCore from 1.19 (`time.Now().UTC().Format(time.RFC3339)`). */
function utcTime(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The twin keeps the last-online time as EdgeCore did first, `2006-01-02 15:04:05` local; back to a Date. */
function parseStored(stored: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(stored);
  if (!m) return undefined;
  const [year, month, day, hours, minutes, seconds] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  return new Date(year, month - 1, day, hours, minutes, seconds);
}

export interface StateDialect {
  /** The states `state/update` accepts, lower case (EdgeCore compares case-insensitively and ignores others). */
  states: readonly string[];
  /**
   * The `device` object of a state message as this version builds it, for a device whose state
   * changed at `changedAt`: `last_online` up to 1.17, `lastOnlineTime` from 1.18 (the only field
   * CloudCore 1.18+ reads), left out when empty (`omitempty`).
   */
  device(name: string, state: string, storedLastOnline: string, changedAt: Date): Record<string, string>;
}

export function stateDialect(version: KubeEdgeVersion): StateDialect {
  const v = minor(version);
  if (v <= 17) {
    return {
      states: STATES_UP_TO_1_17,
      // Up to 1.17 every state update set last_online to the time of the update, whatever the state.
      device: (name, state, _stored, changedAt) => ({ name, state, last_online: localTime(changedAt) }),
    };
  }
  const format = v === 18 ? localTimeMarkedUtc : utcTime;
  return {
    states: STATES_FROM_1_18,
    device: (name, state, stored): Record<string, string> => {
      const at = parseStored(stored);
      return at ? { name, state, lastOnlineTime: format(at) } : { name, state };
    },
  };
}
