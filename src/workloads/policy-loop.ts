/**
 * The offload policy at work: every `intervalMs` it reads the telemetry, asks the policy, and moves
 * the workloads it may move out to the target peer, or brings back those that are there. Newly
 * reported telemetry is looked at at once, not at the next tick.
 */
import type { Logger } from '../log.js';
import type { ReportedTelemetry, Telemetry, TelemetryModule } from '../telemetry/index.js';
import type { WorkloadsConfig } from './config.js';
import type { WorkloadManager } from './manager.js';
import type { OutgoingMigrations } from './migrate-out.js';
import { OffloadPolicy, type Decision } from './policy.js';

export interface PolicyState {
  enabled: boolean;
  target?: string;
  last?: Decision & { telemetry: Telemetry; moved: string[] };
}

export class PolicyLoop {
  private readonly policy: OffloadPolicy;
  private timer?: NodeJS.Timeout;
  private last?: PolicyState['last'];
  private stopped = false;

  constructor(
    private readonly deps: {
      config: WorkloadsConfig;
      telemetry: TelemetryModule;
      manager: WorkloadManager;
      outgoing: OutgoingMigrations;
      log: Logger;
    },
  ) {
    this.policy = new OffloadPolicy(deps.config.policy);
  }

  start(): void {
    if (this.deps.config.policy.enabled) this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Reported values (battery, charging, mode, …) go to the telemetry, and the policy looks at them now. */
  report(values: ReportedTelemetry): ReportedTelemetry {
    const reported = this.deps.telemetry.report(values);
    if (this.deps.config.policy.enabled) this.schedule(0);
    return reported;
  }

  state(): PolicyState {
    const { enabled, target } = this.deps.config.policy;
    return { enabled, target, last: this.last };
  }

  private schedule(delay = this.deps.config.policy.intervalMs): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.evaluate()
        .catch((error: Error) => this.deps.log.warn({ err: error.message }, 'offload policy could not decide'))
        .finally(() => this.schedule());
    }, delay);
  }

  private async evaluate(): Promise<void> {
    const { config, telemetry, manager, outgoing, log } = this.deps;
    const target = config.policy.target!;
    const trusted = config.peers.find((p) => p.name === target)?.trusted === true;
    const views = manager.list();
    // What an operator moved stays where it was put: the policy brings back only what it moved.
    const away = views.filter((w) => w.state === 'migrated' && w.movedTo === target && manager.movedBy(w.name) === 'policy');
    const sample = await telemetry.read();
    const decision = this.policy.evaluate(sample, away.length > 0);
    const moved: string[] = [];
    if (decision.verdict === 'out') {
      const movable = views.filter((w) => w.pid !== undefined && w.origin === 'local' && !w.definition.onDemand && (w.definition.placement === 'any' || (w.definition.placement === 'trusted' && trusted)));
      for (const workload of movable) {
        await outgoing.migrate(workload.name, target, 'policy').then(
          () => moved.push(workload.name),
          (error: Error) => log.warn({ workload: workload.name, err: error.message }, 'offload failed'),
        );
      }
    } else if (decision.verdict === 'back') {
      for (const workload of away) {
        await outgoing.bringBack(workload.name).then(
          () => moved.push(workload.name),
          (error: Error) => log.warn({ workload: workload.name, err: error.message }, 'bringing back failed'),
        );
      }
    }
    this.last = { ...decision, telemetry: sample, moved };
    if (decision.verdict !== 'stay') log.info({ verdict: decision.verdict, reasons: decision.reasons, moved }, 'offload policy acted');
  }
}
