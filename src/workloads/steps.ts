/**
 * Multi-step work as a list of named steps, run in order (aedes' connectActions and runSeries):
 * the list reads as what happens, and a failure says at which step it happened.
 */

export interface Step<State> {
  /** Says where a failure happened: `open tunnel`, `confirm`. */
  name: string;
  /** Does the step's part, reading what earlier steps left in `state` and leaving its own. */
  run(state: State): Promise<void>;
}

/** Runs `steps` in order; the first that throws ends the run with the error `failed` makes of it. */
export async function runSteps<State>(steps: readonly Step<State>[], state: State, failed: (step: string, cause: unknown) => Error): Promise<void> {
  for (const step of steps) {
    try {
      await step.run(state);
    } catch (error) {
      throw failed(step.name, error);
    }
  }
}
