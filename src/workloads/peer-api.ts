/**
 * The peer API, served over the pinned mutual-TLS channel to configured peers only; each route's
 * context is the peer that asks:
 *   POST /v1/migrations                  an offer: fetch, verify, start a guest waiting for the stream
 *   POST /v1/migrations/{id}/confirm     the source completed: the guest is ours once it runs (asked again, the same answer)
 *   POST /v1/migrations/{id}/abort       the source gave up (409 once confirmed: the workload runs here)
 *   GET  /v1/migrations/{id}/stream      (Upgrade) the source's lease: held until it confirms
 *   GET  /v1/artifacts/{sha256}          an artifact of one of this agent's images
 *   POST /v1/workloads/{name}/return     the peer wants back a workload it sent here (here `<peer>.<name>`)
 *   GET  /v1/workloads                   the workloads here
 */
import { createReadStream } from 'node:fs';
import { AgentError } from '../errors.js';
import { Streamed } from '../http/router.js';
import type { WorkloadManager, WorkloadView } from './manager.js';
import { migrationConfirmation, migrationOffer, type IncomingMigrations } from './migrate-in.js';
import type { Acceptance, MigrationResult, OutgoingMigrations } from './migrate-out.js';
import { peerScoped } from './peer-scope.js';
import type { PeerRoute, PeerStreamHandler } from './peers.js';

/** The one path served as a raw stream: the lease the source holds on a migration (migrate-out.ts). */
const MIGRATION_LEASE = /^\/v1\/migrations\/([0-9a-f-]{36})\/stream$/;

export interface PeerApiParts {
  manager: WorkloadManager;
  incoming: IncomingMigrations;
  outgoing: OutgoingMigrations;
}

export function peerRoutes({ manager, incoming, outgoing }: PeerApiParts): PeerRoute[] {
  return [
    { method: 'POST', path: '/v1/migrations', handle: async ({ context: peer, body }): Promise<Acceptance> => incoming.accept(peer, await body(migrationOffer)) },
    { method: 'POST', path: '/v1/migrations/:id/confirm', handle: async ({ params, body, context: peer }) => incoming.confirm(peer.name, params.id!, await body(migrationConfirmation)) },
    {
      method: 'POST',
      path: '/v1/migrations/:id/abort',
      handle: async ({ params, context: peer }) => {
        await incoming.abortFor(peer.name, params.id!);
        return {};
      },
    },
    {
      method: 'GET',
      path: '/v1/artifacts/:sha256',
      handle: ({ params }) => {
        const artifact = manager.artifact(params.sha256!);
        if (!artifact) throw new AgentError(404, `no artifact ${params.sha256} here`);
        return new Streamed(createReadStream(artifact.path), artifact.size);
      },
    },
    {
      method: 'POST',
      path: '/v1/workloads/:name/return',
      handle: async ({ params, context: peer }): Promise<MigrationResult> => {
        const name = peerScoped(peer.name, params.name!);
        if (manager.record(name)?.origin !== `peer:${peer.name}`) throw new AgentError(403, `workload ${params.name} did not come from ${peer.name}`);
        const result = await outgoing.migrate(name, peer.name, 'peer');
        manager.remove(name);
        return result;
      },
    },
    { method: 'GET', path: '/v1/workloads', handle: (): { workloads: WorkloadView[] } => ({ workloads: manager.list() }) },
  ];
}

export function peerStream(incoming: IncomingMigrations): PeerStreamHandler {
  return ({ peer, path }, socket) => {
    const id = MIGRATION_LEASE.exec(path)?.[1];
    if (id) incoming.lease(peer.name, id, socket);
    else socket.destroy();
  };
}
