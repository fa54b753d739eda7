/** A real MQTT client for tests, with request/response on the KubeEdge result topics. */
import mqtt, { type MqttClient } from 'mqtt';

export async function connectClient(url: string, clientId?: string): Promise<MqttClient> {
  return mqtt.connectAsync(url, { clientId, reconnectPeriod: 0 });
}

/** Subscribes to `responseTopic`, publishes the request, resolves with the first response. */
export async function request(client: MqttClient, topic: string, payload: string | Buffer, responseTopic: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
  await client.subscribeAsync(responseTopic, { qos: 0 });
  try {
    const response = new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message on ${responseTopic} within ${timeoutMs} ms`)), timeoutMs);
      const onMessage = (t: string, message: Buffer) => {
        if (t !== responseTopic) return;
        clearTimeout(timer);
        client.off('message', onMessage);
        resolve(JSON.parse(message.toString()) as Record<string, unknown>);
      };
      client.on('message', onMessage);
    });
    await client.publishAsync(topic, payload, { qos: 1 });
    return await response;
  } finally {
    await client.unsubscribeAsync(responseTopic);
  }
}

/** Collects every message on the given topics until `stop()` is called. */
export async function collect(client: MqttClient, filter: string): Promise<{ messages: Array<{ topic: string; body: Record<string, unknown> }>; stop: () => Promise<void> }> {
  const messages: Array<{ topic: string; body: Record<string, unknown> }> = [];
  const onMessage = (topic: string, message: Buffer) => {
    try {
      messages.push({ topic, body: JSON.parse(message.toString()) as Record<string, unknown> });
    } catch {
      messages.push({ topic, body: { raw: message.toString() } });
    }
  };
  client.on('message', onMessage);
  await client.subscribeAsync(filter, { qos: 0 });
  return {
    messages,
    async stop() {
      client.off('message', onMessage);
      await client.unsubscribeAsync(filter);
    },
  };
}
