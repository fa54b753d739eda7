/**
 * The heavy half of DMI — gRPC, protobuf, the service and the mapper sync — loaded by the module
 * only once a mapper connects or is known (grpc-js and protobufjs cost ~20 MB of RSS, which a
 * gateway without DMI mappers should not pay). Connections the module accepted are handed to the
 * gRPC server as they come.
 */
import type { Duplex } from 'node:stream';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { DeviceCatalog } from '../devices/catalog.js';
import type { Logger } from '../log.js';
import { TokenBucket } from '../rate-limit.js';
import type { Twins } from '../twin/twins.js';
import type { DmiConfig } from './config.js';
import { deviceManagerService } from './proto.js';
import type { MapperRegistry } from './registry.js';
import { deviceManagerHandlers } from './server.js';
import { MapperSync } from './sync.js';

export interface EngineDeps {
  config: DmiConfig;
  registry: MapperRegistry;
  catalog: DeviceCatalog;
  twins: Twins;
  signal: AbortSignal;
  log: Logger;
}

export interface Engine {
  sync: MapperSync;
  /** Serves a connection a mapper opened on the DMI socket. */
  serve(connection: Duplex): void;
  stop(): Promise<void>;
}

export function createEngine(deps: EngineDeps): Engine {
  const { config, registry, catalog, twins, signal, log } = deps;
  const sync = new MapperSync({ registry, catalog, twins, callTimeoutMs: config.callTimeoutMs, signal, log });
  const server = new Server({ 'grpc.max_receive_message_length': config.maxMessageBytes });
  server.addService(
    deviceManagerService,
    deviceManagerHandlers({
      registry,
      twins,
      limit: new TokenBucket(config.maxCallsPerSecond, config.maxCallsPerSecond),
      register: async (mapper, withData) => {
        const answer = sync.registration(mapper.protocol, withData);
        await registry.register({ ...mapper, registeredAt: new Date().toISOString() });
        log.info({ mapper: mapper.name, protocol: mapper.protocol, address: mapper.address, devices: answer.deviceList.length }, 'DMI mapper registered');
        return answer;
      },
      log,
    }),
  );
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  return {
    sync,
    serve: (connection) => {
      injector.injectConnection(connection);
      // The module accepted it paused (nothing read before the engine was there); HTTP/2 now reads it.
      connection.resume();
    },
    async stop() {
      await sync.idle();
      injector.destroy();
      server.forceShutdown();
    },
  };
}
