/**
 * What a configured MQTT user may do: send its devices' KubeEdge requests and read their
 * answers, plus the topics its `publish` and `subscribe` filters name. Checked on every publish
 * and every delivery, so device topics are judged by parsing them, not by trying filters.
 */
import { filtersOverlap, topicFilter } from './bus.js';
import type { MqttUser } from './config.js';
import { deviceAnswerTopics, isDeviceAnswer, isDeviceRequest, splitDeviceTopic } from './topics.js';

function anyOf(filters: string[]): (topic: string) => boolean {
  const matchers = filters.map(topicFilter);
  return (topic) => matchers.some((matches) => matches(topic));
}

export class Rights {
  /** `ns/name` ids, and the namespaces of `ns/*`. */
  private readonly devices = new Set<string>();
  private readonly namespaces = new Set<string>();
  private readonly publishes: (topic: string) => boolean;
  private readonly receives: (topic: string) => boolean;
  /** What it may subscribe to: its devices' answers and its `subscribe` filters. */
  private readonly readable: string[];

  constructor(user: Pick<MqttUser, 'devices' | 'publish' | 'subscribe'>) {
    for (const device of user.devices) {
      const [namespace, name] = device.split('/') as [string, string];
      if (name === '*') this.namespaces.add(namespace);
      else this.devices.add(device);
    }
    this.publishes = anyOf(user.publish);
    this.receives = anyOf(user.subscribe);
    const deviceFilters = user.devices.map((device) => device.replace(/\*$/, '+'));
    this.readable = [...deviceFilters.flatMap(deviceAnswerTopics), ...user.subscribe];
  }

  private ownDevice(topic: string, kind: (action: string) => boolean): boolean {
    const device = splitDeviceTopic(topic);
    return device !== undefined && kind(device.action) && (this.namespaces.has(device.namespace) || this.devices.has(`${device.namespace}/${device.name}`));
  }

  mayPublish(topic: string): boolean {
    return this.ownDevice(topic, isDeviceRequest) || this.publishes(topic);
  }

  /** A filter that can match something it may read; what it then receives is filtered by `mayReceive`. */
  maySubscribe(filter: string): boolean {
    return this.readable.some((readable) => filtersOverlap(filter, readable));
  }

  mayReceive(topic: string): boolean {
    return this.ownDevice(topic, isDeviceAnswer) || this.receives(topic);
  }
}
