/** Running a scenario of test/vm/scenarios in the VM testbed and reading what it recorded. */
import { runInVm } from '../vm/vm.js';
import { ROOT } from './agent.js';

// Generous: under TCG, with the rest of the suite sharing two cores, a scenario can take minutes.
export const VM_TIMEOUT_MS = 480_000;

export async function runScenario(name: string): Promise<Record<string, unknown>> {
  const run = await runInVm(`cd ${ROOT} && node dist/test/vm/scenarios/${name}.js`, { timeoutMs: VM_TIMEOUT_MS, shares: [ROOT] });
  const file = run.file(`${name}.json`);
  if (!file) throw new Error(`scenario ${name} wrote no result (exit ${run.exitCode}):\n${run.output.slice(-3000)}`);
  const result = JSON.parse(file) as Record<string, unknown>;
  if (result.error) throw new Error(`scenario ${name} failed: ${String(result.error)}\n${run.output.slice(-3000)}`);
  return result;
}
